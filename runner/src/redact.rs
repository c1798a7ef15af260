//! One redaction layer for everything runner prints or writes about a run: logs (text and
//! JSON), warnings, errors, `plan`, run summaries. Secrets are the values of the variables a
//! pipeline names as holding one (`token_env`), of any `${VAR}` whose name says it is one
//! (TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL), and the credentials in URLs
//! (`scheme://user:password@host`); each is replaced by `[redacted]`.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Whether an environment variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word))
}

/// Remembers `secret` so that it never appears in output. Values shorter than 4 characters
/// are not secrets worth the name (and would blank out ordinary text).
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() < 4 {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write() {
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
            // Longest first: a secret that contains another is replaced whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
}

/// `text` with every registered secret and every URL's credentials replaced.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    if out.contains("://") {
        out = Cow::Owned(url_credentials(&out));
    }
    if out.to_ascii_lowercase().contains("token=") {
        out = Cow::Owned(connect_tokens(&out));
    }
    out
}

/// A Spark Connect address's token (`sc://host:15002/;token=SECRET;use_ssl=true`) →
/// `;token=[redacted]`, whichever case the key is written in: a pipeline file's line shown
/// around an error holds it as written.
fn connect_tokens(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower[from..].find("token=") {
        let value_start = from + found + "token=".len();
        out.push_str(&text[from..value_start]);
        // A parameter of the address: after `;`, or first after the `/` (`sc://h/token=x`).
        if !matches!(text[..from + found].chars().next_back(), Some(';' | '/')) {
            from = value_start;
            continue;
        }
        // The value ends at the next parameter, whitespace or quote.
        let end = text[value_start..]
            .find(|c: char| matches!(c, ';' | '"' | '\'' | '`') || c.is_whitespace())
            .map_or(text.len(), |e| value_start + e);
        if end > value_start {
            out.push_str(REDACTED);
        }
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

/// `scheme://user:password@host` → `scheme://[redacted]@host` wherever it appears.
fn url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#', whitespace or quote.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) if authority[..userinfo_end].contains(':') => {
                out.push_str(REDACTED);
                out.push_str(&authority[userinfo_end..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the log formatter colours its output (then its own SGR sequences pass through).
static COLOURED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tells the log writer whether the formatter emits colours.
pub fn set_coloured_logs(coloured: bool) {
    COLOURED.store(coloured, std::sync::atomic::Ordering::Relaxed);
}

/// stderr through `redact`, for the log subscriber: each formatted event arrives in one
/// write, which is redacted whole, and whose control characters (from data, servers or
/// plugins quoted in a message) are escaped. Only colour codes (`ESC [ … m`) pass, and only
/// when the formatter colours.
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let coloured = COLOURED.load(std::sync::atomic::Ordering::Relaxed);
        let safe = crate::error::escape_terminal(&redact(&text), coloured).into_owned();
        std::io::stderr().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spark_connect_token_is_redacted_wherever_it_is_written() {
        assert_eq!(
            redact("remote: sc://h:15002/;token=S3cr3tT0ken;use_ssl=true\n"),
            "remote: sc://h:15002/;token=[redacted];use_ssl=true\n"
        );
        assert_eq!(
            redact("  3 |   remote: \"sc://h/;user_id=a;TOKEN=abc…\""),
            "  3 |   remote: \"sc://h/;user_id=a;TOKEN=[redacted]\""
        );
        assert_eq!(redact("no token here"), "no token here");
        assert_eq!(
            redact("sc://h:15002/token=abcdef;use_ssl=true"),
            "sc://h:15002/token=[redacted];use_ssl=true"
        );
        assert_eq!(redact("a mytoken=abcdef"), "a mytoken=abcdef");
    }

    #[test]
    fn registered_secrets_and_url_credentials_are_replaced() {
        register("s3cr3t-value-123");
        register("ab"); // too short to be one
        assert_eq!(
            redact("path /srv/s3cr3t-value-123/in.txt is missing, ab"),
            "path /srv/[redacted]/in.txt is missing, ab"
        );
        assert_eq!(
            redact("cannot connect to postgres://app:hunter2@db:5432/x: refused"),
            "cannot connect to postgres://[redacted]@db:5432/x: refused"
        );
        assert_eq!(
            redact("see https://example.org/a@b and ftp://anon@host/"),
            "see https://example.org/a@b and ftp://anon@host/"
        );
        assert!(is_secret_name("MASTODON_ACCESS_TOKEN") && is_secret_name("db_password"));
        // Logs: data's control sequences escaped; the formatter's own colours kept if on.
        let line = "\x1b[33mWARN\x1b[0m tag \x1b]0;pwned\x07 and \x1b[2J\n";
        assert_eq!(
            crate::error::escape_terminal(line, true),
            "\x1b[33mWARN\x1b[0m tag \\u{1b}]0;pwned\\u{7} and \\u{1b}[2J\n"
        );
        assert!(!crate::error::escape_terminal(line, false).contains('\x1b'));
        assert!(!is_secret_name("HOME"));
    }
}
