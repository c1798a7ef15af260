//! Lines for the person or program reading a command's standard output and error. A closed
//! pipe (`runner plan p.yaml | head -1`) is not a failure of the command: what follows is
//! dropped quietly and the command ends with its own exit code, as a failed write to stderr
//! is dropped. Any other failure to write standard output (a full disk) is kept, for the
//! command to end with it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Standard output can no longer be written: closed by its reader, or failed.
static STDOUT_DONE: AtomicBool = AtomicBool::new(false);
/// The first failure to write standard output that was not a closed pipe.
static STDOUT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Standard output is a pipe whose reader has gone ([`watch_stdout_reader`]).
static STDOUT_READER_GONE: AtomicBool = AtomicBool::new(false);

/// Whether standard output is known to be closed by its reader before anything failed to be
/// written there: a stream that writes only there, idle, stops rather than wait for rows
/// it could not print (`runner run stream.yaml | head -5`).
pub fn stdout_reader_gone() -> bool {
    STDOUT_READER_GONE.load(Ordering::Relaxed)
}

/// When standard output is a pipe, watches it on a thread of its own and calls `gone` once its
/// reader closes it (a pipe without readers reports an error to poll(2) at once, with nothing
/// written). A terminal or a file has no reader to lose: nothing is watched. The thread
/// blocks in poll until then and ends with the process.
pub fn watch_stdout_reader(gone: impl FnOnce() + Send + 'static) {
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = std::fs::metadata("/proc/self/fd/1").is_ok_and(|m| m.file_type().is_fifo());
    if !is_pipe {
        return;
    }
    let watching = std::thread::Builder::new()
        .name("stdout-reader".into())
        .spawn(move || loop {
            // No events asked: poll reports only POLLERR (no reader left), POLLHUP, POLLNVAL.
            let mut watched = libc::pollfd {
                fd: libc::STDOUT_FILENO,
                events: 0,
                revents: 0,
            };
            // SAFETY: `watched` is one valid `pollfd` that lives across the call, and the count
            // passed is 1; poll only writes its `revents`.
            let ready = unsafe { libc::poll(&mut watched, 1, -1) };
            if ready > 0 && watched.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                STDOUT_READER_GONE.store(true, Ordering::Relaxed);
                gone();
                return;
            }
            if ready < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                return;
            }
        });
    if let Err(e) = watching {
        tracing::debug!("standard output is not watched for its reader: {e}");
    }
}

/// Writes `text` to standard output (see the module's note on failures).
pub fn out(text: std::fmt::Arguments<'_>) {
    if STDOUT_DONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(text).and_then(|()| stdout.flush());
    if let Err(e) = written {
        STDOUT_DONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            if let Ok(mut failure) = STDOUT_FAILURE.lock() {
                failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Writes `text` to standard error; a failure is dropped (there is nowhere left to say it).
pub fn err(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// Why standard output could not be written, if it could not (a closed pipe is no failure).
pub fn stdout_failure() -> Option<String> {
    STDOUT_FAILURE
        .lock()
        .ok()
        .and_then(|failure| failure.clone())
}

/// `println!` to standard output through [`out`].
#[macro_export]
macro_rules! outln {
    () => { $crate::io::console::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::console::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to standard output through [`out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::io::console::out(format_args!($($arg)*)) };
}

/// `eprintln!` through [`err`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::io::console::err(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_written_line_is_no_failure() {
        crate::outln!("console test: {}", 1);
        assert_eq!(super::stdout_failure(), None);
    }
}
