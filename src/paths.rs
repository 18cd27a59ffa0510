//! Where Freeze-Attn keeps its files: the user data folder from `directories`
//! (`~/.local/share/freeze-attn` on Linux), or `FREEZE_ATTN_HOME` when set.

use std::path::PathBuf;

/// The data folder: models, the state library.
pub fn data_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("FREEZE_ATTN_HOME") {
        return PathBuf::from(home);
    }
    directories::ProjectDirs::from("", "", "freeze-attn")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("freeze-attn"))
}

/// Where downloaded models live. `FREEZE_ATTN_MODELS` overrides it, so tests that point the
/// library at a scratch folder still share one cached copy of the default model.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("FREEZE_ATTN_MODELS") {
        Some(p) => PathBuf::from(p),
        None => data_dir().join("models"),
    }
}
