//! The `where:` expression language: parse and type-check any text against a schema with a
//! column of every type, and evaluate what compiles on a small batch. Errors are fine; panics
//! are not, and a predicate gives one answer per row.
#![no_main]

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("word", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
        Field::new("ratio", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("two words", DataType::Utf8, true),
    ]));
    let Ok(predicate) = runner::expr::compile(source, &schema) else {
        return;
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["romeo", "", "ΣΑΣ"])),
        Arc::new(Int64Array::from(vec![3, -1, i64::MAX])),
        Arc::new(Float64Array::from(vec![Some(0.5), None, Some(f64::NAN)])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(StringArray::from(vec![Some("a b"), None, Some("’")])),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("columns match the schema");
    if let Ok(kept) = predicate.evaluate(&batch) {
        assert_eq!(kept.len(), batch.num_rows());
    }
});
