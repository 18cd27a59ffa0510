//! Creating, reading and editing nodes. Each method is one write transaction: it either fully
//! happens or changes nothing, and concurrent writers (other handles, other processes) queue.

use crate::db::now_ms;
use crate::error::{LibraryError, Result};
use crate::ids::{NodeId, SegmentId};
use crate::library::Library;
use crate::model::validate_fingerprint;
use crate::node::{check_transcript, clean_name, clean_tag, name_key, BranchFill, NewNode, Node};
use crate::schema::node_questions::{self, Question};
use crate::schema::{node_tags, nodes};
use crate::segment_store::resolve_chain;
use freeze_attn_ids::ModelFingerprint;
use rusqlite::Connection;

impl Library {
    /// Creates a node. Checks: the parent exists, the name is free among its siblings, the
    /// transcript is JSON, the chain of `tip` is catalogued and for the node's model, and
    /// `token_count` fits the chain. `tip` is stored canonically (the segment holding the last
    /// token), so passing a parent's tip with a shorter count records a rewind without a copy.
    pub fn create_node(&self, new: &NewNode) -> Result<NodeId> {
        self.write(|conn| insert_node(conn, new))
    }

    /// Whether `id` is an empty branch: a node with no children whose state is its parent's
    /// whole state (a fork of a whole node that nothing has been added to yet).
    pub fn is_empty_branch(&self, id: NodeId) -> Result<bool> {
        self.read(|conn| Ok(empty_branch_problem(conn, id)?.is_none()))
    }

    /// Gives an empty branch (see [`Library::is_empty_branch`]) its first state: what was
    /// frozen after forking a whole node belongs in that fork, not in a child of it (which read
    /// as a 0-byte copy with a grandchild). The new state must continue the branch's (checked
    /// as for a new node: catalogued chain, same model, count within the chain); the name must
    /// be free among its siblings. Refused with `NotAnEmptyBranch` once the node has children
    /// or a state of its own.
    pub fn fill_branch(&self, id: NodeId, fill: &BranchFill) -> Result<()> {
        let name = clean_name(&fill.name)?;
        let key = name_key(&name);
        check_transcript(&fill.transcript)?;
        self.write(|conn| {
            if let Some(reason) = empty_branch_problem(conn, id)? {
                return Err(LibraryError::NotAnEmptyBranch { node: id, reason });
            }
            let node = nodes::select(conn, id)?.ok_or(LibraryError::NodeNotFound(id))?;
            if fill.token_count < node.token_count {
                return Err(LibraryError::NotAnEmptyBranch {
                    node: id,
                    reason: "the new state is shorter than the branch's",
                });
            }
            if nodes::name_taken(conn, node.parent, &key, Some(id))? {
                return Err(LibraryError::NameTaken {
                    name: name.clone(),
                    parent: node.parent,
                });
            }
            let tip = canonical_tip(conn, fill.tip.as_ref(), fill.token_count, &node.model_fingerprint)?;
            // The branch's state (its parent's) must be a prefix of the new one: the node stays
            // a continuation of its parent, as the tree says.
            if let (Some(old), Some(new)) = (&node.tip, &tip) {
                if !resolve_chain(conn, new)?.iter().any(|s| &s.hash == old) {
                    return Err(LibraryError::NotAnEmptyBranch {
                        node: id,
                        reason: "the new state does not continue the branch's",
                    });
                }
            }
            let count = crate::error::to_sql_int("token_count", fill.token_count)?;
            nodes::update(
                conn,
                id,
                "name = ?3, name_key = ?4, tip = ?5, token_count = ?6, transcript = ?7, preview = ?8, kind = ?9",
                &[
                    &name,
                    &key,
                    &tip,
                    &count,
                    &fill.transcript,
                    &clean_preview(&fill.preview),
                    &fill.kind,
                ],
                now_ms(),
            )
        })
    }

    /// The node with its tags, notes and transcript.
    pub fn node(&self, id: NodeId) -> Result<Node> {
        self.read(|conn| {
            let mut node = nodes::select(conn, id)?.ok_or(LibraryError::NodeNotFound(id))?;
            node.tags = node_tags::for_node(conn, id)?;
            Ok(node)
        })
    }

