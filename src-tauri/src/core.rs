//! The app's side of the engine thread: the [`Session`] lives on one dedicated thread
//! ([`Worker`]); commands send it closures. A cancel flag and the last status are kept outside
//! the thread, so `stop` and `status` answer while a job runs.

use crate::dto::{ApiError, AppStatus, Sampling};
use freeze_attn::engine::worker::Worker;
use freeze_attn::engine::{CancelToken, DeviceChoice};
use freeze_attn::session::Session;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the engine thread owns.
pub struct Core {
    pub session: Option<Session>,
    /// Why there is no session (the model or the library failed to open).
    pub error: Option<ApiError>,
    pub sampling: Sampling,
}

impl Core {
    fn start(cancel: CancelToken) -> Self {
        let opened = (|| -> freeze_attn::Result<Session> {
            let model_spec = std::env::var("FREEZE_ATTN_MODEL").unwrap_or_else(|_| "default".into());
            let device: DeviceChoice = std::env::var("FREEZE_ATTN_DEVICE")
                .unwrap_or_else(|_| "auto".into())
                .parse()?;
            let model = freeze_attn::open_model(&model_spec, device)?;
            let library = freeze_attn::tree::open_library()?;
            let mut s = Session::new(model, library)?;
            s.cancel = cancel;
            Ok(s)
        })();
        match opened {
            Ok(s) => Self {
                session: Some(s),
                error: None,
                sampling: Sampling::default(),
            },
            Err(e) => Self {
                session: None,
                error: Some(e.into()),
                sampling: Sampling::default(),
            },
        }
    }

    fn status(&self) -> Option<AppStatus> {
        let s = self.session.as_ref()?;
        Some(AppStatus {
            model: s.model.info.clone(),
            live: s.live(),
            sampling: self.sampling.clone(),
            busy: false,
        })
    }

    pub fn session(&mut self) -> Result<&mut Session, ApiError> {
        match &mut self.session {
            Some(s) => Ok(s),
            None => Err(self
                .error
                .clone()
                .unwrap_or_else(|| ApiError::new("no_model", "no model is loaded"))),
        }
    }
}

pub struct AppState {
    worker: Worker<Core>,
    pub cancel: CancelToken,
    busy: Arc<AtomicBool>,
    status: Mutex<Option<AppStatus>>,
}

impl AppState {
    pub fn start() -> Self {
        let cancel = CancelToken::new();
        let c = cancel.clone();
        Self {
            worker: Worker::spawn("freeze-attn-engine", move || Core::start(c)),
            cancel,
            busy: Arc::default(),
            status: Mutex::new(None),
        }
    }

    /// Runs `f` on the engine thread; refreshes the cached status afterwards.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.busy.store(true, Ordering::SeqCst);
        let out = self
            .worker
            .call(move |core| {
                let r = f(core);
                (r, core.status())
            })
            .await;
        self.busy.store(false, Ordering::SeqCst);
        let (r, status) = out?;
        if let Some(s) = status {
            *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
        r
    }

    /// Runs `f` with the session (an error when no model could be loaded).
    pub async fn with_session<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session, &Sampling) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.run(move |core| {
            let sampling = core.sampling.clone();
            f(core.session()?, &sampling)
        })
        .await
    }

    /// The status without waiting for a running job.
    pub async fn status(&self) -> Result<AppStatus, ApiError> {
        if self.busy.load(Ordering::SeqCst) {
            if let Some(mut s) = self.status.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                s.busy = true;
                return Ok(s);
            }
        }
        self.run(|core| {
            core.session()?;
            core.status()
                .ok_or_else(|| ApiError::new("no_model", "no model is loaded"))
        })
        .await
    }
}
