//! JSON lines as every sink writes them (`stdout` `jsonl`, the `file` sink's `jsonl`): one
//! object per row, columns in order, floats as `cast(x as text)` writes them, and every control
//! character escaped, C1 ones (U+0080 to U+009F) and the bidirectional overrides and isolates
//! (U+202A to U+202E, U+2066 to U+2069) too, so no value reaches a terminal as a control
//! sequence or reorders what it shows (the escapes read back as the same text).

use arrow_array::RecordBatch;

use crate::data::{cell, Cell};

/// The first `rows` rows of `batch`, one JSON object a line, `"epoch"` first when given. A name
/// held twice (or a column named `epoch`) is one key, where it first comes, with the later
/// value, as a JSON object built key by key has it.
pub fn write_rows(out: &mut Vec<u8>, batch: &RecordBatch, rows: usize, epoch: Option<u64>) {
    enum From {
        Epoch,
        Column(usize),
    }
    let schema = batch.schema();
    let mut keys: indexmap::IndexMap<&str, From> = indexmap::IndexMap::new();
    if epoch.is_some() {
        keys.insert("epoch", From::Epoch);
    }
    for (index, field) in schema.fields().iter().enumerate() {
        keys.insert(field.name().as_str(), From::Column(index));
    }
    let keys: Vec<(Vec<u8>, From)> = keys
        .into_iter()
        .map(|(name, from)| {
            let mut key = Vec::with_capacity(name.len() + 3);
            write_text(&mut key, name);
            key.push(b':');
            (key, from)
        })
        .collect();
    out.reserve(rows * 16 * keys.len().max(1));
    for row in 0..rows {
        out.push(b'{');
        for (index, (key, from)) in keys.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            match from {
                From::Epoch => out.extend_from_slice(epoch.unwrap_or(0).to_string().as_bytes()),
                From::Column(column) => write_value(out, cell(batch.column(*column).as_ref(), row)),
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

/// One value: numbers bare (a NaN or infinite float is `null`: JSON has neither), timestamps
/// as RFC 3339 text, lists as arrays.
pub fn write_value(out: &mut Vec<u8>, value: Cell) {
    match value {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Int(number) => {
            // Into the buffer, with no string per value (results of millions of rows).
            let _ = std::io::Write::write_fmt(out, format_args!("{number}"));
        }
        Cell::Float(number) if !number.is_finite() => out.extend_from_slice(b"null"),
        // As `data::float_text` writes it, without a string per value.
        Cell::Float(number) => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(number).as_bytes())
        }
        Cell::Bool(flag) => out.extend_from_slice(if flag { b"true" } else { b"false" }),
        Cell::Text(text) => write_text(out, text),
        Cell::Timestamp(micros) => write_text(out, &crate::data::format_timestamp(micros)),
        Cell::List(items) => {
            out.push(b'[');
            for (index, item) in items.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
    }
}

/// The bytes a text holding them is escaped for: control characters, `"`, `\`, DEL, 0xC2,
/// which starts U+0080 to U+009F (C1 controls) in UTF-8, 0xE2, which starts most
/// bidirectional controls, and 0xD8, which starts U+061C (and other characters, which are
/// written as they are).
const ESCAPED_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7F] = true;
    table[0xC2] = true;
    table[0xE2] = true;
    table[0xD8] = true;
    table
};

/// A JSON string: `"` and `\` escaped, control characters as `\n`, `\t`... or `\u00XX`.
pub fn write_text(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if !text.bytes().any(|b| ESCAPED_BYTES[b as usize]) {
        out.extend_from_slice(text.as_bytes());
    } else {
        // Runs of characters written as they are go in one copy; only escapes are built.
        let mut run_start = 0;
        for (at, c) in text.char_indices() {
            let escape: &[u8] = match c {
                '"' => b"\\\"",
                '\\' => b"\\\\",
                '\n' => b"\\n",
                '\r' => b"\\r",
                '\t' => b"\\t",
                c if c.is_control()
                    || matches!(
                        c,
                        '\u{202A}'..='\u{202E}'
                            | '\u{2066}'..='\u{2069}'
                            | '\u{200E}'
                            | '\u{200F}'
                            | '\u{061C}'
                    ) =>
                {
                    out.extend_from_slice(&text.as_bytes()[run_start..at]);
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
                    run_start = at + c.len_utf8();
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&text.as_bytes()[run_start..at]);
            out.extend_from_slice(escape);
            run_start = at + c.len_utf8();
        }
        out.extend_from_slice(&text.as_bytes()[run_start..]);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> String {
        let mut out = Vec::new();
        write_text(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_control_character_is_escaped_and_reads_back() {
        let hostile = "q\" b\\ \u{1b}[31m \u{9b}31m \u{85} \u{7f} \t\n\r é ✓ \u{2028}";
        let written = text(hostile);
        assert_eq!(
            written,
            "\"q\\\" b\\\\ \\u001b[31m \\u009b31m \\u0085 \\u007f \\t\\n\\r é ✓ \u{2028}\""
        );
        assert!(!written.chars().any(|c| c.is_control()));
        let back: String = serde_json::from_str(&written).unwrap();
        assert_eq!(back, hostile);
        // DEL alone (the plain text's fast path) too.
        assert_eq!(text("a\u{7f}b"), "\"a\\u007fb\"");
        // Â (0xC3 0x82) and ¢ (0xC2 0xA2) are no control characters.
        assert_eq!(text("Â¢"), "\"Â¢\"");
        // The bidirectional overrides and isolates are escaped; other characters starting
        // with the same byte (’, ✓) are not.
        let reordering = "a\u{202e}b\u{2066}c’✓\u{200f}\u{61c}ب";
        let written = text(reordering);
        assert_eq!(written, "\"a\\u202eb\\u2066c’✓\\u200f\\u061cب\"");
        let back: String = serde_json::from_str(&written).unwrap();
        assert_eq!(back, reordering);
    }

    #[test]
    fn floats_are_written_as_cast_writes_them() {
        for (value, shown) in [
            (1e19, "1e19"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1.2345678901234568e17, "1.2345678901234568e17"),
            (1e-7, "1e-7"),
            (f64::NAN, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, Cell::Float(value));
            assert_eq!(String::from_utf8(out).unwrap(), shown);
            if value.is_finite() {
                let back: f64 = serde_json::from_str(shown).unwrap();
                assert_eq!(back.to_bits(), value.to_bits());
            }
        }
    }
}
