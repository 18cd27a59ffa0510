//! The `node_questions` table: the questions asked of a document node and their answers, oldest
//! first. Asking leaves the node's state untouched (each answer is generated on a copy), so
//! without this the history lived only in the window that asked, and was gone when the document
//! was thawed again or the app restarted. Deleted with their node.

use super::Migration;
use crate::error::Result;
use crate::ids::NodeId;
use rusqlite::Connection;

pub(crate) const CREATE: Migration = Migration {
    version: 8,
    sql: "CREATE TABLE node_questions (
              id       INTEGER PRIMARY KEY,
              node_id  INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
              asked_at INTEGER NOT NULL,
              question TEXT NOT NULL,
              answer   TEXT NOT NULL,
              tokens   INTEGER NOT NULL CHECK (tokens >= 0),
              finish   TEXT NOT NULL
          ) STRICT;
          CREATE INDEX node_questions_node ON node_questions (node_id, id);",
    rewrites_schema: false,
};

/// A question asked of a node and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub asked_at_ms: i64,
    pub question: String,
    pub answer: String,
    /// Tokens generated for the answer.
    pub tokens: u64,
    /// How the answer ended (`stop_token`, `length`, `cancelled`, …).
    pub finish: String,
}

/// Most questions kept per node: the oldest go first beyond it, so a document asked all day
/// does not grow the catalogue without bound.
pub const MAX_PER_NODE: usize = 200;

pub(crate) fn insert(conn: &Connection, id: NodeId, q: &Question) -> Result<()> {
    conn.execute(
        "INSERT INTO node_questions (node_id, asked_at, question, answer, tokens, finish)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (id, q.asked_at_ms, &q.question, &q.answer, q.tokens as i64, &q.finish),
    )?;
    conn.execute(
        "DELETE FROM node_questions WHERE node_id = ?1 AND id NOT IN
             (SELECT id FROM node_questions WHERE node_id = ?1 ORDER BY id DESC LIMIT ?2)",
        (id, MAX_PER_NODE as i64),
    )?;
    Ok(())
}

/// One node's questions, oldest first.
pub(crate) fn for_node(conn: &Connection, id: NodeId) -> Result<Vec<Question>> {
    let mut stmt = conn.prepare_cached(
        "SELECT asked_at, question, answer, tokens, finish FROM node_questions
         WHERE node_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(Question {
            asked_at_ms: r.get(0)?,
            question: r.get(1)?,
            answer: r.get(2)?,
            tokens: r.get::<_, i64>(3)?.max(0) as u64,
            finish: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
