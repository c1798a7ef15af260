//! CSV records whose quoted fields may hold line breaks (`multi_line: true`, Spark's
//! `multiLine`): where each record ends, found by following its quotes from its start as
//! RFC 4180 (and csv-core, under Arrow's reader) reads them. A line break inside quotes is
//! text; one outside ends the record.

/// Walks `bytes` from a record's start, calling `ended` with the offset of every `\n` that
/// ends a record. Returns whether the walk ends outside quotes.
///
/// Outside quotes only quotes and line breaks matter, so the walk jumps from one to the next
/// (a record at a time in the usual file): a quote opens quotes at a field's start (after the
/// delimiter, a line break or the start) and is text anywhere else, as csv-core reads it.
/// Inside, a doubled quote is a quote and a single one closes them.
fn walk(bytes: &[u8], delimiter: u8, mut ended: impl FnMut(usize)) -> bool {
    let mut i = 0;
    loop {
        // Outside quotes.
        let Some(at) = memchr::memchr2(b'"', b'\n', &bytes[i..]) else {
            return true;
        };
        i += at;
        if bytes[i] == b'\n' {
            ended(i);
            i += 1;
            continue;
        }
        let field_start = i == 0 || bytes[i - 1] == delimiter || bytes[i - 1] == b'\n';
        i += 1;
        if !field_start {
            continue;
        }
        // Inside quotes: to the quote that closes them.
        loop {
            let Some(at) = memchr::memchr(b'"', &bytes[i..]) else {
                return false;
            };
            i += at + 1;
            if bytes.get(i) != Some(&b'"') {
                break;
            }
            i += 1;
        }
    }
}

/// Why a CSV header line (without its line end) cannot be one, if it cannot: runner reads the
/// header as one line, whether records span lines or not.
pub fn header_problem(header: &[u8], delimiter: u8) -> Option<&'static str> {
    let named = header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(header);
    if named.iter().all(u8::is_ascii_whitespace) {
        // Its records would be counted against no columns, or skipped one and all.
        return Some("the header line is blank: a CSV file's first line names its columns (remove the blank lines before it)");
    }
    if header.contains(&b'\r') {
        return Some("the header line holds a carriage return: lines that end in a lone \\r (classic Mac line ends) are not lines here; runner reads lines that end in \\n or \\r\\n (convert the file, e.g. with `tr '\\r' '\\n'`)");
    }
    if !walk(header, delimiter, |_| {}) {
        return Some("a quote in the header does not close on its line: a header is one line (a column name cannot hold a line break)");
    }
    None
}

/// How many records of `bytes` (which starts a record) end in a line break, and the offset
/// after the last one.
pub fn record_ends(bytes: &[u8], delimiter: u8) -> (usize, Option<usize>) {
    let (mut count, mut last) = (0, None);
    walk(bytes, delimiter, |at| {
        count += 1;
        last = Some(at + 1);
    });
    (count, last)
}

/// The length of the whole records at the start of `bytes` (which starts a record): the offset
/// after the last line break outside quotes; `None` when there is none yet.
pub fn whole_records_len(bytes: &[u8], delimiter: u8) -> Option<usize> {
    record_ends(bytes, delimiter).1
}

/// The records of `bytes` (which starts a record), each with the index of the line it starts
/// on (0-based) and its bytes without its own line break (a `\r` before it is kept). A last
/// record without a line break is included when it is not empty.
pub fn records(bytes: &[u8], delimiter: u8) -> Vec<(usize, &[u8])> {
    let mut records = Vec::new();
    let (mut start, mut line) = (0, 0);
    walk(bytes, delimiter, |at| {
        let record = &bytes[start..at];
        records.push((line, record));
        line += 1 + memchr::memchr_iter(b'\n', record).count();
        start = at + 1;
    });
    if start < bytes.len() {
        records.push((line, &bytes[start..]));
    }
    records
}

