//! Cuts an expression into tokens, each with the byte offset it starts at (for located errors).

/// One token of an expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// A bare name: a column, a function or a keyword (`and`, `in`, `null`, ...). Dotted names
    /// (`account.acct`) are one token: nested JSON fields are columns named by their path.
    Ident(String),
    /// A name in backticks: always a column, whatever it holds.
    Quoted(String),
    Text(String),
    /// An integer as written (its sign is an operator); past `u64` it is a `Float`.
    Int(u64),
    Float(f64),
    Sym(Sym),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sym {
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `||`: joins texts, as SQL's.
    Pipes,
}

impl Token {
    /// How the token is called in messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("`{name}`"),
            Token::Quoted(name) => format!("`{name}`"),
            Token::Text(s) => format!("string \"{s}\""),
            Token::Int(n) => format!("number {n}"),
            Token::Float(x) => format!("number {x}"),
            Token::Sym(sym) => format!("`{}`", sym.text()),
        }
    }
}

impl Sym {
    pub(super) fn text(self) -> &'static str {
        match self {
            Sym::Plus => "+",
            Sym::Minus => "-",
            Sym::Star => "*",
            Sym::Slash => "/",
            Sym::Percent => "%",
            Sym::Eq => "==",
            Sym::Ne => "!=",
            Sym::Lt => "<",
            Sym::Le => "<=",
            Sym::Gt => ">",
            Sym::Ge => ">=",
            Sym::LParen => "(",
            Sym::RParen => ")",
            Sym::LBracket => "[",
            Sym::RBracket => "]",
            Sym::Comma => ",",
            Sym::Pipes => "||",
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of `src`, or the offset and reason of the first thing that is not one.
pub(super) fn lex(src: &str) -> Result<Vec<(usize, Token)>, (usize, String)> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let next = bytes.get(i + 1).copied();
        let (token, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Token::Sym(Sym::LParen), 1),
            b')' => (Token::Sym(Sym::RParen), 1),
            b'[' => (Token::Sym(Sym::LBracket), 1),
            b']' => (Token::Sym(Sym::RBracket), 1),
            b',' => (Token::Sym(Sym::Comma), 1),
            b'+' => (Token::Sym(Sym::Plus), 1),
            b'-' => (Token::Sym(Sym::Minus), 1),
            b'*' => (Token::Sym(Sym::Star), 1),
            b'/' => (Token::Sym(Sym::Slash), 1),
            b'%' => (Token::Sym(Sym::Percent), 1),
            b'=' if next == Some(b'=') => (Token::Sym(Sym::Eq), 2),
            b'=' => return Err((i, "`=` is not a comparison; use `==`".into())),
            b'!' if next == Some(b'=') => (Token::Sym(Sym::Ne), 2),
            b'<' if next == Some(b'>') => (Token::Sym(Sym::Ne), 2),
            b'<' if next == Some(b'=') => (Token::Sym(Sym::Le), 2),
            b'<' => (Token::Sym(Sym::Lt), 1),
            b'>' if next == Some(b'=') => (Token::Sym(Sym::Ge), 2),
            b'>' => (Token::Sym(Sym::Gt), 1),
            b'|' if next == Some(b'|') => (Token::Sym(Sym::Pipes), 2),
            b'|' => {
                return Err((
                    i,
                    "`|` is not an operator; write `or`, or `||` to join texts".into(),
                ))
            }
            b'&' => return Err((i, "`&` is not an operator; write `and`".into())),
            b'!' => return Err((i, "`!` is not an operator; write `not`".into())),
            b'"' | b'\'' => {
                let mut value = String::new();
                let mut chars = src[i + 1..].char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err((start, "this string has no closing quote".into())),
                        // Spark SQL's escapes: `\%` and `\_` keep their backslash for `like`.
                        Some((at, '\\')) => match chars.next() {
                            // `\101` (three octal digits, the first 0 or 1): that character,
                            // as Spark's literals read it.
                            Some((_, d @ ('0' | '1')))
                                if src.len() >= i + 5 + at
                                    && src.as_bytes()[i + 3 + at..i + 5 + at]
                                        .iter()
                                        .all(|b| (b'0'..=b'7').contains(b)) =>
                            {
                                let octal = &src.as_bytes()[i + 3 + at..i + 5 + at];
                                let code = (d as u32 - '0' as u32) * 64
                                    + u32::from(octal[0] - b'0') * 8
                                    + u32::from(octal[1] - b'0');
                                value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                chars.next();
                                chars.next();
                            }
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, 'r')) => value.push('\r'),
                            Some((_, '0')) => value.push('\0'),
                            Some((_, c @ ('%' | '_'))) => {
                                value.push('\\');
                                value.push(c);
                            }
                            Some((_, u @ ('u' | 'U'))) => {
                                // `\uXXXX` (two for a surrogate pair, as Spark's Java strings
                                // read them) or `\UXXXXXXXX`.
                                let rest = &src[i + 1 + at..];
                                let (c, written) = unicode_escape(rest, u == 'U')
                                    .map_err(|message| (i + 1 + at, message))?;
                                value.push(c);
                                // The backslash and the `u` are read already.
                                for _ in 2..written {
                                    chars.next();
                                }
                            }
                            // Spark drops the backslash of `\d`, `\.` and their kind, so a
                            // regular expression written with one matches something else,
                            // silently: refused, with the spelling that means it.
                            // Spark reads these two as control characters; a pattern means
                            // a word boundary and the input's end by them.
                            Some((_, c @ ('b' | 'Z'))) => {
                                let (what, code) = if c == 'b' {
                                    ("a backspace", "0008")
                                } else {
                                    ("Ctrl-Z", "001a")
                                };
                                return Err((
                                    i + 1 + at,
                                    format!(
                                        "`\\{c}` in a string is {what} to Spark SQL; for a regular expression's `\\{c}` write `\\\\{c}`, for {what} `\\u{code}`"
                                    ),
                                ));
                            }
                            Some((_, other)) if REGEX_ESCAPES.contains(other) => {
                                return Err((
                                    i + 1 + at,
                                    format!(
                                        "`\\{other}` in a string is `{other}` (Spark SQL's strings drop the backslash of an escape they do not know); for a regular expression's `\\{other}` write `\\\\{other}`, for `{other}` itself write `{other}`"
                                    ),
                                ))
                            }
                            Some((_, other)) => value.push(other),
                            None => return Err((start, "this string has no closing quote".into())),
                        },
                        Some((offset, q)) if q as u32 == c as u32 => break offset,
                        Some((_, other)) => value.push(other),
                    }
                };
                (Token::Text(value), end + 2)
            }
            b'`' => {
                let end = src[i + 1..]
                    .find('`')
                    .ok_or((start, "this column name has no closing backtick".to_owned()))?;
                (Token::Quoted(src[i + 1..i + 1 + end].to_owned()), end + 2)
            }
            b'0'..=b'9' | b'.' if c != b'.' || next.is_some_and(|n| n.is_ascii_digit()) => {
                let mut end = i + 1;
                while end < bytes.len() {
                    let b = bytes[end];
                    let exponent_sign =
                        matches!(b, b'+' | b'-') && matches!(bytes[end - 1], b'e' | b'E');
                    if b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'_') || exponent_sign
                    {
                        end += 1;
                    } else {
                        break;
                    }
                }
                let written = &src[i..end];
                let text = written.replace('_', "");
                let token = match text.parse::<u64>() {
                    Ok(int) => Token::Int(int),
                    // Digits alone past u64 are an integer too large, as past i64 (refused
                    // when checked), not a float without a word.
                    Err(_) if text.bytes().all(|b| b.is_ascii_digit()) => {
                        return Err((
                            start,
                            format!(
                                "{written} is larger than the largest integer, {} (write `{written}.0` for a float)",
                                i64::MAX
                            ),
                        ));
                    }
                    Err(_) => {
                        let x: f64 = text
                            .parse()
                            .map_err(|_| (start, format!("`{written}` is not a number")))?;
                        if !x.is_finite() {
                            return Err((start, format!("`{written}` is past a float's range")));
                        }
                        Token::Float(x)
                    }
                };
                (token, end - i)
            }
            _ => {
                let rest = &src[i..];
                let mut len = 0;
                let mut chars = rest.char_indices().peekable();
                while let Some((at, ch)) = chars.next() {
                    let dotted = ch == '.'
                        && len > 0
                        && chars.peek().is_some_and(|(_, after)| is_name_char(*after));
                    if is_name_char(ch) || dotted {
                        len = at + ch.len_utf8();
                    } else {
                        break;
                    }
                }
                if len == 0 || rest.as_bytes()[0].is_ascii_digit() {
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err((i, format!("unexpected character `{ch}`")));
                }
                (Token::Ident(rest[..len].to_owned()), len)
            }
        };
        tokens.push((start, token));
        i += len;
    }
    Ok(tokens)
}

