//! `freeze-attn models` against a stand-in for the Hugging Face Hub: a real HTTP server on the
//! loopback that answers the hub's endpoints (model info, `resolve/{revision}/{file}` with a
//! redirect to a file server, ETag, `x-linked-etag` SHA-256 and `x-repo-commit` headers, range
//! requests, 401 for a gated repository, 404) over real files: the default model and a small
//! one made here. The CLI runs as a user runs it, with `HF_ENDPOINT` pointing at the stand-in.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const GOOD_TOKEN: &str = "hf_good_token";

struct HubFile {
    bytes: Arc<Vec<u8>>,
    sha256: String,
    /// Kept in the hub's large-file storage (served by redirect, SHA-256 as ETag).
    lfs: bool,
}

struct HubRepo {
    /// Answers 401 without the right token.
    gated: bool,
    files: Vec<(String, HubFile)>,
}

#[derive(Default)]
struct Hub {
    repos: HashMap<String, HubRepo>,
    port: AtomicU64,
    /// The file server's port (another origin, as the hub's file servers are).
    cdn_port: AtomicU64,
    /// Drop the connection halfway through the first file response whose range starts at or
    /// after this offset (0: never).
    cut_at: AtomicU64,
    /// Flip a byte in the file content served (the SHA-256 sent stays the true one).
    corrupt: AtomicBool,
    /// Serve file content slowly (about 40 MB/s) so a download can be interrupted midway.
    slow: AtomicBool,
    /// The start offsets of the ranged file requests, in order.
    range_starts: Mutex<Vec<u64>>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn file(bytes: Vec<u8>, lfs: bool) -> HubFile {
    HubFile {
        sha256: sha256_hex(&bytes),
        bytes: Arc::new(bytes),
        lfs,
    }
}

impl Hub {
    fn authorized(&self, repo: &str, headers: &HeaderMap) -> Result<&HubRepo, (StatusCode, &'static str)> {
        let Some(r) = self.repos.get(repo) else {
            return Err((StatusCode::NOT_FOUND, "Repository not found"));
        };
        if r.gated {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            if auth != Some(&format!("Bearer {GOOD_TOKEN}")) {
                return Err((StatusCode::UNAUTHORIZED, "Access to this model is restricted"));
            }
        }
        Ok(r)
    }
}

async fn model_info(
    State(hub): State<Arc<Hub>>,
    UrlPath((owner, name, _rev)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    match hub.authorized(&repo, &headers) {
        Err(r) => r.into_response(),
        Ok(HubRepo { files, .. }) => axum::Json(serde_json::json!({
            "id": repo,
            "sha": COMMIT,
            "siblings": files.iter().map(|(f, _)| serde_json::json!({"rfilename": f})).collect::<Vec<_>>(),
        }))
        .into_response(),
    }
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((owner, name, _rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    let files = match hub.authorized(&repo, &headers) {
        Err(r) => return r.into_response(),
        Ok(r) => &r.files,
    };
    let Some((_, f)) = files.iter().find(|(n, _)| *n == path) else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    if f.lfs {
        // As the hub does: a redirect to the file server, with the file's identity.
        let port = hub.cdn_port.load(Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", format!("http://127.0.0.1:{port}/cdn/{repo}/{path}"))
            .header("x-repo-commit", COMMIT)
            .header("x-linked-etag", format!("\"{}\"", f.sha256))
            .header("x-linked-size", f.bytes.len().to_string())
            .body(Body::empty())
            .unwrap();
    }
    serve(&hub, f, &headers, Some(&f.sha256[..40]))
}

async fn cdn(
    State(hub): State<Arc<Hub>>,
    UrlPath((owner, name, path)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    let Some((_, f)) = hub
        .repos
        .get(&repo)
        .and_then(|r| r.files.iter().find(|(n, _)| *n == path))
    else {
        return (StatusCode::NOT_FOUND, "no such object").into_response();
    };
    serve(&hub, f, &headers, None)
}

/// The file's bytes, or the requested range of them (`bytes=a-b` or `bytes=a-`).
fn serve(hub: &Hub, f: &HubFile, headers: &HeaderMap, etag: Option<&str>) -> Response {
    let total = f.bytes.len() as u64;
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok().unwrap_or(total - 1))));
    let (start, end) = range.map(|(a, b)| (a, b.min(total - 1))).unwrap_or((0, total - 1));
    if end > start {
        hub.range_starts.lock().unwrap().push(start);
    }
    let mut body = f.bytes[start as usize..=end as usize].to_vec();
    if hub.corrupt.load(Ordering::SeqCst) && body.len() > 100 {
        body[50] ^= 0xff;
    }
    let at = hub.cut_at.load(Ordering::SeqCst);
    let cut = if at > 0 && start >= at && body.len() > 1 {
        hub.cut_at.store(0, Ordering::SeqCst);
        (body.len() / 2) as u64
    } else {
        0
    };
    let slow = hub.slow.load(Ordering::SeqCst);
    let mut b = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header("content-length", body.len().to_string())
        .header("accept-ranges", "bytes")
        .header("x-repo-commit", COMMIT);
    if range.is_some() {
        b = b.header("content-range", format!("bytes {start}-{end}/{total}"));
    }
    if let Some(e) = etag {
        b = b.header("etag", format!("\"{e}\""));
    }
    if cut == 0 && !slow {
        return b.body(Body::from(body)).unwrap();
    }
    // Streamed in pieces: cut short (the connection drops) or slowly.
    let stream = async_stream(body, if cut > 0 { Some(cut as usize) } else { None }, slow);
    b.body(Body::from_stream(stream)).unwrap()
}

fn async_stream(
    body: Vec<u8>,
    cut: Option<usize>,
    slow: bool,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let piece = 256 << 10;
    let pieces: Vec<Vec<u8>> = body.chunks(piece).map(|c| c.to_vec()).collect();
    futures_util::stream::unfold((pieces.into_iter(), 0usize), move |(mut it, sent)| async move {
        if cut.is_some_and(|c| sent >= c) {
            return Some((Err(std::io::Error::other("connection dropped")), (it, usize::MAX)));
        }
        if sent == usize::MAX {
            return None;
        }
        let p = it.next()?;
        if slow {
            tokio::time::sleep(std::time::Duration::from_millis(6)).await;
        }
        let n = p.len();
        Some((Ok(p), (it, sent + n)))
    })
}

/// Starts the stand-in hub on a free loopback port, serving `repos`.
fn start_hub(repos: HashMap<String, HubRepo>) -> Arc<Hub> {
    let hub = Arc::new(Hub {
        repos,
        ..Default::default()
    });
    let app = Router::new()
        .route("/api/models/{owner}/{name}/revision/{rev}", get(model_info))
        .route("/{owner}/{name}/resolve/{rev}/{*path}", get(resolve))
        .route("/cdn/{owner}/{name}/{*path}", get(cdn))
        .with_state(hub.clone());
    let bind = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    let (api, files) = (bind(), bind());
    hub.port
        .store(api.local_addr().unwrap().port() as u64, Ordering::SeqCst);
    hub.cdn_port
        .store(files.local_addr().unwrap().port() as u64, Ordering::SeqCst);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let a = tokio::net::TcpListener::from_std(api).unwrap();
            let f = tokio::net::TcpListener::from_std(files).unwrap();
            let (x, y) = tokio::join!(axum::serve(a, app.clone()), axum::serve(f, app));
            x.unwrap();
            y.unwrap();
        });
    });
    hub
}

