//! `${VAR}` in string values is replaced from the environment while the YAML is read, so an
//! unset variable is reported at the line and column where it is used. `$${` is a literal `${`.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Replaces every `${NAME}` in `text`; `lookup` returns the variable's value.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "environment variable `{name}` is not set (used as `${{{name}}}`)"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn from_env(text: &str) -> Result<String, String> {
    substitute(text, |name| {
        let value = std::env::var(name).ok()?;
        // A secret put into another field (a path, a host, a `where:`) is still a secret.
        if crate::redact::is_secret_name(name) {
            crate::redact::register(&value);
        }
        Some(value)
    })
}

/// Whether a variable's value may stand in the YAML text for a `${VAR}`: a number, `true` or
/// `false`, or a number with a unit (`60s`, `64KiB`). Such a value reads as the same text in
/// a string field, so replacing it before parsing changes nothing there, and lets numbers,
/// booleans, durations and sizes come from the environment too. Other values are replaced
/// field by field (no value can change the file's structure).
fn is_plain_value(value: &str) -> bool {
    if value == "true" || value == "false" {
        return true;
    }
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let digits = unsigned.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && !digits.ends_with('.')
}

/// The pipeline file's text with each `${VAR}` whose variable holds a plain value (see
/// `is_plain_value`) replaced; every other reference is left for the field that reads it
/// (which reports an unset variable at its line and column). `$${` stays as written.
pub fn substitute_plain_values(text: &str) -> String {
    substitute_plain_values_with(text, |name| std::env::var(name).ok())
}

fn substitute_plain_values_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("$${");
            rest = escaped;
            continue;
        }
        let reference = after
            .strip_prefix("${")
            .and_then(|body| Some(&body[..body.find('}')?]));
        let value = reference
            .filter(|name| {
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit())
            })
            .and_then(|name| Some((name, lookup(name)?)))
            .filter(|(_, value)| is_plain_value(value));
        match value {
            Some((name, value)) => {
                if crate::redact::is_secret_name(name) {
                    crate::redact::register(&value);
                }
                out.push_str(&value);
                rest = &after[name.len() + 3..];
            }
            None => {
                out.push('$');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with each `${VAR}` replaced as the field reading it replaces it, for a record of
/// what a run read (a checkpoint's identity): a variable holding a secret, or one not set,
/// stays written as `${VAR}` (a secret's value is never written to a file).
pub fn expanded_for_record(text: &str) -> String {
    substitute(text, |name| match crate::redact::is_secret_name(name) {
        true => Some(format!("${{{name}}}")),
        false => Some(std::env::var(name).unwrap_or_else(|_| format!("${{{name}}}"))),
    })
    .unwrap_or_else(|_| text.to_owned())
}

/// A string with `${VAR}` replaced (`deserialize_with`); an unset variable is an error.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    from_env(&raw).map_err(serde::de::Error::custom)
}

/// [`string`] for an optional value.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(raw) => from_env(&raw).map(Some).map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// [`string`] that keeps where the value is in the file.
pub fn spanned_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_saphyr::Spanned<String>, D::Error> {
    let mut spanned = serde_saphyr::Spanned::<String>::deserialize(d)?;
    spanned.value = from_env(&spanned.value).map_err(serde::de::Error::custom)?;
    Ok(spanned)
}

/// A list of strings, `${VAR}` replaced in each, with where each is in the file.
pub fn spanned_strings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_saphyr::Spanned<String>>, D::Error> {
    let mut items = Vec::<serde_saphyr::Spanned<String>>::deserialize(d)?;
    for item in &mut items {
        item.value = from_env(&item.value).map_err(serde::de::Error::custom)?;
    }
    Ok(items)
}

/// [`string`] as a path, as written (resolved against the pipeline file later).
pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    string(d).map(PathBuf::from)
}

/// [`path`] for an optional value.
pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    opt_string(d).map(|s| s.map(PathBuf::from))
}

/// A list of strings, `${VAR}` replaced in each.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| from_env(s).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_values_are_replaced_in_the_text_and_others_left_to_their_field() {
        let vars = |name: &str| match name {
            "PORT" => Some("9876".to_owned()),
            "EVERY" => Some("60s".to_owned()),
            "ON" => Some("true".to_owned()),
            "RATE" => Some("-0.5".to_owned()),
            "HOST" => Some("example.org".to_owned()),
            "EVIL" => Some("1\nsinks: []".to_owned()),
            _ => None,
        };
        let text = "port: ${PORT}\nstop_after: \"${EVERY}\"\nreconnect: ${ON}\nx: ${RATE}\nhost: ${HOST}\nn: ${EVIL}\nm: ${UNSET}\nkept: $${PORT}\nbad: ${PORT\n";
        assert_eq!(
            substitute_plain_values_with(text, vars),
            "port: 9876\nstop_after: \"60s\"\nreconnect: true\nx: -0.5\nhost: ${HOST}\nn: ${EVIL}\nm: ${UNSET}\nkept: $${PORT}\nbad: ${PORT\n"
        );
        for plain in ["0", "42", "-7", "1.5", "64KiB", "5m", "true", "false"] {
            assert!(is_plain_value(plain), "{plain}");
        }
        for other in [
            "", "-", "1.", ".5", "1.2.3", "yes", "null", "a1", "1 2", "1:2", "1#", "~",
        ] {
            assert!(!is_plain_value(other), "{other}");
        }
    }

    #[test]
    fn replaces_set_variables_and_keeps_plain_dollars() {
        assert_eq!(substitute("${HOME}/data", vars).unwrap(), "/home/me/data");
        assert_eq!(substitute("a${EMPTY}b", vars).unwrap(), "ab");
        assert_eq!(substitute("cost: $5", vars).unwrap(), "cost: $5");
        assert_eq!(substitute("$${HOME}", vars).unwrap(), "${HOME}");
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        let err = substitute("${NOPE}/x", vars).unwrap_err();
        assert!(err.contains("`NOPE` is not set"), "{err}");
        assert!(substitute("${HOME", vars)
            .unwrap_err()
            .contains("unterminated"));
        assert!(substitute("${1X}", vars)
            .unwrap_err()
            .contains("not a valid"));
    }
}
