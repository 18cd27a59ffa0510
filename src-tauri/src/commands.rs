//! Tauri commands: each parses its arguments, calls the `freeze_attn` API on the engine thread
//! and converts the result. No logic lives here.

use crate::dto::{AltEvent, ApiError, DeleteMode, DeleteReport, GenEvent, ServingStatus};
use freeze_attn::engine::{DeviceChoice, Event, GenerateParams, ModelInfo};
use freeze_attn::fork::ForkPoint;
use freeze_attn::session::{Alternative, LiveState, QuestionView, Reply, ThawReport};
use freeze_attn::tree::{self, NodeView};
use freeze_attn::{HostStatus, Library, NodeId, NodeKind, SessionHost};
use std::path::PathBuf;
use tauri::ipc::Channel;
use tauri::State;

type Res<T> = Result<T, ApiError>;
type AppState = std::sync::Arc<SessionHost>;

fn gen_events(ch: Channel<GenEvent>) -> impl FnMut(Event<'_>) {
    move |e| {
        let _ = ch.send(match e {
            Event::Text(t) => GenEvent::Text { text: t.to_string() },
            Event::Prefill(p) => GenEvent::Progress {
                done: p.done as u32,
                total: p.total as u32,
            },
            // The app does not ask for log-probabilities.
            Event::Logprobs(_) => return,
        });
    }
}

/// An edit of one node's catalogue entry, answered with the node as it now is.
async fn edit_node<T>(
    state: &AppState,
    node: i64,
    edit: impl FnOnce(&Library, NodeId) -> freeze_attn::Result<T> + Send + 'static,
) -> Res<NodeView> {
    Ok(state
        .run(move |s| {
            edit(&s.library, NodeId(node))?;
            s.node_view(NodeId(node))
        })
        .await?)
}

fn library_mode(m: DeleteMode) -> freeze_attn::DeleteMode {
    match m {
        DeleteMode::Reparent => freeze_attn::DeleteMode::Reparent,
        DeleteMode::Subtree => freeze_attn::DeleteMode::Subtree,
    }
}