/// The default model's bytes (fetched into the shared models folder by `fetch-model`).
fn default_model() -> (PathBuf, Vec<u8>) {
    let o = Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
        .arg("fetch-model")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

/// A hub with `test/SmolLM2-GGUF` (the default model as Q4_1, and a second, small GGUF named
/// Q8_0), a gated `test/Gated-GGUF`, and `test/Folder` (a safetensors-shaped repository).
fn standard_hub() -> (Arc<Hub>, Vec<u8>) {
    let (_, model) = default_model();
    let small: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut repos = HashMap::new();
    repos.insert(
        "test/SmolLM2-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                ("SmolLM2-135M-Instruct-Q4_1.gguf".to_string(), file(model.clone(), true)),
                ("SmolLM2-135M-Instruct-Q8_0.gguf".to_string(), file(small.clone(), true)),
                ("README.md".to_string(), file(b"# SmolLM2".to_vec(), false)),
            ],
        },
    );
    repos.insert(
        "test/Gated-GGUF".to_string(),
        HubRepo {
            gated: true,
            files: vec![("gated-Q4_0.gguf".to_string(), file(small.clone(), true))],
        },
    );
    repos.insert(
        "test/Folder".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                (
                    "config.json".to_string(),
                    file(
                        br#"{"model_type":"llama","torch_dtype":"bfloat16","max_position_embeddings":131072}"#.to_vec(),
                        false,
                    ),
                ),
                ("tokenizer.json".to_string(), file(b"{}".to_vec(), false)),
                ("model.safetensors".to_string(), file(small, true)),
                ("README.md".to_string(), file(b"# Folder".to_vec(), false)),
            ],
        },
    );
    repos.insert(
        "bartowski/Llama-3.2-1B-Instruct-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![(
                "Llama-3.2-1B-Instruct-Q4_K_M.gguf".to_string(),
                file(b"GGUF, but only in name".to_vec(), true),
            )],
        },
    );
    (start_hub(repos), model)
}

