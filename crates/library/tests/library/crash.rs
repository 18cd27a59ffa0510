//! Crash safety: a writer process killed with SIGKILL at random moments must leave a library
//! that opens, verifies clean (content included) and holds every node whose creation returned.
//!
//! The writer is this test binary re-executed with `CRASH_WRITER_DIR` set, running only
//! `crash::writer_process`; it prints `created <id>` after each `create_node` returns. Every
//! sixth run starts two writers at once, so the kills also land on cross-process contention.

use super::common::{content_check, new_segment};
use freeze_attn_library::{GcOptions, Library, NewNode, NodeId, NodeKind, NodeOrder, SegmentMeta};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, thread};

const DIR_VAR: &str = "CRASH_WRITER_DIR";
const SEED_VAR: &str = "CRASH_WRITER_SEED";
const SOLO_VAR: &str = "CRASH_WRITER_SOLO";
const RUNS: u64 = 60;

/// xorshift64*: enough randomness for kill timing and writer choices, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Only does something when re-executed by the test below.
#[test]
fn writer_process() {
    let Ok(dir) = env::var(DIR_VAR) else { return };
    let seed = env::var(SEED_VAR).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let solo = env::var(SOLO_VAR).as_deref() == Ok("1");
    write_forever(Path::new(&dir), seed, solo);
}

fn write_forever(dir: &Path, seed: u64, solo: bool) {
    let lib = Library::open(dir).expect("writer opens the library");
    let mut rng = Rng(seed | 1);
    // (node, its tip segment): the places new states can grow from.
    let mut known: Vec<(NodeId, Option<SegmentMeta>)> = lib
        .tree(NodeOrder::Created)
        .expect("list")
        .into_iter()
        .map(|e| {
            (
                e.node.id,
                e.node.tip.map(|t| lib.segment(&t).expect("tip is catalogued")),
            )
        })
        .collect();
    let scratch = dir.join(format!("writer-{seed}.bin"));
    for counter in 0.. {
        let name = format!("w{seed}-{counter}");
        let pick = (!known.is_empty()).then(|| known[rng.below(known.len() as u64) as usize].clone());
        match rng.below(10) {
            0..=4 => {
                let (parent, tip) = pick.map_or((None, None), |(id, tip)| (Some(id), tip));
                let content: Vec<u8> = (0..1 + rng.below(32 * 1024)).map(|_| rng.below(256) as u8).collect();
                let new = new_segment(&content, tip.as_ref(), 1 + rng.below(64));
                let seg = if counter % 2 == 0 {
                    let temp = lib.temp_segment().expect("temp");
                    fs::write(temp.path(), &content).expect("write temp");
                    lib.put_temp_segment(&new, temp).expect("put temp segment")
                } else {
                    fs::write(&scratch, &content).expect("write scratch");
                    lib.put_segment(&new, &scratch).expect("put segment")
                };
                let mut node =
                    NewNode::new(name, NodeKind::Chat, super::common::MODEL).with_state(seg.hash.clone(), seg.end());
                node.parent = parent;
                node.transcript = format!("[{{\"content\":\"{counter}\"}}]");
                let id = lib.create_node(&node).expect("create node");
                println!("created {}", id.0);
                known.push((id, Some(seg)));
            }
            5..=6 => {
                if let Some((id, Some(tip))) = pick {
                    let tokens = 1 + rng.below(tip.end());
                    let node = NewNode::new(name, NodeKind::Story, super::common::MODEL)
                        .under(id)
                        .with_state(tip.hash.clone(), tokens);
                    let child = lib.create_node(&node).expect("create rewound fork");
                    println!("created {}", child.0);
                    known.push((
                        child,
                        lib.node(child)
                            .expect("read")
                            .tip
                            .map(|t| lib.segment(&t).expect("tip")),
                    ));
                }
            }
            7 => {
                // A segment no node will use: garbage for gc.
                let content: Vec<u8> = (0..1 + rng.below(4096)).map(|_| rng.below(256) as u8).collect();
                fs::write(&scratch, &content).expect("write scratch");
                lib.put_segment(&new_segment(&content, None, 1), &scratch)
                    .expect("put orphan-to-be");
            }
            8 => {
                // Alone, collect everything; with another writer, respect its work in flight.
                let options = if solo {
                    GcOptions { grace: Duration::ZERO }
                } else {
                    GcOptions::default()
                };
                lib.gc_with(options).expect("gc");
            }
            _ => {
                if let Some((id, _)) = pick {
                    lib.add_tag(id, &format!("t{}", rng.below(5))).expect("tag");
                    lib.set_pinned(id, rng.below(2) == 0).expect("pin");
                    lib.rename_node(id, &format!("{name}-renamed")).expect("rename");
                }
            }
        }
    }
}

