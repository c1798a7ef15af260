//! The error type the CLI turns into one message and an exit code.

use std::path::PathBuf;

/// Exit code for a runtime failure (missing input, failed download, unwritable output).
pub const EXIT_RUNTIME: i32 = 1;
/// Exit code for an invalid pipeline file or invalid command-line usage.
pub const EXIT_INVALID: i32 = 2;
/// Exit code when another run of the same pipeline holds its lock.
pub const EXIT_LOCKED: i32 = 3;

/// A result whose error is runner's [`Error`] unless another is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and why the last panic happened, as the panic hook saw it.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Replaces the default panic report (a message and backtrace hint on stderr) with a record
/// `from_panic` turns into an ordinary error: a panic is a bug, reported as one failed run.
pub fn record_panics() {
    std::panic::set_hook(Box::new(|info| {
        let what = payload_text(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .map(|n| format!(" in thread {n}"))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{what}{at}{thread}"));
        }
    }));
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// What a caught panic said (`payload`, and where the hook saw it happen), for a panic that is
/// not a bug: a foreign library's on input it did not expect.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let recorded = LAST_PANIC.lock().ok().and_then(|mut last| last.take());
    escape_controls(&recorded.unwrap_or_else(|| payload_text(payload))).into_owned()
}

/// Runs `f`, a call into a foreign library that asserts on input it did not expect (a damaged
/// file): its panic comes back as what it said, without its place in the library's source,
/// for an error about the input rather than a bug report.
pub fn unpanicked<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        // The hook's record is of this panic: taken, so no later report repeats it.
        let _ = LAST_PANIC.lock().map(|mut last| last.take());
        escape_controls(&payload_text(payload.as_ref())).into_owned()
    })
}

/// The error for a caught panic (`payload`, and where the hook saw it happen).
pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Error {
    let recorded = LAST_PANIC.lock().ok().and_then(|mut last| last.take());
    let what = recorded.unwrap_or_else(|| payload_text(payload));
    Error::runtime(format!(
        "internal error: runner panicked: {} (this is a bug in runner; please report it with the pipeline file)",
        escape_controls(&what)
    ))
}

/// A test hook, in debug builds only: whether a stream should stop as a signal would stop it,
/// having taken input into epoch `epoch` (`RUNNER_STOP_IN_EPOCH`), so the tests can stop one
/// within an epoch's files without racing it. Always `false` in release builds.
#[inline]
pub fn stop_in_epoch(epoch: u64) -> bool {
    #[cfg(debug_assertions)]
    return std::env::var("RUNNER_STOP_IN_EPOCH").is_ok_and(|v| v == epoch.to_string());
    #[cfg(not(debug_assertions))]
    {
        let _ = epoch;
        false
    }
}

/// A test hook, in debug builds only: panics when `RUNNER_FAILPOINT` names this point, so the
/// tests can check that a panic anywhere ends the run as one clean error with a summary.
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RUNNER_FAILPOINT").is_ok_and(|v| v == name) {
        panic!("failpoint {name}");
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// For an input that is not there, the file beside it with the closest name (a typo in a
/// path is the usual cause): `; is it sales.csv?`. Empty otherwise.
fn like_named(path: &std::path::Path, error: &std::io::Error) -> String {
    if error.kind() != std::io::ErrorKind::NotFound {
        return String::new();
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return String::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    // A folder of a few hundred names at most is read for this.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let names: Vec<String> = entries
        .take(1000)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    match crate::data::closest(name, names.iter().map(String::as_str)) {
        Some(best) if best != name => format!("; is it {}?", escape_controls(best)),
        _ => String::new(),
    }
}

/// A value from the data for a one-line message: cut past `SHOWN_CHARS` characters with how
/// much was left out (a 20 MB value is not a message), then newlines, tabs and other control
/// characters escaped.
pub fn shortened(text: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    let (shown, left_out) = match text.char_indices().nth(SHOWN_CHARS) {
        None => (text, String::new()),
        Some((cut, _)) => (
            &text[..cut],
            format!("… ({} more characters)", text[cut..].chars().count()),
        ),
    };
    let one_line = shown.replace('\n', "\\n").replace('\t', "\\t");
    format!("{}{left_out}", escape_controls(&one_line))
}

/// `text` with control characters (C0 but newline and tab, DEL, C1) and the bidirectional
/// controls (overrides and isolates U+202A–U+202E, U+2066–U+2069, and the marks U+200E,
/// U+200F, U+061C, which reorder what a terminal shows)
/// written as `\u{..}` escapes, so text from data, servers or plugins never reaches a terminal
/// as a control sequence. Borrowed when there is nothing to escape.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    escape_terminal(text, false)
}

/// A path as a message shows it, with [`escape_controls`] applied (a file name may hold
/// control characters), and its line breaks and tabs escaped too: a name holding a line break
/// would print a forged line of runner's own.
pub fn escape_path(path: &std::path::Path) -> String {
    let shown = path.display().to_string();
    escape_controls(&shown.replace('\n', "\\n").replace('\t', "\\t")).into_owned()
}

