//! Where model inference may run: on threads a service started for it, never on a tokio worker.
//!
//! A forward pass (the understanding model: 100 ms to seconds on a CPU; Silero: a fraction of a
//! millisecond, 31 times a second per call) on a worker thread stalls every task scheduled there,
//! the 20 ms RTP tickers of other calls included. Services mark their threads with
//! [`mark_this_thread`] (or run one job marked, [`marked`]); the engines call
//! [`assert_off_runtime`], which panics in debug builds when inference is about to run on a thread
//! that belongs to a tokio runtime and is not marked. Every debug test that drives a call (the
//! end-to-end suite runs a debug server) therefore proves the rule.

use std::cell::Cell;

thread_local! {
    static INFERENCE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one that runs model inference (a service's worker thread).
pub fn mark_this_thread() {
    INFERENCE_THREAD.with(|m| m.set(true));
}

/// Runs `job` with the current thread marked (for a `spawn_blocking` closure: the blocking pool
/// lives inside the runtime, but its threads are not the workers that poll tasks).
pub fn marked<R>(job: impl FnOnce() -> R) -> R {
    let before = INFERENCE_THREAD.with(|m| m.replace(true));
    let result = job();
    INFERENCE_THREAD.with(|m| m.set(before));
    result
}

/// Whether inference may run here: a marked thread, or one outside any tokio runtime (a CLI
/// tool's main thread, a unit test).
pub fn allowed_here() -> bool {
    INFERENCE_THREAD.with(|m| m.get()) || tokio::runtime::Handle::try_current().is_err()
}

/// Panics in debug builds when `what` (a model) is about to run on an async runtime's thread.
#[track_caller]
pub fn assert_off_runtime(what: &'static str) {
    debug_assert!(
        allowed_here(),
        "{what}: model inference on an async runtime thread (run it on a service's worker thread)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_inference_is_allowed() {
        assert!(allowed_here());
    }

    #[test]
    fn a_runtime_worker_is_refused_and_a_marked_thread_allowed() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let on_worker = rt.block_on(async { tokio::spawn(async { allowed_here() }).await });
        assert!(
            !on_worker.unwrap(),
            "a worker thread must not run inference"
        );
        let in_blocking_marked = rt
            .block_on(async { tokio::task::spawn_blocking(|| marked(allowed_here)).await })
            .unwrap();
        assert!(in_blocking_marked);
        let service = std::thread::spawn(|| {
            mark_this_thread();
            allowed_here()
        });
        assert!(service.join().unwrap());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "model inference on an async runtime thread")]
    fn the_assertion_fires_on_a_worker() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { assert_off_runtime("test model") });
    }
}
