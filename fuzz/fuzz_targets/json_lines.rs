//! JSON lines records: any bytes decoded into declared columns (top-level and nested, every
//! type the plain reader reads, some required) must not panic, and each record (non-blank
//! line) must come out either as a row or as a bad record, never lost or doubled.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::sources::records::{ColumnSpec, Format, RecordDecoder};

fuzz_target!(|data: &[u8]| {
    let columns = [
        ("lang", "text?"),
        ("n", "integer"),
        ("x", "float?"),
        ("at", "timestamp?"),
        ("account.acct", "text?"),
        ("account.bot", "bool?"),
        ("tags", "list?"),
    ]
    .iter()
    .map(|(name, type_text)| ColumnSpec::parse(name, type_text).expect("a column"))
    .collect();
    let decoder = RecordDecoder::new(Format::Jsonl, columns, b',').expect("a decoder");
    let Ok((batches, bad)) = decoder.decode(data) else {
        return;
    };
    let records = data
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows + bad.len(), records, "every record a row or a bad record");
});
