//! Integration tests of `freeze-attn-library`, through its public API only. Modules mirror
//! `src/`; `crash` kills a writer process, `scale` checks a 10,000-node library.

#[path = "library/common.rs"]
mod common;

#[path = "library/bundle.rs"]
mod bundle;
#[path = "library/crash.rs"]
mod crash;
#[path = "library/delete.rs"]
mod delete;
#[path = "library/gc.rs"]
mod gc;
#[path = "library/library.rs"]
mod library;
#[path = "library/model.rs"]
mod model;
#[path = "library/node_ops.rs"]
mod node_ops;
#[path = "library/scale.rs"]
mod scale;
#[path = "library/schema.rs"]
mod schema;
#[path = "library/search.rs"]
mod search;
#[path = "library/segment_store.rs"]
mod segment_store;
#[path = "library/tree.rs"]
mod tree;
#[path = "library/verify.rs"]
mod verify;
