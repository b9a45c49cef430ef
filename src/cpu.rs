//! CPU work kept off the async runtime, so a long parse or computation never stalls other
//! requests (or `/healthz`).
//!
//! Which to use:
//! - [`run`] for a request's work that cannot be cancelled (inflating and parsing a body): in
//!   place when it is tiny, else on the compute pool ([`on_compute_pool`]);
//! - [`run_cancellable`] for a computation that checks a [`Cancel`] flag: as [`run`], and the
//!   flag is raised if the caller stops waiting (deadline passed, client gone);
//! - [`on_compute_pool`] underlies both: a job on one of the compute pool's threads (rayon's
//!   global pool), carrying the caller's tracing span; its own parallel parts (a tensor read
//!   in pieces, a product in shares, an answer formatted in pieces) are then the pool's work,
//!   taken by the other threads when they are free, with no other thread handing them over
//!   and sleeping until they are done; a panic in the job becomes a 500;
//! - [`spawn_blocking`] for work that may block on files (loading and reloading tables): on
//!   tokio's blocking pool, with the span; a panic becomes a 500.
//!
//! Threads that parse, compute and encode (the compute pool's, the blocking pool's, through
//! [`lower_priority`]) run at a lower OS priority ([`COMPUTE_NICENESS`]) than the async
//! runtime's, so that under full load the runtime still answers probes, refuses overload from
//! the headers and moves bytes at once, while computations take the CPU it leaves.
//!
//! How many requests compute at once is the admission's to bound (`--compute-permits`, the
//! CPUs by default), not the pool's. A job waits in the pool's queue for a thread, but a
//! thread waiting for a part of its job that another thread took may start a queued job
//! meanwhile (rayon's waits do other work), and returns to its own when that one ends: a
//! large request can then finish as late as the other one did. Jobs on the pool must not
//! block on anything but the pool's work (no locks held across parallel parts, no files).

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use tracing::Span;

use crate::compute::Cancel;
use crate::error::ApiError;

/// How much lower than the runtime's the compute threads' priority is: a niceness of 10
/// gives a thread about a tenth of the CPU share of a default one when both want the CPU
/// (Linux CFS weights 110 against 1024), and needs no privilege.
pub const COMPUTE_NICENESS: i32 = 10;

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// Lowers the calling thread's OS priority by [`COMPUTE_NICENESS`] (up to the lowest, 19),
/// once per thread; for threads that only compute (the blocking pool's, the compute pool's).
/// Best effort, and Linux only (where niceness is per thread): elsewhere, or where the OS
/// refuses, the thread keeps its priority.
pub fn lower_priority() {
    if LOWERED.with(|lowered| lowered.replace(true)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let lowered = rustix::process::getpriority_process(thread)
            .map(|now| (now + COMPUTE_NICENESS).min(19))
            .and_then(|niceness| rustix::process::setpriority_process(thread, niceness));
        if let Err(err) = lowered {
            tracing::debug!(%err, "cannot lower a compute thread's priority");
        }
    }
}

/// Work units (multiply-adds, bytes) below which a job runs on the calling thread.
pub const INLINE_WORK: usize = 1 << 16;

/// Runs `job` on the blocking pool inside the current span; a panic in it becomes a 500.
pub async fn spawn_blocking<F, R>(job: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || {
        lower_priority();
        span.in_scope(job)
    })
    .await
    .map_err(|err| ApiError::Internal(format!("blocking task failed: {err}")))
}

/// Runs `job` on one of the compute pool's threads inside the current span; a panic in it
/// becomes a 500. When the caller stops waiting, a job still queued is dropped unrun; one
/// already running goes on to its end (or to its next [`Cancel`] check) and its result is
/// dropped.
///
/// Compared with a job on the blocking pool that hands its parallel parts to the compute
/// pool and waits: 1.02-1.09x the large JSON matrix requests at two connections (medians of
/// three sets of alternated runs), with less of the machine idle (BENCHMARKS.md, "Where the
/// idle at two connections goes").
pub async fn on_compute_pool<F, R>(job: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    let (done, result) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        if done.is_closed() {
            // The caller stopped waiting while the job was queued: dropping the job releases
            // what it holds (its permit and reservation) without running it.
            return;
        }
        lower_priority();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| span.in_scope(job)));
        // The caller may have stopped waiting: the result is then dropped here.
        let _ = done.send(outcome);
    });
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(ApiError::Internal("a compute job panicked".into())),
        Err(_) => Err(ApiError::Internal(
            "a compute job ended without a result".into(),
        )),
    }
}

/// Runs `job` in place when `work` is below [`INLINE_WORK`], else through
/// [`on_compute_pool`].
pub async fn run<F, R>(work: usize, job: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if work < INLINE_WORK {
        Ok(job())
    } else {
        on_compute_pool(job).await
    }
}

