//! Why a state file, or a chain of them, was refused. One variant per kind of failure, each
//! naming the file, so that the app and the CLI can tell a damaged file from a missing parent
//! or another model's state (`StateModelMismatch` lives in `EngineError`: it is about the model).

/// A state-file failure. `file` is the path as shown to people.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not a segment at all: no safetensors header, another format, or cut short.
    #[error("{file}: not a state file: {detail}")]
    NotAStateFile { file: String, detail: String },
    #[error(
        "{file}: state format version {found} is not supported by this build (it reads versions {oldest} to {newest})"
    )]
    Version {
        file: String,
        found: u32,
        oldest: u32,
        newest: u32,
    },
    /// A header field is missing or malformed, or the fields contradict each other.
    #[error("{file}: {detail}")]
    Header { file: String, detail: String },
    #[error("{file}: unknown stored dtype `{found}` (expected f16, bf16, f32 or q8)")]
    DType { file: String, found: String },
    /// The tensors are not what the header declares (count, names, dtypes, shapes).
    #[error("{file}: {detail}")]
    Layout { file: String, detail: String },
    #[error("{file}: checksum mismatch (content {content}, header {header}): the file is corrupted")]
    Checksum {
        file: String,
        content: String,
        header: String,
    },
    /// The K/V geometry (layers × KV heads × head dimension) is not the model's.
    #[error("{file}: K/V shape {found} does not fit the model's {expected}")]
    Shape {
        file: String,
        found: String,
        expected: String,
    },
    #[error("{file}: missing parent segment {parent} ({detail})")]
    MissingParent {
        file: String,
        parent: String,
        detail: String,
    },
    #[error("{file} does not continue {previous}: {detail}")]
    BrokenChain {
        file: String,
        previous: String,
        detail: String,
    },
    #[error("disk full while writing {file}: nothing was saved")]
    DiskFull { file: String },
}

impl StateError {
    /// A stable, machine-readable name for the UI, scripts and exit codes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAStateFile { .. } => "not_a_state_file",
            Self::Version { .. } => "state_version",
            Self::Header { .. } | Self::Layout { .. } => "state_corrupted",
            Self::DType { .. } => "state_dtype",
            Self::Checksum { .. } => "state_checksum",
            Self::Shape { .. } => "state_shape",
            Self::MissingParent { .. } => "state_missing_parent",
            Self::BrokenChain { .. } => "state_broken_chain",
            Self::DiskFull { .. } => "disk_full",
        }
    }
}
