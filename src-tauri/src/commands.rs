//! Tauri commands: each parses its arguments, calls the `freeze_attn` API on the engine thread
//! and converts the result. No logic lives here.

use crate::core::AppState;
use crate::dto::{AltEvent, ApiError, AppStatus, DeleteMode, DeleteReport, GenEvent, Sampling};
use freeze_attn::engine::{Event, ModelInfo};
use freeze_attn::fork::ForkPoint;
use freeze_attn::session::{Alternative, LiveState, Reply, ThawReport};
use freeze_attn::tree::{self, NodeView};
use freeze_attn_library::{NodeId, NodeKind};
use std::path::PathBuf;
use tauri::ipc::Channel;
use tauri::State;

type Res<T> = Result<T, ApiError>;

fn gen_events(ch: Channel<GenEvent>) -> impl FnMut(Event<'_>) {
    move |e| {
        let _ = ch.send(match e {
            Event::Text(t) => GenEvent::Text { text: t.to_string() },
            Event::Prefill(p) => GenEvent::Progress {
                done: p.done as u32,
                total: p.total as u32,
            },
        });
    }
}

/// An edit of one node's catalogue entry, answered with the node as it now is.
async fn edit_node<T>(
    state: &AppState,
    node: i64,
    edit: impl FnOnce(&freeze_attn_library::Library, NodeId) -> freeze_attn::Result<T> + Send + 'static,
) -> Res<NodeView> {
    state
        .with_session(move |s, _| {
            edit(&s.library, NodeId(node))?;
            Ok(s.node_view(NodeId(node))?)
        })
        .await
}

fn library_mode(m: DeleteMode) -> freeze_attn_library::DeleteMode {
    match m {
        DeleteMode::Reparent => freeze_attn_library::DeleteMode::Reparent,
        DeleteMode::Subtree => freeze_attn_library::DeleteMode::Subtree,
    }
}

#[tauri::command]
#[specta::specta]
pub async fn status(state: State<'_, AppState>) -> Res<AppStatus> {
    state.status().await
}

