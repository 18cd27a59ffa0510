//! Reading a bundle: validate everything, then unpack the files into a scratch folder.

use super::format::{HashingReader, Header, Manifest, HEADER_LEN, MAGIC, MAX_MANIFEST_BYTES, MAX_SEGMENTS, VERSION};
use super::{Bundle, BundleSegment};
use crate::error::{LibraryError, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Size of the first slice of a manifest read before trusting its declared length further.
const READ_CHUNK: usize = 1 << 20;

/// Reads and checks the bundle at `path`, unpacking its segment files into `scratch_dir`
/// (created if needed; use a folder inside the library, such as a temporary folder under
/// [`crate::Library::root`], so the import can hard-link instead of copy).
///
/// Checks, in order, before anything is unpacked: magic, version, manifest length against a
/// limit and the file's real length, manifest hash, manifest JSON, names, tags, transcript, the
/// chain (parents, starts, token counts, models), and that the files' sizes add up to exactly
/// what follows the manifest. Then each file is unpacked and its blake3 compared. On any error
/// the files unpacked so far are removed and the error names the problem.
pub fn read_bundle(path: &Path, scratch_dir: &Path) -> Result<Bundle> {
    // Checked before opening: opening a FIFO would block until a writer appears.
    let kind = fs::metadata(path).map_err(LibraryError::io("open bundle", path))?;
    if !kind.is_file() {
        return Err(LibraryError::io("open bundle", path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let file = File::open(path).map_err(LibraryError::io("open bundle", path))?;
    let len = file.metadata().map_err(LibraryError::io("stat", path))?.len();
    let mut reader = BufReader::new(file);
    let header = read_header(&mut reader, path, len)?;
    let manifest = read_manifest(&mut reader, path, len, &header)?;
    let files_len = len - HEADER_LEN - header.manifest_len;
    let total = manifest.validate().map_err(|reason| manifest_error(path, reason))?;
    if total > files_len {
        return Err(LibraryError::BundleTruncated {
            path: path.to_owned(),
            what: "the segment files".into(),
            expected: total,
            found: files_len,
        });
    }
    if total < files_len {
        return Err(LibraryError::BundleTrailingData {
            path: path.to_owned(),
            extra: files_len - total,
        });
    }
    fs::create_dir_all(scratch_dir).map_err(LibraryError::io("create scratch folder", scratch_dir))?;
    let mut unpacked = Unpacked(Vec::new());
    for seg in &manifest.segments {
        let dest = scratch_dir.join(format!("{}.seg", seg.hash));
        unpacked.0.push(dest.clone());
        let expected = seg.file_hash().map_err(|reason| manifest_error(path, reason))?;
        let found = unpack(&mut reader, seg.bytes, &dest, path)?;
        if found != expected {
            return Err(LibraryError::BundleChecksum {
                path: path.to_owned(),
                what: format!("segment {}", seg.hash),
            });
        }
    }
    let segments = manifest
        .segments
        .iter()
        .zip(std::mem::take(&mut unpacked.0))
        .map(|(seg, path)| BundleSegment { meta: seg.meta(), path })
        .collect();
    Ok(Bundle {
        node: manifest.node,
        segments,
    })
}

/// Files unpacked so far; removed on drop unless taken.
struct Unpacked(Vec<PathBuf>);

impl Drop for Unpacked {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn manifest_error(path: &Path, reason: String) -> LibraryError {
    LibraryError::BundleManifest {
        path: path.to_owned(),
        reason,
    }
}

fn read_header(reader: &mut impl Read, path: &Path, len: u64) -> Result<Header> {
    let mut bytes = [0u8; HEADER_LEN as usize];
    let got = read_up_to(reader, &mut bytes).map_err(LibraryError::io("read bundle", path))?;
    let magic_seen = got.min(MAGIC.len());
    if bytes[..magic_seen] != MAGIC[..magic_seen] || got == 0 {
        return Err(LibraryError::BundleBadMagic { path: path.to_owned() });
    }
    if got < bytes.len() {
        return Err(LibraryError::BundleTruncated {
            path: path.to_owned(),
            what: "the header".into(),
            expected: HEADER_LEN,
            found: len,
        });
    }
    let header = Header::decode(&bytes);
    if header.version != VERSION {
        return Err(LibraryError::BundleVersion {
            path: path.to_owned(),
            found: header.version,
            supported: VERSION,
        });
    }
    Ok(header)
}

fn read_manifest(reader: &mut impl Read, path: &Path, len: u64, header: &Header) -> Result<Manifest> {
    if header.manifest_len > MAX_MANIFEST_BYTES {
        return Err(LibraryError::BundleTooLarge {
            path: path.to_owned(),
            what: "the manifest length",
            value: header.manifest_len,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let available = len - HEADER_LEN;
    if header.manifest_len > available {
        return Err(LibraryError::BundleTruncated {
            path: path.to_owned(),
            what: "the manifest".into(),
            expected: header.manifest_len,
            found: available,
        });
    }
    // Bounded by the limit and by the real file length, so no absurd allocation.
    let mut bytes = Vec::with_capacity(header.manifest_len.min(READ_CHUNK as u64) as usize);
    reader
        .take(header.manifest_len)
        .read_to_end(&mut bytes)
        .map_err(LibraryError::io("read bundle", path))?;
    if (bytes.len() as u64) < header.manifest_len {
        return Err(LibraryError::BundleTruncated {
            path: path.to_owned(),
            what: "the manifest".into(),
            expected: header.manifest_len,
            found: bytes.len() as u64,
        });
    }
    if blake3::hash(&bytes).as_bytes() != &header.manifest_hash {
        return Err(LibraryError::BundleChecksum {
            path: path.to_owned(),
            what: "the manifest".into(),
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| manifest_error(path, format!("not valid manifest JSON: {e}")))?;
    if manifest.segments.len() > MAX_SEGMENTS {
        return Err(LibraryError::BundleTooLarge {
            path: path.to_owned(),
            what: "the number of segments",
            value: manifest.segments.len() as u64,
            limit: MAX_SEGMENTS as u64,
        });
    }
    Ok(manifest)
}

/// Copies exactly `bytes` bytes to `dest`, returning their blake3.
fn unpack(reader: &mut impl Read, bytes: u64, dest: &Path, bundle: &Path) -> Result<blake3::Hash> {
    // Never write into an existing file: one left by an earlier import may be hard-linked
    // into the store, and truncating it would change the stored segment.
    match fs::remove_file(dest) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(LibraryError::io("replace", dest)(e));
        }
        _ => {}
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(LibraryError::io("create", dest))?;
    let mut hashing = HashingReader {
        inner: reader.take(bytes),
        hasher: blake3::Hasher::new(),
    };
    let copied = io::copy(&mut hashing, &mut out).map_err(LibraryError::io("unpack bundle into", dest))?;
    if copied < bytes {
        // The file shrank after its length was checked.
        return Err(LibraryError::BundleTruncated {
            path: bundle.to_owned(),
            what: format!("file {}", dest.display()),
            expected: bytes,
            found: copied,
        });
    }
    Ok(hashing.hasher.finalize())
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
