//! The segment store: `segments/<hash>.seg` files and their catalogue rows.
//!
//! Order of a put: the bytes go to a temporary file in `segments/` and are fsynced outside any
//! lock; then, inside one IMMEDIATE transaction, the file is renamed into place, the folder is
//! fsynced and the row is inserted. A crash before the commit leaves a file without a row (an
//! orphan gc deletes), never a row without a file. Renames happen only under the database write
//! lock, which `gc` also holds while deleting files, so a put and a gc in two processes cannot
//! interleave to leave a row without its file.

use crate::db::now_ms;
use crate::durable::TempFile;
use crate::error::{LibraryError, Result};
use crate::ids::SegmentId;
use crate::library::Library;
use crate::schema::segments;
use crate::segment::{NewSegment, SegmentMeta};
use rusqlite::Connection;
use std::fs;
use std::path::{Path, PathBuf};

/// File name extension of stored segments.
pub(crate) const SEGMENT_EXT: &str = "seg";

impl Library {
    /// Where the file of segment `hash` lives (whether or not it is stored).
    pub fn segment_path(&self, hash: &SegmentId) -> PathBuf {
        self.segments_dir().join(format!("{hash}.{SEGMENT_EXT}"))
    }

    /// A fresh temporary file inside the store for the engine to write a segment into; pass it
    /// to [`Library::put_temp_segment`]. Dropped without being put, it is deleted.
    pub fn temp_segment(&self) -> Result<TempFile> {
        TempFile::create_in(self.segments_dir()).map(|(temp, _file)| temp)
    }

    /// Stores a finished segment file by copying `source` (left untouched) into the store, then
    /// catalogues it. Idempotent: if the hash is already stored with the same metadata and its
    /// file is intact, nothing is copied. The parent, if any, must already be stored.
    pub fn put_segment(&self, new: &NewSegment, source: &Path) -> Result<SegmentMeta> {
        let bytes = fs::metadata(source).map_err(LibraryError::io("read", source))?.len();
        let meta = new.with_bytes(bytes);
        meta.validate()?;
        let dest = self.segment_path(&meta.hash);
        if self.write(|conn| reuse(conn, &meta, &dest))? {
            return Ok(meta);
        }
        let temp = TempFile::copy_of(source, self.segments_dir())?;
        self.put_temp_segment(new, temp)
    }

    /// Stores a segment the engine wrote into a [`Library::temp_segment`] file (moved, not
    /// copied). Idempotent like [`Library::put_segment`].
    pub fn put_temp_segment(&self, new: &NewSegment, temp: TempFile) -> Result<SegmentMeta> {
        let meta = new.with_bytes(temp.sync()?);
        meta.validate()?;
        let dest = self.segment_path(&meta.hash);
        self.write(|conn| {
            if !reuse(conn, &meta, &dest)? {
                store(conn, &meta, temp, &dest)?;
            }
            Ok(())
        })?;
        Ok(meta)
    }

