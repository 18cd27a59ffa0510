//! Search: case-insensitive substring match over names, tags, notes and transcript text.
//!
//! Folding is full Unicode lower case (see `db::fold`). The transcript is matched as stored
//! JSON text, so a quote inside a message appears as `\"`. This is a scan, not an index: it
//! stays well under a second for 10,000 nodes (see `examples/scale.rs`); an FTS5 trigram
//! index is the step up if libraries grow far beyond that.

use crate::db::fold;
use crate::error::Result;
use crate::library::Library;
use crate::node::{clean_tag, NodeSummary};
use crate::schema::nodes;
use crate::tree::{finish_summaries, NodeOrder};
use serde::{Deserialize, Serialize};

/// A node that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    pub node: NodeSummary,
    pub in_name: bool,
    pub in_tags: bool,
    pub in_notes: bool,
    pub in_transcript: bool,
}

impl Library {
    /// Nodes whose name, a tag, notes or transcript contains `text`, ignoring case; pinned
    /// first, then by `order`. Blank text matches nothing.
    pub fn search(&self, text: &str, order: NodeOrder) -> Result<Vec<SearchHit>> {
        let needle = fold(text.trim());
        if needle.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| {
            let sql = format!(
                "SELECT {cols}, n.in_name, n.in_tags, n.in_notes, n.in_transcript FROM (
                     SELECT n.*,
                            fa_contains(n.name, ?1) AS in_name,
                            EXISTS (SELECT 1 FROM node_tags t WHERE t.node_id = n.id AND fa_contains(t.tag, ?1)) AS in_tags,
                            fa_contains(n.notes, ?1) AS in_notes,
                            fa_contains(n.transcript, ?1) AS in_transcript
                     FROM nodes n
                 ) AS n
                 WHERE n.in_name OR n.in_tags OR n.in_notes OR n.in_transcript
                 ORDER BY {order}",
                cols = nodes::SUMMARY_COLUMNS,
                order = order.sql(),
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([&needle], |row| {
                Ok((nodes::summary_from_row(row)?, [row.get(10)?, row.get(11)?, row.get(12)?, row.get(13)?]))
            })?;
            let (summaries, flags): (Vec<NodeSummary>, Vec<[bool; 4]>) = rows.collect::<rusqlite::Result<Vec<_>>>()?.into_iter().unzip();
            let summaries = finish_summaries(conn, summaries)?;
            Ok(summaries
                .into_iter()
                .zip(flags)
                .map(|(node, [in_name, in_tags, in_notes, in_transcript])| SearchHit {
                    node,
                    in_name,
                    in_tags,
                    in_notes,
                    in_transcript,
                })
                .collect())
        })
    }

    /// Nodes carrying exactly this tag (after folding), pinned first, then by `order`.
    pub fn nodes_tagged(&self, tag: &str, order: NodeOrder) -> Result<Vec<NodeSummary>> {
        let tag = clean_tag(tag)?;
        self.read(|conn| {
            let sql = format!(
                "SELECT {} FROM nodes n JOIN node_tags t ON t.node_id = n.id WHERE t.tag = ?1 ORDER BY {}",
                nodes::SUMMARY_COLUMNS,
                order.sql()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([&tag], nodes::summary_from_row)?;
            finish_summaries(conn, rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
