//! The CPU priority of the threads that derive from committed changes (the change
//! feed, the webhook store and webhook delivery, the search indexer and the indexing
//! threads it starts): under a burst they yield the CPU to the shards and HTTP workers,
//! fall behind, and catch up after.

/// Niceness of a background thread.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (Linux: a thread's
/// own nice value). Failure only costs fairness, so it is logged and ignored.
pub(crate) fn run_in_background() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
        tracing::debug!(error = %e, "cannot lower a background thread's priority");
    }
}
