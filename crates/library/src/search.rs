//! Search: case-insensitive substring match over names, tags, notes and transcript text.
//!
//! Folding is full Unicode lower case (see `db::fold`). The transcript is matched as stored
//! JSON text, so a quote inside a message appears as `\"`. This is one scan of the `nodes`
//! table, matched in Rust on text borrowed from SQLite (no copy of a row that does not match),
//! and only the hits are sorted and summarised: 10,000 nodes take well under 50 ms (see
//! `examples/scale.rs`); an FTS5 trigram index is the step up if libraries grow far beyond that.

use crate::db::fold;
use crate::error::Result;
use crate::library::Library;
use crate::node::{clean_tag, NodeSummary};
use crate::schema::{node_tags, nodes};
use crate::tree::{finish_summaries, finish_summaries_with_tags, NodeOrder};
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
        let mut matcher = Matcher::new(&needle);
        self.read(|conn| {
            let tags = node_tags::all(conn)?;
            let sql = format!(
                "SELECT {}, n.name_key, n.transcript FROM nodes n WHERE {}",
                nodes::SUMMARY_COLUMNS,
                nodes::NOT_CACHE
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([])?;
            let (name, notes) = (2, 10);
            let (name_key, transcript) = (nodes::SUMMARY_COLUMN_COUNT, nodes::SUMMARY_COLUMN_COUNT + 1);
            let mut hits: Vec<(NodeSummary, String, [bool; 4])> = Vec::new();
            while let Some(row) = rows.next()? {
                let id = row.get(0)?;
                let in_tags = tags.get(&id).is_some_and(|t| t.iter().any(|tag| matcher.matches(tag)));
                let flags = [
                    matcher.matches(text_column(row, name)?),
                    in_tags,
                    matcher.matches(text_column(row, notes)?),
                    matcher.matches(text_column(row, transcript)?),
                ];
                if flags.contains(&true) {
                    hits.push((nodes::summary_from_row(row)?, row.get(name_key)?, flags));
                }
            }
            hits.sort_by(|a, b| order.compare((&a.0, &a.1), (&b.0, &b.1)));
            let (summaries, flags): (Vec<NodeSummary>, Vec<[bool; 4]>) =
                hits.into_iter().map(|(node, _, flags)| (node, flags)).unzip();
            let summaries = finish_summaries_with_tags(conn, summaries, tags)?;
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

/// A text column, borrowed from the row.
fn text_column<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> rusqlite::Result<&'r str> {
    Ok(row.get_ref(column)?.as_str()?)
}

/// Case-insensitive substring test against one folded needle, reusing one buffer.
struct Matcher<'a> {
    needle: &'a str,
    buf: String,
}

impl<'a> Matcher<'a> {
    /// `folded_needle` must already be folded with [`fold`].
    fn new(folded_needle: &'a str) -> Self {
        Matcher {
            needle: folded_needle,
            buf: String::new(),
        }
    }

    fn matches(&mut self, hay: &str) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        if hay.is_ascii() {
            // ASCII folds byte by byte: lower-case a copy in place and use std's substring
            // search. (A non-ASCII needle can still match: nothing in ASCII folds to it.)
            self.buf.clear();
            self.buf.push_str(hay);
            self.buf.make_ascii_lowercase();
            return self.buf.contains(self.needle);
        }
        fold(hay).contains(self.needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(hay: &str, needle: &str) -> bool {
        let needle = fold(needle);
        Matcher::new(&needle).matches(hay)
    }

    #[test]
    fn matching_ignores_ascii_and_unicode_case() {
        assert!(contains("The Pirate Captain", "pirate"));
        assert!(contains("The Pirate Captain", "PIRATE C"));
        assert!(contains("ÉMILE ZOLA", "émile"), "non-ASCII letters fold too");
        assert!(contains("Émile", "ÉMILE"));
        assert!(
            contains("\u{212A}elvin", "kelvin"),
            "a non-ASCII letter that folds to ASCII"
        );
        assert!(!contains("Captain", "pirate"));
        assert!(!contains("pirat", "pirate"), "a needle longer than the text");
        assert!(!contains("café", "cafe"), "accents are kept");
        assert!(contains("anything", ""), "the empty needle matches everything");
    }

    #[test]
    fn one_matcher_gives_the_same_answers_in_any_order() {
        let needle = fold("Gull");
        let mut m = Matcher::new(&needle);
        let texts = [
            "a long text about gulls",
            "GULL",
            "no",
            "ünïcode gull",
            "g u l l",
            "seagull!",
        ];
        let first: Vec<bool> = texts.iter().map(|t| m.matches(t)).collect();
        let again: Vec<bool> = texts.iter().rev().map(|t| m.matches(t)).collect();
        assert_eq!(first, vec![true, true, false, true, false, true]);
        assert_eq!(first, again.into_iter().rev().collect::<Vec<_>>());
    }
}
