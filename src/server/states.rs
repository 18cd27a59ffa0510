//! `/v1/states`: the state tree over HTTP (an extension of the OpenAI API). Nodes are named by
//! id or by unique name; nothing here takes a filesystem path (export streams the bundle back,
//! import reads the uploaded bytes into the library's own scratch folder).

use super::{parse_json, read_body, ApiError, AppState};
use crate::fork::ForkPoint;
use crate::prefix::PrefixInput;
use crate::{CancelToken, DeleteMode, Message};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/states", get(list).post(create))
        .route("/v1/states/import", post(import))
        .route("/v1/states/{node}", get(show).patch(edit).delete(remove))
        .route("/v1/states/{node}/fork", post(fork))
        .route("/v1/states/{node}/tags", post(add_tag))
        .route("/v1/states/{node}/tags/{tag}", axum::routing::delete(remove_tag))
        .route("/v1/states/{node}/export", get(export))
}

#[derive(Deserialize)]
struct ListQuery {
    /// Include the server's cache nodes.
    #[serde(default)]
    all: bool,
}

async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let nodes = s
        .host
        .run(move |session| crate::tree::list_tree_of(&session.library, Some(&session.model), q.all))
        .await?;
    Ok(Json(json!({ "object": "list", "data": nodes })))
}

async fn show(State(s): State<AppState>, Path(node): Path<String>) -> Result<Json<Value>, ApiError> {
    let detail = s
        .host
        .run(move |session| {
            let id = crate::tree::resolve(&session.library, &node)?;
            crate::tree::show(&session.library, id, Some(&session.model))
        })
        .await?;
    Ok(Json(json!(detail)))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    text: Option<String>,
    messages: Option<Vec<MessageBody>>,
    parent: Option<String>,
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
struct MessageBody {
    role: String,
    content: String,
}

/// Processes a text or a priming conversation into a new node; with `stream`, progress comes as
/// server-sent events `{"done", "total"}` and the last event is the node.
async fn create(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let b: CreateBody = parse_json(&bytes)?;
    let input = match (b.text, b.messages) {
        (Some(t), None) => PrefixInput::Text(t),
        (None, Some(m)) => {
            for msg in &m {
                if !matches!(msg.role.as_str(), "system" | "user" | "assistant") {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        format!("unsupported message role `{}`", msg.role),
                    ));
                }
            }
            PrefixInput::Chat(m.into_iter().map(|m| Message::new(m.role, m.content)).collect())
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give either `text` or `messages`",
            ))
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Value, ApiError>>();
    let cancel = CancelToken::new();
    let job_cancel = cancel.clone();
    let host = s.host.clone();
    let (name, parent, stream) = (b.name, b.parent, b.stream);
    let progress_tx = tx.clone();
    tokio::spawn(async move {
        let out = host
            .run(move |session| {
                let parent = parent.map(|p| crate::tree::resolve(&session.library, &p)).transpose()?;
                let c = job_cancel.clone();
                let id = session.create_state(&name, &input, parent, &job_cancel, &mut |p| {
                    if progress_tx
                        .send(Ok(json!({ "done": p.done, "total": p.total })))
                        .is_err()
                    {
                        c.cancel();
                    }
                })?;
                session.node_view(id)
            })
            .await;
        let _ = tx.send(out.map(|v| json!({ "node": v })).map_err(ApiError::from));
    });
    let guard = CancelGuard(cancel);
    if !stream {
        loop {
            match rx.recv().await {
                Some(Ok(v)) if v.get("node").is_some() => {
                    drop(guard);
                    return Ok((StatusCode::CREATED, Json(v["node"].clone())).into_response());
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "engine_stopped",
                        "the engine stopped",
                    ))
                }
            }
        }
    }
    let events = futures_util::stream::unfold((rx, guard, false), |(mut rx, guard, done)| async move {
        if done {
            return None;
        }
        let (ev, done) = match rx.recv().await {
            Some(Ok(v)) => {
                let last = v.get("node").is_some();
                (SseEvent::default().data(v.to_string()), last)
            }
            Some(Err(e)) => (
                SseEvent::default().data(json!({ "error": { "message": e.message, "code": e.code } }).to_string()),
                true,
            ),
            None => return None,
        };
        Some((Ok::<_, Infallible>(ev), (rx, guard, done)))
    });
    Ok(Sse::new(events).into_response())
}

/// Cancels a job whose client went away.
struct CancelGuard(CancelToken);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[derive(Deserialize)]
struct ForkBody {
    name: String,
    at: Option<ForkPoint>,
}

