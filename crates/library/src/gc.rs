//! Garbage collection of the segment store.
//!
//! Four kinds of garbage: catalogued segments no node's chain uses (left by deletes), `.seg`
//! files without a row (a crash between rename and commit), temporary files (`.part`, and the
//! engine writer's `.partial`, of a crash or an abandoned write), and unpacked bundles in
//! `import-scratch/` (an import killed or refused). Nothing is deleted from a library that fails
//! verification, and a row-less file older than the catalogue itself is never a crash leftover:
//! it is kept for `states recover`. Rows are deleted first and committed; files are deleted in a
//! second transaction, only where no row exists, while holding the database write lock — the
//! same lock under which puts rename files into place — so a put in another process cannot
//! slip a file in between gc's check and its delete, and a crash leaves only row-less files.
//!
//! The grace period protects work in flight in other processes: a segment put moments ago whose
//! node is not created yet, and a temporary file still being written.

use crate::db::now_ms;
use crate::durable::TEMP_SUFFIX;
use crate::error::{LibraryError, Result};
use crate::forest::Forest;
use crate::ids::SegmentId;
use crate::library::Library;
use crate::schema::{library_meta, nodes, segments};
use crate::verify::{modified_ms, segment_file_id};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The suffix of the engine's own temporary file while it writes a segment (`write_segment`
/// writes `.<target>.<pid>.partial` and renames it onto the library's `.part` file).
const ENGINE_TEMP_SUFFIX: &str = ".partial";

/// How gc treats recent data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Segments put, and temporary files modified, within this long ago are kept.
    pub grace: Duration,
}

impl Default for GcOptions {
    /// Ten minutes: far longer than a put-then-create takes, short enough to matter.
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(600),
        }
    }
}

/// What a gc removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Catalogued segments no node used (rows and files).
    pub segments_deleted: u64,
    /// `.seg` files that had no row.
    pub orphan_files_deleted: u64,
    /// Leftover temporary files (`.part`, `.partial`).
    pub temp_files_deleted: u64,
    /// Unpacked bundles left in `import-scratch/` by imports that were killed or refused.
    pub scratch_deleted: u64,
    /// Bytes of all files removed.
    pub bytes_freed: u64,
}

impl Library {
    /// Collects garbage with the default grace period (see [`GcOptions`]).
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(GcOptions::default())
    }

    /// Collects garbage with explicit options. Refuses, deleting nothing, when the library fails
    /// a structural verification (every check but the content's): a catalogue that lost rows
    /// or files must be repaired first, since what looks unreferenced may be what it lost.
    pub fn gc_with(&self, options: GcOptions) -> Result<GcReport> {
        let health = self.verify(|_, _| Ok(()))?;
        if let Some(first) = health.problems.first() {
            return Err(LibraryError::Unhealthy {
                problems: health.problems.len(),
                first: first.to_string(),
            });
        }
        let grace_ms = i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(grace_ms);
        let temp_cutoff = SystemTime::now()
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Phase 1: forget unreferenced rows. Phase 2, a second transaction: delete every file
        // without a row. A crash between or during the phases leaves only row-less files,
        // which the next gc's phase 2 removes; deleting files before the rows commit could
        // leave rows without files instead.
        let deleted = self.write(|conn| {
            let forest = Forest::load(conn)?;
            let node_tips: Vec<SegmentId> = nodes::all_tips(conn)?.into_iter().filter_map(|(_, tip)| tip).collect();
            let young = segments::touched_since(conn, cutoff)?;
            // Young segments keep their ancestors too: a row cannot outlive its parent row.
            let keep = forest.reachable(node_tips.iter().chain(&young));
            conn.pragma_update(None, "defer_foreign_keys", true)?;
            let mut deleted = HashSet::new();
            for row in segments::select_all(conn)? {
                if !forest.is_marked(&keep, &row.hash) {
                    segments::delete(conn, &row.hash)?;
                    deleted.insert(row.hash);
                }
            }
            Ok(deleted)
        })?;
        // Under the write lock, so no put can rename a file into place between the check for
        // its row and the delete.
        self.write(|conn| {
            let rows: HashSet<SegmentId> = segments::select_all(conn)?.into_iter().map(|m| m.hash).collect();
            let mut report = GcReport {
                segments_deleted: deleted.len() as u64,
                ..GcReport::default()
            };
            let created_at = library_meta::created_at(conn)?;
            sweep_folder(
                self.segments_dir(),
                &rows,
                &deleted,
                temp_cutoff,
                created_at,
                &mut report,
            )?;
            sweep_scratch(&self.import_scratch_dir(), temp_cutoff, &mut report)?;
            Ok(report)
        })
    }
}

/// Removes, among regular files only: `.seg` files of rows this run deleted (`deleted`);
/// row-less `.seg` files older than the grace period but not older than the catalogue (older
/// ones belong to a lost catalogue: verify reports them, `states recover` adopts them); and old
/// temporary files (`.part` of the library, `.partial` of the engine's writer). Anything else,
/// and anything that is not a regular file, is left alone.
fn sweep_folder(
    dir: &Path,
    rows: &HashSet<SegmentId>,
    deleted: &HashSet<SegmentId>,
    cutoff: SystemTime,
    created_at: i64,
    report: &mut GcReport,
) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(LibraryError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(LibraryError::io("list", dir))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if name.ends_with(TEMP_SUFFIX) || name.ends_with(ENGINE_TEMP_SUFFIX) {
            if modified <= cutoff {
                report.bytes_freed += remove_file(&path)?;
                report.temp_files_deleted += 1;
            }
        } else if let Some(id) = segment_file_id(&path) {
            if rows.contains(&id) {
                continue;
            }
            if deleted.contains(&id) {
                report.bytes_freed += remove_file(&path)?;
            } else if modified <= cutoff && modified_ms(&meta) >= created_at {
                report.bytes_freed += remove_file(&path)?;
                report.orphan_files_deleted += 1;
            }
        }
    }
    Ok(())
}

/// Removes sub-folders of `dir` (unpacked bundles of imports that were killed or refused) last
/// changed before `cutoff`; a missing `dir` has nothing to remove.
fn sweep_scratch(dir: &Path, cutoff: SystemTime, report: &mut GcReport) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LibraryError::io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(LibraryError::io("list", dir))?;
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) > cutoff {
            continue;
        }
        let bytes: u64 = fs::read_dir(&path)
            .map(|files| files.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                report.bytes_freed += bytes;
                report.scratch_deleted += 1;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(LibraryError::io("delete", &path)(e)),
        }
    }
    Ok(())
}

/// Removes a file and returns its size; a file already gone counts as 0 bytes.
fn remove_file(path: &Path) -> Result<u64> {
    let bytes = fs::metadata(path).map_or(0, |m| m.len());
    match fs::remove_file(path) {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(LibraryError::io("delete", path)(e)),
    }
}