#[tauri::command]
#[specta::specta]
pub async fn open_model(state: State<'_, AppState>, path: String) -> Res<ModelInfo> {
    let cancel = state.cancel.clone();
    state
        .run(move |core| {
            let model = freeze_attn::open_model(&path, freeze_attn::engine::DeviceChoice::Auto)?;
            let info = model.info.clone();
            match &mut core.session {
                Some(s) => s.set_model(model)?,
                None => {
                    let mut s = freeze_attn::session::Session::new(model, tree::open_library()?)?;
                    s.cancel = cancel;
                    core.session = Some(s);
                    core.error = None;
                }
            }
            Ok(info)
        })
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn list_tree(state: State<'_, AppState>) -> Res<Vec<NodeView>> {
    state
        .with_session(|s, _| Ok(tree::list_tree(&s.library, Some(&s.model))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn search(state: State<'_, AppState>, query: String) -> Res<Vec<NodeView>> {
    state
        .with_session(move |s, _| Ok(tree::search(&s.library, &query, Some(&s.model))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn new_session(state: State<'_, AppState>, kind: NodeKind, system: Option<String>) -> Res<LiveState> {
    state
        .with_session(move |s, _| Ok(s.new_session(kind, system.as_deref())))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn thaw(state: State<'_, AppState>, node: i64) -> Res<ThawReport> {
    state.with_session(move |s, _| Ok(s.thaw(NodeId(node))?)).await
}

#[tauri::command]
#[specta::specta]
pub async fn chat_send(
    state: State<'_, AppState>,
    message: String,
    sampling: Sampling,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .with_session(move |s, _| Ok(s.chat_send(&message, &sampling.params(), &mut gen_events(on_event))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn continue_reply(state: State<'_, AppState>, sampling: Sampling, on_event: Channel<GenEvent>) -> Res<Reply> {
    state
        .with_session(move |s, _| Ok(s.continue_reply(&sampling.params(), &mut gen_events(on_event))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn continue_text(
    state: State<'_, AppState>,
    text: String,
    sampling: Sampling,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .with_session(move |s, _| Ok(s.continue_text(&text, &sampling.params(), &mut gen_events(on_event))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn story_alternatives(
    state: State<'_, AppState>,
    n: u32,
    sampling: Sampling,
    on_event: Channel<AltEvent>,
) -> Res<Vec<Alternative>> {
    state
        .with_session(move |s, _| {
            let mut send = |i: usize, t: &str| {
                let _ = on_event.send(AltEvent {
                    index: i as u32,
                    text: t.to_string(),
                });
            };
            Ok(s.story_alternatives(n as usize, &sampling.params(), &mut send)?)
        })
        .await
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
        .with_session(move |s, _| Ok(s.keep_alternative(index as usize, &name, keep_others)?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn freeze(state: State<'_, AppState>, name: String, kind: NodeKind) -> Res<NodeView> {
    state.with_session(move |s, _| Ok(s.freeze(&name, kind)?)).await
}

#[tauri::command]
#[specta::specta]
pub async fn fork(state: State<'_, AppState>, node: i64, at: Option<ForkPoint>, name: String) -> Res<ThawReport> {
    state
        .with_session(move |s, _| Ok(s.fork(NodeId(node), at, &name)?))
        .await
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
        .with_session(move |s, _| {
            let mut progress = |p: freeze_attn::engine::PrefillProgress| {
                let _ = on_event.send(GenEvent::Progress {
                    done: p.done as u32,
                    total: p.total as u32,
                });
            };
            Ok(s.process_document(&PathBuf::from(path), &name, &mut progress)?)
        })
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn ask(
    state: State<'_, AppState>,
    node: i64,
    question: String,
    sampling: Sampling,
    on_event: Channel<GenEvent>,
) -> Res<Reply> {
    state
        .with_session(move |s, _| Ok(s.ask(NodeId(node), &question, &sampling.params(), &mut gen_events(on_event))?))
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn continue_from_answer(state: State<'_, AppState>) -> Res<LiveState> {
    state.with_session(|s, _| Ok(s.continue_from_answer()?)).await
}

/// Stops a running generation or document processing.
#[tauri::command]
#[specta::specta]
pub async fn stop(state: State<'_, AppState>) -> Res<()> {
    state.cancel.cancel();
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

fn report(d: freeze_attn_library::Deletion) -> DeleteReport {
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
        .with_session(move |s, _| {
            Ok(report(tree::preview_delete(
                &s.library,
                NodeId(node),
                library_mode(mode),
            )?))
        })
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn delete_node(state: State<'_, AppState>, node: i64, mode: DeleteMode) -> Res<DeleteReport> {
    state
        .with_session(move |s, _| {
            let d = tree::delete(&s.library, NodeId(node), library_mode(mode))?;
            for id in &d.deleted {
                s.forget(*id);
            }
            Ok(report(d))
        })
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn export_node(state: State<'_, AppState>, node: i64, path: String) -> Res<u64> {
    state
        .with_session(move |s, _| {
            Ok(freeze_attn::export::export_node(
                &s.library,
                NodeId(node),
                &PathBuf::from(path),
            )?)
        })
        .await
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
        .with_session(move |s, _| {
            let id = freeze_attn::export::import_bundle(
                &s.library,
                &s.model,
                &PathBuf::from(path),
                parent.map(NodeId),
                name.as_deref(),
            )?;
            Ok(s.node_view(id)?)
        })
        .await
}

#[tauri::command]
#[specta::specta]
pub async fn set_sampling(state: State<'_, AppState>, sampling: Sampling) -> Res<Sampling> {
    state
        .run(move |core| {
            sampling
                .params()
                .sampling
                .validate()
                .map_err(freeze_attn::Error::from)?;
            core.sampling = sampling.clone();
            Ok(sampling)
        })
        .await
}
