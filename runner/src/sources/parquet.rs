//! `file` with `format: parquet`: Parquet files read with the `parquet` crate's Arrow reader.
//! A morsel is one row group (its bytes stay empty: the worker that decodes it reads the row
//! group itself), so row groups are read in parallel and in bounded memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::file::{first_file, FileSourceConfig};
use super::records::{ColumnSpec, OnError};
use super::{BatchSource, BuiltSource, Morsel, Morsels, Position};
use crate::data::{ValueType, BATCH_ROWS};
use crate::error::{Error, Result};

/// A Parquet column as the type `columns:` (or the file) names, and its rows whose value did
/// not convert, with why.
struct Converted {
    column: ArrayRef,
    bad: Vec<(usize, String)>,
}

/// Converts `column` to `to`. Arrow's cast turns a value that does not convert into null and
/// truncates a float to an integer; here both are bad rows, told with the value, not silent
/// changes. A time without a zone (and a date) is read as UTC, as a text one is.
fn convert(column: &ArrayRef, to: &DataType, spec: &ColumnSpec) -> Result<Converted, String> {
    if column.data_type() == to {
        return Ok(Converted {
            column: column.clone(),
            bad: Vec::new(),
        });
    }
    let is_time = matches!(
        column.data_type(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    );
    let converted: ArrayRef = match to {
        DataType::Timestamp(unit, Some(zone)) if is_time => {
            let zone_free = DataType::Timestamp(*unit, None);
            let instants = match column.data_type() {
                // Already instants: only the unit changes (a named zone needs no zone database).
                DataType::Timestamp(_, Some(_)) => arrow_cast::cast(column, to),
                _ => arrow_cast::cast(column, &zone_free),
            }
            .map_err(|e| e.to_string())?;
            let micros = instants
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or("not a timestamp in microseconds")?;
            Arc::new(micros.clone().with_timezone(zone.clone()))
        }
        DataType::Utf8 if is_time => {
            let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let instants = convert(column, &utc, spec)?.column;
            let micros = instants
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or("not a timestamp in microseconds")?;
            Arc::new(
                micros
                    .iter()
                    .map(|t| t.map(crate::data::format_timestamp))
                    .collect::<arrow_array::StringArray>(),
            )
        }
        _ => arrow_cast::cast(column, to).map_err(|e| e.to_string())?,
    };
    // Whether a row's number has a fraction (decimals decided on their digits: a float would
    // round 12345678901234567.01 to a whole number).
    let fractional: Option<Vec<bool>> = match (column.data_type(), to) {
        (DataType::Decimal128(_, scale), DataType::Int64) if *scale > 0 => {
            let unit = 10i128.checked_pow(u32::from(scale.unsigned_abs()));
            let decimals = column.as_primitive::<arrow_array::types::Decimal128Type>();
            Some(
                decimals
                    .values()
                    .iter()
                    .map(|v| unit.is_none_or(|unit| v % unit != 0))
                    .collect(),
            )
        }
        (from, DataType::Int64) if from.is_floating() || from.is_decimal() => {
            let floats = arrow_cast::cast(column, &DataType::Float64).map_err(|e| e.to_string())?;
            Some(
                floats
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|x| x.fract() != 0.0)
                    .collect(),
            )
        }
        _ => None,
    };
    let mut bad = Vec::new();
    for row in (0..column.len()).filter(|&r| column.is_valid(r)) {
        let why = if converted.is_null(row) {
            match column.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "",
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    " (its bytes are not UTF-8)"
                }
                _ => " (out of range)",
            }
        } else if fractional.as_ref().is_some_and(|f| f[row]) {
            " (it has a fraction: read it as float)"
        } else {
            continue;
        };
        bad.push((
            row,
            format!(
                "`{}`: {} cannot be read as {}{why}",
                spec.name,
                shown_value(column.as_ref(), row),
                spec.value_type.name()
            ),
        ));
    }
    Ok(Converted {
        column: converted,
        bad,
    })
}

/// A value for a message: texts quoted, cut short, control characters escaped.
fn shown_value(column: &dyn Array, row: usize) -> String {
    let options = arrow_cast::display::FormatOptions::default();
    let text = match arrow_cast::display::ArrayFormatter::try_new(column, &options) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(_) => "the value".to_owned(),
    };
    let short = crate::error::shortened(&text);
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => format!("\"{short}\""),
        _ => short,
    }
}