fn spawn_writer(dir: &Path, seed: u64, solo: bool) -> Child {
    Command::new(env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash::writer_process",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(DIR_VAR, dir)
        .env(SEED_VAR, seed.to_string())
        .env(SOLO_VAR, if solo { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer")
}

/// Kills the writer and returns the ids it reported; fails if it had died on its own.
fn kill_and_collect(mut child: Child, seed: u64) -> Vec<NodeId> {
    if let Some(status) = child.try_wait().expect("poll writer") {
        let mut err = String::new();
        child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        panic!("writer (seed {seed}) exited by itself with {status}: {err}");
    }
    child.kill().expect("SIGKILL the writer");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read writer output");
    child.wait().expect("reap writer");
    // Only complete lines: a line is printed after its create returned.
    let complete = out.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .filter_map(|l| l.strip_prefix("created "))
        .map(|n| NodeId(n.trim().parse().expect("node id")))
        .collect()
}

#[test]
fn a_writer_killed_at_random_moments_leaves_a_consistent_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");
    drop(Library::open(&lib_dir).unwrap());
    let base_seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng(base_seed | 1);
    let mut created: Vec<NodeId> = Vec::new();
    let started = Instant::now();
    for run in 0..RUNS {
        let writers = if run % 6 == 5 { 2 } else { 1 };
        let children: Vec<(Child, u64)> = (0..writers)
            .map(|w| {
                let seed = base_seed.wrapping_add(run * 10 + w);
                (spawn_writer(&lib_dir, seed, writers == 1), seed)
            })
            .collect();
        thread::sleep(Duration::from_millis(5 + rng.below(150)));
        for (child, seed) in children {
            created.extend(kill_and_collect(child, seed));
        }
        let lib = Library::open(&lib_dir)
            .unwrap_or_else(|e| panic!("run {run} (seed {base_seed}): library does not open: {e}"));
        let report = lib.verify(content_check).unwrap();
        assert!(
            report.is_ok(),
            "run {run} (seed {base_seed}): a kill left damage: {:?}",
            report.problems
        );
        for id in &created {
            let node = lib
                .node(*id)
                .unwrap_or_else(|e| panic!("run {run} (seed {base_seed}): node {id} was reported created but {e}"));
            if let Some(tip) = &node.tip {
                lib.chain(tip)
                    .unwrap_or_else(|e| panic!("node {id}'s state is unreadable: {e}"));
            }
        }
    }
    assert!(
        created.len() >= RUNS as usize,
        "the writers made too little progress to test anything: {} nodes",
        created.len()
    );
    let lib = Library::open(&lib_dir).unwrap();
    lib.gc_with(GcOptions { grace: Duration::ZERO }).unwrap();
    let report = lib.verify(content_check).unwrap();
    assert!(report.is_ok(), "after gc: {:?}", report.problems);
    let leftovers: Vec<_> = super::common::files_in(lib.segments_dir())
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "gc removes crash leftovers: {leftovers:?}");
    assert!(
        lib.tree(NodeOrder::Name).unwrap().len() >= created.len(),
        "every reported node exists"
    );
    eprintln!(
        "crash test: {RUNS} kills, {} nodes, {:?}",
        created.len(),
        started.elapsed()
    );
}
