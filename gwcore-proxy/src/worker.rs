//! Which serving worker runs on the calling thread (thread-per-core, see
//! [`crate::server::set_workers`]). A leaf module, so that what keeps
//! state per worker (the backend keep-alive pool) does not depend on the
//! server that starts the workers.

thread_local! {
    /// The index of the worker running on this thread; 0 off the workers.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The worker serving on the calling thread, from 1; 0 on any other thread
/// (the runtime that called `Server::reconcile`, an embedding program's).
pub(crate) fn index() -> usize {
    WORKER.with(|w| w.get())
}

/// Marks the calling thread as worker `i` (from 1).
pub(crate) fn set_index(i: usize) {
    WORKER.with(|w| w.set(i));
}