struct Env {
    hub: Arc<Hub>,
    models: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Env {
    fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            models: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str], token: Option<&str>) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_freeze-attn"));
        c.args(args)
            .env("FREEZE_ATTN_MODELS", self.models.path())
            .env("FREEZE_ATTN_HOME", self.home.path())
            .env("HF_HOME", self.home.path().join("hf"))
            .env(
                "HF_ENDPOINT",
                format!("http://127.0.0.1:{}", self.hub.port.load(Ordering::SeqCst)),
            )
            .env_remove("HF_TOKEN");
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c
    }

    fn run(&self, args: &[&str], token: Option<&str>) -> Output {
        self.command(args, token).output().unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args, None);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Fails with one `freeze-attn: error:` line containing every needle.
    fn fails(&self, args: &[&str], token: Option<&str>, needles: &[&str]) -> String {
        let o = self.run(args, token);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("freeze-attn: error:")).collect();
        assert_eq!(lines.len(), 1, "one error line: {err}");
        for n in needles {
            assert!(lines[0].contains(n), "{:?} lacks {n:?}", lines[0]);
        }
        lines[0].to_string()
    }

    fn installed_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.models.path().join("hub"), &mut out);
        out
    }

    fn partial_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.models.path().join(".downloads"), &mut out);
        out.retain(|p| p.to_string_lossy().ends_with(".part"));
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn pull_by_quant_list_use_and_remove() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub);
    let e = env.fails(
        &["models", "pull", "test/SmolLM2-GGUF"],
        None,
        &["2 GGUF files", "Q4_1", "Q8_0"],
    );
    assert!(e.contains("test/SmolLM2-GGUF:"), "{e}");
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q5_K_M"],
        None,
        &["no file or weight type `Q5_K_M`", "Q4_1, Q8_0"],
    );

    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:q4_1", "--json"]);
    assert_eq!(m["name"], "test/SmolLM2-GGUF:Q4_1", "{m}");
    assert_eq!(m["weight_type"], "Q4_1");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["context_length"], 8192);
    assert_eq!(m["bytes"], model.len() as u64);
    let path = PathBuf::from(m["path"].as_str().unwrap());
    assert_eq!(
        sha256_hex(&std::fs::read(&path).unwrap()),
        m["sha256"][0][1].as_str().unwrap()
    );
    assert_eq!(
        m["sha256"][0][1].as_str().unwrap(),
        sha256_hex(&model),
        "the hub's SHA-256 is recorded"
    );
    assert!(
        env.partial_files().is_empty(),
        "no partial download left: {:?}",
        env.partial_files()
    );

    let list = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "test/SmolLM2-GGUF:Q4_1");

    // The installed model is named like any other by every command; its output is the default
    // model's (same file).
    let gen = |model: &str| {
        env.ok_json(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--json",
        ])["text"]
            .clone()
    };
    assert_eq!(gen("test/SmolLM2-GGUF:Q4_1"), gen(path.to_str().unwrap()));
    let info = env.ok_json(&["models", "info", "test/SmolLM2-GGUF", "--json"]);
    assert_eq!(info["path"], m["path"]);

    let o = env.run(&["models", "rm", "test/SmolLM2-GGUF:Q4_1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    env.fails(
        &[
            "generate",
            "--model",
            "test/SmolLM2-GGUF:Q4_1",
            "--prompt",
            "x",
            "--max-tokens",
            "1",
        ],
        None,
        &["not installed", "freeze-attn models pull test/SmolLM2-GGUF:Q4_1"],
    );
}

#[test]
fn an_interrupted_download_resumes_and_a_corrupted_one_is_refused() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub.clone());
    // The connection drops in the middle of the chunk at 40 MB: the pull fails, nothing is
    // installed, the part (with the chunks finished before) stays.
    hub.cut_at.store(40_000_000, Ordering::SeqCst);
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q4_1"],
        None,
        &["test/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"],
    );
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    assert_eq!(env.partial_files().len(), 1, "the partial download is kept");
    hub.range_starts.lock().unwrap().clear();
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    let starts = hub.range_starts.lock().unwrap().clone();
    assert!(
        starts
            .iter()
            .filter(|&&s| s > 0)
            .min()
            .is_some_and(|&s| s >= 20_000_000)
            && !starts.contains(&0),
        "the second pull asked only for what was missing: {starts:?}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m["path"].as_str().unwrap()).unwrap()),
        sha256_hex(&model)
    );

    // Bytes changed on the way: refused against the hub's SHA-256, nothing installed or kept.
    let env = Env::new(hub.clone());
    hub.corrupt.store(true, Ordering::SeqCst);
    let e = env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q8_0"],
        None,
        &["SHA-256", "nothing was installed"],
    );
    hub.corrupt.store(false, Ordering::SeqCst);
    assert!(env.installed_files().is_empty(), "{e}: {:?}", env.installed_files());
    let leftovers: Vec<PathBuf> = {
        let mut v = Vec::new();
        walk(&env.models.path().join(".downloads"), &mut v);
        v.retain(|p| p.to_string_lossy().contains("blobs"));
        v
    };
    assert!(
        leftovers.iter().all(|p| p.to_string_lossy().ends_with(".lock")),
        "{leftovers:?}"
    );
    env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q8_0", "--json"]);
}

