//! Models from the Hugging Face Hub: [`pull`] (download, checked against the hub's SHA-256,
//! resumable, cancellable), [`list`], [`info`], [`remove`], and the names people use for them:
//! `REPO` (its only GGUF, or its safetensors model), `REPO:QUANT` (`…-GGUF:Q4_K_M`) and
//! `REPO:FILE`.
//!
//! Downloads go through the hub's own client (`hf-hub`) into a staging folder inside the models
//! folder (`.downloads`, the hub's cache layout, where an interrupted download is resumed from);
//! a file is moved to `hub/OWNER/NAME/FILE` only once its SHA-256 matches the hub's (and, for a
//! file the [`catalogue`] lists, the catalogue's size and SHA-256), so the installed models are
//! never half-written nor other than what was asked for. `HF_ENDPOINT` and `HF_TOKEN` are
//! honoured.

use crate::error::{Error, Result};
use crate::paths::models_dir;
use hf_hub::api::tokio::{ApiBuilder, ApiError, Progress};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A model named by its Hugging Face repository, optionally with a file or a weight type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubName {
    /// `OWNER/NAME`.
    pub repo: String,
    /// What follows the `:`: a file of the repository or a weight type (`Q4_K_M`).
    pub selector: Option<String>,
}

impl HubName {
    /// Parses `OWNER/NAME[:FILE|:QUANT]`; `None` for anything else (a path, `default`).
    pub fn parse(s: &str) -> Option<Self> {
        let (repo, selector) = match s.split_once(':') {
            Some((r, sel)) => (r, Some(sel)),
            None => (s, None),
        };
        let (owner, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !part_ok(owner) || !part_ok(name) {
            return None;
        }
        if selector.is_some_and(|sel| !is_repo_file(sel)) {
            return None;
        }
        Some(Self {
            repo: repo.to_string(),
            selector: selector.map(str::to_string),
        })
    }

    fn folder(&self) -> PathBuf {
        hub_dir().join(&self.repo)
    }
}

impl std::fmt::Display for HubName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Some(s) => write!(f, "{}:{s}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// A file name inside a repository that is safe to join to a folder: relative, no `.` or `..`
/// parts, no backslashes or control characters. Names from the command line, from the hub's
/// file list and from a manifest on disk all pass through here before any path is built.
fn is_repo_file(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && !name.chars().any(char::is_control)
}

/// Where installed hub models live: `MODELS/hub/OWNER/NAME/…`.
pub fn hub_dir() -> PathBuf {
    models_dir().join("hub")
}

/// The hub client's staging cache (partial downloads).
fn staging_dir() -> PathBuf {
    models_dir().join(".downloads")
}

/// What `manifest.json` in a repository's folder records of each installed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledFile {
    pub file: String,
    pub bytes: u64,
    /// The hub's SHA-256 of the file, checked after the download (files the hub keeps outside
    /// its large-file storage, such as `config.json`, have none).
    pub sha256: Option<String>,
    /// The commit of the repository it came from.
    pub revision: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    repo: String,
    files: Vec<InstalledFile>,
}

const MANIFEST: &str = "manifest.json";

/// The folder's manifest; entries whose file name could point outside the folder are dropped.
fn read_manifest(folder: &Path) -> Manifest {
    let mut m: Manifest = std::fs::read(folder.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    m.files.retain(|f| is_repo_file(&f.file));
    m
}

fn write_manifest(folder: &Path, m: &Manifest) -> Result<()> {
    let tmp = folder.join(format!(".{MANIFEST}.{}.partial", std::process::id()));
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, folder.join(MANIFEST)).map_err(|e| Error::io(folder, e))
}

/// One installed model: a GGUF file, or a safetensors folder.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct InstalledModel {
    /// The name to give `--model`: `REPO:QUANT` when the file name ends in one, else
    /// `REPO:FILE` (GGUF) or `REPO` (a safetensors folder).
    pub name: String,
    pub repo: String,
    /// The GGUF file, or empty for a safetensors folder.
    pub file: String,
    /// What to load: the GGUF file or the folder.
    pub path: PathBuf,
    pub bytes: u64,
    /// `gguf` or `safetensors`.
    pub format: String,
    pub weight_type: Option<String>,
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
    pub revision: String,
    /// Each file with its SHA-256, as the hub gave it and the download was checked against.
    pub sha256: Vec<FileDigest>,
    /// Nodes in the state library made with this model (0 when it was never loaded).
    pub states: usize,
}