    /// Renames a node; the new name must be free among its siblings (case-insensitively, the
    /// node's own current name excepted, so changing only the case works).
    /// Checks that `name` is a valid node name and free among the children of `parent` (the
    /// top level for `None`), as creating the node would: `InvalidName` or `NameTaken` if not.
    pub fn check_name_free(&self, parent: Option<NodeId>, name: &str) -> Result<()> {
        let name = clean_name(name)?;
        let key = name_key(&name);
        self.read(|conn| {
            if let Some(p) = parent {
                nodes::parent_of(conn, p)?;
            }
            if nodes::name_taken(conn, parent, &key, None)? {
                return Err(LibraryError::NameTaken { name, parent });
            }
            Ok(())
        })
    }

    pub fn rename_node(&self, id: NodeId, name: &str) -> Result<()> {
        let name = clean_name(name)?;
        let key = name_key(&name);
        self.write(|conn| {
            let parent = nodes::parent_of(conn, id)?;
            if nodes::name_taken(conn, parent, &key, Some(id))? {
                return Err(LibraryError::NameTaken {
                    name: name.clone(),
                    parent,
                });
            }
            nodes::update(conn, id, "name = ?3, name_key = ?4", &[&name, &key], now_ms())
        })
    }

    /// Replaces a node's notes (free text).
    pub fn set_notes(&self, id: NodeId, notes: &str) -> Result<()> {
        self.write(|conn| nodes::update(conn, id, "notes = ?3", &[&notes], now_ms()))
    }

    /// Records a question asked of node `id` and its answer (the node's state is not changed).
    pub fn add_question(&self, id: NodeId, question: &Question) -> Result<()> {
        self.write(|conn| {
            nodes::parent_of(conn, id)?;
            node_questions::insert(conn, id, question)
        })
    }

    /// The questions asked of node `id`, oldest first (at most [`crate::MAX_QUESTIONS`]).
    pub fn questions(&self, id: NodeId) -> Result<Vec<Question>> {
        self.read(|conn| {
            nodes::parent_of(conn, id)?;
            node_questions::for_node(conn, id)
        })
    }

    /// Pins or unpins a node (pinned nodes list first among their siblings).
    pub fn set_pinned(&self, id: NodeId, pinned: bool) -> Result<()> {
        self.write(|conn| nodes::update(conn, id, "pinned = ?3", &[&pinned], now_ms()))
    }

    /// Adds a tag (trimmed, case-folded). Returns false if the node already had it.
    pub fn add_tag(&self, id: NodeId, tag: &str) -> Result<bool> {
        let tag = clean_tag(tag)?;
        self.write(|conn| {
            nodes::parent_of(conn, id)?;
            let added = node_tags::insert(conn, id, &tag)?;
            if added {
                nodes::touch(conn, id, now_ms())?;
            }
            Ok(added)
        })
    }

    /// Removes a tag (matched after folding). Returns false if the node did not have it.
    pub fn remove_tag(&self, id: NodeId, tag: &str) -> Result<bool> {
        let tag = clean_tag(tag)?;
        self.write(|conn| {
            nodes::parent_of(conn, id)?;
            let removed = node_tags::delete(conn, id, &tag)?;
            if removed {
                nodes::touch(conn, id, now_ms())?;
            }
            Ok(removed)
        })
    }

    /// Moves a node (with its subtree) under `new_parent`, or to the top level with `None`.
    /// Refuses to move a node under itself or a descendant, and a name already taken there.
    pub fn move_node(&self, id: NodeId, new_parent: Option<NodeId>) -> Result<()> {
        self.write(|conn| {
            nodes::parent_of(conn, id)?;
            if let Some(p) = new_parent {
                nodes::parent_of(conn, p)?;
                if nodes::subtree(conn, id)?.contains(&p) {
                    return Err(LibraryError::MoveCycle {
                        node: id,
                        new_parent: p,
                    });
                }
            }
            let node = nodes::select(conn, id)?.ok_or(LibraryError::NodeNotFound(id))?;
            if nodes::name_taken(conn, new_parent, &name_key(&node.name), Some(id))? {
                return Err(LibraryError::NameTaken {
                    name: node.name,
                    parent: new_parent,
                });
            }
            nodes::update(conn, id, "parent_id = ?3", &[&new_parent], now_ms())
        })
    }
}