#[test]
fn gated_missing_and_folder_repositories() {
    let (hub, _) = standard_hub();
    let env = Env::new(hub);
    env.fails(
        &["models", "pull", "test/Gated-GGUF"],
        None,
        &["HF_TOKEN", "test/Gated-GGUF"],
    );
    env.fails(
        &["models", "pull", "test/Gated-GGUF"],
        Some("hf_wrong"),
        &["refused the token in HF_TOKEN"],
    );
    let o = env.run(&["models", "pull", "test/Gated-GGUF", "--json"], Some(GOOD_TOKEN));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    env.fails(
        &["models", "pull", "test/Nothing-Here:Q4_K_M"],
        None,
        &["test/Nothing-Here", "not found on the Hub"],
    );
    env.fails(
        &["models", "pull", "../etc:Q4"],
        None,
        &["not a Hugging Face model name"],
    );
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:../../x"],
        None,
        &["not a Hugging Face model name"],
    );

    // A safetensors repository installs as a folder: config, tokenizer and weights, not the README.
    let m = env.ok_json(&["models", "pull", "test/Folder", "--json"]);
    assert_eq!(m["name"], "test/Folder");
    assert_eq!(m["format"], "safetensors");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["context_length"], 131072);
    let files: Vec<&str> = m["sha256"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(files, ["config.json", "tokenizer.json", "model.safetensors"], "{m}");
    let list = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn the_catalogue_estimates_memory_and_knows_what_is_installed() {
    let (hub, _) = standard_hub();
    let env = Env::new(hub);
    let cat = |mem: &str| -> serde_json::Value {
        let o = env
            .command(&["models", "catalogue", "--context", "8192", "--json"], None)
            .env("FREEZE_ATTN_MEMORY_BYTES", mem)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let entry = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    let v = cat("4000000000");
    for name in [
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
        "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",
    ] {
        assert_eq!(entry(&v, name)["recommended"], true, "{name}");
    }
    let one = entry(&v, "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
    // 16 layers x K and V x 8 KV heads x 64 x 2 bytes x 8,192 tokens.
    assert_eq!(one["kv_bytes"], 16u64 * 2 * 8 * 64 * 2 * 8192);
    assert_eq!(one["fits"], true);
    assert_eq!(one["installed"], false);
    let eight = entry(&v, "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M");
    assert_eq!(eight["kv_bytes"], 32u64 * 2 * 8 * 128 * 2 * 8192);
    assert_eq!(
        eight["fits"], false,
        "4.9 GB of weights and 1 GB of K/V do not fit in 4 GB: {eight}"
    );
    assert_eq!(
        entry(&cat("64000000000"), "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M")["fits"],
        true
    );
    // A catalogue name pulls like any other and then shows as installed.
    env.ok_json(&[
        "models",
        "pull",
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "--json",
    ]);
    assert_eq!(
        entry(&cat("4000000000"), "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")["installed"],
        true
    );
}

#[cfg(unix)]
#[test]
fn a_download_stopped_with_ctrl_c_resumes() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub.clone());
    hub.slow.store(true, Ordering::SeqCst);
    let mut child = env
        .command(&["models", "pull", "test/SmolLM2-GGUF:Q4_1"], None)
        .spawn()
        .unwrap();
    // Wait until at least one 10 MB chunk is committed, then interrupt as a terminal would.
    let t0 = std::time::Instant::now();
    loop {
        let done = hub.range_starts.lock().unwrap().iter().filter(|&&s| s > 0).count();
        if done >= 2 || t0.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "interrupted");
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    hub.slow.store(false, Ordering::SeqCst);
    hub.range_starts.lock().unwrap().clear();
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    let starts = hub.range_starts.lock().unwrap().clone();
    assert!(!starts.contains(&0), "resumed, not restarted: {starts:?}");
    assert_eq!(
        sha256_hex(&std::fs::read(m["path"].as_str().unwrap()).unwrap()),
        sha256_hex(&model)
    );
}

#[cfg(unix)]
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