async fn fork(
    State(s): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let b: ForkBody = parse_json(&bytes)?;
    let v = s
        .host
        .run(move |session| {
            let id = crate::tree::resolve(&session.library, &node)?;
            let child = crate::fork::fork(&session.library, &session.model, id, b.at, &b.name)?;
            session.node_view(child)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
struct EditBody {
    name: Option<String>,
    notes: Option<String>,
    pinned: Option<bool>,
}

async fn edit(
    State(s): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let b: EditBody = parse_json(&bytes)?;
    edit_node(&s, node, move |lib, id| {
        if let Some(name) = &b.name {
            crate::tree::rename(lib, id, name)?;
        }
        if let Some(notes) = &b.notes {
            crate::tree::annotate(lib, id, notes)?;
        }
        if let Some(p) = b.pinned {
            crate::tree::pin(lib, id, p)?;
        }
        Ok(())
    })
    .await
}

/// Applies `change` to the node named `node` on the engine thread; answers with the node as it
/// now is.
async fn edit_node(
    s: &AppState,
    node: String,
    change: impl FnOnce(&crate::Library, crate::NodeId) -> crate::Result<()> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let v = s
        .host
        .run(move |session| {
            let id = crate::tree::resolve(&session.library, &node)?;
            change(&session.library, id)?;
            session.node_view(id)
        })
        .await?;
    Ok(Json(json!(v)))
}

#[derive(Deserialize)]
struct TagBody {
    tag: String,
}

async fn add_tag(
    State(s): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let b: TagBody = parse_json(&bytes)?;
    edit_node(&s, node, move |lib, id| crate::tree::tag(lib, id, &b.tag).map(drop)).await
}

async fn remove_tag(
    State(s): State<AppState>,
    Path((node, tag)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    edit_node(&s, node, move |lib, id| crate::tree::untag(lib, id, &tag).map(drop)).await
}

#[derive(Deserialize)]
struct DeleteQuery {
    mode: Option<String>,
}

async fn remove(
    State(s): State<AppState>,
    Path(node): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let mode = match q.mode.as_deref() {
        None | Some("reparent") => DeleteMode::Reparent,
        Some("subtree") => DeleteMode::Subtree,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("mode must be `reparent` or `subtree`, not `{other}`"),
            )
            .param("mode"))
        }
    };
    let d = s
        .host
        .run(move |session| {
            let id = crate::tree::resolve(&session.library, &node)?;
            let d = crate::tree::delete(&session.library, id, mode)?;
            for gone in &d.deleted {
                session.forget(*gone);
            }
            Ok(d)
        })
        .await?;
    Ok(Json(json!(d)))
}

/// The node as a bundle file, streamed from a temporary file in the library's scratch folder
/// (removed once open: the open handle keeps the bytes until the download ends).
async fn export(State(s): State<AppState>, Path(node): Path<String>) -> Result<Response, ApiError> {
    let (file, name, len) = s
        .host
        .run(move |session| {
            let lib = &session.library;
            let id = crate::tree::resolve(lib, &node)?;
            let name = lib.node(id)?.name;
            let dir = lib.import_scratch_dir();
            std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
            let path = dir.join(format!("export-{}-{}.bundle", std::process::id(), id.0));
            let result = crate::export::export_node(lib, id, &path).and_then(|len| {
                let f = std::fs::File::open(&path).map_err(|e| crate::Error::io(&path, e))?;
                Ok((f, len))
            });
            let _ = std::fs::remove_file(&path);
            let (f, len) = result?;
            Ok((f, name, len))
        })
        .await?;
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let filename: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " -_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}.bundle\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ImportQuery {
    parent: Option<String>,
    name: Option<String>,
}

/// A bundle uploaded as the request body (up to the server's bundle limit), written to the
/// library's scratch folder and imported: checked completely before anything is catalogued.
async fn import(
    State(s): State<AppState>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = s.options.max_bundle;
    let too_large = || super::too_large("bundle", limit);
    if super::declared_length(&headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let dir = s.host.run(|session| Ok(session.library.import_scratch_dir())).await?;
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("cannot create the scratch folder: {e}"),
        )
    })?;
    let path = dir.join(format!(
        "upload-{}-{}.bundle",
        std::process::id(),
        super::openai::unique()
    ));
    let written = receive(body, &path, limit).await;
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.unwrap_or_else(too_large));
        }
    };
    if written == 0 {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ApiError::bad_request(
            "bad_bundle",
            "the request body is empty: upload a bundle",
        ));
    }
    let upload = path.clone();
    let out = s
        .host
        .run(move |session| {
            let parent = q
                .parent
                .map(|p| crate::tree::resolve(&session.library, &p))
                .transpose()?;
            let id =
                crate::export::import_bundle(&session.library, &session.model, &upload, parent, q.name.as_deref())?;
            session.node_view(id)
        })
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    match out {
        Ok(v) => Ok((StatusCode::CREATED, Json(v)).into_response()),
        Err(e) => {
            let mut e = ApiError::from(e);
            e.message = e.message.replace(&path.display().to_string(), "the uploaded bundle");
            Err(e)
        }
    }
}

/// Writes the body to `path`; `Err(None)` when it passes `limit` bytes.
async fn receive(body: Body, path: &std::path::Path, limit: u64) -> Result<u64, Option<ApiError>> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| {
        Some(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("cannot store the upload: {e}"),
        ))
    };
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Some(ApiError::bad_request(
                "bad_request",
                format!("reading the upload failed: {e}"),
            ))
        })?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(None);
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(written)
}
