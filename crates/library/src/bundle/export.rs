//! Writing a bundle of one node.

use super::format::{HashingReader, Header, Manifest, ManifestSegment, VERSION};
use super::BundleNode;
use crate::durable::write_atomically;
use crate::error::{LibraryError, Result};
use crate::ids::NodeId;
use crate::library::Library;
use crate::schema::{models, node_tags, nodes};
use crate::segment::SegmentMeta;
use crate::segment_store::resolve_chain;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

impl Library {
    /// Writes node `id` — metadata, tags, transcript and every segment file of its chain — to
    /// `out` as a bundle, crash-safely (a temporary file beside `out`, renamed at the end).
    /// Pinned state and the position in the tree are not exported. Returns the bundle's size.
    pub fn export_node(&self, id: NodeId, out: &Path) -> Result<u64> {
        let (node, chain) = self.read(|conn| {
            let mut node = nodes::select(conn, id)?.ok_or(LibraryError::NodeNotFound(id))?;
            node.tags = node_tags::for_node(conn, id)?;
            let chain = match &node.tip {
                Some(tip) => resolve_chain(conn, tip)?,
                None => Vec::new(),
            };
            let model_name = models::select(conn, &node.model_fingerprint)?.map(|m| m.display_name);
            Ok((
                BundleNode {
                    name: node.name,
                    kind: node.kind,
                    notes: node.notes,
                    tags: node.tags,
                    model_fingerprint: node.model_fingerprint,
                    model_name,
                    tip: node.tip,
                    token_count: node.token_count,
                    transcript: node.transcript,
                    created_at: node.created_at,
                },
                chain,
            ))
        })?;
        // First pass: hash each file for the manifest, which precedes the files.
        let mut segments = Vec::with_capacity(chain.len());
        for seg in &chain {
            let hash = self.copy_segment(seg, &mut io::sink(), out)?;
            segments.push(ManifestSegment::from_meta(seg, &hash));
        }
        let manifest = serde_json::to_vec(&Manifest {
            node,
            segments: segments.clone(),
        })
        .map_err(|e| LibraryError::BundleManifest {
            path: out.to_owned(),
            reason: e.to_string(),
        })?;
        let header = Header {
            version: VERSION,
            manifest_len: manifest.len() as u64,
            manifest_hash: *blake3::hash(&manifest).as_bytes(),
        };
        write_atomically(out, |file| {
            let mut w = BufWriter::new(file);
            w.write_all(&header.encode()).map_err(LibraryError::io("write", out))?;
            w.write_all(&manifest).map_err(LibraryError::io("write", out))?;
            for (seg, listed) in chain.iter().zip(&segments) {
                // Second pass: hash again while copying, so the bundle matches its manifest
                // even if a file were replaced in between.
                let hash = self.copy_segment(seg, &mut w, out)?;
                if hash.to_hex().as_str() != listed.blake3 {
                    return Err(LibraryError::InvalidSegment {
                        hash: seg.hash.clone(),
                        reason: "its file changed while it was being exported".into(),
                    });
                }
            }
            w.flush().map_err(LibraryError::io("write", out))
        })?;
        Ok(std::fs::metadata(out).map_err(LibraryError::io("stat", out))?.len())
    }

    /// Streams a segment's file into `to` (the bundle at `out`) and returns its blake3; the size
    /// must match. A read error names the segment file, a write error the bundle (a full disk is
    /// the bundle's problem, not the segment's).
    fn copy_segment(&self, seg: &SegmentMeta, to: &mut impl Write, out: &Path) -> Result<blake3::Hash> {
        let path = self.segment_path(&seg.hash);
        let file = File::open(&path).map_err(|_| LibraryError::SegmentFileMissing {
            hash: seg.hash.clone(),
            path: path.clone(),
        })?;
        let mut reader = HashingReader {
            inner: file,
            hasher: blake3::Hasher::new(),
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LibraryError::io("read", &path)(e)),
            };
            to.write_all(&buf[..n]).map_err(LibraryError::io("write", out))?;
            copied += n as u64;
        }
        if copied != seg.bytes {
            return Err(LibraryError::SegmentSize {
                hash: seg.hash.clone(),
                expected: seg.bytes,
                found: copied,
            });
        }
        Ok(reader.hasher.finalize())
    }
}
