//! Integration tests of the `freeze_attn` API on the real default model. Modules mirror `src/`.

#[path = "api/support.rs"]
mod support;

#[path = "api/complete.rs"]
mod complete;
#[path = "api/host.rs"]
mod host;
#[path = "api/session.rs"]
mod session;
#[path = "api/state.rs"]
mod state;
#[path = "api/tree.rs"]
mod tree;
