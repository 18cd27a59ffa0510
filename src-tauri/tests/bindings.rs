//! The committed TypeScript bindings must be what the Rust commands and types generate.
//! Regenerate with `FREEZE_ATTN_WRITE_BINDINGS=1 cargo test -p freeze-attn-app --test bindings`.

#[test]
fn bindings_are_fresh() {
    let generated = freeze_attn_app::bindings::typescript();
    let path = freeze_attn_app::bindings::ui_path();
    if std::env::var_os("FREEZE_ATTN_WRITE_BINDINGS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ui/src/lib/bindings.ts is stale: run FREEZE_ATTN_WRITE_BINDINGS=1 cargo test -p freeze-attn-app --test bindings"
    );
}
