//! Integration tests of the engine on the real default model and on hand-made model files.
//! Modules mirror `src/`. Model files come from `scripts/fetch-test-assets` (cached); reference
//! outputs in `tests/fixtures/` were made by llama.cpp and transformers (`scripts/reference/`).

#[path = "engine/support.rs"]
mod support;

#[path = "engine/chat.rs"]
mod chat;
#[path = "engine/generate.rs"]
mod generate;
#[path = "engine/generic.rs"]
mod generic;
#[path = "engine/hf.rs"]
mod hf;
#[path = "engine/kv.rs"]
mod kv;
#[path = "engine/loader.rs"]
mod loader;
#[path = "engine/model.rs"]
mod model;
#[path = "engine/tokenizer.rs"]
mod tokenizer;
