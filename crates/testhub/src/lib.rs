//! A stand-in for the Hugging Face Hub: a real HTTP server on the loopback that answers the
//! endpoints the hub client uses (model info, `resolve/{revision}/{file}` with a redirect to a
//! file server on another origin, `ETag`, `x-linked-etag` (SHA-256), `x-repo-commit`, range
//! requests, 401 for a gated repository without the right token, 404), over real bytes, with
//! switches to drop a connection, corrupt the content or serve slowly.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The token a gated repository accepts.
pub const GOOD_TOKEN: &str = "hf_good_token";

pub struct HubFile {
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    /// Kept in the hub's large-file storage (served by redirect, SHA-256 as ETag).
    pub lfs: bool,
}

pub struct HubRepo {
    /// Answers 401 without the right token.
    pub gated: bool,
    pub files: Vec<(String, HubFile)>,
}

#[derive(Default)]
pub struct Hub {
    pub repos: HashMap<String, HubRepo>,
    pub port: AtomicU64,
    /// The file server's port (another origin, as the hub's file servers are).
    pub cdn_port: AtomicU64,
    /// Drop the connection halfway through the first file response whose range starts at or
    /// after this offset (0: never).
    pub cut_at: AtomicU64,
    /// Flip a byte in the file content served (the SHA-256 sent stays the true one).
    pub corrupt: AtomicBool,
    /// Milliseconds to wait before each 256 KiB of file content (0: full speed), so that a
    /// download can be watched or interrupted midway (6 ms: about 40 MB/s).
    pub slow_ms: AtomicU64,
    /// The start offsets of the ranged file requests, in order.
    pub range_starts: Mutex<Vec<u64>>,
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A file of `bytes`; `lfs`: kept in large-file storage (served by redirect, SHA-256 as ETag).
pub fn file(bytes: Vec<u8>, lfs: bool) -> HubFile {
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
    let slow = hub.slow_ms.load(Ordering::SeqCst);
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
    if cut == 0 && slow == 0 {
        return b.body(Body::from(body)).unwrap();
    }
    // Streamed in pieces: cut short (the connection drops) or slowly.
    let stream = async_stream(body, if cut > 0 { Some(cut as usize) } else { None }, slow);
    b.body(Body::from_stream(stream)).unwrap()
}

fn async_stream(
    body: Vec<u8>,
    cut: Option<usize>,
    slow_ms: u64,
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
        if slow_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(slow_ms)).await;
        }
        let n = p.len();
        Some((Ok(p), (it, sent + n)))
    })
}

/// Starts the stand-in hub on a free loopback port (and its file server on another), serving
/// `repos`, on a thread of its own for the rest of the process.
pub fn start_hub(repos: HashMap<String, HubRepo>) -> Arc<Hub> {
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

impl Hub {
    /// The endpoint to give the client (`HF_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.load(Ordering::SeqCst))
    }
}