/// A file of an installed model and its SHA-256 (none for small files the hub keeps in git).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct FileDigest {
    pub file: String,
    pub sha256: Option<String>,
}

/// What a download has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PullProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Bytes that were already there from an interrupted download.
    pub resumed_bytes: u64,
}

/// Stops a [`pull`] from another thread; what was downloaded stays for the next pull.
#[derive(Debug, Clone, Default)]
pub struct PullCancel(Arc<AtomicBool>);

impl PullCancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Byte counters the hub client updates (it wants a `Clone + Send` progress).
#[derive(Clone, Default)]
struct Counters {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    first: Arc<AtomicBool>,
    resumed: Arc<AtomicU64>,
}

impl Progress for Counters {
    async fn init(&mut self, size: usize, _filename: &str) {
        self.total.fetch_add(size as u64, Ordering::SeqCst);
        self.first.store(true, Ordering::SeqCst);
    }
    async fn update(&mut self, size: usize) {
        // The first update after a resume reports what the part file already held.
        if self.first.swap(false, Ordering::SeqCst) {
            self.resumed.fetch_add(size as u64, Ordering::SeqCst);
        }
        self.done.fetch_add(size as u64, Ordering::SeqCst);
    }
    async fn finish(&mut self) {}
}

/// How a pull checks what it downloads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// A file the catalogue lists is held to the catalogue's size and SHA-256 as well as the
    /// Hub's; with this set, to the Hub's alone (for a file its publisher has since replaced).
    pub trust_hub: bool,
}

/// Downloads the model `name` (`REPO`, `REPO:QUANT` or `REPO:FILE`) into the models folder and
/// returns it installed. Blocks; `progress` is called a few times a second; `cancel` stops it
/// (the partial download is kept and the next pull resumes it). A file the catalogue lists
/// installs only if it is the catalogue's (size and SHA-256), unless `options.trust_hub`.
pub fn pull(
    name: &str,
    options: PullOptions,
    progress: &mut dyn FnMut(PullProgress),
    cancel: &PullCancel,
) -> Result<InstalledModel> {
    let hub = HubName::parse(name).ok_or_else(|| {
        Error::Invalid(format!(
            "`{name}` is not a Hugging Face model name: use OWNER/NAME, OWNER/NAME:QUANT or OWNER/NAME:FILE"
        ))
    })?;
    // A runtime of its own: cancelling drops it, which also stops the client's download tasks
    // (dropping the download future alone would leave them running). One thread: the client's
    // chunk tasks then run in file order, so an interrupted download always keeps every chunk
    // before the one that failed (the client resumes from the first missing byte).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the download runtime: {e}")))?;
    let result = rt.block_on(pull_async(&hub, options, progress, cancel));
    rt.shutdown_background();
    let installed = result?;
    installed_model(&hub.repo, &installed, &StateCounts::read())
}

fn token() -> Option<String> {
    std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty())
}

