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
    crate::io::atomic::remove_live_temporaries();
    std::process::exit(error.exit_code())
}

/// Ends a batch run at SIGINT or SIGTERM as a failed run (`abort`): its summary says it was
/// interrupted, its temporary files go, its earlier outputs stay as they were, and it exits
/// with 130 or 143, as a shell reports a process those signals stopped. A stream stops at its
/// epoch's end instead (it watches the signals itself).
pub fn abort_on_signals() -> SignalsAbort {
    ARMED.store(true, Ordering::SeqCst);
    let watcher = std::thread::Builder::new()
        .name("runner-signals".into())
        .spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut interrupt), Ok(mut terminate)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                loop {
                    let (name, code) = tokio::select! {
                        _ = interrupt.recv() => ("SIGINT", 130),
                        _ = terminate.recv() => ("SIGTERM", 143),
                    };
                    // Once the run is over, what follows (the live page's linger) hears the
                    // signal itself.
                    if ARMED.load(Ordering::SeqCst) {
                        let error = crate::error::Error::Interrupted { signal: name, code };
                        tracing::error!("{error}");
                        abort(error);
                    }
                }
            });
        });
    if let Err(e) = watcher {
        tracing::warn!("cannot watch SIGINT and SIGTERM: {e}");
    }
    SignalsAbort(())
}

/// Whether a signal now ends the run (`abort_on_signals`).
static ARMED: AtomicBool = AtomicBool::new(false);

/// While held, SIGINT and SIGTERM end the batch run; dropped when the run is over.
pub struct SignalsAbort(());

impl Drop for SignalsAbort {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}