/// `bytes` read from `path` as UTF-8 text, or an invalid-file error that places the first bad
/// byte (its line and offset); `what` names the file (`pipeline`, `test`).
pub fn utf8_text(bytes: Vec<u8>, path: &std::path::Path, what: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::invalid(format!(
            "{}:{line}: the {what} file is not UTF-8 text (byte {at} is not); save it as UTF-8",
            escape_path(path)
        ))
    })
}

/// [`escape_controls`], keeping the colour codes (`ESC [ digits;… m`) when `allow_colour`:
/// the log formatter's own, on a terminal.
pub fn escape_terminal(text: &str, allow_colour: bool) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(
                c,
                '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{200E}'
                    | '\u{200F}'
                    | '\u{061C}'
                    // Line and paragraph separators: a line break to some terminals and
                    // editors, which would split a message.
                    | '\u{2028}'
                    | '\u{2029}'
            )
    };
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if allow_colour && c == '\x1b' {
            let sgr = rest[1..].strip_prefix('[').and_then(|tail| {
                let len = tail
                    .find(|ch: char| !(ch.is_ascii_digit() || ch == ';'))
                    .unwrap_or(tail.len());
                tail[len..].starts_with('m').then_some(len + 3)
            });
            if let Some(len) = sgr {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if escaped(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Why a run or a command failed; each kind has its exit code ([`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is not valid: YAML syntax, unknown keys, wrong types, bad expressions.
    /// The message already carries file, line and column.
    #[error("{0}")]
    InvalidPipeline(String),

    /// The pipeline file itself could not be read.
    #[error("cannot read pipeline file {}: {source}", escape_path(path))]
    PipelineFile {
        /// The pipeline file as given.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },

    /// An input could not be read.
    #[error("cannot read input {}: {source}{}", escape_path(path), like_named(.path, .source))]
    Input {
        /// The input's path (`-` for standard input).
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },

    /// An output could not be written.
    #[error(
        "cannot write output {}: {}",
        escape_path(path),
        crate::io::atomic::without_temporary_name_text(source)
    )]
    Output {
        /// The output's path.
        path: PathBuf,
        /// Why it could not be written.
        source: std::io::Error,
    },

    /// Any other failure while running, with a complete sentence as message.
    #[error("{0}")]
    Runtime(String),

    /// Another run of the same pipeline is in progress.
    #[error("{0}")]
    Locked(String),

    /// A batch run stopped by a signal before it finished.
    #[error("interrupted by {signal} before the run finished: an output it had not replaced yet is as it was")]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// The exit code: 128 and the signal's number.
        code: i32,
    },
}

impl Error {
    /// An [`Error::InvalidPipeline`] with `message` (which should name file, line and column).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidPipeline(message.into())
    }

    /// An [`Error::Runtime`] with `message`, a complete sentence.
    pub fn runtime(message: impl Into<String>) -> Self {
        Error::Runtime(message.into())
    }

    /// The process exit code: [`EXIT_INVALID`] for the pipeline file, [`EXIT_LOCKED`] when locked,
    /// else [`EXIT_RUNTIME`].
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidPipeline(_) => EXIT_INVALID,
            Error::PipelineFile { .. } => EXIT_INVALID,
            Error::Input { .. } | Error::Output { .. } | Error::Runtime(_) => EXIT_RUNTIME,
            Error::Locked(_) => EXIT_LOCKED,
            Error::Interrupted { code, .. } => *code,
        }
    }
}

/// An error with its causes, for libraries (reqwest) that keep the useful part (DNS, refused,
/// TLS) in the source chain. The top level is skipped when it only wraps a cause, as reqwest's
/// "error sending request for url (...)" does.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let (mut text, mut source) = match error.source() {
        Some(cause) => (cause.to_string(), cause.source()),
        None => (error.to_string(), None),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub use crate::data::closest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_and_ignores_unrelated_words() {
        let keys = ["name", "source", "transforms", "sinks"];
        assert_eq!(closest("tranforms", keys), Some("transforms"));
        assert_eq!(closest("sink", keys), Some("sinks"));
        assert_eq!(closest("zzzzzzzz", keys), None);
        // A short name changed whole is no typo; one letter of two is.
        assert_eq!(closest("zz", ["a", "k"]), None);
        assert_eq!(closest("ab", ["ac", "k"]), Some("ac"));
    }

    #[test]
    fn a_line_break_in_a_file_name_cannot_forge_a_line() {
        let path = std::path::Path::new("in/a\nerror: forged\tb.csv");
        assert_eq!(escape_path(path), "in/a\\nerror: forged\\tb.csv");
        let error = Error::Input {
            path: path.to_path_buf(),
            source: std::io::Error::other("gone"),
        };
        assert!(!error.to_string().contains('\n'), "{error}");
    }

    #[test]
    fn controls_and_bidirectional_overrides_are_escaped_text_is_not() {
        assert_eq!(
            escape_controls("a\x1b[31mb\u{202E}c\u{2066}d\u{9b}"),
            "a\\u{1b}[31mb\\u{202e}c\\u{2066}d\\u{9b}"
        );
        assert_eq!(escape_controls("a\u{2028}b"), "a\\u{2028}b");
        // Newlines and tabs stay; right-to-left text itself is not a control.
        assert!(matches!(
            escape_controls("שלום\tمرحبا\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_terminal("\x1b[1mok\x1b[0m", true),
            "\x1b[1mok\x1b[0m"
        );
    }
}
