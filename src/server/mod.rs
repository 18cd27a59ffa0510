//! `freeze-attn serve`: an OpenAI-compatible HTTP server (axum) whose prompt cache is the state
//! tree. The handlers only parse, call the API through the one [`SessionHost`] and convert;
//! requests run on the engine thread one at a time, in arrival order.
//!
//! Security: loopback only unless a token is set; the token is compared in constant time on
//! every request; request bodies are read up to a limit (bundles up to their own); no endpoint
//! takes a filesystem path; CORS only for an origin given with `--cors`.

mod error;
mod openai;
mod states;

pub use error::ApiError;

use crate::session::host::SessionHost;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Required as `Authorization: Bearer <token>` on every request when set.
    pub token: Option<String>,
    /// An origin allowed to call from a browser.
    pub cors: Option<String>,
    /// Largest JSON body, in bytes.
    pub max_body: usize,
    /// Largest uploaded bundle, in bytes.
    pub max_bundle: u64,
    /// What `--model` named (also accepted as the model's id in requests).
    pub model_alias: Option<String>,
}

impl ServeOptions {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            cors: None,
            max_body: 16 << 20,
            max_bundle: 8 << 30,
            model_alias: None,
        }
    }

    /// Refuses settings that would expose the library: a non-loopback address without a token,
    /// an empty token.
    pub fn check(&self) -> crate::Result<()> {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(crate::Error::Invalid("--token must not be empty".into()));
        }
        if !self.addr.ip().is_loopback() && self.token.is_none() {
            return Err(crate::Error::Invalid(format!(
                "refusing to listen on {} without --token: anyone on the network could read and change the library (use 127.0.0.1, or set a token)",
                self.addr.ip()
            )));
        }
        Ok(())
    }
}

/// What every handler shares.
pub(crate) struct Shared {
    pub host: Arc<SessionHost>,
    pub options: ServeOptions,
}

pub(crate) type AppState = Arc<Shared>;

/// The router, for tests and for embedding (the app serves its own library with it).
pub fn router(host: Arc<SessionHost>, options: ServeOptions) -> Router {
    let cors = options.cors.clone();
    let shared = Arc::new(Shared { host, options });
    let mut app = Router::new()
        .route("/health", get(openai::health))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .merge(states::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared);
    if let Some(origin) = cors {
        if let Ok(origin) = origin.parse::<HeaderValue>() {
            app = app.layer(
                tower_http::cors::CorsLayer::new()
                    .allow_origin(origin)
                    .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                    .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
            );
        }
    }
    app
}

/// Checks the options and binds their address; answers the address bound (port 0 picks one).
async fn bind(options: &ServeOptions) -> crate::Result<(tokio::net::TcpListener, SocketAddr)> {
    options.check()?;
    let cannot = |e: std::io::Error| crate::Error::Invalid(format!("cannot listen on {}: {e}", options.addr));
    let listener = tokio::net::TcpListener::bind(options.addr).await.map_err(cannot)?;
    let addr = listener.local_addr().map_err(cannot)?;
    Ok((listener, addr))
}

/// Binds and serves until `shutdown` resolves; `on_ready` gets the bound address (port 0
/// picks a free port).
pub async fn serve(
    host: Arc<SessionHost>,
    options: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let (listener, addr) = bind(&options).await?;
    on_ready(addr);
    axum::serve(listener, router(host, options))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| crate::Error::Invalid(format!("server stopped: {e}")))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

/// Checks the bearer token (when one is set) in constant time: both sides are hashed first, so
/// neither the comparison nor the length leaks how much of a guess was right.
async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(token) = &s.options.token {
        if req.method() != Method::OPTIONS {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            use sha2::Digest;
            use subtle::ConstantTimeEq;
            let (a, b) = (
                sha2::Sha256::digest(given.as_bytes()),
                sha2::Sha256::digest(token.as_bytes()),
            );
            if !bool::from(a.as_slice().ct_eq(b.as_slice())) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "missing or wrong API key: send `Authorization: Bearer <token>` with the server's --token",
                ));
            }
        }
    }
    Ok(next.run(req).await)
}

/// Reads a request body up to `limit` bytes, refusing a larger one with 413 (before reading it
/// when its declared length already says so).
pub(crate) async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || too_large("request body", limit as u64);
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// The body length the request declares, if it declares one.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The 413 for a `what` over `limit` bytes.
pub(crate) fn too_large(what: &str, limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("the {what} is over the limit of {limit} bytes"),
    )
}

/// Parses a JSON body into `T`, with an OpenAI-shaped 400 naming what is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        ApiError::bad_request("invalid_json", format!("{what}: {e}"))
    })
}

/// A server running in the background of another front end (the app serves its own library
/// while it is open). Dropping it, or [`Serving::stop`], shuts the server down.
pub struct Serving {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Binds `options.addr` and serves `host` on the current tokio runtime.
    pub async fn start(host: Arc<SessionHost>, options: ServeOptions) -> crate::Result<Serving> {
        let (listener, addr) = bind(&options).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(host, options);
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = %e, "the background server stopped");
            }
        });
        tracing::info!(%addr, "serving the library");
        Ok(Serving {
            addr,
            stop: Some(tx),
            task,
        })
    }

    /// Stops accepting requests and waits for the server to finish the ones it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