/// Characters whose escape means something to a regular expression (`\d`, `\.`) and nothing to
/// a string, which would silently lose its backslash.
const REGEX_ESCAPES: &str = "dDwWsSBAzpPhHvVkK.()[]{}+*?|^$";

/// The character a `\u` or `\U` escape at the start of `rest` writes, and how many chars the
/// escape takes (the backslash included).
fn unicode_escape(rest: &str, long: bool) -> Result<(char, usize), String> {
    let hex = |at: usize, digits: usize| {
        rest.get(at..at + digits)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    if long {
        // Without eight hex digits `\U` is an unknown escape: the backslash goes, as Spark
        // drops it (`'C:\Users'` is `C:Users`).
        return match hex(2, 8) {
            None => Ok(('U', 2)),
            Some(code) => char::from_u32(code).map(|c| (c, 10)).ok_or_else(|| {
                format!("`\\U{code:08x}` is not a character (they end at `\\U0010ffff`)")
            }),
        };
    }
    let first = hex(2, 4)
        .ok_or_else(|| "`\\u` takes four hex digits of a character (`\\u00e9`)".to_owned())?;
    if let Some(c) = char::from_u32(first) {
        return Ok((c, 6));
    }
    // A surrogate: the high half, then `\u` and the low half.
    let low = (0xD800..0xDC00)
        .contains(&first)
        .then(|| rest.get(6..8).filter(|u| *u == "\\u").and(hex(8, 4)))
        .flatten()
        .filter(|low| (0xDC00..0xE000).contains(low));
    match low {
        Some(low) => {
            let c = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
            Ok((char::from_u32(c).expect("a surrogate pair is a character"), 12))
        }
        None => Err(format!(
            "`\\u{first:04x}` is half of a surrogate pair: write both halves (`\\ud83d\\ude00`) or the character as `\\U0001f600`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Vec<Token> {
        lex(src).unwrap().into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn names_numbers_strings_and_operators() {
        assert_eq!(
            tokens("account.acct >= 1.5e-3 and `a b` <> 'x\\'y' % 7"),
            [
                Token::Ident("account.acct".into()),
                Token::Sym(Sym::Ge),
                Token::Float(1.5e-3),
                Token::Ident("and".into()),
                Token::Quoted("a b".into()),
                Token::Sym(Sym::Ne),
                Token::Text("x'y".into()),
                Token::Sym(Sym::Percent),
                Token::Int(7),
            ]
        );
        assert_eq!(
            tokens("n-1"),
            [
                Token::Ident("n".into()),
                Token::Sym(Sym::Minus),
                Token::Int(1)
            ]
        );
        assert_eq!(tokens("1_000"), [Token::Int(1000)]);
        assert_eq!(
            tokens("18446744073709551616.0"),
            [Token::Float(1.8446744073709552e19)]
        );
        let (at, why) = lex("n < 1000000000000000000000").unwrap_err();
        assert_eq!(at, 4);
        assert!(why.contains("larger than the largest integer"), "{why}");
    }

    #[test]
    fn bad_characters_are_located() {
        assert_eq!(lex("a = 1").unwrap_err().0, 2);
        assert!(lex("a ~ 1")
            .unwrap_err()
            .1
            .contains("unexpected character `~`"));
        assert!(lex("\u{596}")
            .unwrap_err()
            .1
            .contains("unexpected character"));
        assert!(lex("'abc").unwrap_err().1.contains("no closing quote"));
        assert_eq!(
            tokens("a||'b'"),
            [
                Token::Ident("a".into()),
                Token::Sym(Sym::Pipes),
                Token::Text("b".into())
            ]
        );
        // Spark SQL's escapes; `\%` and `\_` stay escaped for `like`.
        assert_eq!(
            tokens(r"'a\_c\%\n\t\r\u00e9\q\\\''"),
            [Token::Text("a\\_c\\%\n\t\réq\\'".into())]
        );
        assert!(lex(r"'\u00'").unwrap_err().1.contains("four hex digits"));
        // Three octal digits, the first 0 or 1; otherwise `\0` is NUL and a digit itself.
        assert_eq!(
            tokens(r"'\101\060x\0\09\2011'"),
            [Token::Text("A0x\u{0}\u{0}92011".into())]
        );
        // A character past U+FFFF: a surrogate pair (as Spark's Java strings) or `\U`.
        assert_eq!(
            tokens(r"'\ud83d\ude00-\U0001F600-\u00e9x'"),
            [Token::Text("😀-😀-éx".into())]
        );
        let (at, message) = lex(r"'ab\ud83dx'").unwrap_err();
        assert_eq!(at, 3);
        assert!(
            message.contains("`\\ud83d` is half of a surrogate pair"),
            "{message}"
        );
        assert!(lex(r"'\ude00\ud83d'")
            .unwrap_err()
            .1
            .contains("half of a surrogate pair"));
        assert_eq!(
            tokens(r"'C:\Users\U0001F6'"),
            [Token::Text("C:UsersU0001F6".into())]
        );
        assert!(lex(r"'\U00110000'")
            .unwrap_err()
            .1
            .contains("is not a character"));
        // A regular expression's escape in a string is refused, not silently a letter.
        let (at, message) = lex(r"s matches '^\d+$'").unwrap_err();
        assert_eq!(at, 12);
        assert!(
            message.contains(r"`\d` in a string is `d`") && message.contains(r"write `\\d`"),
            "{message}"
        );
        assert!(lex(r"'a\.b'").unwrap_err().1.contains(r"`\.` in a string"));
        assert!(lex(r"'\bx'")
            .unwrap_err()
            .1
            .contains("a backspace to Spark SQL"));
        assert!(lex(r"'x\Z'").unwrap_err().1.contains(r"Ctrl-Z `\u001a`"));
        assert_eq!(tokens(r"'^\\d+\\.$'"), [Token::Text(r"^\d+\.$".into())]);
        assert!(lex("a | b").unwrap_err().1.contains("write `or`"));
        assert!(lex("a && b").unwrap_err().1.contains("write `and`"));
        assert!(lex("!a").unwrap_err().1.contains("write `not`"));
        assert!(lex("1.2.3").unwrap_err().1.contains("is not a number"));
        assert!(lex("1e400").unwrap_err().1.contains("past a float's range"));
    }
}