pub(super) fn build(config: &FileSourceConfig, path: PathBuf) -> Result<BuiltSource, String> {
    if config.fetch.is_some() {
        return Err("`fetch` is for text files; download the Parquet file first".into());
    }
    if path == Path::new("-") {
        return Err("Parquet is read by row group from a file, not from standard input: write it to a file first".into());
    }
    let columns: Vec<ColumnSpec> = match &config.columns {
        Some(columns) => columns
            .iter()
            .map(|(n, t)| ColumnSpec::parse(n, t))
            .collect::<Result<_, _>>()?,
        None => {
            let first =
                first_file(&path).ok_or_else(|| super::file::inferred_input_missing(&path))?;
            let file_schema = file_schema(&first)?;
            file_schema
                .fields()
                .iter()
                .map(|f| {
                    // Unsigned 64-bit integers are integers too: a value past i64 is a bad
                    // row, as when the column is declared.
                    let value_type = match f.data_type() {
                        arrow_schema::DataType::UInt64 => Some(ValueType::Integer),
                        other => ValueType::convertible_from(other),
                    };
                    let value_type = value_type.ok_or_else(|| {
                        format!(
                            "{}: column `{}` holds {}, which runner cannot read (types: text, integer, float, bool, timestamp, list of text); list the fields to read in `columns:`",
                            first.display(),
                            f.name(),
                            f.data_type()
                        )
                    })?;
                    Ok(ColumnSpec {
                        name: f.name().clone(),
                        value_type,
                        required: false,
                    })
                })
                .collect::<Result<_, String>>()?
        }
    };
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.value_type.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    Ok(BuiltSource::Batch(Box::new(ParquetSource {
        path,
        columns,
        schema,
        on_error: config.on_error,
        bad: AtomicU64::new(0),
        first_bad: Default::default(),
        file_order: Default::default(),
    })))
}

fn file_schema(path: &Path) -> Result<SchemaRef, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{}: not a readable Parquet file: {e}", path.display()))?;
    Ok(builder.schema().clone())
}

/// A row left out: its file's place in the run's files, the file, its row group, its row in
/// the group, and why.
type SkippedRow = (usize, Arc<str>, u64, usize, String);

/// The `file` source for `format: parquet`: one morsel per row group, decoded by the worker that
/// takes it.
pub struct ParquetSource {
    path: PathBuf,
    columns: Vec<ColumnSpec>,
    schema: SchemaRef,
    on_error: OnError,
    bad: AtomicU64,
    /// The first row skipped, in file order.
    first_bad: std::sync::Mutex<Option<SkippedRow>>,
    /// Each file's place in the order `open` took them.
    file_order: std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>,
}

impl ParquetSource {
    fn files(&self) -> Result<Vec<PathBuf>> {
        let pattern = self.path.to_string_lossy();
        let mut files: Vec<PathBuf> = if super::file::is_pattern(&self.path) {
            super::file::glob_matches(&self.path)
                .map_err(Error::runtime)?
                .into_iter()
                .filter(|p| p.is_file())
                .collect()
        } else if self.path.is_dir() {
            std::fs::read_dir(&self.path)
                .map_err(|source| Error::Input {
                    path: self.path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        } else {
            vec![self.path.clone()]
        };
        files.sort();
        if files.is_empty() {
            return Err(Error::runtime(format!("no Parquet files at `{pattern}`")));
        }
        Ok(files)
    }

    fn reader(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
        let file = std::fs::File::open(path).map_err(|source| Error::Input {
            path: path.to_path_buf(),
            source,
        })?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            Error::runtime(format!(
                "{}: not a readable Parquet file: {e}",
                path.display()
            ))
        })
    }
}

