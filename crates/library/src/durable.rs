//! Crash-safe file placement: write under a temporary name in the destination folder, fsync the
//! file, rename it into place, fsync the folder. A crash leaves either the old state or the new
//! one, plus at worst a `*.part` file that `gc` removes.

use crate::error::{LibraryError, Result};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Suffix of temporary files; `gc` deletes old ones.
pub(crate) const TEMP_SUFFIX: &str = ".part";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Makes a rename or creation in `dir` durable. On Windows directories cannot be opened for
/// syncing and NTFS journals renames, so this is a no-op there.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(LibraryError::io("sync folder", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A file being written inside a store folder, removed on drop unless persisted. Obtain one
/// from [`crate::Library::temp_segment`], write the segment to [`TempFile::path`], then hand it
/// to [`crate::Library::put_temp_segment`]: the final rename stays on one filesystem.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Creates an empty file with a fresh name in `dir`.
    pub(crate) fn create_in(dir: &Path) -> Result<(TempFile, File)> {
        Self::create_named_in(dir, "")
    }

    /// [`TempFile::create_in`] with `.{stem}.` leading the name, so files left by a killed
    /// writer can be told apart later (see [`sweep_stale_temps`]).
    fn create_named_in(dir: &Path, stem: &str) -> Result<(TempFile, File)> {
        let stem = if stem.is_empty() {
            String::new()
        } else {
            format!("{stem}.")
        };
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{stem}{}-{n}-{nanos}{TEMP_SUFFIX}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((TempFile { path, armed: true }, file)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(LibraryError::io("create temporary file", &path)(e)),
            }
        }
    }

    /// A temporary copy of `source` in `dir`: a hard link when both are on one filesystem (no
    /// bytes copied; fine because store files are never modified in place), else a copy.
    pub(crate) fn link_or_copy(source: &Path, dir: &Path) -> Result<TempFile> {
        let (temp, file) = TempFile::create_in(dir)?;
        drop(file);
        fs::remove_file(&temp.path).map_err(LibraryError::io("prepare temporary file", &temp.path))?;
        if fs::hard_link(source, &temp.path).is_err() {
            fs::copy(source, &temp.path).map_err(LibraryError::io("copy", source))?;
        }
        Ok(temp)
    }

    /// A temporary copy of `source` in `dir`.
    pub(crate) fn copy_of(source: &Path, dir: &Path) -> Result<TempFile> {
        let (temp, file) = TempFile::create_in(dir)?;
        drop(file);
        fs::copy(source, &temp.path).map_err(LibraryError::io("copy", source))?;
        Ok(temp)
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file's bytes to disk and returns its size.
    pub(crate) fn sync(&self) -> Result<u64> {
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(LibraryError::io("open temporary file", &self.path))?;
        file.sync_all().map_err(LibraryError::io("sync", &self.path))?;
        let meta = file.metadata().map_err(LibraryError::io("stat", &self.path))?;
        Ok(meta.len())
    }

    /// Renames the (already synced) file to `dest` and makes the rename durable.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(LibraryError::io("rename into place", dest))?;
        self.armed = false;
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover is reclaimed by gc.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `dest` crash-safely: `write` fills a temporary file beside it, which is then synced
/// and renamed over `dest`.
pub(crate) fn write_atomically(dest: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The temporary file lies outside any store, where no gc looks: it is named after its
    // target, and the next write of that target removes what a killed writer left.
    let stem = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    sweep_stale_temps(&dir, &stem);
    let (temp, mut file) = TempFile::create_named_in(&dir, &stem)?;
    write(&mut file)?;
    file.sync_all().map_err(LibraryError::io("sync", temp.path()))?;
    drop(file);
    temp.persist(dest)
}

/// Removes `.{stem}.{pid}-….part` files in `dir` whose writer process is gone (another
/// process's file that is still being written is left alone). Best effort: a file that cannot
/// be removed stays.
fn sweep_stale_temps(dir: &Path, stem: &str) {
    if stem.is_empty() {
        return;
    }
    let prefix = format!(".{stem}.");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(TEMP_SUFFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid, &entry.path()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` may still be writing `path`: on Linux, whether it exists; elsewhere,
/// whether the file changed in the last hour.
fn process_alive(pid: u32, path: &Path) -> bool {
    if cfg!(target_os = "linux") {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < std::time::Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn temp_file_is_removed_on_drop_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (temp, _) = TempFile::create_in(dir.path()).unwrap();
        let path = temp.path().to_path_buf();
        assert!(path.is_file());
        assert!(path.to_string_lossy().ends_with(TEMP_SUFFIX));
        drop(temp);
        assert!(!path.exists(), "an abandoned temp file must be removed");

        let (temp, mut f) = TempFile::create_in(dir.path()).unwrap();
        f.write_all(b"kv").unwrap();
        assert_eq!(temp.sync().unwrap(), 2);
        let dest = dir.path().join("final");
        temp.persist(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"kv");
    }

    #[test]
    fn link_or_copy_leaves_the_source_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let temp = TempFile::link_or_copy(&src, dir.path()).unwrap();
        assert_eq!(fs::read(temp.path()).unwrap(), b"abc");
        drop(temp);
        assert_eq!(fs::read(&src).unwrap(), b"abc", "the source must survive");
    }

    #[test]
    fn write_atomically_replaces_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old").unwrap();
        write_atomically(&dest, |f| f.write_all(b"new").map_err(LibraryError::io("write", "x"))).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        let failed = write_atomically(&dest, |_| Err(LibraryError::InvalidFingerprint("boom".into())));
        assert!(failed.is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"new", "a failed write leaves the old file");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "and no temp file");
    }

    #[test]
    fn a_write_removes_what_a_killed_writer_of_the_same_target_left() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir
            .path()
            .join(format!(".out.bundle.{}-0-0{TEMP_SUFFIX}", u32::MAX - 7));
        let live = dir.path().join(format!(".out.bundle.1-0-0{TEMP_SUFFIX}"));
        let other = dir
            .path()
            .join(format!(".other.bundle.{}-0-0{TEMP_SUFFIX}", u32::MAX - 7));
        for p in [&dead, &live, &other] {
            fs::write(p, b"partial").unwrap();
        }
        write_atomically(&dir.path().join("out.bundle"), |f| {
            use std::io::Write;
            f.write_all(b"done")
                .map_err(LibraryError::io("write", Path::new("out")))
        })
        .unwrap();
        assert_eq!(fs::read(dir.path().join("out.bundle")).unwrap(), b"done");
        assert!(!dead.exists(), "a dead writer's file is removed");
        assert!(other.exists(), "another target's file is not this write's business");
        if cfg!(target_os = "linux") {
            assert!(live.exists(), "a file whose writer (pid 1) lives is kept");
        }
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