#[tauri::command]
#[specta::specta]
pub async fn status(state: State<'_, AppState>) -> Res<HostStatus> {
    Ok(state.status().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn open_model(
    state: State<'_, AppState>,
    path: String,
    on_progress: Channel<freeze_attn::engine::LoadProgress>,
) -> Res<ModelInfo> {
    // A few updates a second at most: a progress bar, not a stream of every tensor.
    let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let report = move |p: freeze_attn::engine::LoadProgress| {
        if last.elapsed() >= std::time::Duration::from_millis(100) || p.done_bytes == p.total_bytes {
            last = std::time::Instant::now();
            let _ = on_progress.send(p);
        }
    };
    Ok(state.open_model_with_progress(path, DeviceChoice::Auto, report).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn list_tree(state: State<'_, AppState>) -> Res<Vec<NodeView>> {
    state
        .run(|s| tree::list_tree(&s.library, Some(&s.model)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn search(state: State<'_, AppState>, query: String) -> Res<Vec<NodeView>> {
    state
        .run(move |s| tree::search(&s.library, &query, Some(&s.model)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn start_live(state: State<'_, AppState>, kind: NodeKind, system: Option<String>) -> Res<LiveState> {
    state
        .run(move |s| Ok(s.start_live(kind, system.as_deref())))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn thaw(state: State<'_, AppState>, node: i64) -> Res<ThawReport> {
    state.run(move |s| s.thaw(NodeId(node))).await.map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn chat_send(
    state: State<'_, AppState>,
    message: String,
    params: GenerateParams,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .run(move |s| s.chat_send(&message, &params, &mut gen_events(on_event)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn continue_reply(
    state: State<'_, AppState>,
    params: GenerateParams,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .run(move |s| s.continue_reply(&params, &mut gen_events(on_event)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn continue_text(
    state: State<'_, AppState>,
    text: String,
    params: GenerateParams,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .run(move |s| s.continue_text(&text, &params, &mut gen_events(on_event)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn story_alternatives(
    state: State<'_, AppState>,
    n: u32,
    params: GenerateParams,
    on_event: Channel<AltEvent>,
) -> Res<Vec<Alternative>> {
    state
        .run(move |s| {
            let mut send = |i: usize, t: &str| {
                let _ = on_event.send(AltEvent {
                    index: i as u32,
                    text: t.to_string(),
                });
            };
            s.story_alternatives(n as usize, &params, &mut send)
        })
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn keep_alternative(
    state: State<'_, AppState>,
    index: u32,
    name: String,
    keep_others: bool,
) -> Res<Vec<NodeView>> {
    state
        .run(move |s| s.keep_alternative(index as usize, &name, keep_others))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn freeze(state: State<'_, AppState>, name: String, kind: NodeKind) -> Res<NodeView> {
    state.run(move |s| s.freeze(&name, kind)).await.map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn fork(state: State<'_, AppState>, node: i64, at: Option<ForkPoint>, name: String) -> Res<ThawReport> {
    state
        .run(move |s| s.fork(NodeId(node), at, &name))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn process_document(
    state: State<'_, AppState>,
    path: String,
    name: String,
    on_event: Channel<GenEvent>,
) -> Res<NodeView> {
    state
        .run(move |s| {
            let mut progress = |p: freeze_attn::engine::PrefillProgress| {
                let _ = on_event.send(GenEvent::Progress {
                    done: p.done as u32,
                    total: p.total as u32,
                });
            };
            s.process_document(&PathBuf::from(path), &name, &mut progress)
        })
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn ask(
    state: State<'_, AppState>,
    node: i64,
    question: String,
    params: GenerateParams,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .run(move |s| s.ask(NodeId(node), &question, &params, &mut gen_events(on_event)))
        .await
        .map_err(ApiError::from)
}

/// The questions asked of a document node and their answers, oldest first.
#[tauri::command]
#[specta::specta]
pub async fn document_questions(state: State<'_, AppState>, node: i64) -> Res<Vec<QuestionView>> {
    state
        .run(move |s| s.questions(NodeId(node)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn continue_from_answer(state: State<'_, AppState>) -> Res<LiveState> {
    state.run(|s| s.continue_from_answer()).await.map_err(ApiError::from)
}

/// Stops a running generation or document processing.
#[tauri::command]
#[specta::specta]
pub async fn stop(state: State<'_, AppState>) -> Res<()> {
    state.cancel();
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn rename_node(state: State<'_, AppState>, node: i64, name: String) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| tree::rename(lib, id, &name)).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_notes(state: State<'_, AppState>, node: i64, notes: String) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| tree::annotate(lib, id, &notes)).await
}

#[tauri::command]
#[specta::specta]
pub async fn add_tag(state: State<'_, AppState>, node: i64, tag: String) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| tree::tag(lib, id, &tag)).await
}

#[tauri::command]
#[specta::specta]
pub async fn remove_tag(state: State<'_, AppState>, node: i64, tag: String) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| tree::untag(lib, id, &tag)).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_pinned(state: State<'_, AppState>, node: i64, pinned: bool) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| tree::pin(lib, id, pinned)).await
}

#[tauri::command]
#[specta::specta]
pub async fn move_node(state: State<'_, AppState>, node: i64, parent: Option<i64>) -> Res<NodeView> {
    edit_node(&state, node, move |lib, id| {
        tree::move_node(lib, id, parent.map(NodeId))
    })
    .await
}

fn report(d: freeze_attn::Deletion) -> DeleteReport {
    DeleteReport {
        deleted: d.deleted.len() as u32,
        reparented: d.reparented.len() as u32,
        freed_bytes: d.freed_bytes,
    }
}

#[tauri::command]
#[specta::specta]
pub async fn preview_delete(state: State<'_, AppState>, node: i64, mode: DeleteMode) -> Res<DeleteReport> {
    state
        .run(move |s| {
            Ok(report(tree::preview_delete(
                &s.library,
                NodeId(node),
                library_mode(mode),
            )?))
        })
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_node(state: State<'_, AppState>, node: i64, mode: DeleteMode) -> Res<DeleteReport> {
    state
        .run(move |s| {
            let d = tree::delete(&s.library, NodeId(node), library_mode(mode))?;
            for id in &d.deleted {
                s.forget(*id);
            }
            Ok(report(d))
        })
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn export_node(state: State<'_, AppState>, node: i64, path: String) -> Res<u64> {
    state
        .run(move |s| freeze_attn::export::export_node(&s.library, NodeId(node), &PathBuf::from(path)))
        .await
        .map_err(ApiError::from)
}

/// The node's conversation or text as a Markdown file; returns the bytes written.
#[tauri::command]
#[specta::specta]
pub async fn export_markdown(state: State<'_, AppState>, node: i64, path: String) -> Res<u64> {
    state
        .run(move |s| freeze_attn::export::export_markdown(&s.library, NodeId(node), &PathBuf::from(path)))
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn import_bundle(
    state: State<'_, AppState>,
    path: String,
    parent: Option<i64>,
    name: Option<String>,
) -> Res<NodeView> {
    state
        .run(move |s| {
            let id = freeze_attn::export::import_bundle(
                &s.library,
                &s.model,
                &PathBuf::from(path),
                parent.map(NodeId),
                name.as_deref(),
            )?;
            s.node_view(id)
        })
        .await
        .map_err(ApiError::from)
}

#[tauri::command]
#[specta::specta]
pub async fn set_params(state: State<'_, AppState>, params: GenerateParams) -> Res<GenerateParams> {
    Ok(state.set_params(params).await?)
}

/// The app's background server, when the user turned it on.
#[derive(Default)]
pub struct ServingSlot(tokio::sync::Mutex<Option<freeze_attn::server::Serving>>);

/// Serves the app's own library and model on `127.0.0.1:port` (OpenAI-compatible, the same
/// engine thread: requests from other tools queue with the app's own work), or stops serving.
#[tauri::command]
#[specta::specta]
pub async fn set_serving(
    state: State<'_, AppState>,
    slot: State<'_, ServingSlot>,
    enabled: bool,
    port: u16,
) -> Res<ServingStatus> {
    let mut current = slot.0.lock().await;
    if let Some(s) = current.take() {
        s.stop().await;
    }
    if enabled {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let serving =
            freeze_attn::server::Serving::start(state.inner().clone(), freeze_attn::server::ServeOptions::new(addr))
                .await?;
        *current = Some(serving);
    }
    Ok(serving_status(&current))
}

#[tauri::command]
#[specta::specta]
pub async fn serving(slot: State<'_, ServingSlot>) -> Res<ServingStatus> {
    Ok(serving_status(&*slot.0.lock().await))
}

fn serving_status(s: &Option<freeze_attn::server::Serving>) -> ServingStatus {
    ServingStatus {
        url: s.as_ref().map(|s| format!("http://{}/v1", s.addr)),
    }
}

/// The download in progress, if any (one at a time), so that `cancel_pull` can stop it.
#[derive(Default)]
pub struct PullSlot(std::sync::Mutex<Option<freeze_attn::models::PullCancel>>);

/// The models installed from the Hugging Face Hub.
#[tauri::command]
#[specta::specta]
pub async fn installed_models() -> Res<Vec<freeze_attn::models::InstalledModel>> {
    Ok(blocking(freeze_attn::models::list).await?)
}

/// The models the library has loaded from the user's own paths (and the default model).
#[tauri::command]
#[specta::specta]
pub async fn opened_models(state: State<'_, AppState>) -> Res<Vec<freeze_attn::models::OpenedModel>> {
    state
        .run(|s| freeze_attn::models::opened(&s.library))
        .await
        .map_err(ApiError::from)
}

/// The recommended models, each with its memory estimate at `context` tokens.
#[tauri::command]
#[specta::specta]
pub async fn model_catalogue(context: u32) -> Res<Vec<freeze_attn::models::CatalogueEntry>> {
    Ok(blocking(move || freeze_attn::models::catalogue(u64::from(context))).await?)
}

/// Downloads `name` (`OWNER/NAME:QUANT`, `OWNER/NAME:FILE` or `OWNER/NAME`), reporting progress
/// a few times a second; `cancel_pull` stops it and a later pull resumes it. `trust_hub`: a
/// catalogue file is checked against the Hub's SHA-256 alone (after a `catalogue_mismatch`).
#[tauri::command]
#[specta::specta]
pub async fn pull_model(
    slot: State<'_, PullSlot>,
    name: String,
    trust_hub: bool,
    on_progress: Channel<freeze_attn::models::PullProgress>,
) -> Res<freeze_attn::models::InstalledModel> {
    let cancel = freeze_attn::models::PullCancel::default();
    {
        let mut current = slot.0.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_some() {
            return Err(freeze_attn::Error::Invalid("another download is in progress".into()).into());
        }
        *current = Some(cancel.clone());
    }
    let result = blocking(move || {
        freeze_attn::models::pull(
            &name,
            freeze_attn::models::PullOptions { trust_hub },
            &mut |p| {
                let _ = on_progress.send(p);
            },
            &cancel,
        )
    })
    .await;
    *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    Ok(result?)
}

/// Stops the download in progress (what was downloaded is kept for the next pull).
#[tauri::command]
#[specta::specta]
pub async fn cancel_pull(slot: State<'_, PullSlot>) -> Res<()> {
    if let Some(c) = slot.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        c.cancel();
    }
    Ok(())
}

/// Runs `f` on tokio's blocking pool (downloads and file scans must not hold an async worker).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> freeze_attn::Result<T> + Send + 'static,
) -> freeze_attn::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| freeze_attn::Error::Invalid(format!("the task failed: {e}")))?
}
