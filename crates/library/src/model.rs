//! Models: the registry of loadable models, keyed by fingerprint.

use crate::error::{LibraryError, Result};
use crate::library::Library;
use crate::schema::models;
use freeze_attn_ids::ModelFingerprint;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Longest fingerprint accepted (the engine's are 64-hex blake3 digests).
const MAX_FINGERPRINT_LEN: usize = 256;

/// The catalogue row of a model this library can load (the model itself is the engine's
/// `LoadedModel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// What makes a state valid only for this model (see the engine's `ModelFingerprint`).
    pub fingerprint: ModelFingerprint,
    pub display_name: String,
    /// Where its weights are (a file or folder); must be valid UTF-8.
    pub path: PathBuf,
}

/// A fingerprint is an opaque, non-empty, single-line label.
pub(crate) fn validate_fingerprint(fp: &ModelFingerprint) -> Result<()> {
    let fp = fp.as_str();
    if fp.is_empty() || fp.len() > MAX_FINGERPRINT_LEN || fp.chars().any(char::is_control) {
        return Err(LibraryError::InvalidFingerprint(fp.to_owned()));
    }
    Ok(())
}

impl Library {
    /// Registers a model, or updates its display name and path.
    pub fn put_model(&self, model: &ModelRecord) -> Result<()> {
        validate_fingerprint(&model.fingerprint)?;
        let path = model
            .path
            .to_str()
            .ok_or_else(|| LibraryError::NonUtf8Path(model.path.clone()))?;
        self.write(|conn| models::upsert(conn, model, path))
    }

    /// The model with this fingerprint, if registered.
    pub fn model(&self, fingerprint: &ModelFingerprint) -> Result<Option<ModelRecord>> {
        self.read(|conn| models::select(conn, fingerprint))
    }

    /// Every registered model, by display name.
    pub fn models(&self) -> Result<Vec<ModelRecord>> {
        self.read(models::select_all)
    }

    /// How many nodes (cache nodes aside) were made with the model of this fingerprint.
    pub fn count_nodes_of_model(&self, fingerprint: &ModelFingerprint) -> Result<usize> {
        self.read(|conn| {
            let n: i64 = conn.query_row(
                &format!(
                    "SELECT count(*) FROM nodes n WHERE n.model_fingerprint = ?1 AND {}",
                    crate::schema::nodes::NOT_CACHE
                ),
                [fingerprint],
                |r| r.get(0),
            )?;
            Ok(n as usize)
        })
    }

    /// Forgets a model; its nodes stay (they become unloadable). Returns whether it was known.
    pub fn remove_model(&self, fingerprint: &ModelFingerprint) -> Result<bool> {
        self.write(|conn| models::delete(conn, fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_single_line_labels() {
        assert!(validate_fingerprint(&"abc123".into()).is_ok());
        assert!(validate_fingerprint(&"".into()).is_err());
        assert!(validate_fingerprint(&"a\nb".into()).is_err());
        assert!(validate_fingerprint(&"x".repeat(MAX_FINGERPRINT_LEN + 1).into()).is_err());
    }

    #[test]
    fn nodes_are_counted_by_model_without_cache_nodes() {
        use crate::node::{NewNode, NodeKind};
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let fp: ModelFingerprint = "fp1".into();
        assert_eq!(lib.count_nodes_of_model(&fp).unwrap(), 0);
        lib.create_node(&NewNode::new("a", NodeKind::Chat, "fp1")).unwrap();
        lib.create_node(&NewNode::new("b", NodeKind::Story, "fp1")).unwrap();
        lib.create_node(&NewNode::new("c", NodeKind::Cache, "fp1")).unwrap();
        lib.create_node(&NewNode::new("d", NodeKind::Chat, "fp2")).unwrap();
        assert_eq!(lib.count_nodes_of_model(&fp).unwrap(), 2);
    }

    #[test]
    fn models_are_upserted_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let mut m = ModelRecord {
            fingerprint: "fp1".into(),
            display_name: "Llama 3.2 1B".into(),
            path: "/models/llama.gguf".into(),
        };
        lib.put_model(&m).unwrap();
        m.display_name = "Llama (renamed)".into();
        lib.put_model(&m).unwrap();
        assert_eq!(
            lib.model(&"fp1".into()).unwrap(),
            Some(m.clone()),
            "a second put updates"
        );
        assert_eq!(lib.models().unwrap(), vec![m]);
        assert!(lib.remove_model(&"fp1".into()).unwrap());
        assert!(
            !lib.remove_model(&"fp1".into()).unwrap(),
            "removing twice reports nothing removed"
        );
        assert_eq!(lib.model(&"fp1".into()).unwrap(), None);
    }
}