/// Raises its flag when dropped: when the request future is dropped (deadline passed, client
/// gone), the computation it started stops at its next check.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// [`run`] for a computation that checks a [`Cancel`] flag, raised if the caller stops
/// waiting for it.
pub async fn run_cancellable<F, R>(work: usize, job: F) -> Result<R, ApiError>
where
    F: FnOnce(&Cancel) -> R + Send + 'static,
    R: Send + 'static,
{
    let cancel = Cancel::new();
    let _guard = CancelOnDrop(cancel.clone());
    run(work, move || job(&cancel)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn offloaded_jobs_run_at_the_lower_compute_priority() {
        let here = rustix::process::getpriority_process(None).unwrap();
        let niceness = spawn_blocking(|| rustix::process::getpriority_process(None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(niceness, (here + COMPUTE_NICENESS).min(19));
        let after = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(after, here, "the runtime's thread keeps its priority");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn request_jobs_run_on_the_compute_pool_at_the_lower_priority() {
        let here = rustix::process::getpriority_process(None).unwrap();
        let (pool_thread, niceness) = run(usize::MAX, || {
            (
                rayon::current_thread_index(),
                rustix::process::getpriority_process(None),
            )
        })
        .await
        .unwrap();
        assert!(
            pool_thread.is_some(),
            "the job ran outside the compute pool"
        );
        // At least lowered: the pool's threads may have been started by a lowered thread.
        assert!(niceness.unwrap() >= (here + COMPUTE_NICENESS).min(19));
        let tiny = run(0, rayon::current_thread_index).await.unwrap();
        assert_eq!(
            tiny, None,
            "a tiny job runs in place, on the caller's thread"
        );
    }

    #[tokio::test]
    async fn offloaded_jobs_return_their_value() {
        assert_eq!(spawn_blocking(|| 6 * 7).await.unwrap(), 42);
        assert_eq!(run(usize::MAX, || 1).await.unwrap(), 1);
        assert_eq!(run(0, || 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_running_job_whose_caller_stops_waiting_is_cancelled() {
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let mut job = Box::pin(run_cancellable(usize::MAX, move |cancel: &Cancel| {
            let _ = started_tx.send(());
            let start = std::time::Instant::now();
            while !cancel.is_cancelled() && start.elapsed().as_secs() < 10 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = seen_tx.send(cancel.is_cancelled());
        }));
        // Polled until the job runs (a queued one would be dropped unrun, as tested below).
        tokio::select! {
            _ = &mut job => panic!("the job ended before its caller stopped waiting"),
            started = started => started.unwrap(),
        }
        drop(job);
        let seen = tokio::task::spawn_blocking(move || seen_rx.recv())
            .await
            .unwrap();
        assert_eq!(seen, Ok(true));
    }

    #[tokio::test]
    async fn a_queued_job_whose_caller_stopped_waiting_is_dropped_unrun() {
        use std::sync::mpsc::{Sender, channel};
        use std::sync::{Arc, Barrier, Mutex};
        use std::time::Duration;

        // Every thread of the pool held until `release` is dropped.
        let threads = rayon::current_num_threads();
        let all_held = Arc::new(Barrier::new(threads + 1));
        let (release, released) = channel::<()>();
        let released = Arc::new(Mutex::new(released));
        for _ in 0..threads {
            let (all_held, released) = (all_held.clone(), released.clone());
            rayon::spawn(move || {
                all_held.wait();
                let _ = released.lock().map(|released| released.recv());
            });
        }
        all_held.wait();

        /// Sends whether its job ran when the job is dropped, run or not.
        struct Report(Sender<bool>, bool);
        impl Drop for Report {
            fn drop(&mut self) {
                let _ = self.0.send(self.1);
            }
        }
        let (reported, report) = channel();
        let report_run = Report(reported, false);
        let job = move || {
            // Moved whole: a closure using only the field would copy the flag out of it.
            let mut report_run = report_run;
            report_run.1 = true;
        };
        let waited = tokio::time::timeout(Duration::from_millis(20), run(usize::MAX, job)).await;
        assert!(waited.is_err(), "the job ran while the pool was held");
        drop(release);
        let ran = report.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!ran, "a job whose caller had stopped waiting ran");
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_internal_error() {
        let got = spawn_blocking(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(got, Err(ApiError::Internal(_))));
        let got = run(usize::MAX, || -> u8 { panic!("boom") }).await;
        assert!(matches!(got, Err(ApiError::Internal(_))));
        // The pool's thread survives the panic and takes the next job.
        assert_eq!(run(usize::MAX, || 3).await.unwrap(), 3);
    }
}