async fn pull_async(
    hub: &HubName,
    options: PullOptions,
    progress: &mut dyn FnMut(PullProgress),
    cancel: &PullCancel,
) -> Result<String> {
    let staging = staging_dir();
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(staging.clone())
        .with_progress(false)
        .with_user_agent("freeze-attn", env!("CARGO_PKG_VERSION"));
    if let Some(t) = token() {
        builder = builder.with_token(Some(t));
    }
    let api = builder.build().map_err(|e| hub_error(hub, "", e))?;
    let repo = api.model(hub.repo.clone());
    let info = repo.info().await.map_err(|e| hub_error(hub, "", e))?;
    // The hub's file list is untrusted: only names that stay inside the repository's folder.
    let files: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|f| is_repo_file(f))
        .collect();
    let (wanted, key) = choose_files(hub, &files)?;
    let counters = Counters::default();
    let folder = hub.folder();
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    for file in &wanted {
        // Already installed from this revision, whole: nothing to download.
        let have = read_manifest(&folder);
        let current = have.files.iter().any(|f| {
            &f.file == file
                && f.revision == info.sha
                && std::fs::metadata(folder.join(file)).is_ok_and(|m| m.len() == f.bytes)
        });
        if current {
            continue;
        }
        let pin = if options.trust_hub {
            None
        } else {
            catalogue_pin(&hub.repo, file)?
        };
        let before = counters.total.load(Ordering::SeqCst);
        let task = repo.download_with_progress(file, counters.clone());
        tokio::pin!(task);
        let pointer = loop {
            tokio::select! {
                r = &mut task => break r.map_err(|e| hub_error(hub, file, e))?,
                _ = tokio::time::sleep(std::time::Duration::from_millis(150)) => {
                    if cancel.is_cancelled() {
                        return Err(Error::Unavailable {
                            code: "cancelled",
                            message: format!("the download of {hub} was cancelled; pull it again to resume"),
                        });
                    }
                    // The client announces the file's size before fetching it: a file of
                    // another size than the catalogue's is refused before gigabytes arrive.
                    let size = counters.total.load(Ordering::SeqCst) - before;
                    if let Some((bytes, _)) = pin.as_ref().filter(|(b, _)| size != 0 && size != *b) {
                        return Err(not_the_catalogues(hub, file, &format!("is {size} bytes, not the {bytes}"), "nothing was installed"));
                    }
                    progress(PullProgress {
                        done_bytes: counters.done.load(Ordering::SeqCst),
                        total_bytes: counters.total.load(Ordering::SeqCst),
                        resumed_bytes: counters.resumed.load(Ordering::SeqCst),
                    });
                }
            }
        };
        let entry = install(hub, file, &pointer, &info.sha, &folder, pin.as_ref()).await?;
        let mut m = read_manifest(&folder);
        m.repo = hub.repo.clone();
        m.files.retain(|f| f.file != entry.file);
        m.files.push(entry);
        write_manifest(&folder, &m)?;
    }
    progress(PullProgress {
        done_bytes: counters.done.load(Ordering::SeqCst),
        total_bytes: counters.done.load(Ordering::SeqCst),
        resumed_bytes: counters.resumed.load(Ordering::SeqCst),
    });
    Ok(key)
}

/// The files to download for `hub` among the repository's `files`, and the installed model's
/// file (empty for a safetensors folder).
fn choose_files(hub: &HubName, files: &[String]) -> Result<(Vec<String>, String)> {
    use freeze_attn_engine::model::gguf::{quant_suffix, weight_type_loads};
    let ggufs: Vec<&String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    // A GGUF file's weight type, from its name.
    let quant_of = |f: &str| -> Option<String> {
        let name = f.rsplit('/').next().unwrap_or(f);
        quant_suffix(&name[..name.len() - 5]).map(str::to_string)
    };
    // The weight types of the repository's GGUF files (a file without one by its name),
    // those that load here first, Q4_K_M (what most people download) first among them.
    let quants = || -> Vec<String> {
        let mut q: Vec<String> = ggufs
            .iter()
            .map(|f| quant_of(f).unwrap_or_else(|| f.to_string()))
            .collect();
        q.sort_by_key(|t| {
            (
                weight_type_loads(t) == Some(false),
                !t.eq_ignore_ascii_case("Q4_K_M"),
                t.clone(),
            )
        });
        q.dedup();
        q
    };
    let listed = |q: &[String]| q.join(", ");
    // A file of a weight type the engine cannot load is refused before gigabytes are fetched.
    let loadable = |file: &String| -> Result<(Vec<String>, String)> {
        match quant_of(file) {
            Some(q) if weight_type_loads(&q) == Some(false) => {
                let others: Vec<String> = quants()
                    .into_iter()
                    .filter(|t| weight_type_loads(t) != Some(false))
                    .collect();
                Err(Error::Invalid(format!(
                    "{}: `{file}` is {q}, a weight type this version cannot load (it loads {} and their mixes such as Q4_K_M); {}",
                    hub.repo,
                    freeze_attn_engine::model::gguf::supported_type_names(),
                    if others.is_empty() {
                        "the repository has no other weight type".to_string()
                    } else {
                        format!("choose one of {}", listed(&others))
                    }
                )))
            }
            _ => Ok((vec![file.clone()], file.clone())),
        }
    };
    match &hub.selector {
        Some(sel) if files.iter().any(|f| f == sel) => {
            if ggufs.contains(&sel) {
                loadable(sel)
            } else {
                Ok((vec![sel.clone()], sel.clone()))
            }
        }
        Some(sel) => {
            let want = sel.to_ascii_uppercase();
            let hits: Vec<&String> = ggufs
                .iter()
                .copied()
                .filter(|f| quant_of(f).is_some_and(|q| q.to_ascii_uppercase() == want))
                .collect();
            match hits.as_slice() {
                [one] => loadable(one),
                [] if ggufs.is_empty() => Err(Error::Invalid(format!(
                    "{}: no file `{sel}` in the repository, and it has no GGUF files",
                    hub.repo
                ))),
                [] => Err(Error::Invalid(format!(
                    "{}: no file or weight type `{sel}`; its GGUF weight types: {}",
                    hub.repo,
                    listed(&quants())
                ))),
                many => Err(Error::Invalid(format!(
                    "{}: {} files match `{sel}` ({}): name one as {}:FILE",
                    hub.repo,
                    many.len(),
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    hub.repo
                ))),
            }
        }
        None if ggufs.len() == 1 => loadable(ggufs[0]),
        None if ggufs.len() > 1 => {
            let q = quants();
            Err(Error::Invalid(format!(
                "{} has {} GGUF files: choose a weight type, e.g. {}:{} (available: {})",
                hub.repo,
                ggufs.len(),
                hub.repo,
                q.first().map(String::as_str).unwrap_or("Q4_K_M"),
                listed(&q)
            )))
        }
        None => {
            let has = |n: &str| files.iter().any(|f| f == n);
            let weights: Vec<String> = files
                .iter()
                .filter(|f| {
                    !f.contains('/') && (f.ends_with(".safetensors") || f.as_str() == "model.safetensors.index.json")
                })
                .cloned()
                .collect();
            if !has("config.json") || weights.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} has neither a GGUF file nor a safetensors model (config.json and *.safetensors)",
                    hub.repo
                )));
            }
            let mut wanted: Vec<String> = [
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
            ]
            .into_iter()
            .filter(|n| has(n))
            .map(str::to_string)
            .collect();
            wanted.extend(weights);
            Ok((wanted, String::new()))
        }
    }
}

