//! The CSV sink's quoting: any text cells (and column names), written as the sink writes them,
//! read back by a CSV reader as exactly the same fields. First byte: columns (1–4) and whether
//! the header is written; then fields separated by 0xFF (never in UTF-8 text).
#![no_main]

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let columns = 1 + (options & 3) as usize;
    let header = options & 4 != 0;
    let mut fields: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    if fields.len() < columns {
        return;
    }
    let names: Vec<String> = fields.drain(..columns).collect();
    let rows = fields.len() / columns;
    fields.truncate(rows * columns);

    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|c| {
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|r| fields[r * columns + c].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema, arrays).expect("columns match the schema");

    let mut bytes = Vec::new();
    runner::sinks::csv::write_records(&mut bytes, &batch, header).expect("writing to memory");

    let mut expected: Vec<Vec<String>> = Vec::new();
    if header {
        expected.push(names.clone());
    }
    expected.extend(fields.chunks(columns).map(<[String]>::to_vec));
    let back: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice())
        .records()
        .map(|r| {
            r.expect("the written CSV reads back")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(
        back,
        expected,
        "CSV written: {:?}",
        String::from_utf8_lossy(&bytes)
    );
});
