//! API errors: what the CLI prints and the app turns into `{ code, message }`.

use freeze_attn_engine::EngineError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Fetch(#[from] crate::default_model::FetchError),
    #[error(transparent)]
    Library(#[from] freeze_attn_library::LibraryError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("no node is named `{0}`")]
    NoNodeNamed(String),
    #[error("{} nodes are named `{name}`: use the id ({})", ids.len(), ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))]
    AmbiguousName { name: String, ids: Vec<i64> },
    /// No session: the model or the library failed to open (`code` is that failure's).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("the engine thread has stopped")]
    EngineStopped,
}

impl Error {
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A stable, machine-readable code for the UI and for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Engine(e) => Self::engine_code(e),
            Error::Fetch(_) => "fetch",
            Error::Library(e) => match e {
                freeze_attn_library::LibraryError::NodeNotFound(_) => "node_not_found",
                freeze_attn_library::LibraryError::NameTaken { .. } => "name_taken",
                freeze_attn_library::LibraryError::NewerDatabase { .. } => "newer_database",
                freeze_attn_library::LibraryError::Unhealthy { .. } => "library_unhealthy",
                freeze_attn_library::LibraryError::InvalidName { .. } => "invalid_name",
                freeze_attn_library::LibraryError::InvalidTag { .. } => "invalid_tag",
                freeze_attn_library::LibraryError::InvalidKind(_) => "invalid",
                freeze_attn_library::LibraryError::ModelMismatch { .. } => "state_model_mismatch",
                freeze_attn_library::LibraryError::BundleBadMagic { .. }
                | freeze_attn_library::LibraryError::BundleVersion { .. }
                | freeze_attn_library::LibraryError::BundleTruncated { .. }
                | freeze_attn_library::LibraryError::BundleTrailingData { .. }
                | freeze_attn_library::LibraryError::BundleTooLarge { .. }
                | freeze_attn_library::LibraryError::BundleChecksum { .. }
                | freeze_attn_library::LibraryError::BundleManifest { .. } => "bad_bundle",
                _ => "library",
            },
            Error::Io { .. } => "io",
            Error::Invalid(_) => "invalid",
            Error::NoNodeNamed(_) => "node_not_found",
            Error::AmbiguousName { .. } => "ambiguous_name",
            Error::Unavailable { code, .. } => code,
            Error::EngineStopped => "engine_stopped",
        }
    }

    /// The code of an engine error (also for callers that hold one outside an [`Error`]).
    pub fn engine_code(e: &EngineError) -> &'static str {
        match e {
            EngineError::Io { .. } | EngineError::Write { .. } => "io",
            EngineError::NotAModel { .. } => "not_a_model",
            EngineError::Truncated { .. } => "corrupted_file",
            EngineError::UnsupportedArchitecture { .. } => "unsupported_architecture",
            EngineError::UnsupportedTensorType { .. } => "unsupported_tensor_type",
            EngineError::BadMetadata { .. } | EngineError::MissingTensor { .. } | EngineError::TensorShape { .. } => {
                "bad_model"
            }
            EngineError::VocabMismatch { .. } => "vocab_mismatch",
            EngineError::Tokenizer(_) | EngineError::UnsupportedTokenizer { .. } => "tokenizer",
            EngineError::Template(_) | EngineError::NoChatTemplate => "chat_template",
            EngineError::ContextOverflow { .. } => "context_overflow",
            EngineError::OutOfMemory { .. } => "out_of_memory",
            EngineError::BadToken { .. } => "bad_token",
            EngineError::BadSampling(_) => "bad_sampling",
            EngineError::Device(..) => "device",
            EngineError::Cancelled => "cancelled",
            EngineError::StateModelMismatch { .. } => "state_model_mismatch",
            EngineError::State(e) => e.code(),
            EngineError::Invalid(_) => "invalid",
            EngineError::Candle(_) => "compute",
        }
    }
}
