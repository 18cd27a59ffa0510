//! Diagnostics for every front end: `tracing` spans at the API boundary (operation, node, tokens)
//! and in the engine's load, prefill, generation and state reads and writes. Off by default;
//! `RUST_LOG` turns them on, written to stderr with each span's time when it closes, so a slow
//! thaw or a failed import can be diagnosed from a log:
//!
//! ```text
//! RUST_LOG=freeze_attn=info freeze-attn states import bundle.fa     # API operations
//! RUST_LOG=freeze_attn=debug,freeze_attn_engine=debug freeze-attn …  # and the engine's steps
//! ```

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// Installs the log writer when `RUST_LOG` is set (once; later calls do nothing). A `RUST_LOG`
/// that does not parse is reported on stderr and ignored.
pub fn init_from_env() {
    let Some(spec) = std::env::var_os("RUST_LOG") else {
        return;
    };
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "freeze-attn: RUST_LOG={}: {e}; logging stays off",
                spec.to_string_lossy()
            );
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .try_init();
}
