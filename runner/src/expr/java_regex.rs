//! A Rust regular expression written as a Java one that matches the same texts, for `matches`
//! on Spark (`rlike`, Java's `Pattern.find`). The two syntaxes read the same pattern
//! differently (`\d`, `.`, `$`, case folding, classes), so the pattern is not passed on as
//! written: it is parsed by Rust's own parser (`regex-syntax`, the `regex` crate's) into its
//! plain meaning, where every class is its list of code points and `.`, `\w`, `(?i)` are
//! spelled out, and that is written in Java's syntax with nothing left to read differently:
//! each character as `\x{...}`, each class as its ranges. What Java has no exact twin for
//! (word boundaries, line anchors, byte classes) is refused.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// `pattern` (valid for Rust's `regex`) as a Java pattern with the same matches.
pub(super) fn java_pattern(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    write(&parse(pattern)?, &mut out)?;
    Ok(out)
}

/// [`java_pattern`], for what its groups capture too: the same where no group is repeated.
/// A group inside a repetition (`(a|b)*`, `(x)?`) may keep, in Java's backtracking, what an
/// attempt that failed had captured, where Rust's is empty.
pub(super) fn java_pattern_with_groups(pattern: &str) -> Result<String, String> {
    let hir = parse(pattern)?;
    if repeated_group(&hir, false) {
        return Err("a group inside a repetition may capture otherwise in Java".into());
    }
    let mut out = String::new();
    write(&hir, &mut out)?;
    Ok(out)
}

fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

/// Whether a capture group lies inside a repetition (`repeated`: below one already).
fn repeated_group(hir: &Hir, repeated: bool) -> bool {
    match hir.kind() {
        HirKind::Capture(capture) => repeated || repeated_group(&capture.sub, repeated),
        HirKind::Repetition(repetition) => repeated_group(&repetition.sub, true),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => {
            parts.iter().any(|part| repeated_group(part, repeated))
        }
        _ => false,
    }
}

fn write(hir: &Hir, out: &mut String) -> Result<(), String> {
    match hir.kind() {
        HirKind::Empty => out.push_str("(?:)"),
        HirKind::Literal(literal) => {
            let text = std::str::from_utf8(&literal.0)
                .map_err(|_| "a pattern of bytes that are not UTF-8".to_owned())?;
            out.push_str("(?:");
            for c in text.chars() {
                code_point(c, out);
            }
            out.push(')');
        }
        // A class of nothing (the parser writes one as bytes) matches nothing.
        HirKind::Class(Class::Bytes(class)) if class.ranges().is_empty() => {
            out.push_str("[^\\x{0}-\\x{10FFFF}]")
        }
        HirKind::Class(Class::Unicode(class)) if class.ranges().is_empty() => {
            out.push_str("[^\\x{0}-\\x{10FFFF}]")
        }
        HirKind::Class(Class::Unicode(class)) => {
            out.push('[');
            for range in class.ranges() {
                code_point(range.start(), out);
                if range.end() != range.start() {
                    out.push('-');
                    code_point(range.end(), out);
                }
            }
            out.push(']');
        }
        HirKind::Class(Class::Bytes(_)) => {
            return Err("byte classes (`(?-u)`) have no Java twin".into())
        }
        HirKind::Look(Look::Start) => out.push_str("\\A"),
        HirKind::Look(Look::End) => out.push_str("\\z"),
        HirKind::Look(look) => {
            return Err(format!(
                "`{}` (a line anchor or word boundary) reads differently in Java",
                look_name(*look)
            ))
        }
        HirKind::Repetition(repetition) => {
            out.push_str("(?:");
            write(&repetition.sub, out)?;
            out.push(')');
            match (repetition.min, repetition.max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (min, None) => out.push_str(&format!("{{{min},}}")),
                (min, Some(max)) if min == max => out.push_str(&format!("{{{min}}}")),
                (min, Some(max)) => out.push_str(&format!("{{{min},{max}}}")),
            }
            if !repetition.greedy {
                out.push('?');
            }
        }
        HirKind::Capture(capture) => {
            out.push('(');
            write(&capture.sub, out)?;
            out.push(')');
        }
        HirKind::Concat(parts) => {
            out.push_str("(?:");
            for part in parts {
                write(part, out)?;
            }
            out.push(')');
        }
        HirKind::Alternation(parts) => {
            out.push_str("(?:");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                write(part, out)?;
            }
            out.push(')');
        }
    }
    Ok(())
}

fn code_point(c: char, out: &mut String) {
    out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
}

fn look_name(look: Look) -> &'static str {
    match look {
        Look::StartLF | Look::StartCRLF => "^ in multi-line mode",
        Look::EndLF | Look::EndCRLF => "$ in multi-line mode",
        _ => "\\b",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_spelled_out_in_javas_syntax() {
        assert_eq!(
            java_pattern("^ab$").unwrap(),
            "(?:\\A(?:\\x{61}\\x{62})\\z)"
        );
        // `.` is every character but a line feed, as Rust reads it (Java's also stops at
        // `\r`, U+0085, U+2028 and U+2029).
        assert_eq!(
            java_pattern(".").unwrap(),
            "[\\x{0}-\\x{9}\\x{B}-\\x{10FFFF}]"
        );
        assert_eq!(
            java_pattern("(a|bc)+?x{2,3}").unwrap(),
            "(?:(?:((?:(?:\\x{61})|(?:\\x{62}\\x{63}))))+?(?:(?:\\x{78})){2,3})"
        );
        // `\d` is every Unicode digit, as in Rust (Java's is ASCII only).
        assert!(java_pattern("\\d").unwrap().contains("\\x{660}-\\x{669}"));
        assert_eq!(
            java_pattern("[^\\x00-\\x{10FFFF}]").unwrap(),
            "[^\\x{0}-\\x{10FFFF}]"
        );
    }

    #[test]
    fn groups_are_translated_only_where_none_is_repeated() {
        assert!(java_pattern_with_groups("(\\d+)-(\\w+)|(x)").is_ok());
        for pattern in ["(a|b)*c", "(?:(a)b)+", "(x)?abc", "((a))*"] {
            assert!(java_pattern_with_groups(pattern).is_err(), "{pattern}");
            assert!(java_pattern(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn what_java_reads_differently_is_refused() {
        for pattern in ["\\bword", "(?m)^a", "(?m)a$", "(?-u)\\xFF"] {
            assert!(java_pattern(pattern).is_err(), "{pattern}");
        }
    }
}