    /// Regular `<id>.seg` files in the store that have no row (what a lost catalogue leaves, or
    /// a crash between a file's rename and its row's commit), sorted by id.
    pub fn uncatalogued_files(&self) -> Result<Vec<(SegmentId, PathBuf)>> {
        let rows: std::collections::HashSet<SegmentId> =
            self.read(|conn| Ok(segments::select_all(conn)?.into_iter().map(|m| m.hash).collect()))?;
        let dir = self.segments_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(LibraryError::io("list", dir))? {
            let path = entry.map_err(LibraryError::io("list", dir))?.path();
            let Some(id) = crate::verify::segment_file_id(&path) else {
                continue;
            };
            if !rows.contains(&id) && fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                out.push((id, path));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Catalogues a segment whose file is already in place under its id (recovering a lost
    /// catalogue): nothing is copied. The caller has checked the file's content; its parent, if
    /// any, must be catalogued first.
    pub fn adopt_segment(&self, new: &NewSegment) -> Result<SegmentMeta> {
        let dest = self.segment_path(&new.hash);
        let m = fs::symlink_metadata(&dest).map_err(LibraryError::io("read", &dest))?;
        if !m.is_file() {
            return Err(LibraryError::SegmentFileMissing {
                hash: new.hash.clone(),
                path: dest,
            });
        }
        let meta = new.with_bytes(m.len());
        meta.validate()?;
        self.write(|conn| {
            if reuse(conn, &meta, &dest)? {
                return Ok(());
            }
            check_parent(conn, &meta)?;
            segments::insert(conn, &meta, now_ms())
        })?;
        Ok(meta)
    }

    /// Whether `hash` is stored with an intact file; lets the engine skip writing a duplicate.
    pub fn has_segment(&self, hash: &SegmentId) -> Result<bool> {
        let row = self.read(|conn| segments::select(conn, hash))?;
        Ok(row.is_some_and(|m| file_intact(&self.segment_path(hash), m.bytes)))
    }

    /// The catalogue record of `hash`.
    pub fn segment(&self, hash: &SegmentId) -> Result<SegmentMeta> {
        self.read(|conn| segments::select(conn, hash))?
            .ok_or_else(|| LibraryError::SegmentNotFound(hash.clone()))
    }

    /// The chain ending at `tip`, root first, after checking that every file is present with
    /// its recorded size. The error names the first missing or damaged segment.
    pub fn chain(&self, tip: &SegmentId) -> Result<Vec<SegmentMeta>> {
        let chain = self.read(|conn| resolve_chain(conn, tip))?;
        for seg in &chain {
            let path = self.segment_path(&seg.hash);
            match fs::metadata(&path) {
                Ok(m) if m.len() == seg.bytes => {}
                Ok(m) => {
                    return Err(LibraryError::SegmentSize {
                        hash: seg.hash.clone(),
                        expected: seg.bytes,
                        found: m.len(),
                    })
                }
                Err(_) => {
                    return Err(LibraryError::SegmentFileMissing {
                        hash: seg.hash.clone(),
                        path,
                    })
                }
            }
        }
        Ok(chain)
    }
}

/// The catalogued chain ending at `tip`, root first; `SegmentNotFound` names a missing row.
pub(crate) fn resolve_chain(conn: &Connection, tip: &SegmentId) -> Result<Vec<SegmentMeta>> {
    let mut chain = Vec::new();
    for (hash, row) in segments::chain_from_tip(conn, tip)? {
        chain.push(row.ok_or(LibraryError::SegmentNotFound(hash))?);
    }
    chain.reverse();
    Ok(chain)
}

/// Whether a store file is present with the expected size.
pub(crate) fn file_intact(path: &Path, bytes: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes)
}

/// If `meta.hash` is already stored with intact file, checks it agrees with `meta`, refreshes
/// its gc grace and returns true. Must run in a write transaction.
pub(crate) fn reuse(conn: &Connection, meta: &SegmentMeta, dest: &Path) -> Result<bool> {
    let Some(existing) = segments::select(conn, &meta.hash)? else {
        return Ok(false);
    };
    if let Some(field) = existing.first_difference(meta) {
        return Err(LibraryError::SegmentConflict {
            hash: meta.hash.clone(),
            field,
        });
    }
    if !file_intact(dest, existing.bytes) {
        return Ok(false);
    }
    segments::touch(conn, &meta.hash, now_ms())?;
    Ok(true)
}

/// A segment's parent, if any, is catalogued and `meta` continues it. Must run in a transaction.
fn check_parent(conn: &Connection, meta: &SegmentMeta) -> Result<()> {
    if let Some(parent) = &meta.parent {
        let parent_meta =
            segments::select(conn, parent)?.ok_or_else(|| LibraryError::SegmentNotFound(parent.clone()))?;
        meta.check_extends(&parent_meta)
            .map_err(|reason| LibraryError::InvalidSegment {
                hash: meta.hash.clone(),
                reason,
            })?;
    }
    Ok(())
}

/// Renames the synced `temp` to `dest` and catalogues `meta` (or refreshes an existing row whose
/// file had gone missing). Must run in a write transaction.
pub(crate) fn store(conn: &Connection, meta: &SegmentMeta, temp: TempFile, dest: &Path) -> Result<()> {
    check_parent(conn, meta)?;
    let existing = segments::select(conn, &meta.hash)?;
    if let Some(field) = existing.as_ref().and_then(|e| e.first_difference(meta)) {
        return Err(LibraryError::SegmentConflict {
            hash: meta.hash.clone(),
            field,
        });
    }
    temp.persist(dest)?;
    match existing {
        Some(_) => segments::touch(conn, &meta.hash, now_ms()),
        None => segments::insert(conn, meta, now_ms()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn new_segment(n: u8, parent: Option<&SegmentMeta>, tokens: u64) -> NewSegment {
        NewSegment {
            hash: SegmentId::parse(&format!("{n:02x}").repeat(32)).unwrap(),
            parent: parent.map(|p| p.hash.clone()),
            start: parent.map_or(0, SegmentMeta::end),
            token_count: tokens,
            dtype: "f16".into(),
            model_fingerprint: "m".into(),
        }
    }

    #[test]
    fn temp_segment_put_moves_the_file_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let temp = lib.temp_segment().unwrap();
        assert_eq!(
            temp.path().parent(),
            Some(lib.segments_dir()),
            "temp files live in the store"
        );
        fs::File::create(temp.path()).unwrap().write_all(b"0123456789").unwrap();
        let temp_path = temp.path().to_path_buf();
        let meta = lib.put_temp_segment(&new_segment(1, None, 4), temp).unwrap();
        assert_eq!(meta.bytes, 10);
        assert!(!temp_path.exists(), "the temp file was renamed, not copied");
        assert_eq!(fs::read(lib.segment_path(&meta.hash)).unwrap(), b"0123456789");
        assert!(lib.has_segment(&meta.hash).unwrap());
    }

    #[test]
    fn a_missing_file_under_an_existing_row_is_restored_by_a_put() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let src = dir.path().join("a.bin");
        fs::write(&src, b"abc").unwrap();
        let meta = lib.put_segment(&new_segment(1, None, 1), &src).unwrap();
        fs::remove_file(lib.segment_path(&meta.hash)).unwrap();
        assert!(!lib.has_segment(&meta.hash).unwrap());
        lib.put_segment(&new_segment(1, None, 1), &src).unwrap();
        assert!(
            lib.has_segment(&meta.hash).unwrap(),
            "the second put must restore the file"
        );
    }
}
