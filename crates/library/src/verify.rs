//! `verify`: checks the catalogue against the files, without changing anything.
//!
//! Checked: SQLite's own integrity and foreign keys; every segment's fields, its link to its
//! parent (start, model), its file's presence and recorded size, and — through the caller's
//! closure, since only the engine can read a segment — its content; every node's chain, model
//! and token count. Each segment is checked once; its problems are reported against every node
//! whose chain uses it (and against no node if none does).

use crate::error::{LibraryError, Result};
use crate::ids::{NodeId, SegmentId};
use crate::library::Library;
use crate::schema::{library_meta, nodes, segments};
use crate::segment::SegmentMeta;
use rusqlite::Connection;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// SQLite's `quick_check` or `foreign_key_check` reported this.
    Database(String),
    /// A chain names a segment that has no row.
    MissingSegment,
    /// The segment's file is absent.
    MissingFile { path: PathBuf },
    /// The file's size differs from the recorded one (truncated or replaced).
    SizeMismatch { expected: u64, found: u64 },
    /// The caller's content check refused the file.
    ContentRejected(Rejection),
    /// The segment's fields or its link to its parent are inconsistent.
    BrokenChain(String),
    /// The node's model differs from its tip segment's.
    ModelMismatch {
        expected: freeze_attn_ids::ModelFingerprint,
        found: freeze_attn_ids::ModelFingerprint,
    },
    /// The node's token count does not fall inside its tip segment.
    TokenCountOutOfRange {
        token_count: u64,
        tip_start: u64,
        tip_end: u64,
    },
    /// The node is not under any top-level node: its parent links form a cycle (so `tree`
    /// would never show it).
    ParentCycle,
    /// A segment file without a row, written before this catalogue began: the catalogue was
    /// probably lost or replaced (`states recover` catalogues such files again).
    UncataloguedFile { path: PathBuf },
    /// Something named like a segment file is not a regular file.
    NotAFile { path: PathBuf },
}

/// Why the caller's content check (the engine, which alone can read a segment) refused a file:
/// the engine error's stable code (`state_checksum`, `state_model_mismatch`, …) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl ProblemKind {
    /// A stable, machine-readable name of the problem (for `verify --json` and scripts).
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::Database(_) => "database",
            ProblemKind::MissingSegment => "missing_segment",
            ProblemKind::MissingFile { .. } => "missing_file",
            ProblemKind::SizeMismatch { .. } => "size_mismatch",
            ProblemKind::ContentRejected(r) => r.code,
            ProblemKind::BrokenChain(_) => "broken_chain",
            ProblemKind::ModelMismatch { .. } => "model_mismatch",
            ProblemKind::TokenCountOutOfRange { .. } => "token_count_out_of_range",
            ProblemKind::ParentCycle => "parent_cycle",
            ProblemKind::UncataloguedFile { .. } => "uncatalogued_file",
            ProblemKind::NotAFile { .. } => "not_a_file",
        }
    }
}

/// A problem, with the node and segment it concerns where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub node: Option<NodeId>,
    pub segment: Option<SegmentId>,
    pub kind: ProblemKind,
}