/// Why `id` is not an empty branch, or `None` if it is.
fn empty_branch_problem(conn: &Connection, id: NodeId) -> Result<Option<&'static str>> {
    let node = nodes::select(conn, id)?.ok_or(LibraryError::NodeNotFound(id))?;
    let Some(parent) = node.parent else {
        return Ok(Some("it has no parent"));
    };
    if !nodes::children(conn, id)?.is_empty() {
        return Ok(Some("it has children"));
    }
    let parent = nodes::select(conn, parent)?.ok_or(LibraryError::NodeNotFound(parent))?;
    if parent.token_count != node.token_count || parent.tip != node.tip {
        return Ok(Some("its state is not its parent's"));
    }
    Ok(None)
}

/// Validates and inserts a node with its tags; the caller holds a write transaction.
pub(crate) fn insert_node(conn: &Connection, new: &NewNode) -> Result<NodeId> {
    let name = clean_name(&new.name)?;
    let key = name_key(&name);
    validate_fingerprint(&new.model_fingerprint)?;
    check_transcript(&new.transcript)?;
    let tags = new.tags.iter().map(|t| clean_tag(t)).collect::<Result<Vec<_>>>()?;
    if let Some(parent) = new.parent {
        nodes::parent_of(conn, parent)?;
    }
    if nodes::name_taken(conn, new.parent, &key, None)? {
        return Err(LibraryError::NameTaken {
            name,
            parent: new.parent,
        });
    }
    let tip = canonical_tip(conn, new.tip.as_ref(), new.token_count, &new.model_fingerprint)?;
    let id = nodes::insert(
        conn,
        &nodes::NodeRow {
            parent: new.parent,
            name: &name,
            name_key: &key,
            kind: new.kind,
            notes: &new.notes,
            pinned: new.pinned,
            model_fingerprint: &new.model_fingerprint,
            tip: tip.as_ref(),
            token_count: new.token_count,
            transcript: &new.transcript,
            preview: &clean_preview(&new.preview),
            now: now_ms(),
        },
    )?;
    for tag in &tags {
        node_tags::insert(conn, id, tag)?;
    }
    Ok(id)
}

/// One line of at most [`nodes::MAX_PREVIEW_CHARS`] characters: runs of whitespace (newlines
/// included) become one space, control characters are dropped.
pub(crate) fn clean_preview(preview: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    'words: for word in preview.split_whitespace() {
        if n > 0 {
            out.push(' ');
            n += 1;
        }
        for c in word.chars().filter(|c| !c.is_control()) {
            if n == nodes::MAX_PREVIEW_CHARS {
                break 'words;
            }
            out.push(c);
            n += 1;
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Checks a state against the catalogue and returns the segment holding its last token.
fn canonical_tip(
    conn: &Connection,
    tip: Option<&SegmentId>,
    token_count: u64,
    model: &ModelFingerprint,
) -> Result<Option<SegmentId>> {
    let Some(tip) = tip else {
        return match token_count {
            0 => Ok(None),
            _ => Err(LibraryError::TokenCountOutOfRange {
                token_count,
                available: 0,
            }),
        };
    };
    let chain = resolve_chain(conn, tip)?;
    let Some(last) = chain.last() else {
        return Err(LibraryError::SegmentNotFound(tip.clone()));
    };
    if &last.model_fingerprint != model {
        return Err(LibraryError::ModelMismatch {
            expected: model.to_owned(),
            found: last.model_fingerprint.clone(),
        });
    }
    if token_count > last.end() {
        return Err(LibraryError::TokenCountOutOfRange {
            token_count,
            available: last.end(),
        });
    }
    Ok(chain
        .iter()
        .rev()
        .find(|s| s.start < token_count)
        .map(|s| s.hash.clone()))
}
