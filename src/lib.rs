//! # freeze_attn
//!
//! The Freeze-Attn API: one plain function per user-visible operation. The CLI (`freeze-attn`)
//! and the desktop app only parse, call these, and convert the results.
//!
//! Data flows one way: transport → this API → the engine (`freeze-attn-engine`, everything that
//! touches candle) and the library (`freeze-attn-library`, the SQLite catalogue of states).

pub mod default_model;
pub mod error;
pub mod generate;
pub mod model;
pub mod paths;

pub use error::{Error, Result};
pub use freeze_attn_engine as engine;
pub use freeze_attn_engine::CancelToken;
pub use generate::{generate, GenerateOutput, Observer, Prompt};
pub use model::{open_model, resolve_model};