/// The result of [`Library::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub nodes_checked: usize,
    pub segments_checked: usize,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems that affect `node`.
    pub fn problems_of(&self, node: NodeId) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.node == Some(node))
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Database(msg) => write!(f, "database check: {msg}"),
            ProblemKind::MissingSegment => write!(f, "segment is not catalogued"),
            ProblemKind::MissingFile { path } => write!(f, "file {} is missing", path.display()),
            ProblemKind::SizeMismatch { expected, found } => {
                write!(f, "file is {found} bytes, expected {expected}")
            }
            ProblemKind::ContentRejected(why) => write!(f, "content check failed: {}", why.message),
            ProblemKind::BrokenChain(why) => write!(f, "inconsistent chain: {why}"),
            ProblemKind::ModelMismatch { expected, found } => {
                write!(f, "node is for model {expected} but its state is for {found}")
            }
            ProblemKind::TokenCountOutOfRange {
                token_count,
                tip_start,
                tip_end,
            } => {
                write!(
                    f,
                    "token count {token_count} is outside its tip segment ({tip_start}, {tip_end}]"
                )
            }
            ProblemKind::ParentCycle => write!(f, "its parent links form a cycle: no top-level node leads to it"),
            ProblemKind::UncataloguedFile { path } => write!(
                f,
                "{} is older than the catalogue and not in it: the catalogue may have been lost (run `states recover`)",
                path.display()
            ),
            ProblemKind::NotAFile { path } => write!(f, "{} is not a regular file", path.display()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = self.node {
            write!(f, "node {node}: ")?;
        }
        if let Some(seg) = &self.segment {
            write!(f, "segment {seg}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// What the catalogue says, read in one snapshot.
struct Snapshot {
    database: Vec<String>,
    segments: Vec<SegmentMeta>,
    nodes: Vec<nodes::NodeState>,
    /// Each node's parent.
    parents: Vec<(NodeId, Option<NodeId>)>,
    /// When the catalogue began (ms).
    created_at: i64,
}

impl Library {
    /// Checks the library; `check` is called once per segment whose file is present with the
    /// right size, and returns why the content is bad. Never changes anything. The database
    /// lock is held only while reading the catalogue, not during file checks.
    pub fn verify<F>(&self, check: F) -> Result<VerifyReport>
    where
        F: Fn(&SegmentMeta, &Path) -> std::result::Result<(), Rejection>,
    {
        let snap = self.read(snapshot)?;
        let by_hash: HashMap<&SegmentId, &SegmentMeta> = snap.segments.iter().map(|s| (&s.hash, s)).collect();
        let mut report = VerifyReport {
            nodes_checked: snap.nodes.len(),
            segments_checked: snap.segments.len(),
            problems: snap
                .database
                .iter()
                .map(|msg| Problem {
                    node: None,
                    segment: None,
                    kind: ProblemKind::Database(msg.clone()),
                })
                .collect(),
        };
        let mut seg_problems: HashMap<&SegmentId, Vec<ProblemKind>> = HashMap::new();
        for seg in &snap.segments {
            let parent = seg.parent.as_ref().and_then(|p| by_hash.get(p).copied());
            let found = self.check_segment(seg, parent, &check);
            seg_problems.insert(&seg.hash, found);
        }
        let mut used: HashMap<&SegmentId, bool> = HashMap::new();
        for nodes::NodeState {
            id,
            tip,
            token_count,
            model_fingerprint: model,
        } in &snap.nodes
        {
            let node = Some(*id);
            let Some(tip) = tip else { continue };
            if let Some(t) = by_hash.get(tip) {
                if &t.model_fingerprint != model {
                    let kind = ProblemKind::ModelMismatch {
                        expected: model.clone(),
                        found: t.model_fingerprint.clone(),
                    };
                    report.problems.push(Problem {
                        node,
                        segment: Some(tip.clone()),
                        kind,
                    });
                }
                if *token_count <= t.start || *token_count > t.end() {
                    let kind = ProblemKind::TokenCountOutOfRange {
                        token_count: *token_count,
                        tip_start: t.start,
                        tip_end: t.end(),
                    };
                    report.problems.push(Problem {
                        node,
                        segment: Some(tip.clone()),
                        kind,
                    });
                }
            }
            let mut cur = Some(tip);
            let mut steps = 0;
            while let Some(hash) = cur {
                steps += 1;
                used.insert(hash, true);
                let Some(seg) = by_hash.get(hash) else {
                    report.problems.push(Problem {
                        node,
                        segment: Some(hash.clone()),
                        kind: ProblemKind::MissingSegment,
                    });
                    break;
                };
                for kind in seg_problems.get(hash).into_iter().flatten() {
                    report.problems.push(Problem {
                        node,
                        segment: Some(hash.clone()),
                        kind: kind.clone(),
                    });
                }
                cur = seg.parent.as_ref().filter(|_| steps <= snap.segments.len());
            }
        }
        for node in unrooted(&snap.parents) {
            report.problems.push(Problem {
                node: Some(node),
                segment: None,
                kind: ProblemKind::ParentCycle,
            });
        }
        let catalogued: std::collections::HashSet<&SegmentId> = by_hash.keys().copied().collect();
        for (id, path, kind) in self.stray_files(&catalogued, snap.created_at)? {
            report.problems.push(Problem {
                node: None,
                segment: Some(id),
                kind: match kind {
                    Stray::Old => ProblemKind::UncataloguedFile { path },
                    Stray::NotAFile => ProblemKind::NotAFile { path },
                },
            });
        }
        for seg in &snap.segments {
            if used.contains_key(&seg.hash) {
                continue;
            }
            for kind in seg_problems.remove(&seg.hash).into_iter().flatten() {
                report.problems.push(Problem {
                    node: None,
                    segment: Some(seg.hash.clone()),
                    kind,
                });
            }
        }
        Ok(report)
    }

    /// Problems of one segment on its own: fields, link to `parent` (None if the segment is a
    /// root or the parent row is missing), file and content.
    fn check_segment<F>(&self, seg: &SegmentMeta, parent: Option<&SegmentMeta>, check: &F) -> Vec<ProblemKind>
    where
        F: Fn(&SegmentMeta, &Path) -> std::result::Result<(), Rejection>,
    {
        let mut found = Vec::new();
        if let Err(why) = seg.check_fields() {
            found.push(ProblemKind::BrokenChain(why));
        }
        match (&seg.parent, parent) {
            (Some(p), None) => found.push(ProblemKind::BrokenChain(format!("parent {p} is not catalogued"))),
            (Some(_), Some(p)) => {
                if let Err(why) = seg.check_extends(p) {
                    found.push(ProblemKind::BrokenChain(why));
                }
            }
            (None, _) => {}
        }
        let path = self.segment_path(&seg.hash);
        match fs::symlink_metadata(&path) {
            Err(_) => found.push(ProblemKind::MissingFile { path }),
            Ok(m) if !m.is_file() => found.push(ProblemKind::NotAFile { path }),
            Ok(m) if m.len() != seg.bytes => found.push(ProblemKind::SizeMismatch {
                expected: seg.bytes,
                found: m.len(),
            }),
            Ok(_) => {
                if let Err(why) = check(seg, &path) {
                    found.push(ProblemKind::ContentRejected(why));
                }
            }
        }
        found
    }
}

fn snapshot(conn: &Connection) -> Result<Snapshot> {
    let mut database = Vec::new();
    // integrity_check, not quick_check: it also checks that every index matches its table, and
    // a broken index is what makes lookups by name or parent return wrong rows.
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for msg in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let msg = msg?;
        if msg != "ok" {
            database.push(msg);
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (table, rowid, parent) = row?;
        database.push(format!(
            "row {} of {table} references a missing {parent} row",
            rowid.unwrap_or(-1)
        ));
    }
    Ok(Snapshot {
        database,
        segments: segments::select_all(conn)?,
        nodes: nodes::all_states(conn)?,
        parents: nodes::all_parents(conn)?,
        created_at: library_meta::created_at(conn)?,
    })
}

/// Nodes that no chain of parent links from a top-level node reaches (they sit on or under a
/// cycle), in id order.
fn unrooted(parents: &[(NodeId, Option<NodeId>)]) -> Vec<NodeId> {
    let mut children: HashMap<Option<NodeId>, Vec<NodeId>> = HashMap::new();
    for (id, parent) in parents {
        children.entry(*parent).or_default().push(*id);
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<NodeId> = children.get(&None).cloned().unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n) {
            stack.extend(children.get(&Some(n)).into_iter().flatten());
        }
    }
    let mut out: Vec<NodeId> = parents
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !seen.contains(id))
        .collect();
    out.sort();
    out
}

/// Why a file in the segment folder is a stranger to the catalogue.
pub(crate) enum Stray {
    /// A `.seg` file without a row, last written before the catalogue began.
    Old,
    /// Named like a segment file but not a regular file.
    NotAFile,
}

impl Library {
    /// Entries of the segment folder named like segment files that the catalogue cannot account
    /// for: row-less files older than the catalogue, and anything that is not a regular file.
    pub(crate) fn stray_files(
        &self,
        catalogued: &std::collections::HashSet<&SegmentId>,
        created_at: i64,
    ) -> Result<Vec<(SegmentId, PathBuf, Stray)>> {
        let dir = self.segments_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(LibraryError::io("list", dir))? {
            let entry = entry.map_err(LibraryError::io("list", dir))?;
            let path = entry.path();
            let Some(id) = segment_file_id(&path) else { continue };
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                out.push((id, path, Stray::NotAFile));
            } else if !catalogued.contains(&id) && modified_ms(&meta) < created_at {
                out.push((id, path, Stray::Old));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }
}

/// The id in a `<id>.seg` file name.
pub(crate) fn segment_file_id(path: &Path) -> Option<SegmentId> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(&format!(".{}", crate::segment_store::SEGMENT_EXT))?;
    SegmentId::parse(stem).ok()
}

/// A file's modification time in ms since the epoch (0 when unknown).
pub(crate) fn modified_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}