/// Why `record` is not quoted as RFC 4180 says, if it is not: text after a field's closing
/// quote. Arrow's reader (csv-core) would read it anyway, dropping quotes and joining the
/// pieces (`"a\"b"`, Spark's escaped quote, would become `a\b"`): such a record is a bad one
/// rather than a wrong value.
pub fn quote_problem(record: &[u8], delimiter: u8, escape: Option<u8>) -> Option<String> {
    let mut i = 0;
    let mut field = 1;
    while i < record.len() {
        if record[i] != b'"' {
            // An unquoted field (a quote inside it is text): to the next delimiter.
            match memchr::memchr(delimiter, &record[i..]) {
                Some(at) => i += at + 1,
                None => return None,
            }
            field += 1;
            continue;
        }
        // A quoted field: a doubled quote is a quote; a single one closes it.
        i += 1;
        loop {
            let at = i + match escape {
                // An escaped byte is text (`\"`, or the escape itself doubled).
                Some(escape) => {
                    let at = memchr::memchr2(b'"', escape, &record[i..])?;
                    if record[i + at] == escape {
                        // The escape may be the record's last byte (a quote never closed).
                        i = (i + at + 2).min(record.len());
                        continue;
                    }
                    at
                }
                None => memchr::memchr(b'"', &record[i..])?,
            };
            if record.get(at + 1) == Some(&b'"') {
                i = at + 2;
                continue;
            }
            i = at + 1;
            break;
        }
        match record.get(i) {
            None => return None,
            Some(&b) if b == delimiter => {
                i += 1;
                field += 1;
            }
            Some(b'\r') if i + 1 == record.len() => return None,
            Some(_) => {
                let escaped = escape.is_none() && record[..i - 1].ends_with(b"\\");
                return Some(format!(
                    "field {field} has text after its closing quote: a quote inside a quoted field is written doubled (`\"\"`){}",
                    match escaped {
                        true => "; this one is escaped with a backslash, as Spark writes CSV by default: `escape: \"\\\\\"` on the source reads it",
                        false => "",
                    }
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_after_a_closing_quote_is_a_quoting_problem() {
        for good in [
            &b"a,b,c"[..],
            b"\"a,b\",c",
            b"\"say \"\"hi\"\"\",2",
            b"1,\"\"",
            b"x\"y,z",
            b"\"a\"\r",
            b"\"multi\nline\",1",
        ] {
            assert_eq!(
                quote_problem(good, b',', None),
                None,
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        let spark = quote_problem(b"1,\"a\\\"b\"", b',', None).unwrap();
        assert!(
            spark.starts_with("field 2 has text after its closing quote"),
            "{spark}"
        );
        assert!(spark.contains("escaped with a backslash"), "{spark}");
        let loose = quote_problem(b"1,\"x\"y,z", b',', None).unwrap();
        assert!(!loose.contains("backslash"), "{loose}");
        assert!(quote_problem(b"\"a\" ;b", b';', None).is_some());
        // With an escape, an escaped quote (or escape) is text inside the field.
        let escape = Some(b'\\');
        assert_eq!(quote_problem(b"1,\"a\\\"b\",2", b',', escape), None);
        assert_eq!(quote_problem(b"1,\"c\\\\\",2", b',', escape), None);
        assert!(quote_problem(b"1,\"x\"y", b',', escape).is_some());
        // An escape as the last byte, inside a quote never closed.
        for open in [&b"\"x\\"[..], b"\"\\", b"a,\"x\\\",q\\"] {
            assert_eq!(quote_problem(open, b',', escape), None);
        }
    }

    fn texts(bytes: &[u8]) -> Vec<(usize, String)> {
        records(bytes, b',')
            .into_iter()
            .map(|(line, r)| (line, String::from_utf8(r.to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn line_breaks_inside_quotes_are_text_and_outside_end_records() {
        let csv = b"a,\"one\ntwo\",1\nb,\"say \"\"hi\"\"\nthere\",2\r\nc,plain,3\n";
        assert_eq!(
            texts(csv),
            [
                (0, "a,\"one\ntwo\",1".to_owned()),
                (2, "b,\"say \"\"hi\"\"\nthere\",2\r".to_owned()),
                (4, "c,plain,3".to_owned()),
            ]
        );
        assert_eq!(whole_records_len(csv, b','), Some(csv.len()));
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_text_as_csv_core_reads_it() {
        let csv = b"5\" disk,\"x\ny\"\nnext,1\n";
        assert_eq!(
            texts(csv),
            [
                (0, "5\" disk,\"x\ny\"".to_owned()),
                (2, "next,1".to_owned())
            ]
        );
        // Checked against the csv crate (csv-core), which Arrow's reader is built on.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&csv[..]);
        let read: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(read, [vec!["5\" disk", "x\ny"], vec!["next", "1"]]);
    }

    #[test]
    fn an_open_quote_holds_the_rest_and_a_cut_is_made_before_it() {
        let csv = b"a,1\nb,\"open\nstill open\n";
        assert_eq!(whole_records_len(csv, b','), Some(4));
        assert_eq!(
            texts(csv),
            [
                (0, "a,1".to_owned()),
                (1, "b,\"open\nstill open\n".to_owned())
            ]
        );
        assert_eq!(whole_records_len(b"\"no end\nyet", b','), None);
        assert!(records(b"", b',').is_empty());
    }

    #[test]
    fn a_header_is_one_line_without_lone_carriage_returns() {
        assert_eq!(header_problem(b"a,\"b,c\",d", b','), None);
        for blank in [&b""[..], b" ", b"\r", b"\xEF\xBB\xBF"] {
            assert!(
                header_problem(blank, b',').unwrap().contains("blank"),
                "{blank:?}"
            );
        }
        assert!(header_problem(b"a,b\r1,2\r", b',')
            .unwrap()
            .contains("carriage return"));
        assert!(header_problem(b"\"a", b',')
            .unwrap()
            .contains("does not close"));
    }

    #[test]
    fn the_delimiter_is_the_one_given() {
        let tsv = b"a\t\"x\ny\"\nb\tz\n";
        let lines = |delimiter| -> Vec<usize> {
            records(tsv, delimiter)
                .into_iter()
                .map(|(l, _)| l)
                .collect()
        };
        assert_eq!(lines(b'\t'), [0, 2]);
        // Read with commas, the quote is inside the field `a\t"x`: text, not quotes.
        assert_eq!(lines(b','), [0, 1, 2]);
    }
}