/// The refusal of a catalogue file the Hub serves differently: `how` says what differs. Front
/// ends offer to pull it again with [`PullOptions::trust_hub`].
fn not_the_catalogues(hub: &HubName, file: &str, how: &str, what_happened: &str) -> Error {
    Error::Unavailable {
        code: "catalogue_mismatch",
        message: format!(
            "{}/{file}: the Hub's file {how} this version's catalogue lists (its publisher may have replaced it); {what_happened}",
            hub.repo
        ),
    }
}

/// Checks the downloaded blob behind `pointer` against the hub's SHA-256 (the blob's name in
/// the hub's cache layout is the ETag the hub sent, which for a large file is its SHA-256) and
/// against `pinned`, the catalogue's size and SHA-256, and moves it to `folder/file`. A mismatch
/// removes the download and installs nothing.
async fn install(
    hub: &HubName,
    file: &str,
    pointer: &Path,
    revision: &str,
    folder: &Path,
    pinned: Option<&(u64, String)>,
) -> Result<InstalledFile> {
    let blob = std::fs::canonicalize(pointer).map_err(|e| Error::io(pointer, e))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let expected = (etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())).then(|| etag.to_ascii_lowercase());
    let bytes = std::fs::metadata(&blob).map_err(|e| Error::io(&blob, e))?.len();
    let discard = || {
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(pointer);
    };
    if let Some((want, _)) = pinned.filter(|(b, _)| *b != bytes) {
        discard();
        return Err(not_the_catalogues(
            hub,
            file,
            &format!("is {bytes} bytes, not the {want}"),
            "the download was removed and nothing was installed",
        ));
    }
    if expected.is_some() || pinned.is_some() {
        let b = blob.clone();
        let found =
            tokio::task::spawn_blocking(move || crate::default_model::sha256_file(&b).map_err(|e| Error::io(&b, e)))
                .await
                .map_err(|e| Error::Invalid(e.to_string()))??;
        if let Some(want) = expected.as_ref().filter(|w| **w != found) {
            discard();
            return Err(Error::Invalid(format!(
                "{}/{file}: the download's SHA-256 is {found}, the Hub's is {want}: it was corrupted on the way and was removed; nothing was installed",
                hub.repo
            )));
        }
        if let Some((_, want)) = pinned.filter(|(_, w)| *w != found) {
            discard();
            return Err(not_the_catalogues(
                hub,
                file,
                &format!("has SHA-256 {found}, not the {want}"),
                "the download was removed and nothing was installed",
            ));
        }
    }
    let dest = folder.join(file);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::rename(&blob, &dest).map_err(|e| Error::io(&dest, e))?;
    let _ = std::fs::remove_file(pointer);
    Ok(InstalledFile {
        file: file.to_string(),
        bytes,
        sha256: expected,
        revision: revision.to_string(),
    })
}

