//! Timing of listings and search over a 10,000-node library.
//!
//! `cargo run -p freeze-attn-library --release --example scale`
//!
//! Builds, in a temporary folder, 100 personalities (each a two-segment chain) with 99
//! descendants each (rewinds and forks of the personality's state, small JSON transcripts),
//! then prints how long the main read paths take. Correctness at this size is checked by the
//! `scale` integration test; this only measures.

use freeze_attn_library::{Library, NewNode, NewSegment, NodeKind, NodeOrder, SegmentId, SegmentMeta};
use std::time::Instant;

const GROUPS: u64 = 100;
const PER_GROUP: u64 = 99;
const MODEL: &str = "scale-model";

fn put(lib: &Library, parent: Option<&SegmentMeta>, seed: u64) -> Result<SegmentMeta, Box<dyn std::error::Error>> {
    let content: Vec<u8> = (0..4096u64)
        .map(|i| (i.wrapping_mul(seed + 1) >> 3) as u8)
        .chain(seed.to_le_bytes())
        .collect();
    let temp = lib.temp_segment()?;
    std::fs::write(temp.path(), &content)?;
    let new = NewSegment {
        hash: SegmentId::from_blake3(&blake3::hash(&content)),
        parent: parent.map(|p| p.hash.clone()),
        start: parent.map_or(0, SegmentMeta::end),
        token_count: 50,
        dtype: "f16".into(),
        model_fingerprint: MODEL.into(),
    };
    Ok(lib.put_temp_segment(&new, temp)?)
}

fn time<T>(label: &str, runs: u32, mut f: impl FnMut() -> T) -> T {
    let mut out = f(); // Warm-up (page cache, statement cache).
    let start = Instant::now();
    for _ in 0..runs {
        out = f();
    }
    println!(
        "{label:<44} {:>8.2} ms",
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
    );
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let lib = Library::open(dir.path())?;
    let start = Instant::now();
    for g in 0..GROUPS {
        let a = put(&lib, None, g)?;
        let b = put(&lib, Some(&a), 1_000 + g)?;
        let root =
            NewNode::new(format!("personality {g:03}"), NodeKind::Personality, MODEL).with_state(b.hash.clone(), 100);
        let mut parents = vec![lib.create_node(&root)?];
        for k in 0..PER_GROUP {
            let mut new = NewNode::new(format!("g{g}-n{k}"), NodeKind::Chat, MODEL)
                .under(parents[(k / 3) as usize])
                .with_state(b.hash.clone(), 1 + (g * 7 + k) % 100);
            new.transcript = format!(
                r#"[{{"role":"user","content":"Tell me about voyage {g}/{k} and the weather at sea."}},{{"role":"assistant","content":"A long answer about sails, wind and {k} gulls."}}]"#
            );
            new.tags = if k % 10 == 0 { vec!["tenth".into()] } else { Vec::new() };
            parents.push(lib.create_node(&new)?);
        }
    }
    let nodes = GROUPS * (PER_GROUP + 1);
    println!(
        "created {nodes} nodes in {:.0} ms ({:.3} ms each)",
        start.elapsed().as_secs_f64() * 1000.0,
        start.elapsed().as_secs_f64() * 1000.0 / nodes as f64
    );

    let tree = time("tree (all 10,000, with own bytes)", 10, || lib.tree(NodeOrder::Name));
    assert_eq!(tree?.len() as u64, nodes);
    time("children of the top level", 10, || lib.children(None, NodeOrder::Name))?;
    let hits = time("search \"gulls\" (every transcript matches)", 10, || {
        lib.search("gulls", NodeOrder::Name)
    })?;
    println!("  {} hits", hits.len());
    let hits = time("search \"g42-n1\" (names, 11 hits)", 10, || {
        lib.search("g42-n1", NodeOrder::Name)
    })?;
    println!("  {} hits", hits.len());
    time("search \"nothing-matches\"", 10, || {
        lib.search("nothing-matches", NodeOrder::Name)
    })?;
    time("nodes_tagged \"tenth\"", 10, || {
        lib.nodes_tagged("tenth", NodeOrder::Name)
    })?;
    time("verify (no content check)", 3, || lib.verify(|_, _| Ok(())))?;
    Ok(())
}
