//! The process-wide "stop" request (SIGTERM, SIGINT), for the waits that are not in the async
//! runtime: a sink waiting for a client or blocked writing to one that never reads polls it,
//! so a run stops within a moment of the signal whatever it is doing.

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
