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
