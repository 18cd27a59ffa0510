//! The session host: the one engine thread every front end (the app, `freeze-attn chat`, a
//! server) drives a [`Session`] through. The session lives on a dedicated thread ([`Worker`]);
//! callers send it jobs and await the result. The cancel flag and the last status live outside
//! the thread, so `cancel` and `status` answer while a job runs.
//!
//! Why one host and not a session per caller: the model's weights and the warm states are large
//! and the CPU kernels use every core, so jobs run one at a time, in arrival order.

use super::{LiveState, Session};
use crate::error::{Error, Result};
use freeze_attn_engine::worker::Worker;
use freeze_attn_engine::{CancelToken, DeviceChoice, GenerateParams, ModelInfo};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a front end shows about the engine without waiting for a running job.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HostStatus {
    pub model: ModelInfo,
    pub live: LiveState,
    /// The generation settings used when a request brings none.
    pub params: GenerateParams,
    /// A job is running on the engine thread.
    pub busy: bool,
}

impl HostStatus {
    fn of(s: &Session) -> Self {
        Self {
            model: s.model.info.clone(),
            live: s.live(),
            params: s.params.clone(),
            busy: false,
        }
    }
}

/// What the engine thread owns: the session, or why there is none.
struct Slot {
    session: Option<Session>,
    /// The error that kept the model or the library from opening (code and message).
    failure: Option<(&'static str, String)>,
}

impl Slot {
    fn session(&mut self) -> Result<&mut Session> {
        match (&mut self.session, &self.failure) {
            (Some(s), _) => Ok(s),
            (None, Some((code, message))) => Err(Error::Unavailable {
                code,
                message: message.clone(),
            }),
            (None, None) => Err(Error::Unavailable {
                code: "no_model",
                message: "no model is loaded".into(),
            }),
        }
    }

    fn status(&self) -> Option<HostStatus> {
        self.session.as_ref().map(HostStatus::of)
    }
}

/// The engine thread and what is kept beside it. Cheap to share behind an `Arc`.
pub struct SessionHost {
    worker: Worker<Slot>,
    cancel: CancelToken,
    busy: Arc<AtomicBool>,
    last: Mutex<Option<HostStatus>>,
}

impl SessionHost {
    /// Starts the engine thread; `open` runs on it and builds the session. When it fails, the
    /// host still runs: every job answers with that failure until [`SessionHost::open_model`]
    /// succeeds.
    pub fn start(open: impl FnOnce() -> Result<Session> + Send + 'static) -> Self {
        let cancel = CancelToken::new();
        let c = cancel.clone();
        let worker = Worker::spawn("freeze-attn-engine", move || match open() {
            Ok(mut s) => {
                s.cancel = c;
                Slot {
                    session: Some(s),
                    failure: None,
                }
            }
            Err(e) => Slot {
                session: None,
                failure: Some((e.code(), e.to_string())),
            },
        });
        Self {
            worker,
            cancel,
            busy: Arc::default(),
            last: Mutex::new(None),
        }
    }

    /// Starts the host on a model named as `--model` names it, and the user's library.
    pub fn open(model: String, device: DeviceChoice) -> Self {
        Self::start(move || Session::open(&model, device))
    }

    /// Runs `f` with the session on the engine thread.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.busy.store(true, Ordering::SeqCst);
        let out = self
            .worker
            .call(move |slot| {
                let r = slot.session().and_then(f);
                (r, slot.status())
            })
            .await;
        self.finish(out)
    }

    /// [`SessionHost::run`] for callers without an async runtime (the terminal chat).
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.busy.store(true, Ordering::SeqCst);
        let out = self.worker.call_blocking(move |slot| {
            let r = slot.session().and_then(f);
            (r, slot.status())
        });
        self.finish(out)
    }

    fn finish<R>(
        &self,
        out: std::result::Result<(Result<R>, Option<HostStatus>), freeze_attn_engine::worker::WorkerGone>,
    ) -> Result<R> {
        self.busy.store(false, Ordering::SeqCst);
        let (r, status) = out.map_err(|_| Error::EngineStopped)?;
        if let Some(s) = status {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
        r
    }

    /// Stops a running generation or document processing (the job ends with what it has).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The status; while a job runs, the one from before it with `busy` set.
    pub async fn status(&self) -> Result<HostStatus> {
        if self.busy.load(Ordering::SeqCst) {
            if let Some(mut s) = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                s.busy = true;
                return Ok(s);
            }
        }
        self.run(|s| Ok(HostStatus::of(s))).await
    }

    /// Loads another model (a path, a folder or `default`); the live state starts empty.
    pub async fn open_model(&self, spec: String, device: DeviceChoice) -> Result<ModelInfo> {
        self.open_model_with_progress(spec, device, |_| {}).await
    }

    /// [`SessionHost::open_model`], reporting the bytes of weights read as they load (a
    /// multi-gigabyte model takes seconds: the app shows a progress bar).
    pub async fn open_model_with_progress(
        &self,
        spec: String,
        device: DeviceChoice,
        mut progress: impl FnMut(freeze_attn_engine::LoadProgress) + Send + 'static,
    ) -> Result<ModelInfo> {
        let cancel = self.cancel.clone();
        self.busy.store(true, Ordering::SeqCst);
        let out = self
            .worker
            .call(move |slot| {
                let r = (|| {
                    let model = crate::open_model_with_progress(&spec, device, &mut progress)?;
                    let info = model.info.clone();
                    match &mut slot.session {
                        Some(s) => s.set_model(model)?,
                        None => {
                            let mut s = Session::new(model, crate::tree::open_library()?)?;
                            s.cancel = cancel;
                            slot.session = Some(s);
                            slot.failure = None;
                        }
                    }
                    Ok(info)
                })();
                (r, slot.status())
            })
            .await;
        self.finish(out)
    }

    /// Replaces the default generation settings (checked first).
    pub async fn set_params(&self, params: GenerateParams) -> Result<GenerateParams> {
        self.run(move |s| {
            params.validate()?;
            s.params = params.clone();
            Ok(params)
        })
        .await
    }
}
