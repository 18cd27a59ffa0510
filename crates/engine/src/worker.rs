//! The engine thread: one dedicated thread owns the model and the live attention state; callers
//! send it closures over a channel and get results back on a oneshot, so the async UI runtime
//! never blocks on the model (kalosm's pattern). Stopping a running job is a [`CancelToken`]
//! shared outside the queue, since the thread is busy with the job.
//!
//! [`CancelToken`]: crate::CancelToken

use std::sync::mpsc;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The engine thread is gone (it panicked or was shut down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the engine thread has stopped")]
pub struct WorkerGone;

pub struct Worker<S> {
    tx: mpsc::Sender<Job<S>>,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<S: 'static> Worker<S> {
    /// Starts the thread; `init` runs on it and builds the state it owns.
    pub fn spawn(name: &str, init: impl FnOnce() -> S + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut state = init();
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })
            .expect("spawn the engine thread");
        Self { tx }
    }

    /// Runs `f` on the engine thread and awaits its result.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut S) -> R + Send + 'static) -> Result<R, WorkerGone> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |s: &mut S| {
                let _ = reply.send(f(s));
            }))
            .map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }

    /// Runs `f` on the engine thread and blocks until it is done (for non-async callers).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, WorkerGone> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |s: &mut S| {
                let _ = reply.send(f(s));
            }))
            .map_err(|_| WorkerGone)?;
        rx.blocking_recv().map_err(|_| WorkerGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_one_thread() {
        let w = Worker::spawn("test-engine", || (Vec::<u32>::new(), std::thread::current().id()));
        for i in 0..5 {
            w.call_blocking(move |s| s.0.push(i)).unwrap();
        }
        let (seen, tid) = w.call_blocking(|s| (s.0.clone(), std::thread::current().id())).unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert_ne!(tid, std::thread::current().id());
        let s = w.call_blocking(|s| s.1).unwrap();
        assert_eq!(s, tid, "the state was built on the engine thread");
    }
}