/// One line for a hub failure, naming the repository (and the file) and what to do.
fn hub_error(hub: &HubName, file: &str, e: ApiError) -> Error {
    let what = if file.is_empty() {
        hub.repo.clone()
    } else {
        format!("{}/{file}", hub.repo)
    };
    let status = match &e {
        ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
        ApiError::TooManyRetries(inner) => match inner.as_ref() {
            ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
            _ => None,
        },
        _ => None,
    };
    let message = match status {
        Some(401) if token().is_none() => format!(
            "{what}: the Hub requires a token for this model (gated or private): accept its licence on the Hub and set HF_TOKEN to an access token of that account"
        ),
        Some(401) | Some(403) => format!(
            "{what}: the Hub refused the token in HF_TOKEN (gated model: accept its licence on the Hub with that account, or check the token)"
        ),
        Some(404) => format!("{what}: not found on the Hub (check the name; a private model also needs HF_TOKEN)"),
        Some(s) => format!("{what}: the Hub answered HTTP {s}"),
        None => match &e {
            ApiError::IoError(io) if io.raw_os_error() == Some(28) => format!(
                "{what}: the disk is full ({}); nothing was installed, the partial download is kept to resume",
                staging_dir().display()
            ),
            _ => format!("{what}: download failed: {e}"),
        },
    };
    Error::Unavailable {
        code: match status {
            Some(401) | Some(403) => "hub_auth",
            Some(404) => "hub_not_found",
            _ => "hub",
        },
        message,
    }
}

/// The installed model `key` (a GGUF file of `repo`, or "" for its safetensors folder).
fn installed_model(repo: &str, key: &str, counts: &StateCounts) -> Result<InstalledModel> {
    let folder = hub_dir().join(repo);
    let m = read_manifest(&folder);
    let files: Vec<&InstalledFile> = m
        .files
        .iter()
        .filter(|f| {
            if key.is_empty() {
                !f.file.to_ascii_lowercase().ends_with(".gguf")
            } else {
                f.file == key
            }
        })
        .collect();
    if files.is_empty() {
        return Err(Error::Invalid(format!("{repo}: `{key}` is not installed")));
    }
    let path = if key.is_empty() {
        folder.clone()
    } else {
        folder.join(key)
    };
    let (format, weight_type, architecture, context_length) = describe(&path);
    let format = format.to_string();
    let name = if key.is_empty() {
        repo.to_string()
    } else {
        let stem = key.rsplit('/').next().unwrap_or(key).trim_end_matches(".gguf");
        match freeze_attn_engine::model::gguf::quant_suffix(stem) {
            Some(q) => format!("{repo}:{q}"),
            None => format!("{repo}:{key}"),
        }
    };
    Ok(InstalledModel {
        name,
        repo: repo.to_string(),
        file: key.to_string(),
        states: counts.of(&path),
        path,
        bytes: files.iter().map(|f| f.bytes).sum(),
        format,
        weight_type,
        architecture,
        context_length,
        revision: files.first().map(|f| f.revision.clone()).unwrap_or_default(),
        sha256: files
            .iter()
            .map(|f| FileDigest {
                file: f.file.clone(),
                sha256: f.sha256.clone(),
            })
            .collect(),
    })
}

