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
/// epoch's end instead (it watches the signals itself). The signals are watched from when this
/// returns.
pub fn abort_on_signals() -> SignalsAbort {
    ARMED.store(true, Ordering::SeqCst);
    // Registered here, before the run reads anything; heard on a thread of their own.
    let setup = (|| -> std::io::Result<_> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let signals = {
            let _entered = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        Ok((runtime, signals))
    })();
    let watching = setup.and_then(|(runtime, (mut interrupt, mut terminate))| {
        std::thread::Builder::new()
            .name("runner-signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        let (name, code) = tokio::select! {
                            _ = interrupt.recv() => ("SIGINT", 130),
                            _ = terminate.recv() => ("SIGTERM", 143),
                        };
                        // Once the run is over, what follows (the live page's linger) hears
                        // the signal itself; a run ending meanwhile waits for this exit.
                        if ARMED.load(Ordering::SeqCst) && !CLAIMED.swap(true, Ordering::SeqCst) {
                            let error = crate::error::Error::Interrupted { signal: name, code };
                            tracing::error!("{error}");
                            abort(error);
                        }
                    }
                })
            })
    });
    if let Err(e) = watching {
        tracing::warn!("cannot watch SIGINT and SIGTERM: {e}");
    }
    SignalsAbort(())
}

/// Whether a signal now ends the run (`abort_on_signals`).
static ARMED: AtomicBool = AtomicBool::new(false);
/// Taken by whichever comes first: the signal's abort, or the run's end.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// While held, SIGINT and SIGTERM end the batch run; dropped when the run is over.
pub struct SignalsAbort(());

impl Drop for SignalsAbort {
    fn drop(&mut self) {
        if CLAIMED.swap(true, Ordering::SeqCst) {
            // A signal's abort is writing the summary and exiting: the run ends with it, not
            // with a summary of its own.
            loop {
                std::thread::park();
            }
        }
        ARMED.store(false, Ordering::SeqCst);
    }
}
