//! Choosing and opening a model: a path to a GGUF file or a Hugging Face folder, or `default`.

use crate::error::Result;
use freeze_attn_engine::{DeviceChoice, LoadedModel};
use std::path::PathBuf;

/// `default` → the default model (fetched on first use); an installed Hugging Face model by
/// `OWNER/NAME[:QUANT|:FILE]` (see [`crate::models`]); anything else is a path.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    if spec == "default" {
        return Ok(crate::default_model::default_model_path()?);
    }
    if let Some(path) = crate::models::resolve(spec)? {
        return Ok(path);
    }
    Ok(PathBuf::from(spec))
}

/// Resolves and loads a model onto the chosen device. On a terminal, a model of more than
/// [`PROGRESS_MIN_BYTES`] shows its load progress on stderr (`loading model: 1.2 / 4.9 GB`),
/// so a multi-gigabyte load is not a silent wait.
#[tracing::instrument(level = "info", name = "open_model", skip_all, fields(model = spec, device = ?device))]
pub fn open_model(spec: &str, device: DeviceChoice) -> Result<LoadedModel> {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return open_model_with_progress(spec, device, &mut |_| {});
    }
    let mut shown = false;
    let mut last_pct = u64::MAX;
    let result = open_model_with_progress(spec, device, &mut |p| {
        if p.total_bytes < PROGRESS_MIN_BYTES || p.total_bytes == 0 {
            return;
        }
        let pct = p.done_bytes * 100 / p.total_bytes;
        if pct != last_pct {
            last_pct = pct;
            shown = true;
            let gb = |b: u64| b as f64 / 1e9;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rloading model: {:.1} / {:.1} GB ({pct}%)",
                gb(p.done_bytes),
                gb(p.total_bytes)
            );
            let _ = err.flush();
        }
    });
    if shown {
        // Clear the progress line.
        eprint!("\r{:60}\r", "");
    }
    result
}

/// Models smaller than this load in well under a second: no progress line.
pub const PROGRESS_MIN_BYTES: u64 = 256 << 20;

/// [`open_model`] with a progress callback (the app's load progress, tests).
pub fn open_model_with_progress(
    spec: &str,
    device: DeviceChoice,
    progress: &mut dyn FnMut(freeze_attn_engine::LoadProgress),
) -> Result<LoadedModel> {
    let path = resolve_model(spec)?;
    let device = device.open()?;
    // Hashing every weight byte is seconds for a large model: remembered per file version.
    freeze_attn_engine::fingerprint::set_digest_cache(
        crate::paths::data_dir().join("cache").join("weight-digests.json"),
    );
    Ok(freeze_attn_engine::load_model_with_progress(&path, &device, progress)?)
}
