//! # freeze_attn
//!
//! The Freeze-Attn API: one plain function per user-visible operation. The CLI (`freeze-attn`)
//! and the desktop app only parse, call these, and convert the results.
//!
//! Data flows one way: transport → this API → the engine (`freeze-attn-engine`, everything that
//! touches candle) and the library (`freeze-attn-library`, the SQLite catalogue of states).

#![forbid(unsafe_code)]

pub mod bench;
pub mod default_model;
pub mod error;
pub mod export;
pub mod fork;
pub mod freeze;
pub mod generate;
pub mod input;
pub mod live;
pub mod logging;
pub mod model;
pub mod models;
pub mod paths;
pub mod prefix;
pub mod server;
pub mod session;
pub mod state;
pub mod thaw;
pub mod transcript;
pub mod tree;

pub use bench::{bench, run_generation_test};
pub use error::{Error, Result};
pub use freeze_attn_engine as engine;
pub use freeze_attn_engine::{CancelToken, FinishReason, GenerateParams, Grammar, Message, ToolCall};
pub use generate::{generate, json_schema_grammar, GenerateOutput, Observer, Prompt};
pub use live::Live;
pub use model::{open_model, open_model_with_progress, resolve_model};
pub use prefix::{generate_with_prefix, process_prefix, Continuation, PrefixInput};
pub use state::{load_cache_from_disk, load_state, save_cache_to_disk, save_state};
pub use transcript::Transcript;

/// The tree's vocabulary, so that front ends name the library's types through the API only.
pub use freeze_attn_library::{DeleteMode, Deletion, GcReport, Library, NodeId, NodeKind, VerifyReport};
pub use session::host::{HostStatus, SessionHost};
