//! Committing a read bundle into the library: all or nothing, never overwriting a node.

use super::{Bundle, BundleSegment};
use crate::durable::TempFile;
use crate::error::{LibraryError, Result};
use crate::ids::{NodeId, SegmentId};
use crate::library::Library;
use crate::node::{clean_name, name_key, NewNode};
use crate::node_ops::insert_node;
use crate::schema::nodes;
use crate::segment_store::{reuse, store};
use std::collections::HashMap;

impl Library {
    /// Stores a bundle's segments (deduplicated against the store) and creates its node under
    /// `parent` (top level for `None`), named `name_override` or the bundle's name. A name
    /// already used among the new siblings is refused with `NameTaken` — nothing is replaced —
    /// and the same bundle can be committed again with another name; `preview` is the node's line
    /// (see [`NewNode::preview`]: the caller knows the transcript's format). One transaction: on any
    /// error no row is written (files already renamed into the store are left to gc).
    pub fn commit_import(
        &self,
        bundle: &Bundle,
        parent: Option<NodeId>,
        name_override: Option<&str>,
        preview: &str,
    ) -> Result<NodeId> {
        let name = clean_name(name_override.unwrap_or(&bundle.node.name))?;
        let key = name_key(&name);
        let check_target = |conn: &rusqlite::Connection| -> Result<()> {
            if let Some(p) = parent {
                nodes::parent_of(conn, p)?;
            }
            if nodes::name_taken(conn, parent, &key, None)? {
                return Err(LibraryError::NameTaken {
                    name: name.clone(),
                    parent,
                });
            }
            Ok(())
        };
        // Fail fast before staging any bytes; checked again under the write lock below.
        self.read(check_target)?;
        // Stage outside the lock (a cross-filesystem copy can be slow): hard links when the
        // scratch folder shares the store's filesystem.
        let mut staged: HashMap<SegmentId, TempFile> = HashMap::new();
        for seg in &bundle.segments {
            // The fields are public: a hand-made bundle gets the same checks as a read one.
            seg.meta.validate()?;
            if !self.has_segment(&seg.meta.hash)? {
                staged.insert(seg.meta.hash.clone(), self.stage(seg)?);
            }
        }
        let new = NewNode {
            parent,
            name: name.clone(),
            kind: bundle.node.kind,
            model_fingerprint: bundle.node.model_fingerprint.clone(),
            tip: bundle.node.tip.clone(),
            token_count: bundle.node.token_count,
            transcript: bundle.node.transcript.clone(),
            preview: preview.to_owned(),
            notes: bundle.node.notes.clone(),
            tags: bundle.node.tags.clone(),
            pinned: false,
        };
        self.write(|conn| {
            check_target(conn)?;
            for seg in &bundle.segments {
                let dest = self.segment_path(&seg.meta.hash);
                if reuse(conn, &seg.meta, &dest)? {
                    continue;
                }
                let temp = match staged.remove(&seg.meta.hash) {
                    Some(temp) => temp,
                    // Stored when staging began, collected since: stage it now.
                    None => self.stage(seg)?,
                };
                store(conn, &seg.meta, temp, &dest)?;
            }
            insert_node(conn, &new)
        })
    }

    /// A synced temporary copy (or hard link) of an unpacked file in the store folder, after
    /// checking it still has the size the manifest promised.
    fn stage(&self, seg: &BundleSegment) -> Result<TempFile> {
        let temp = TempFile::link_or_copy(&seg.path, self.segments_dir())?;
        let bytes = temp.sync()?;
        if bytes != seg.meta.bytes {
            return Err(LibraryError::SegmentSize {
                hash: seg.meta.hash.clone(),
                expected: seg.meta.bytes,
                found: bytes,
            });
        }
        Ok(temp)
    }
}
