//! Choosing and opening a model: a path to a GGUF file or a Hugging Face folder, or `default`.

use crate::error::Result;
use freeze_attn_engine::{DeviceChoice, LoadedModel};
use std::path::PathBuf;

/// `default` → the default model (fetched on first use); anything else is a path.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    if spec == "default" {
        return Ok(crate::default_model::default_model_path()?);
    }
    Ok(PathBuf::from(spec))
}

/// Resolves and loads a model onto the chosen device.
pub fn open_model(spec: &str, device: DeviceChoice) -> Result<LoadedModel> {
    let path = resolve_model(spec)?;
    let device = device.open()?;
    Ok(freeze_attn_engine::load_model(&path, &device)?)
}