impl BatchSource for ParquetSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn check_inputs(&self) -> std::result::Result<Option<String>, String> {
        self.files().map(|_| None).map_err(|e| e.to_string())
    }

    fn open(&self) -> Result<Morsels<'_>> {
        let mut groups: Vec<(Arc<str>, u64)> = Vec::new();
        let mut order = self
            .file_order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, path) in self.files()?.into_iter().enumerate() {
            let count = self.reader(&path)?.metadata().num_row_groups();
            let origin: Arc<str> = path.display().to_string().into();
            order.insert(origin.clone(), index);
            groups.extend((0..count as u64).map(|g| (origin.clone(), g)));
        }
        Ok(Morsels::Indexed {
            count: groups.len(),
            read: Box::new(move |i| {
                let (origin, group) = &groups[i];
                Ok(Morsel {
                    bytes: Vec::new(),
                    origin: origin.clone(),
                    position: Position::Offset(*group),
                })
            }),
        })
    }

    fn decode(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        let Position::Offset(group) = morsel.position else {
            return Err(Error::runtime("a Parquet morsel names its row group"));
        };
        let path = Path::new(&*morsel.origin);
        let builder = self.reader(path)?;
        let file_schema = builder.schema().clone();
        let mut leaves = Vec::new();
        for spec in &self.columns {
            let index = file_schema.index_of(&spec.name).map_err(|_| {
                Error::runtime(format!(
                    "{}: no column `{}` (columns: {})",
                    morsel.origin,
                    spec.name,
                    file_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            leaves.push(index);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), leaves.iter().copied());
        let reader = builder
            .with_row_groups(vec![group as usize])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::runtime(format!("{}: {e}", morsel.origin)))?;
        let mut batches = Vec::new();
        let mut first_row = 0usize;
        for batch in reader {
            let batch = batch.map_err(|e| {
                Error::runtime(format!("{}: row group {group}: {e}", morsel.origin))
            })?;
            let rows = batch.num_rows();
            let mut columns = Vec::with_capacity(self.columns.len());
            // Per row, why it is bad (the first reason found), if it is.
            let mut bad: Vec<Option<String>> = vec![None; rows];
            for (spec, field) in self.columns.iter().zip(self.schema.fields()) {
                let column = batch.column_by_name(&spec.name).ok_or_else(|| {
                    Error::runtime(format!("{}: no column `{}`", morsel.origin, spec.name))
                })?;
                let converted = convert(column, field.data_type(), spec).map_err(|e| {
                    Error::runtime(format!(
                        "{}: column `{}` ({}) cannot be read as {}: {e}",
                        morsel.origin,
                        spec.name,
                        column.data_type(),
                        spec.value_type.name()
                    ))
                })?;
                for (row, reason) in converted.bad {
                    bad[row].get_or_insert(reason);
                }
                if spec.required && converted.column.null_count() > 0 {
                    for row in (0..rows).filter(|&r| converted.column.is_null(r)) {
                        bad[row].get_or_insert_with(|| {
                            format!(
                                "the required field `{}` is missing (write `{}?` in `columns:` to read it as null)",
                                spec.name,
                                spec.value_type.name()
                            )
                        });
                    }
                }
                columns.push(converted.column);
            }
            let batch = RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| Error::runtime(e.to_string()))?;
            let Some(first_bad) = bad.iter().position(Option::is_some) else {
                batches.push(batch);
                first_row += rows;
                continue;
            };
            if self.on_error == OnError::Fail {
                return Err(Error::runtime(format!(
                    "{}: row group {group}, row {}: {}; `on_error: skip` leaves such rows out",
                    morsel.origin,
                    first_row + first_bad,
                    bad[first_bad].as_deref().unwrap_or_default()
                )));
            }
            {
                let file = self
                    .file_order
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get(&morsel.origin)
                    .copied()
                    .unwrap_or(usize::MAX);
                let place = (file, group, first_row + first_bad);
                let mut first = self
                    .first_bad
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if first
                    .as_ref()
                    .is_none_or(|(file, _, g, row, _)| place < (*file, *g, *row))
                {
                    let reason = bad[first_bad].clone().unwrap_or_default();
                    *first = Some((file, morsel.origin.clone(), group, place.2, reason));
                }
            }
            let keep: arrow_array::BooleanArray =
                bad.iter().map(|reason| Some(reason.is_none())).collect();
            self.bad
                .fetch_add(keep.false_count() as u64, Ordering::Relaxed);
            batches.push(
                arrow_select::filter::filter_record_batch(&batch, &keep)
                    .map_err(|e| Error::runtime(e.to_string()))?,
            );
            first_row += rows;
        }
        Ok(batches)
    }

    fn warnings(&self) -> Vec<String> {
        let bad = self.bad.load(Ordering::Relaxed);
        if bad > 0 {
            let first = self
                .first_bad
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .map_or(String::new(), |(_, file, group, row, why)| {
                    format!(
                        " (the first: {}: row group {group}, row {row}: {why})",
                        crate::error::escape_controls(file)
                    )
                });
            vec![format!(
                "{bad} Parquet row(s) lacked a required field or held a value not of its column's type, and were skipped{first}"
            )]
        } else {
            Vec::new()
        }
    }

    fn counters(&self) -> super::SourceCounters {
        super::SourceCounters {
            malformed_events: self.bad.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    fn input_bytes(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Date32Array, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array,
    };

    fn spec(name: &str, value_type: &str) -> ColumnSpec {
        ColumnSpec::parse(name, value_type).unwrap()
    }

    fn texts(column: &ArrayRef) -> Vec<String> {
        (0..column.len())
            .map(|r| crate::data::cell(column.as_ref(), r).to_text())
            .collect()
    }

    #[test]
    fn times_without_a_zone_and_dates_are_read_as_utc() {
        let utc = ValueType::Timestamp.data_type();
        let naive: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_714_564_800_123),
            None,
        ]));
        let read = convert(&naive, &utc, &spec("t", "timestamp?")).unwrap();
        assert!(read.bad.is_empty());
        assert_eq!(texts(&read.column), ["2024-05-01T12:00:00.123Z", ""]);
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![19_844]));
        let read = convert(&dates, &utc, &spec("d", "timestamp")).unwrap();
        assert_eq!(texts(&read.column), ["2024-05-01T00:00:00Z"]);
        // A zone named by the file: the instants stay, printed in UTC, also as text.
        let oslo: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![1_714_564_800_000]).with_timezone("Europe/Oslo"),
        );
        let read = convert(&oslo, &DataType::Utf8, &spec("z", "text")).unwrap();
        assert_eq!(texts(&read.column), ["2024-05-01T12:00:00Z"]);
    }

    #[test]
    fn a_value_that_does_not_convert_is_a_bad_row_not_a_silent_change() {
        let to = DataType::Int64;
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(3.0),
            Some(2.5),
            None,
            Some(f64::NAN),
        ]));
        let read = convert(&floats, &to, &spec("f", "integer?")).unwrap();
        assert_eq!(
            read.bad,
            [
                (
                    1,
                    "`f`: 2.5 cannot be read as integer (it has a fraction: read it as float)"
                        .to_owned()
                ),
                (
                    3,
                    "`f`: NaN cannot be read as integer (out of range)".to_owned()
                )
            ]
        );
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![7, u64::MAX]));
        let read = convert(&big, &to, &spec("u", "integer")).unwrap();
        assert_eq!(texts(&read.column), ["7", ""]);
        assert_eq!(read.bad.len(), 1);
        assert!(read.bad[0]
            .1
            .ends_with("18446744073709551615 cannot be read as integer (out of range)"));
        let long = "x".repeat(1000) + "\n";
        let words: ArrayRef = Arc::new(StringArray::from(vec!["12", long.as_str()]));
        let read = convert(&words, &to, &spec("s", "integer")).unwrap();
        assert_eq!(read.bad.len(), 1);
        let (row, reason) = &read.bad[0];
        assert_eq!(*row, 1);
        assert!(
            reason.starts_with("`s`: \"xxx")
                && reason.ends_with("… (921 more characters)\" cannot be read as integer"),
            "{reason}"
        );
        let bytes: ArrayRef = Arc::new(arrow_array::BinaryArray::from(vec![
            b"ok".as_slice(),
            b"\x00\xff".as_slice(),
        ]));
        let read = convert(&bytes, &DataType::Utf8, &spec("b", "text")).unwrap();
        assert_eq!(read.bad.len(), 1);
        assert!(
            read.bad[0]
                .1
                .ends_with("cannot be read as text (its bytes are not UTF-8)"),
            "{:?}",
            read.bad
        );
    }
}
