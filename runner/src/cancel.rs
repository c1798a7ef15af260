//! The process-wide "stop" request (SIGTERM, SIGINT), for the waits that are not in the async
//! runtime: a sink waiting for a client or blocked writing to one that never reads polls it,
//! so a run stops within a moment of the signal whatever it is doing. And the process-wide
//! abort, for a failure no thread can return from (a plugin past its timeout): components call
//! `abort`, and the run (the summary's recorder) says what it does first.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every wait to give up (the signal watcher calls it).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// How often a blocking wait looks at the request: short enough to stop within a second.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// What `abort` does before exiting, set by the run (it writes the run summary).
static ON_ABORT: std::sync::OnceLock<fn(&crate::error::Error)> = std::sync::OnceLock::new();

/// Sets what `abort` does before the process exits (once per process).
pub fn on_abort(handler: fn(&crate::error::Error)) {
    let _ = ON_ABORT.set(handler);
}

/// Ends the process now with `error`'s exit code, from whatever thread, after the handler
/// (`on_abort`). Outputs are replaced atomically, so none is left half-written.
pub fn abort(error: crate::error::Error) -> ! {
    if let Some(handler) = ON_ABORT.get() {
        handler(&error);
    }
    std::process::exit(error.exit_code())
}
