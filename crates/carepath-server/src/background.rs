//! The thread that background work runs on.
//!
//! Outbox consumers, the notice dispatcher and the precertification sweeps run on a
//! single-threaded runtime of their own, on an OS thread at a lower scheduling
//! priority than the threads that answer calls. When both have work, the kernel runs
//! calls first; a notice being rendered cannot hold a call's worker thread for the
//! length of its poll. Background work still gets the processor whenever calls leave
//! it idle, and [`crate::overload::Pacing`] still rests it while calls are in
//! progress.
//!
//! Sockets are driven by the runtime that opened them, so background work must use
//! connections opened on this thread ([`carepath_store::Store::for_background`]):
//! a call never waits for this thread to learn that its query was answered.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How much lower than the calls' threads the background thread runs: `nice` 10 gets
/// about a tenth of the processor time of a thread at 0 when both are runnable.
pub const BACKGROUND_NICENESS: i32 = 10;

/// A running background thread. Dropping it (or [`BackgroundThread::stop`]) ends
/// the runtime once the tasks spawned on it have been awaited.
#[derive(Debug)]
pub struct BackgroundThread {
    handle: Handle,
    release: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl BackgroundThread {
    /// Starts the thread and its runtime, `niceness` steps below the caller.
    pub async fn start(niceness: i32) -> std::io::Result<Self> {
        let (started, handle) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("carepath-background".into())
            .spawn(move || {
                lower_priority(niceness);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("carepath-background-blocking")
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                // Runs the spawned tasks until released (or the owner is dropped).
                runtime.block_on(async {
                    let _ = released.await;
                });
            })?;
        let handle = handle
            .await
            .map_err(|_| std::io::Error::other("the background thread ended at start"))??;
        Ok(BackgroundThread {
            handle,
            release,
            thread,
        })
    }

    /// Runs `task` on the background thread; the handle can be awaited from anywhere.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Ends the runtime and waits for the thread. Await the spawned tasks first: any
    /// still running are dropped.
    pub async fn stop(self) {
        let _ = self.release.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Raises the calling thread's nice value by `niceness`. On Linux the nice value is a
/// per-thread attribute (`setpriority(2)`, NOTES), and threads this one starts
/// (the runtime's blocking pool) inherit it. Failure only costs the priority.
fn lower_priority(niceness: i32) {
    let thread = rustix::thread::gettid();
    let result = rustix::process::getpriority_process(Some(thread))
        .and_then(|current| rustix::process::setpriority_process(Some(thread), current + niceness));
    if let Err(e) = result {
        tracing::warn!(error = %e, "background thread keeps the calls' priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_background_thread_at_a_lower_priority() {
        let before = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("own priority");
        let background = BackgroundThread::start(BACKGROUND_NICENESS)
            .await
            .expect("starts");
        let (name, priority) = background
            .spawn(async {
                (
                    std::thread::current().name().map(str::to_owned),
                    rustix::process::getpriority_process(Some(rustix::thread::gettid())),
                )
            })
            .await
            .expect("task runs");
        assert_eq!(name.as_deref(), Some("carepath-background"));
        let priority = priority.expect("background priority");
        // Already at the lowest priority (19), a thread cannot go lower.
        assert_eq!(priority, (before + BACKGROUND_NICENESS).min(19));
        assert_eq!(
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            before,
            "the caller's own priority is unchanged"
        );
        background.stop().await;
    }

    #[tokio::test]
    async fn a_stopped_thread_runs_nothing_more() {
        let background = BackgroundThread::start(0).await.expect("starts");
        let handle = background.handle.clone();
        assert_eq!(background.spawn(async { 1 }).await.expect("runs"), 1);
        background.stop().await;
        let err = handle
            .spawn(async { 2 })
            .await
            .expect_err("the runtime is gone");
        assert!(err.is_cancelled(), "{err}");
    }
}