/// Format, weight type, architecture and context length, read from the file's metadata only.
fn describe(path: &Path) -> (&'static str, Option<String>, Option<String>, Option<u64>) {
    if path.is_dir() {
        let cfg: Option<serde_json::Value> = std::fs::read(path.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let get = |k: &str| cfg.as_ref().and_then(|c| c.get(k)).cloned();
        return (
            "safetensors",
            get("torch_dtype").and_then(|v| v.as_str().map(str::to_string)),
            get("model_type").and_then(|v| v.as_str().map(str::to_string)),
            get("max_position_embeddings").and_then(|v| v.as_u64()),
        );
    }
    match freeze_attn_engine::gguf::GgufFile::open(path) {
        Ok(g) => {
            let arch = g.meta_str("general.architecture").ok().map(str::to_string);
            let ctx = arch
                .as_ref()
                .and_then(|a| g.meta_usize(&format!("{a}.context_length")).ok())
                .map(|n| n as u64);
            let wt = Some(freeze_attn_engine::model::gguf::weight_type(&g));
            ("gguf", wt, arch, ctx)
        }
        Err(_) => ("gguf", None, None, None),
    }
}

/// How many library nodes were made with the model loaded from each file (through the models
/// the library registered when they were loaded), read once for a whole listing.
struct StateCounts(Vec<(PathBuf, usize)>);

impl StateCounts {
    fn read() -> Self {
        let Ok(lib) = crate::tree::open_library() else {
            return Self(Vec::new());
        };
        let models = lib.models().unwrap_or_default();
        Self(
            models
                .iter()
                .map(|m| {
                    (
                        canonical(&m.path),
                        lib.count_nodes_of_model(&m.fingerprint).unwrap_or(0),
                    )
                })
                .collect(),
        )
    }

    fn of(&self, path: &Path) -> usize {
        let here = canonical(path);
        self.0.iter().filter(|(p, _)| *p == here).map(|(_, n)| n).sum()
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Every installed hub model, by name.
pub fn list() -> Result<Vec<InstalledModel>> {
    let mut out = Vec::new();
    let root = hub_dir();
    let Ok(owners) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    let counts = StateCounts::read();
    for owner in owners.flatten() {
        let Ok(names) = std::fs::read_dir(owner.path()) else {
            continue;
        };
        for name in names.flatten() {
            let repo = format!(
                "{}/{}",
                owner.file_name().to_string_lossy(),
                name.file_name().to_string_lossy()
            );
            let m = read_manifest(&name.path());
            let mut keys: Vec<String> = m
                .files
                .iter()
                .filter(|f| f.file.to_ascii_lowercase().ends_with(".gguf"))
                .map(|f| f.file.clone())
                .collect();
            if m.files.iter().any(|f| f.file.ends_with(".safetensors")) {
                keys.push(String::new());
            }
            for k in keys {
                if let Ok(im) = installed_model(&repo, &k, &counts) {
                    out.push(im);
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A model this library has loaded from a path of the user's (not a Hub download), to load
/// again with one click.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct OpenedModel {
    /// Its display name (from its metadata).
    pub name: String,
    /// The GGUF file or safetensors folder it was loaded from.
    pub path: PathBuf,
    /// The file's size, or the folder's `.safetensors` files'.
    pub bytes: u64,
    /// Nodes in the library made with it.
    pub states: usize,
}

/// The models `lib` has seen loaded from a path that is still there, other than installed Hub
/// models (which [`list`] shows): files opened by path and the default model. One entry per
/// path (when the file at a path has changed since, the model with the most states made with
/// it); by name.
pub fn opened(lib: &freeze_attn_library::Library) -> Result<Vec<OpenedModel>> {
    let hub = canonical(&hub_dir());
    let mut by_path: std::collections::HashMap<PathBuf, OpenedModel> = std::collections::HashMap::new();
    for m in lib.models()? {
        let path = canonical(&m.path);
        if path.starts_with(&hub) {
            continue;
        }
        let bytes = match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => md.len(),
            Ok(md) if md.is_dir() => std::fs::read_dir(&path)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                        .filter_map(|e| e.metadata().ok())
                        .map(|md| md.len())
                        .sum()
                })
                .unwrap_or(0),
            _ => continue,
        };
        let entry = OpenedModel {
            name: m.display_name.clone(),
            states: lib.count_nodes_of_model(&m.fingerprint)?,
            path: m.path.clone(),
            bytes,
        };
        match by_path.get(&path) {
            Some(kept) if kept.states >= entry.states => {}
            _ => {
                by_path.insert(path, entry);
            }
        }
    }
    let mut out: Vec<OpenedModel> = by_path.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// The installed model that `name` (`REPO`, `REPO:QUANT` or `REPO:FILE`) designates.
pub fn info(name: &str) -> Result<InstalledModel> {
    let hub =
        HubName::parse(name).ok_or_else(|| Error::Invalid(format!("`{name}` is not OWNER/NAME[:QUANT|:FILE]")))?;
    let all: Vec<InstalledModel> = list()?.into_iter().filter(|m| m.repo == hub.repo).collect();
    let hits: Vec<&InstalledModel> = all
        .iter()
        .filter(|m| match &hub.selector {
            None => true,
            Some(sel) => m.file == *sel || m.name.eq_ignore_ascii_case(&format!("{}:{sel}", hub.repo)),
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::Unavailable {
            code: "model_not_installed",
            message: format!("{name} is not installed: run `freeze-attn models pull {name}`"),
        }),
        many => Err(Error::Invalid(format!(
            "{name} names {} installed models ({}): add :QUANT or :FILE",
            many.len(),
            many.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Removes an installed model's files (and its repository's folder once empty). States made
/// with it stay in the library; they thaw again if the model is pulled again.
pub fn remove(name: &str) -> Result<InstalledModel> {
    let m = info(name)?;
    let folder = hub_dir().join(&m.repo);
    let mut manifest = read_manifest(&folder);
    for FileDigest { file, .. } in &m.sha256 {
        let p = folder.join(file);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(&p, e));
            }
        }
        manifest.files.retain(|f| &f.file != file);
    }
    if manifest.files.is_empty() {
        std::fs::remove_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        if let Some(owner) = folder.parent() {
            let _ = std::fs::remove_dir(owner);
        }
    } else {
        write_manifest(&folder, &manifest)?;
    }
    Ok(m)
}

/// The path `--model NAME` loads when `NAME` is an installed hub model; `None` when `spec` is
/// not a hub name or is an existing path.
pub fn resolve(spec: &str) -> Result<Option<PathBuf>> {
    if Path::new(spec).exists() || HubName::parse(spec).is_none() {
        return Ok(None);
    }
    Ok(Some(info(spec)?.path))
}

/// The recommended models shipped in `assets/models.json`.
const CATALOGUE: &str = include_str!("../assets/models.json");

/// A catalogue of one's own replaces the shipped one when this names its file.
const CATALOGUE_ENV: &str = "FREEZE_ATTN_CATALOGUE";

/// A catalogue file is a few kilobytes; anything past this is not one.
const CATALOGUE_MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    quant: String,
    file: String,
    /// The exact size of the file the catalogue lists.
    bytes: u64,
    /// Its SHA-256 (the Hub's large-file hash), lower-case hexadecimal: a pull of this file
    /// installs only a download with this hash.
    sha256: String,
    #[serde(default)]
    recommended: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Shape {
    n_layer: u64,
    n_kv_head: u64,
    head_dim: u64,
    context_length: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct CatalogueModel {
    name: String,
    repo: String,
    licence: String,
    shape: Shape,
    files: Vec<CatalogueFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct Catalogue {
    models: Vec<CatalogueModel>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The catalogue in use: `FREEZE_ATTN_CATALOGUE`'s file if set (untrusted: size-capped and
/// checked field by field), else the shipped one. Every file has a repository name that parses,
/// a file name inside it, a size and a SHA-256, so that a pull can hold the download to them.
fn load_catalogue() -> Result<Catalogue> {
    let (text, from) = match std::env::var_os(CATALOGUE_ENV).filter(|v| !v.is_empty()) {
        Some(p) => {
            use std::io::Read;
            let path = PathBuf::from(p);
            // Read at most one byte past the bound: a file that grows meanwhile is still bounded.
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(CATALOGUE_MAX_BYTES + 1).read_to_string(&mut text))
                .map_err(|e| Error::io(&path, e))?;
            if text.len() as u64 > CATALOGUE_MAX_BYTES {
                return Err(Error::Invalid(format!(
                    "catalogue {}: more than a catalogue's {CATALOGUE_MAX_BYTES} bytes",
                    path.display()
                )));
            }
            (std::borrow::Cow::Owned(text), path.display().to_string())
        }
        None => (std::borrow::Cow::Borrowed(CATALOGUE), "assets/models.json".to_string()),
    };
    let bad = |what: String| Error::Invalid(format!("catalogue {from}: {what}"));
    let cat: Catalogue = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    for (i, m) in cat.models.iter().enumerate() {
        if HubName::parse(&m.repo).is_none_or(|h| h.selector.is_some()) {
            return Err(bad(format!("models[{i}].repo `{}` is not OWNER/NAME", m.repo)));
        }
        let s = &m.shape;
        // The memory estimate multiplies these: each is kept to what a model can have.
        if [s.n_layer, s.n_kv_head, s.head_dim].iter().any(|&v| v == 0 || v > 4096) || s.context_length == 0 {
            return Err(bad(format!("models[{i}].shape has a zero or an implausible size")));
        }
        for (j, f) in m.files.iter().enumerate() {
            if !is_repo_file(&f.file) || !f.file.to_ascii_lowercase().ends_with(".gguf") {
                return Err(bad(format!(
                    "models[{i}].files[{j}].file `{}` is not a GGUF file name",
                    f.file
                )));
            }
            if !is_sha256(&f.sha256) {
                return Err(bad(format!(
                    "models[{i}].files[{j}].sha256 is not 64 lower-case hexadecimal digits"
                )));
            }
            if f.bytes == 0 || f.bytes > 1 << 50 {
                return Err(bad(format!("models[{i}].files[{j}].bytes is not a file's size")));
            }
        }
    }
    Ok(cat)
}

/// What the catalogue says `file` of `repo` is (size, SHA-256), if it lists it.
fn catalogue_pin(repo: &str, file: &str) -> Result<Option<(u64, String)>> {
    Ok(load_catalogue()?
        .models
        .into_iter()
        .filter(|m| m.repo.eq_ignore_ascii_case(repo))
        .flat_map(|m| m.files)
        .find(|f| f.file == file)
        .map(|f| (f.bytes, f.sha256)))
}

/// One downloadable file of the catalogue, with whether it fits this machine.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CatalogueEntry {
    /// The model, e.g. `Llama 3.2 1B Instruct`.
    pub model: String,
    /// What to give `models pull` and `--model`: `REPO:QUANT`.
    pub name: String,
    pub repo: String,
    pub file: String,
    pub quant: String,
    pub licence: String,
    pub recommended: bool,
    /// The file's size, as the catalogue lists it.
    pub bytes: u64,
    /// The file's SHA-256, as the catalogue lists it: `models pull` installs nothing else.
    pub sha256: String,
    /// The context length the estimate is for (at most the model's).
    pub context: u64,
    /// K/V of `context` tokens at f16.
    pub kv_bytes: u64,
    /// Weights + K/V + a working margin: what running it at `context` needs in memory.
    pub needs_bytes: u64,
    /// This machine's memory, if known.
    pub memory_bytes: Option<u64>,
    /// `needs_bytes` fits in the memory (None when the memory is unknown).
    pub fits: Option<bool>,
    /// The GPU's memory, when this build runs on one (a CUDA build on a machine with an
    /// NVIDIA GPU; see `freeze_attn_engine::device::gpu_memory`).
    pub gpu_memory_bytes: Option<u64>,
    /// `needs_bytes` fits in the GPU's memory, so that every layer runs there (None without a
    /// GPU).
    pub fits_gpu: Option<bool>,
    pub installed: bool,
}

/// Working memory beyond weights and K/V: activations, the tokenizer, the app itself.
const MARGIN_BYTES: u64 = 512 << 20;

/// The catalogue, each file with its memory estimate at `context` tokens (capped at the
/// model's context length) against this machine's memory.
pub fn catalogue(context: u64) -> Result<Vec<CatalogueEntry>> {
    let cat = load_catalogue()?;
    let memory = total_memory();
    let gpu = freeze_attn_engine::device::gpu_memory();
    let mut out = Vec::new();
    for m in cat.models {
        for f in m.files {
            let ctx = context.min(m.shape.context_length);
            let kv = [2, m.shape.n_kv_head, m.shape.head_dim, 2, ctx]
                .into_iter()
                .fold(m.shape.n_layer, u64::saturating_mul);
            let needs = f.bytes.saturating_add(kv).saturating_add(MARGIN_BYTES);
            out.push(CatalogueEntry {
                model: m.name.clone(),
                name: format!("{}:{}", m.repo, f.quant),
                // From the manifest alone: no model file is opened to fill in a catalogue.
                installed: HubName::parse(&m.repo).is_some_and(|h| {
                    read_manifest(&h.folder()).files.iter().any(|i| i.file == f.file)
                        && h.folder().join(&f.file).is_file()
                }),
                repo: m.repo.clone(),
                file: f.file,
                quant: f.quant,
                licence: m.licence.clone(),
                recommended: f.recommended,
                bytes: f.bytes,
                sha256: f.sha256,
                context: ctx,
                kv_bytes: kv,
                needs_bytes: needs,
                memory_bytes: memory,
                fits: memory.map(|mem| needs <= mem),
                gpu_memory_bytes: gpu,
                fits_gpu: gpu.map(|mem| needs <= mem),
            });
        }
    }
    Ok(out)
}

/// This machine's physical memory (the engine's [`freeze_attn_engine::memory::total`]).
/// `FREEZE_ATTN_MEMORY_BYTES` overrides it (to plan for another machine, and for tests).
pub fn total_memory() -> Option<u64> {
    std::env::var("FREEZE_ATTN_MEMORY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(freeze_attn_engine::memory::total)
}
