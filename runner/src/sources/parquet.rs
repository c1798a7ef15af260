//! `file` with `format: parquet`: Parquet files read with the `parquet` crate's Arrow reader.
//! A morsel is a slice of a row group's rows, several pages of each column (its bytes stay
//! empty: the worker that decodes it reads those rows itself), so even a file of one row group
//! is read in parallel; it is decoded a batch at a time, in bounded memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;

use super::file::{first_file, FileSourceConfig};
use super::records::{ColumnSpec, OnError};
use super::{BatchSource, BuiltSource, Morsel, Morsels, Position};
use crate::data::{ValueType, BATCH_ROWS};
use crate::error::{unpanicked, Error, Result};

/// A Parquet column as the type `columns:` (or the file) names, and its rows whose value did
/// not convert, with why.
struct Converted {
    column: ArrayRef,
    bad: Vec<(usize, String)>,
}

/// Whether a Parquet column of type `from` can be read as `to` (its values may still fail one
/// by one): numbers and texts as numbers, texts and booleans as booleans (not numbers: `5` is
/// not true), times, texts and epoch numbers as timestamps, anything but nested values and raw
/// bytes as text.
fn convertible(from: &DataType, to: ValueType) -> bool {
    use DataType as D;
    let from = match from {
        D::Dictionary(_, value) => value.as_ref(),
        other => other,
    };
    let is_text = matches!(from, D::Utf8 | D::LargeUtf8 | D::Utf8View);
    let is_binary = matches!(from, D::Binary | D::LargeBinary | D::BinaryView);
    let is_number = from.is_integer() || from.is_floating() || from.is_decimal();
    let is_time = matches!(from, D::Timestamp(..) | D::Date32 | D::Date64);
    if from == &D::Null {
        return true;
    }
    match to {
        ValueType::Text => {
            is_text || is_binary || is_number || is_time || from == &D::Boolean || is_list(from)
        }
        ValueType::Integer | ValueType::Float => is_text || is_number,
        ValueType::Bool => is_text || from == &D::Boolean,
        ValueType::Timestamp => is_text || is_number || is_time,
        ValueType::TextList => is_list(from),
    }
}

/// Whether `from` is a list whose items read as text (not lists or structs themselves).
fn is_list(from: &DataType) -> bool {
    use DataType as D;
    match from {
        D::List(item) | D::LargeList(item) | D::FixedSizeList(item, _) => {
            let item = item.data_type();
            // Not times (Arrow would write them its own way) nor bytes (an item that is not
            // UTF-8 would turn null unseen).
            !item.is_nested()
                && !matches!(
                    item,
                    D::Timestamp(..)
                        | D::Date32
                        | D::Date64
                        | D::Binary
                        | D::LargeBinary
                        | D::BinaryView
                        | D::FixedSizeBinary(_)
                )
                && convertible(item, ValueType::Text)
        }
        _ => false,
    }
}

/// Converts `column` to the type `spec` declares (`to` is its Arrow type). Arrow's cast turns
/// a value that does not convert into null, truncates a float to an integer and reads any
/// number as a boolean; here each is a bad row, told with the value, not a silent change. A
/// time without a zone (and a date) is read as UTC, as a text one is; texts and numbers are
/// read as timestamps as the CSV and JSON readers read them (RFC 3339, epoch numbers told
/// apart by size), and every timestamp must be in the years 1 to 9999.
fn convert(column: &ArrayRef, to: &DataType, spec: &ColumnSpec) -> Result<Converted, String> {
    if column.data_type() == to {
        return check_range(column.clone(), spec);
    }
    if column.data_type() == &DataType::Null {
        return Ok(Converted {
            column: arrow_array::new_null_array(to, column.len()),
            bad: Vec::new(),
        });
    }
    if let DataType::Dictionary(_, value) = column.data_type() {
        let plain = arrow_cast::cast(column, value).map_err(|e| e.to_string())?;
        return convert(&plain, to, spec);
    }
    if !convertible(column.data_type(), spec.value_type) {
        return Err(format!(
            "{} cannot be read as {}",
            column.data_type(),
            spec.value_type.name()
        ));
    }
    let from = column.data_type();
    let is_time = matches!(
        from,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    );
    let is_text = matches!(
        from,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    // Per row: the value, or why it is bad (`None` for a null).
    let converted: ArrayRef = match spec.value_type {
        ValueType::Timestamp if is_time => {
            let micros: arrow_array::TimestampMicrosecondArray = match from {
                // Nanoseconds are floored to microseconds, as Spark reads them (a cast would
                // round toward zero, moving times before 1970 forward).
                DataType::Timestamp(TimeUnit::Nanosecond, _) => column
                    .as_primitive::<arrow_array::types::TimestampNanosecondType>()
                    .unary(|n: i64| n.div_euclid(1_000)),
                // Already instants (a named zone needs no zone database) or read as UTC: only
                // the unit changes.
                DataType::Timestamp(unit, _) => arrow_cast::cast(
                    &arrow_cast::cast(column, &DataType::Int64).map_err(|e| e.to_string())?,
                    &DataType::Timestamp(*unit, None),
                )
                .and_then(|t| {
                    arrow_cast::cast(&t, &DataType::Timestamp(TimeUnit::Microsecond, None))
                })
                .map_err(|e| e.to_string())?
                .as_primitive::<TimestampMicrosecondType>()
                .clone(),
                _ => arrow_cast::cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
                    .map_err(|e| e.to_string())?
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone(),
            };
            Arc::new(micros.with_timezone("UTC"))
        }
        // Decimals too: decided on their digits, not through a float.
        ValueType::Timestamp if is_text || from.is_decimal() => {
            let text = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            let micros: arrow_array::TimestampMicrosecondArray = text
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(crate::data::parse_timestamp))
                .collect();
            Arc::new(micros.with_timezone("UTC"))
        }
        ValueType::Timestamp if from.is_integer() => {
            let integers = arrow_cast::cast(column, &DataType::Int64).map_err(|e| e.to_string())?;
            let micros: arrow_array::TimestampMicrosecondArray = integers
                .as_primitive::<arrow_array::types::Int64Type>()
                .iter()
                .map(|v| v.and_then(crate::data::epoch_integer_micros))
                .collect();
            Arc::new(micros.with_timezone("UTC"))
        }
        ValueType::Timestamp => {
            let floats = arrow_cast::cast(column, &DataType::Float64).map_err(|e| e.to_string())?;
            let micros: arrow_array::TimestampMicrosecondArray = floats
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.and_then(crate::data::epoch_number_micros))
                .collect();
            Arc::new(micros.with_timezone("UTC"))
        }
        ValueType::Text if is_time => {
            let utc = ValueType::Timestamp.data_type();
            let as_time = ColumnSpec {
                value_type: ValueType::Timestamp,
                ..spec.clone()
            };
            let instants = convert(column, &utc, &as_time)?;
            let micros = instants
                .column
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or("not a timestamp in microseconds")?;
            return Ok(Converted {
                column: Arc::new(
                    micros
                        .iter()
                        .map(|t| t.map(crate::data::format_timestamp))
                        .collect::<arrow_array::StringArray>(),
                ),
                bad: instants.bad,
            });
        }
        ValueType::Text if is_list(from) => {
            // A list written as text is a JSON array, as the sinks write one.
            let lists = arrow_cast::cast(column, &ValueType::TextList.data_type())
                .map_err(|e| e.to_string())?;
            Arc::new(
                (0..lists.len())
                    .map(|row| {
                        lists
                            .is_valid(row)
                            .then(|| crate::data::cell(lists.as_ref(), row).to_field())
                    })
                    .collect::<arrow_array::StringArray>(),
            )
        }
        ValueType::Bool if is_text => {
            let text = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            Arc::new(
                text.as_string::<i32>()
                    .iter()
                    .map(|v| {
                        v.and_then(|v| match v.trim() {
                            t if t.eq_ignore_ascii_case("true") => Some(true),
                            t if t.eq_ignore_ascii_case("false") => Some(false),
                            _ => None,
                        })
                    })
                    .collect::<arrow_array::BooleanArray>(),
            )
        }
        _ => arrow_cast::cast(column, to).map_err(|e| e.to_string())?,
    };
    // Whether a row's number has a fraction (decimals decided on their digits: a float would
    // round 12345678901234567.01 to a whole number).
    let fractional: Option<Vec<bool>> = match (from, spec.value_type) {
        (from, ValueType::Integer) if from.is_decimal() => {
            let digits = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            Some(
                digits
                    .as_string::<i32>()
                    .iter()
                    .map(|v| {
                        v.and_then(|v| v.split_once('.'))
                            .is_some_and(|(_, fraction)| fraction.bytes().any(|b| b != b'0'))
                    })
                    .collect(),
            )
        }
        (from, ValueType::Integer) if from.is_floating() => {
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
            match from {
                _ if spec.value_type == ValueType::Timestamp && is_time => {
                    " (out of the timestamps' range, years 1 to 9999)"
                }
                _ if spec.value_type == ValueType::Timestamp && !is_text => {
                    " (an epoch number in the years 1 to 9999)"
                }
                _ if spec.value_type == ValueType::Timestamp => {
                    " (RFC 3339, ISO 8601, or an epoch number; years 1 to 9999)"
                }
                _ if spec.value_type == ValueType::Bool => " (true or false)",
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
    if spec.value_type == ValueType::Timestamp {
        let ranged = check_range(converted, spec)?;
        let known: std::collections::HashSet<usize> = bad.iter().map(|(row, _)| *row).collect();
        bad.extend(
            ranged
                .bad
                .into_iter()
                .filter(|(row, _)| !known.contains(row)),
        );
        bad.sort_by_key(|(row, _)| *row);
        return Ok(Converted {
            column: ranged.column,
            bad,
        });
    }
    Ok(Converted {
        column: converted,
        bad,
    })
}

/// A column of the model's type as it is, with its timestamps out of the years 1 to 9999 (which
/// RFC 3339 writes and Spark holds) as bad rows.
fn check_range(column: ArrayRef, spec: &ColumnSpec) -> Result<Converted, String> {
    let mut bad = Vec::new();
    if let Some(times) = column.as_primitive_opt::<TimestampMicrosecondType>() {
        for (row, micros) in times.iter().enumerate() {
            if let Some(micros) = micros.filter(|&m| !crate::data::timestamp_in_range(m)) {
                bad.push((
                    row,
                    format!(
                        "`{}`: {micros} microseconds since 1970 is out of the timestamps' range (years 1 to 9999)",
                        spec.name
                    ),
                ));
            }
        }
    }
    Ok(Converted { column, bad })
}

/// A value for a message: texts quoted, cut short, control characters escaped.
fn shown_value(column: &dyn Array, row: usize) -> String {
    if let DataType::Timestamp(unit, _) = column.data_type() {
        // A time Arrow cannot print (past the years chrono holds): its number, with its unit.
        if let Ok(numbers) = arrow_cast::cast(column, &DataType::Int64) {
            let number = numbers
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(row);
            let unit = match unit {
                TimeUnit::Second => "seconds",
                TimeUnit::Millisecond => "milliseconds",
                TimeUnit::Microsecond => "microseconds",
                TimeUnit::Nanosecond => "nanoseconds",
            };
            return format!("{number} {unit} since 1970");
        }
    }
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
            let mut columns = Vec::new();
            let mut left_out = Vec::new();
            inferred_columns(
                file_schema.fields(),
                &[],
                file_schema.fields(),
                &mut columns,
                &mut left_out,
            );
            if !left_out.is_empty() {
                tracing::warn!(
                    "columns read from {}'s schema leave out {}: no column type reads them (list the columns to read in `columns:`)",
                    crate::error::escape_path(&first),
                    left_out.join(", ")
                );
            }
            if columns.is_empty() {
                return Err(format!(
                    "{}: no column can be read{}",
                    crate::error::escape_path(&first),
                    if left_out.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", left_out.join(", "))
                    }
                ));
            }
            columns
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
        plans: Default::default(),
    })))
}

/// The columns a file's schema gives without `columns:`: each top-level column, and each
/// field of a struct column by its dotted path (`account.acct`), as JSON lines' nested
/// objects are read. What no column type reads (maps, lists of structs, raw bytes) goes to
/// `left_out`, named with its type, as does a dotted path that names another column first
/// (a column called `account.acct` beside a struct `account`).
fn inferred_columns(
    fields: &arrow_schema::Fields,
    parents: &[String],
    top: &arrow_schema::Fields,
    columns: &mut Vec<ColumnSpec>,
    left_out: &mut Vec<String>,
) {
    for field in fields {
        let mut path = parents.to_vec();
        path.push(field.name().clone());
        let name = path.join(".");
        if let DataType::Struct(children) = field.data_type() {
            inferred_columns(children, &path, top, columns, left_out);
            continue;
        }
        // Unsigned 64-bit integers are integers too: a value past i64 is a bad row, as when
        // the column is declared.
        let value_type = match field.data_type() {
            DataType::UInt64 => Some(ValueType::Integer),
            other => ValueType::convertible_from(other),
        };
        match value_type {
            // Two top-level columns of one name are both listed here; `open` refuses them.
            Some(value_type)
                if parents.is_empty()
                    || matches!(field_names(top, &name), Ok(Some(found)) if found == path) =>
            {
                columns.push(ColumnSpec {
                    name,
                    value_type,
                    required: false,
                })
            }
            Some(_) => left_out.push(format!("`{name}` (another column has that name)")),
            None if matches!(
                field.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            ) =>
            {
                left_out.push(format!(
                    "`{name}` (raw bytes: declare it `text` to read them)"
                ))
            }
            None => left_out.push(format!("`{name}` ({})", field.data_type())),
        }
    }
}

/// Where the column `name` lies in `fields`: the names from a top-level column down to it.
/// A name is first a column's own (`log.level`), then a field inside struct columns
/// (`account.acct`), as a JSON line's dotted path is read. `Ok(None)`: no such column.
/// `Err`: why it cannot be read (a name two columns share, a field inside a list or map).
fn field_names(
    fields: &arrow_schema::Fields,
    name: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    let named = |wanted: &str| -> std::result::Result<Option<&arrow_schema::FieldRef>, String> {
        let mut same = fields.iter().filter(|f| f.name() == wanted);
        match (same.next(), same.count()) {
            (first, 0) => Ok(first),
            (_, more) => Err(format!(
                "{} columns are named `{wanted}`, which runner cannot tell apart: rename them in the file",
                more + 1
            )),
        }
    };
    if named(name)?.is_some() {
        return Ok(Some(vec![name.to_owned()]));
    }
    let mut inside_values = None;
    for (dot, _) in name.match_indices('.') {
        let (parent, rest) = (&name[..dot], &name[dot + 1..]);
        let Some(field) = named(parent)? else {
            continue;
        };
        match field.data_type() {
            DataType::Struct(children) => {
                if let Some(mut below) = field_names(children, rest)? {
                    below.insert(0, parent.to_owned());
                    return Ok(Some(below));
                }
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..) => inside_values = Some(field.clone()),
            _ => {}
        }
    }
    match inside_values {
        Some(field) => Err(format!(
            "`{name}` would be inside the column `{}`, which holds {}: runner reads fields of structs, not of a list's or a map's values",
            field.name(),
            field.data_type()
        )),
        None => Ok(None),
    }
}

/// The column at `names` (from `field_names`) in `batch`, with a struct's nulls as its
/// fields' nulls (a field's own validity does not say that its struct is null); `None` where
/// the batch lacks it.
fn column_at(batch: &RecordBatch, names: &[String]) -> Option<ArrayRef> {
    let (top, inner) = names.split_first()?;
    let mut column = batch.column_by_name(top)?.clone();
    for name in inner {
        let parent = column.as_struct_opt()?;
        let child = parent.column_by_name(name)?;
        column = match parent.nulls() {
            // No null struct, or a field of nulls only: the field as it is.
            None => child.clone(),
            Some(_) if child.data_type() == &DataType::Null => child.clone(),
            Some(parents) => {
                let nulls = arrow_buffer::NullBuffer::union(Some(parents), child.nulls());
                let data = child.to_data().into_builder().nulls(nulls).build().ok()?;
                arrow_array::make_array(data)
            }
        };
    }
    Some(column)
}

/// The leaves (the Parquet file's own columns) of the declared columns found in a file:
/// what is read of it.
fn declared_leaves(
    columns: &[ColumnSpec],
    footer: &ArrowReaderMetadata,
) -> std::result::Result<Vec<usize>, String> {
    let mut paths = Vec::new();
    for spec in columns {
        if let Some(names) = field_names(footer.schema().fields(), &spec.name)? {
            paths.push(names);
        }
    }
    Ok(footer
        .parquet_schema()
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, leaf)| {
            let parts = leaf.path().parts();
            paths.iter().any(|names| parts.starts_with(names))
        })
        .map(|(index, _)| index)
        .collect())
}

fn file_schema(path: &Path) -> Result<SchemaRef, String> {
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "{}{}: {e}",
            super::file::INFERRED_FROM_INPUT,
            crate::error::escape_path(path)
        )
    })?;
    let unreadable = |why: String| {
        format!(
            "{}{}: not a readable Parquet file: {why}",
            super::file::INFERRED_FROM_INPUT,
            crate::error::escape_path(path)
        )
    };
    let footer = unpanicked(|| read_footer(&file))
        .map_err(unreadable)?
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(footer.schema().clone())
}

/// How a footer is read: with the offset index where the file has one (the place and first
/// row of each page), so that a morsel starting in a row group's middle is sought, not
/// reached by reading the page headers before it.
fn reader_options() -> ArrowReaderOptions {
    ArrowReaderOptions::new()
        .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
}

/// The file's footer, with INT96 timestamps (Spark's and Hive's default) read as microseconds:
/// Arrow's default, nanoseconds, holds only the years 1677 to 2262, and a value outside them
/// would wrap into another date without a word.
fn read_footer(file: &std::fs::File) -> parquet::errors::Result<ArrowReaderMetadata> {
    check_footer_size(file)?;
    let footer = on_a_deep_stack(|| ArrowReaderMetadata::load(file, reader_options()))?;
    check_footer(footer.metadata())?;
    let int96: Vec<String> = footer
        .parquet_schema()
        .columns()
        .iter()
        .filter(|leaf| {
            leaf.physical_type() == parquet::basic::Type::INT96 && leaf.path().parts().len() == 1
        })
        .map(|leaf| leaf.name().to_owned())
        .collect();
    if int96.is_empty() {
        return Ok(footer);
    }
    let fields: Vec<Field> = footer
        .schema()
        .fields()
        .iter()
        .map(|field| match int96.contains(field.name()) {
            true => field
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, None)),
            false => field.as_ref().clone(),
        })
        .collect();
    let hint = Schema::new_with_metadata(fields, footer.schema().metadata().clone());
    ArrowReaderMetadata::try_new(
        footer.metadata().clone(),
        reader_options().with_schema(Arc::new(hint)),
    )
}

/// The largest footer read: the `parquet` crate takes the length the file's last bytes give
/// whole, and a damaged one (2.9 GB in a file of holes) took that much memory.
const MOST_FOOTER_BYTES: u64 = 128 << 20;

/// The most levels of structs and lists read: decoding recurses once per level, and a file of
/// 300 nested structs overflowed a worker's stack.
const MOST_NESTED_LEVELS: usize = 100;

/// The stack a footer is read on: the `parquet` crate recurses once per level of nesting as it
/// reads one, before its depth can be checked (20,000 levels overflowed the main thread's
/// 8 MiB; this takes some tens of thousands more). Reserved, not touched, unless used.
const FOOTER_STACK_BYTES: usize = 128 << 20;

/// `read` on a thread of its own with a `FOOTER_STACK_BYTES` stack; a panic there is an error.
fn on_a_deep_stack<T: Send>(
    read: impl FnOnce() -> parquet::errors::Result<T> + Send,
) -> parquet::errors::Result<T> {
    use parquet::errors::ParquetError::General;
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("runner-footer".into())
            .stack_size(FOOTER_STACK_BYTES)
            .spawn_scoped(scope, read)
            .map_err(|e| General(format!("cannot start a thread to read the footer: {e}")))?;
        reader
            .join()
            .map_err(|payload| General(crate::error::from_panic(payload.as_ref()).to_string()))?
    })
}

/// Refuses a footer longer than `MOST_FOOTER_BYTES` before it is read.
fn check_footer_size(file: &std::fs::File) -> parquet::errors::Result<()> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let mut tail = [0u8; 8];
    if size < 12 || file.read_exact_at(&mut tail, size - 8).is_err() {
        // Too short to be Parquet: the crate's own error says so.
        return Ok(());
    }
    let length = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if &tail[4..] == b"PAR1" && length > MOST_FOOTER_BYTES {
        return Err(parquet::errors::ParquetError::General(format!(
            "its footer is said to take {length} bytes, more than the {MOST_FOOTER_BYTES} runner reads (damaged?)"
        )));
    }
    Ok(())
}

/// Refuses a footer that contradicts itself or nests deeper than `MOST_NESTED_LEVELS`: rows
/// counted by the file, its row groups and their columns must agree (a file said to hold 0
/// rows, or a group said to hold 1 of its 1,000, was read as that, without a word).
fn check_footer(
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> parquet::errors::Result<()> {
    use parquet::errors::ParquetError::General;
    let schema = metadata.file_metadata().schema_descr();
    if let Some(deep) = schema
        .columns()
        .iter()
        .find(|leaf| leaf.path().parts().len() > MOST_NESTED_LEVELS)
    {
        return Err(General(format!(
            "its column `{}` is nested {} levels deep; runner reads up to {MOST_NESTED_LEVELS}",
            crate::error::shortened(&crate::error::escape_controls(&deep.path().parts()[0])),
            deep.path().parts().len()
        )));
    }
    let groups: i64 = metadata
        .row_groups()
        .iter()
        .map(|group| group.num_rows())
        .fold(0i64, i64::saturating_add);
    let said = metadata.file_metadata().num_rows();
    if groups != said {
        return Err(General(format!(
            "it says it holds {said} rows, and its row groups {groups} (damaged?)"
        )));
    }
    for (index, group) in metadata.row_groups().iter().enumerate() {
        // A column outside any list holds a value (or a null) per row.
        for (leaf, chunk) in schema.columns().iter().zip(group.columns()) {
            if leaf.max_rep_level() == 0 && chunk.num_values() != group.num_rows() {
                return Err(General(format!(
                    "row group {index} says it holds {} rows, and its column `{}` {} values (damaged?)",
                    group.num_rows(),
                    crate::error::shortened(&crate::error::escape_controls(
                        &chunk.column_path().string()
                    )),
                    chunk.num_values()
                )));
            }
        }
    }
    Ok(())
}

/// A row left out: its file's place in the run's files, the file, its row group, its row in
/// the group, and why.
type SkippedRow = (usize, Arc<str>, usize, usize, String);

/// The fewest rows a morsel of a row group holds: a smaller group is one morsel. A row group
/// can be a whole file of gigabytes (Spark writes 128 MB of compressed pages per group; pyarrow
/// once wrote one group per file); cut into morsels, its rows are decoded by every worker.
const SLICE_MIN_ROWS: u64 = 16 * BATCH_ROWS as u64;

/// The fewest pages of each column a morsel holds: a morsel that starts inside a page decodes
/// that page to pass its first rows by, so at most one page in this many is decoded twice. A
/// group written as one page per column (DuckDB writes them so) is one morsel.
const SLICE_PAGES: u64 = 4;

/// A file's plan, and its morsels not yet decoded.
type PlanLeft = (Arc<FilePlan>, u64);

/// How a file's row groups are cut into morsels.
struct FilePlan {
    footer: ArrowReaderMetadata,
    /// The row groups that hold rows, in file order.
    groups: Vec<GroupSlices>,
    /// The morsels of the whole file.
    slices: u64,
}

/// One row group's morsels: `slice_rows` rows each, the last one the rest.
struct GroupSlices {
    group: usize,
    rows: u64,
    slice_rows: u64,
    /// The file's morsel number of the group's first.
    first_slice: u64,
}

impl FilePlan {
    /// Cuts each row group of `file` (whose footer is `footer`) by the pages of its columns
    /// `leaves` (the file's own columns, those read); `Err` says why the footer cannot be so
    /// (its claims do not add up).
    fn new(
        file: &std::fs::File,
        footer: ArrowReaderMetadata,
        leaves: &[usize],
    ) -> std::result::Result<Self, String> {
        let mut groups = Vec::new();
        let mut slices = 0u64;
        for (group, meta) in footer.metadata().row_groups().iter().enumerate() {
            let rows = u64::try_from(meta.num_rows())
                .map_err(|_| format!("row group {group} says it holds {} rows", meta.num_rows()))?;
            if rows == 0 {
                continue;
            }
            let page = (rows > SLICE_MIN_ROWS)
                .then(|| page_rows(file, &footer, group, leaves))
                .flatten();
            let slice_rows = match page {
                Some(page) => {
                    let pages = SLICE_PAGES.saturating_mul(page);
                    SLICE_MIN_ROWS
                        .max(
                            pages
                                .div_ceil(BATCH_ROWS as u64)
                                .saturating_mul(BATCH_ROWS as u64),
                        )
                        .min(rows)
                }
                None => rows,
            };
            groups.push(GroupSlices {
                group,
                rows,
                slice_rows,
                first_slice: slices,
            });
            slices = slices
                .checked_add(rows.div_ceil(slice_rows))
                .ok_or_else(|| "its row groups claim more rows than can be counted".to_owned())?;
        }
        Ok(FilePlan {
            footer,
            groups,
            slices,
        })
    }

    /// Morsel `slice`'s row group, its first row in the group and its rows.
    fn slice(&self, slice: u64) -> Option<(usize, u64, u64)> {
        let at = self
            .groups
            .partition_point(|g| g.first_slice <= slice)
            .checked_sub(1)?;
        let group = &self.groups[at];
        let start = (slice - group.first_slice).checked_mul(group.slice_rows)?;
        (start < group.rows).then(|| (group.group, start, group.slice_rows.min(group.rows - start)))
    }
}

/// The most rows of one page among the columns `leaves` of row group `group`: from the offset
/// index where the file has one, otherwise from the first data page's header of each column
/// (writers keep to one page size; pyarrow and DuckDB write no offset index). `None` where the
/// group is better read as one morsel: a list column without an offset index, whose pages
/// cannot be passed by on their headers (they do not count rows), so that each morsel would
/// decode every page before its own. The group's own rows where a header cannot be read: its
/// decoding will say why.
fn page_rows(
    file: &std::fs::File,
    footer: &ArrowReaderMetadata,
    group: usize,
    leaves: &[usize],
) -> Option<u64> {
    use parquet::column::page::PageReader;
    let metadata = footer.metadata();
    let chunks = metadata.row_group(group).columns();
    let whole = u64::try_from(metadata.row_group(group).num_rows()).unwrap_or(0);
    let index = metadata.page_index_for_row_group(group);
    let schema = footer.parquet_schema();
    let first_page = |chunk: &parquet::file::metadata::ColumnChunkMetaData| -> Option<u64> {
        let file = Arc::new(file.try_clone().ok()?);
        let rows = usize::try_from(whole).ok()?;
        let mut pages =
            parquet::file::serialized_reader::SerializedPageReader::new(file, chunk, rows, None)
                .ok()?;
        loop {
            let page = pages.peek_next_page().ok()??;
            if !page.is_dict {
                return u64::try_from(page.num_rows.or(page.num_levels)?).ok();
            }
            pages.skip_next_page().ok()?;
        }
    };
    let mut most = 0;
    for (leaf, column) in schema.columns().iter().enumerate() {
        if !leaves.contains(&leaf) {
            continue;
        }
        let rows = match index.page_locations(leaf) {
            Some(pages) => {
                let firsts = pages
                    .iter()
                    .map(|page| u64::try_from(page.first_row_index).unwrap_or(0));
                let ends = firsts.clone().skip(1).chain([whole]);
                firsts
                    .zip(ends)
                    .map(|(first, end)| end.saturating_sub(first))
                    .max()
            }
            None if column.max_rep_level() > 0 => return None,
            None => Some(chunks.get(leaf).and_then(first_page).unwrap_or(whole)),
        };
        most = most.max(rows.unwrap_or(whole));
    }
    Some(most)
}

/// The `file` source for `format: parquet`: each row group cut into morsels of several pages
/// of each column (`SLICE_MIN_ROWS`, `SLICE_PAGES`), each decoded by the worker that takes
/// it, a batch at a time.
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
    /// Each file's footer, read once by `open` (a file of thousands of row groups would
    /// otherwise have its footer read again for each one) with its morsels, and how many of
    /// those are not yet decoded: it is let go with its last one.
    plans: std::sync::Mutex<std::collections::HashMap<Arc<str>, PlanLeft>>,
}

impl ParquetSource {
    /// The files to read, by name: the file, a directory's or a glob's (not hidden ones:
    /// `_SUCCESS`, `.part` files being written, as the `file` source passes them by).
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = if super::file::is_pattern(&self.path) {
            super::file::glob_matches(&self.path)
                .map_err(Error::runtime)?
                .into_iter()
                .filter(|p| p.is_file() && !super::file::is_hidden_match(&self.path, p))
                .collect()
        } else if self.path.is_dir() {
            std::fs::read_dir(&self.path)
                .map_err(|source| Error::Input {
                    path: self.path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && !super::file::is_hidden(p))
                .collect()
        } else {
            vec![self.path.clone()]
        };
        files.sort();
        if files.is_empty() {
            return Err(Error::runtime(format!(
                "no Parquet files at `{}` (files whose names start with `.` or `_` are passed by)",
                crate::error::escape_path(&self.path)
            )));
        }
        Ok(files)
    }

    /// The footer of `path`, read from the file, with each column chunk's place checked
    /// against the file's size (the `parquet` crate panics on a negative one).
    fn footer(path: &Path) -> Result<ArrowReaderMetadata> {
        let file = std::fs::File::open(path).map_err(|source| Error::Input {
            path: path.to_path_buf(),
            source,
        })?;
        let unreadable = |why: String| {
            Error::runtime(format!(
                "{}: not a readable Parquet file: {why}",
                crate::error::escape_path(path)
            ))
        };
        let size = file
            .metadata()
            .map_err(|source| Error::Input {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let footer = unpanicked(|| read_footer(&file))
            .map_err(unreadable)?
            .map_err(|e| unreadable(e.to_string()))?;
        for (group, row_group) in footer.metadata().row_groups().iter().enumerate() {
            for chunk in row_group.columns() {
                let start = chunk
                    .dictionary_page_offset()
                    .unwrap_or(chunk.data_page_offset());
                let length = chunk.compressed_size();
                let inside = u64::try_from(start)
                    .ok()
                    .zip(u64::try_from(length).ok())
                    .and_then(|(start, length)| start.checked_add(length))
                    .is_some_and(|end| end <= size);
                if !inside {
                    return Err(unreadable(format!(
                        "row group {group}: column `{}` is said to start at byte {start} and take {length} bytes, outside the file's {size} bytes (damaged or cut short)",
                        crate::error::escape_controls(&chunk.column_path().string())
                    )));
                }
            }
        }
        Ok(footer)
    }

    /// Checks that `path` has every declared column, each of a type that converts (a file
    /// without row groups is checked too).
    fn check_columns(&self, path: &Path, footer: &ArrowReaderMetadata) -> Result<()> {
        let file_schema = footer.schema();
        let refused =
            |why: String| Error::runtime(format!("{}: {why}", crate::error::escape_path(path)));
        for spec in &self.columns {
            let field = field_names(file_schema.fields(), &spec.name)
                .map_err(refused)?
                .map(|names| {
                    let (top, inner) = names.split_first().expect("a path names a column");
                    let mut field = file_schema
                        .field_with_name(top)
                        .expect("the path's column")
                        .clone();
                    for name in inner {
                        let DataType::Struct(children) = field.data_type() else {
                            unreachable!("a path goes through structs")
                        };
                        field = children
                            .find(name)
                            .expect("the path's field")
                            .1
                            .as_ref()
                            .clone();
                    }
                    field
                });
            match field {
                Some(field) => {
                    if !convertible(field.data_type(), spec.value_type) {
                        let fields = match field.data_type() {
                            DataType::Struct(children) => format!(
                                " (its fields are read by their dotted paths: {})",
                                children
                                    .iter()
                                    .map(|f| format!("`{}.{}`", spec.name, f.name()))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            _ => String::new(),
                        };
                        return Err(refused(format!(
                            "column `{}` holds {}, which cannot be read as {}{fields}",
                            spec.name,
                            field.data_type(),
                            spec.value_type.name()
                        )));
                    }
                }
                None if !spec.required => {}
                None => {
                    return Err(refused(format!(
                        "no column `{}` (columns: {}; write `{}?` in `columns:` to read it as null where a file lacks it)",
                        spec.name,
                        file_schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        spec.value_type.name()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Reads the rows of the row group `morsel` names into `emit`, a batch at a time.
    fn decode_group(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let Position::Offset(slice) = morsel.position else {
            return Err(Error::runtime(
                "a Parquet morsel names its slice of the file",
            ));
        };
        let path = Path::new(&*morsel.origin);
        let plan = {
            let mut plans = self
                .plans
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let (plan, left) = plans
                .get_mut(&morsel.origin)
                .ok_or_else(|| Error::runtime("a Parquet morsel of a file not opened"))?;
            let plan = plan.clone();
            *left -= 1;
            if *left == 0 {
                plans.remove(&morsel.origin);
            }
            plan
        };
        let (group, start, rows) = plan
            .slice(slice)
            .ok_or_else(|| Error::runtime("a Parquet morsel past its file's row groups"))?;
        let (Ok(start), Ok(rows)) = (usize::try_from(start), usize::try_from(rows)) else {
            return Err(Error::runtime(format!(
                "{}: row group {group} holds more rows than this machine can count",
                morsel.origin
            )));
        };
        let file = std::fs::File::open(path).map_err(|source| Error::Input {
            path: path.to_path_buf(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, plan.footer.clone());
        let leaves = declared_leaves(&self.columns, &plan.footer).map_err(Error::runtime)?;
        let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
        // Pages before the slice are passed by on their headers, not decompressed (columns
        // without repeated values; a list's pages are decoded to be skipped). A whole group is
        // read without one, as it was before groups were cut.
        let whole_group = start == 0
            && i64::try_from(rows).ok() == Some(plan.footer.metadata().row_group(group).num_rows());
        let selection = (!whole_group).then(|| {
            let selectors: Vec<RowSelector> = [RowSelector::skip(start), RowSelector::select(rows)]
                .into_iter()
                .filter(|selector| selector.row_count > 0)
                .collect();
            RowSelection::from(selectors)
        });
        // The `parquet` crate asserts on some damage it finds in a file: that is a bad input,
        // not a bug in runner. Guarded: its reader, and the conversion of what it returns
        // (Arrow's kernels on its arrays); not what `emit` runs, which is runner's.
        let damaged = |why: String| {
            Error::runtime(format!(
                "{}: not a readable Parquet file: {why}",
                crate::error::escape_controls(&morsel.origin)
            ))
        };
        let mut reader = unpanicked(|| {
            let builder = builder
                .with_row_groups(vec![group])
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS);
            match selection {
                Some(selection) => builder.with_row_selection(selection).build(),
                None => builder.build(),
            }
        })
        .map_err(damaged)?
        .map_err(|e| Error::runtime(format!("{}: {e}", morsel.origin)))?;
        let mut first_row = start;
        let origin = &morsel.origin;
        while let Some(read) = unpanicked(|| {
            reader
                .next()
                .map(|batch| self.good_rows(origin, group, first_row, batch))
        })
        .map_err(damaged)?
        {
            let (batch, rows) = read?;
            first_row += rows;
            emit(batch)?;
        }
        Ok(())
    }

    /// A batch read from row group `group` of `origin`, its first row `first_row` of the group,
    /// in the declared columns and types, without its bad rows (`on_error: skip`; `fail`
    /// stops at the first); with the rows it was read with.
    fn good_rows(
        &self,
        origin: &Arc<str>,
        group: usize,
        first_row: usize,
        batch: std::result::Result<RecordBatch, arrow_schema::ArrowError>,
    ) -> Result<(RecordBatch, usize)> {
        let batch =
            batch.map_err(|e| Error::runtime(format!("{origin}: row group {group}: {e}")))?;
        let rows = batch.num_rows();
        let mut columns = Vec::with_capacity(self.columns.len());
        // Per row, why it is bad (the first reason found), if it is.
        let mut bad: Vec<Option<String>> = vec![None; rows];
        for (spec, field) in self.columns.iter().zip(self.schema.fields()) {
            let names = field_names(batch.schema().fields(), &spec.name)
                .ok()
                .flatten()
                .unwrap_or_default();
            let Some(column) = column_at(&batch, &names) else {
                // An optional column this file lacks: null in its rows.
                columns.push(arrow_array::new_null_array(field.data_type(), rows));
                continue;
            };
            let converted = convert(&column, field.data_type(), spec).map_err(|e| {
                Error::runtime(format!(
                    "{}: column `{}` ({}) cannot be read as {}: {e}",
                    origin,
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
                            "the required field `{}` is null (write `{}?` in `columns:` to read it as null)",
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
            return Ok((batch, rows));
        };
        if self.on_error == OnError::Fail {
            return Err(Error::runtime(format!(
                "{}: row group {group}, row {}: {}; `on_error: skip` leaves such rows out",
                origin,
                first_row + first_bad,
                bad[first_bad].as_deref().unwrap_or_default()
            )));
        }
        {
            let file = self
                .file_order
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(origin)
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
                *first = Some((file, origin.clone(), group, place.2, reason));
            }
        }
        let keep: arrow_array::BooleanArray =
            bad.iter().map(|reason| Some(reason.is_none())).collect();
        self.bad
            .fetch_add(keep.false_count() as u64, Ordering::Relaxed);
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| Error::runtime(e.to_string()))?;
        Ok((kept, rows))
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
        // Each file with morsels, with the run's number of its first morsel.
        let mut files: Vec<(Arc<str>, u64)> = Vec::new();
        let mut morsels = 0u64;
        let mut order = self
            .file_order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, path) in self.files()?.into_iter().enumerate() {
            let footer = Self::footer(&path)?;
            self.check_columns(&path, &footer)?;
            let leaves = declared_leaves(&self.columns, &footer).map_err(Error::runtime)?;
            let unreadable = |why: String| {
                Error::runtime(format!(
                    "{}: not a readable Parquet file: {why}",
                    crate::error::escape_path(&path)
                ))
            };
            let file = std::fs::File::open(&path).map_err(|source| Error::Input {
                path: path.clone(),
                source,
            })?;
            let plan = unpanicked(|| FilePlan::new(&file, footer, &leaves))
                .map_err(&unreadable)?
                .map_err(&unreadable)?;
            let origin: Arc<str> = path.display().to_string().into();
            order.insert(origin.clone(), index);
            if plan.slices > 0 {
                files.push((origin.clone(), morsels));
                morsels = morsels
                    .checked_add(plan.slices)
                    .ok_or_else(|| unreadable("too many rows to count".to_owned()))?;
                let slices = plan.slices;
                plans.insert(origin, (Arc::new(plan), slices));
            }
        }
        Ok(Morsels::Indexed {
            count: usize::try_from(morsels)
                .map_err(|_| Error::runtime("more Parquet rows than this machine can count"))?,
            read: Box::new(move |i| {
                let i = i as u64;
                let at = files
                    .partition_point(|(_, first)| *first <= i)
                    .checked_sub(1)
                    .ok_or_else(|| Error::runtime("a Parquet morsel before the first file"))?;
                let (origin, first) = &files[at];
                Ok(Morsel {
                    bytes: Vec::new(),
                    origin: origin.clone(),
                    position: Position::Offset(i - first),
                })
            }),
        })
    }

    fn decode_each(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.decode_group(morsel, emit)
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
                "{bad} Parquet row(s) held a null in a required field or a value not of its column's type, and were skipped{first}"
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

    /// The rows' values as text and the rows that were bad.
    fn read_as(column: ArrayRef, declared: &str) -> (Vec<String>, Vec<usize>) {
        let spec = spec("c", declared);
        let read = convert(&column, &spec.value_type.data_type(), &spec).unwrap();
        let bad = read.bad.iter().map(|(row, _)| *row).collect();
        (texts(&read.column), bad)
    }

    #[test]
    fn texts_and_numbers_are_read_as_timestamps_as_csv_and_json_read_them() {
        let words: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2024-05-01T12:00:00Z"),
            Some("1714564800"),
            Some("not a time"),
            None,
        ]));
        let (values, bad) = read_as(words, "timestamp?");
        assert_eq!(
            values[..2],
            ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"]
        );
        assert_eq!(bad, [2]);
        let seconds: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![
            1_714_564_800,
            1_714_564_800_123,
            1_714_564_800_123_456_789,
        ]));
        let (values, bad) = read_as(seconds, "timestamp");
        assert_eq!(
            values,
            [
                "2024-05-01T12:00:00Z",
                "2024-05-01T12:00:00.123Z",
                "2024-05-01T12:00:00.123456Z"
            ]
        );
        assert!(bad.is_empty());
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1_714_564_800.5, f64::NAN]));
        let (values, bad) = read_as(floats, "timestamp");
        assert_eq!(values[0], "2024-05-01T12:00:00.500Z");
        assert_eq!(bad, [1]);
    }

    #[test]
    fn timestamps_are_floored_to_microseconds_and_kept_in_years_1_to_9999() {
        let nanos: ArrayRef = Arc::new(arrow_array::TimestampNanosecondArray::from(vec![
            -1_999, 1_999,
        ]));
        let (values, bad) = read_as(nanos, "timestamp");
        assert_eq!(
            values,
            ["1969-12-31T23:59:59.999998Z", "1970-01-01T00:00:00.000001Z"]
        );
        assert!(bad.is_empty());
        let late: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            253_402_300_800_000,
            0,
        ]));
        let spec = spec("t", "timestamp");
        let read = convert(&late, &spec.value_type.data_type(), &spec).unwrap();
        assert_eq!(read.bad.len(), 1, "{:?}", read.bad);
        assert!(
            read.bad[0].1.contains("out of the timestamps' range"),
            "{:?}",
            read.bad
        );
        // Also as text, and when the file's type is the model's own.
        assert_eq!(read_as(late.clone(), "text").1, [0]);
        let own: ArrayRef = Arc::new(
            arrow_array::TimestampMicrosecondArray::from(vec![253_402_300_800_000_000])
                .with_timezone("UTC"),
        );
        assert_eq!(read_as(own, "timestamp").1, [0]);
    }

    #[test]
    fn booleans_lists_decimals_and_nulls_convert_without_silent_changes() {
        // A number is not a boolean; a text is when it says true or false.
        let numbers: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![5, 0]));
        let spec_bool = spec("b", "bool");
        let err = convert(&numbers, &DataType::Boolean, &spec_bool)
            .err()
            .unwrap();
        assert_eq!(err, "Int64 cannot be read as bool");
        let words: ArrayRef = Arc::new(StringArray::from(vec!["TRUE", "false", "yes"]));
        let (values, bad) = read_as(words, "bool");
        assert_eq!(values[..2], ["true", "false"]);
        assert_eq!(bad, [2]);
        // A list as text is a JSON array: a null item and an empty text stay apart.
        let mut lists =
            arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
        lists.append_value([Some("a"), None, Some("")]);
        lists.append_null();
        let lists: ArrayRef = Arc::new(lists.finish());
        let (values, bad) = read_as(lists, "text?");
        assert_eq!(values, ["[\"a\",null,\"\"]", ""]);
        assert!(bad.is_empty());
        // A wide decimal's fraction is found on its digits.
        let wide: ArrayRef = Arc::new(
            arrow_array::Decimal256Array::from(vec![
                arrow_buffer::i256::from_i128(1_234_567_890_123_456_701),
                arrow_buffer::i256::from_i128(1_234_567_890_123_456_700),
            ])
            .with_precision_and_scale(40, 2)
            .unwrap(),
        );
        let (values, bad) = read_as(wide, "integer");
        assert_eq!(values[1], "12345678901234567");
        assert_eq!(bad, [0]);
        // A column of nulls only (Arrow's `null` type) is null as any type.
        let nulls: ArrayRef = Arc::new(arrow_array::NullArray::new(2));
        assert_eq!(
            read_as(nulls, "text?"),
            (vec![String::new(), String::new()], vec![])
        );
    }
}

/// The `file` source of a batch run reading the Parquet file at `path` (`columns`: more keys,
/// as `, columns: {...}`), or why it cannot be built.
#[cfg(test)]
fn batch_source(path: &Path, columns: &str) -> Result<Box<dyn BatchSource>> {
    use crate::sources::{BuildSource, SourceContext};
    let yaml = format!("{{path: '{}', format: parquet{columns}}}", path.display());
    let config: FileSourceConfig = serde_saphyr::from_str(&yaml).unwrap();
    let built = config
        .build(&SourceContext {
            base_dir: Path::new("."),
            streaming: false,
        })
        .map_err(Error::invalid)?;
    match built {
        BuiltSource::Batch(source) => Ok(source),
        _ => panic!("a Parquet file is read in batch runs"),
    }
}

#[cfg(test)]
mod damaged_file_tests {
    use super::*;
    use arrow_array::types::Int64Type;
    use arrow_array::StringArray;

    /// Every row of the Parquet file at `path`, read as `columns` says (inferred without),
    /// or the error that stopped the read.
    fn read(path: &Path, columns: &str) -> Result<usize> {
        let source = batch_source(path, columns)?;
        let mut rows = 0;
        for morsel in source.open()?.into_seq_iter() {
            rows += source
                .decode(morsel?)?
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
        }
        Ok(rows)
    }

    /// Two columns of one name: refused, where the second was lost, silently.
    #[test]
    fn a_repeated_column_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ints = |v: Vec<i64>| Arc::new(arrow_array::Int64Array::from(v)) as ArrayRef;
        let twice = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]));
        let twice = write(
            dir.path(),
            "twice.parquet",
            &RecordBatch::try_new(twice, vec![ints(vec![1]), ints(vec![3])]).unwrap(),
        );
        for columns in ["", ", columns: {a: integer}"] {
            let err = read(&twice, columns).unwrap_err().to_string();
            assert!(err.contains("2 columns are named `a`"), "{err}");
        }
    }

    #[test]
    fn a_footer_that_contradicts_itself_or_nests_too_deep_is_refused() {
        use parquet::file::metadata::{FileMetaData, ParquetMetaData, RowGroupMetaData};
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "three.parquet",
            &RecordBatch::try_from_iter([(
                "x",
                Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            )])
            .unwrap(),
        );
        let file = std::fs::File::open(&path).unwrap();
        let metadata = read_footer(&file).unwrap().metadata().clone();
        assert!(check_footer(&metadata).is_ok());
        let own = metadata.file_metadata();
        let with = |said: i64, groups: Vec<RowGroupMetaData>, schema| {
            let file = FileMetaData::new(own.version(), said, None, None, schema, None);
            check_footer(&ParquetMetaData::new(file, groups))
                .unwrap_err()
                .to_string()
        };
        let schema = own.schema_descr_ptr();
        let groups = metadata.row_groups().to_vec();
        // The file says 0 rows, or 1000; its one group holds 3.
        for said in [0, 1000] {
            let error = with(said, groups.clone(), schema.clone());
            assert!(
                error.contains(&format!("says it holds {said} rows, and its row groups 3")),
                "{error}"
            );
        }
        // The group says 1 row, its column holds 3 values.
        let one = RowGroupMetaData::builder(schema.clone())
            .set_num_rows(1)
            .set_column_metadata(groups[0].columns().to_vec())
            .build()
            .unwrap();
        let error = with(1, vec![one], schema);
        assert!(
            error.contains("row group 0 says it holds 1 rows, and its column `x` 3 values"),
            "{error}"
        );
        // Structs nested past the limit (a file of 300 overflowed a worker's stack).
        let deep = MOST_NESTED_LEVELS + 1;
        let message = format!(
            "message m {{ {} optional int64 v; {} }}",
            "optional group g {".repeat(deep - 1),
            "}".repeat(deep - 1)
        );
        let schema = Arc::new(parquet::schema::types::SchemaDescriptor::new(Arc::new(
            parquet::schema::parser::parse_message_type(&message).unwrap(),
        )));
        let error = with(0, Vec::new(), schema);
        assert!(
            error.contains(&format!("`g` is nested {deep} levels deep")),
            "{error}"
        );
    }

    /// Writes `batch` as the Parquet file `name` in `dir`.
    fn write(dir: &Path, name: &str, batch: &RecordBatch) -> PathBuf {
        let path = dir.join(name);
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        path
    }

    /// Every row of the file at `path`, read as `columns` says, as JSON lines.
    fn json_rows(path: &Path, columns: &str) -> Result<(Vec<String>, Vec<String>)> {
        let source = batch_source(path, columns)?;
        let names = source
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect();
        let mut out = Vec::new();
        for morsel in source.open()?.into_seq_iter() {
            for batch in source.decode(morsel?)? {
                let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
                writer.write(&batch).unwrap();
                writer.finish().unwrap();
            }
        }
        let rows = String::from_utf8(out).unwrap();
        Ok((names, rows.lines().map(str::to_owned).collect()))
    }

    /// A struct column's fields are columns of their own by dotted path, as a JSON line's
    /// nested objects are: inferred, or declared; a null struct makes its fields null
    /// (whatever values its fields hold under it); a column named with the dot itself comes
    /// first, as in JSON lines.
    #[test]
    fn a_structs_fields_are_read_by_their_dotted_paths() {
        let dir = tempfile::tempdir().unwrap();
        let geo = arrow_array::StructArray::from(vec![(
            Arc::new(Field::new("lat", DataType::Float64, true)),
            Arc::new(arrow_array::Float64Array::from(vec![1.5, 2.5, 3.5])) as ArrayRef,
        )]);
        let fields = arrow_schema::Fields::from(vec![
            Field::new("acct", DataType::Utf8, true),
            Field::new("geo", geo.data_type().clone(), true),
        ]);
        // Row 1's struct is null while its fields hold values.
        let account = arrow_array::StructArray::try_new(
            fields,
            vec![
                Arc::new(StringArray::from(vec!["ana", "hidden", "bo"])) as ArrayRef,
                Arc::new(geo) as ArrayRef,
            ],
            Some(arrow_buffer::NullBuffer::from(vec![true, false, true])),
        )
        .unwrap();
        let tags = arrow_array::ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1)]),
            None,
            Some(vec![]),
        ]);
        let ints = Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as ArrayRef;
        let path = write(
            dir.path(),
            "nested.parquet",
            &RecordBatch::try_from_iter([
                ("id", ints),
                ("account", Arc::new(account) as ArrayRef),
                (
                    "account.acct",
                    Arc::new(StringArray::from(vec!["x", "y", "z"])) as ArrayRef,
                ),
                ("tags", Arc::new(tags) as ArrayRef),
            ])
            .unwrap(),
        );
        let (names, rows) = json_rows(&path, "").unwrap();
        assert_eq!(
            names,
            [
                "id: Int64",
                "account.geo.lat: Float64",
                "account.acct: Utf8",
                "tags: List(Utf8)"
            ]
        );
        assert_eq!(
            rows,
            [
                r#"{"id":1,"account.geo.lat":1.5,"account.acct":"x","tags":["1"]}"#,
                r#"{"id":2,"account.acct":"y"}"#,
                r#"{"id":3,"account.geo.lat":3.5,"account.acct":"z","tags":[]}"#,
            ]
        );
        let (_, rows) =
            json_rows(&path, ", columns: {account.geo.lat: float?, id: integer}").unwrap();
        assert_eq!(
            rows,
            [
                r#"{"account.geo.lat":1.5,"id":1}"#,
                r#"{"id":2}"#,
                r#"{"account.geo.lat":3.5,"id":3}"#
            ]
        );
        // Required: the null struct's row is a bad row, told as a null.
        let err = json_rows(&path, ", columns: {account.geo.lat: float}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 1: the required field `account.geo.lat` is null"),
            "{err}"
        );
        let err = json_rows(&path, ", columns: {account.geo: text}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("its fields are read by their dotted paths: `account.geo.lat`"),
            "{err}"
        );
        let (_, rows) = json_rows(&path, ", columns: {account.nope: text?, id: integer}").unwrap();
        assert_eq!(rows, [r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]);
    }

    /// A field inside a list's values is not read apart: refused with the reason, and left
    /// out of the inferred columns.
    #[test]
    fn a_field_inside_a_list_is_refused_and_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let item = arrow_array::StructArray::from(vec![(
            Arc::new(Field::new("k", DataType::Int64, true)),
            Arc::new(arrow_array::Int64Array::from(vec![7])) as ArrayRef,
        )]);
        let items = arrow_array::ListArray::new(
            Arc::new(Field::new("item", item.data_type().clone(), true)),
            arrow_buffer::OffsetBuffer::from_lengths([1]),
            Arc::new(item),
            None,
        );
        let path = write(
            dir.path(),
            "items.parquet",
            &RecordBatch::try_from_iter([
                (
                    "id",
                    Arc::new(arrow_array::Int64Array::from(vec![1])) as ArrayRef,
                ),
                ("items", Arc::new(items) as ArrayRef),
            ])
            .unwrap(),
        );
        let (names, rows) = json_rows(&path, "").unwrap();
        assert_eq!(
            (names, rows),
            (vec!["id: Int64".to_owned()], vec![r#"{"id":1}"#.to_owned()])
        );
        let err = json_rows(&path, ", columns: {items.k: integer}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`items.k` would be inside the column `items`"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_file_is_a_bad_input_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_from_iter([(
            "a",
            Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            Some(
                parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build(),
            ),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let good = std::fs::read(&path).unwrap();
        assert_eq!(read(&path, "").unwrap(), 3);
        // Each byte in turn set to values a damaged footer holds (a negative size among them).
        let mut placed_outside = 0;
        for at in 0..good.len() {
            for value in [0x00, 0x81, 0xff] {
                let mut bytes = good.clone();
                bytes[at] = value;
                std::fs::write(&path, &bytes).unwrap();
                for columns in ["", ", columns: {a: integer?}"] {
                    // A panic fails the test; an error must name the file.
                    if let Err(e) = read(&path, columns) {
                        let message = e.to_string();
                        assert!(message.contains("t.parquet"), "byte {at}: {message}");
                        assert!(!message.contains(".cargo"), "byte {at}: {message}");
                        placed_outside += usize::from(message.contains("outside the file's"));
                    }
                }
            }
        }
        assert!(
            placed_outside > 0,
            "no damage put a column chunk outside the file"
        );
    }
}

#[cfg(test)]
mod int96_tests {
    use super::*;

    /// A file as Spark writes timestamps by default: INT96 (nanoseconds of the day, then the
    /// Julian day).
    fn write_int96(path: &Path, values: &[(u32, u64)]) {
        use parquet::file::writer::SerializedFileWriter;
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type("message m { required int96 ts; }")
                .unwrap(),
        );
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let data: Vec<parquet::data_type::Int96> = values
            .iter()
            .map(|&(day, nanos)| {
                let mut value = parquet::data_type::Int96::new();
                value.set_data(nanos as u32, (nanos >> 32) as u32, day);
                value
            })
            .collect();
        column
            .typed::<parquet::data_type::Int96Type>()
            .write_batch(&data, None, None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn int96_timestamps_outside_the_nanosecond_range_keep_their_dates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spark.parquet");
        let noon = 12 * 3600 * 1_000_000_000u64;
        write_int96(
            &path,
            &[
                (2_460_312, 11_045_123_456_000), // 2024-01-02T03:04:05.123456
                (2_561_118, 0),                  // 2300-01-01
                (2_305_600, noon),               // 1600-06-01T12:00
                (5_373_484, 86_399_999_999_000), // 9999-12-31T23:59:59.999999
                (1_721_426, 0),                  // 0001-01-01
            ],
        );
        for columns in ["", ", columns: {ts: timestamp}"] {
            let source = super::batch_source(&path, columns).unwrap();
            let mut values = Vec::new();
            for morsel in source.open().unwrap().into_seq_iter() {
                for batch in source.decode(morsel.unwrap()).unwrap() {
                    for row in 0..batch.num_rows() {
                        values.push(crate::data::cell(batch.column(0).as_ref(), row).to_text());
                    }
                }
            }
            assert_eq!(
                values,
                [
                    "2024-01-02T03:04:05.123456Z",
                    "2300-01-01T00:00:00Z",
                    "1600-06-01T12:00:00Z",
                    "9999-12-31T23:59:59.999999Z",
                    "0001-01-01T00:00:00Z",
                ],
                "{columns}"
            );
        }
    }
}

#[cfg(test)]
mod slice_tests {
    use super::*;
    use arrow_array::types::Int64Type;
    use arrow_array::Int64Array;

    /// Writes `rows` rows of `n` (0, 1, 2, …; null at `null_at`) as one row group, in pages
    /// of `page_rows` rows.
    fn one_group(path: &Path, rows: i64, page_rows: usize, null_at: Option<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(None)
            .set_data_page_row_count_limit(page_rows)
            .set_data_page_size_limit(usize::MAX)
            .set_write_batch_size(page_rows.min(1024))
            .set_dictionary_enabled(false)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        for start in (0..rows).step_by(1 << 16) {
            let values: Int64Array = (start..rows.min(start + (1 << 16)))
                .map(|i| (Some(i) != null_at).then_some(i))
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap();
            writer.write(&batch).unwrap();
        }
        let written = writer.close().unwrap();
        assert_eq!(written.num_row_groups(), 1);
    }

    /// Each morsel's values, in morsel order.
    fn morsels(source: &dyn BatchSource) -> Result<Vec<Vec<i64>>> {
        source
            .open()?
            .into_seq_iter()
            .map(|morsel| {
                let mut values = Vec::new();
                source.decode_each(morsel?, &mut |batch| {
                    let column = batch.column(0).as_primitive::<Int64Type>();
                    values.extend(column.values().iter().copied());
                    Ok(())
                })?;
                Ok(values)
            })
            .collect()
    }

    /// One row group is read in morsels (in parallel) when its pages are small, each of
    /// whole pages, and as one where a page is as large as the group: a morsel starting
    /// inside it would decode it again.
    #[test]
    fn a_row_group_is_cut_into_morsels_of_several_pages() {
        let dir = tempfile::tempdir().unwrap();
        let min = SLICE_MIN_ROWS as i64;
        for (rows, page_rows, sizes) in [
            (
                5 * min + 123,
                4096,
                vec![min; 5].into_iter().chain([123]).collect(),
            ),
            (600_000, 1 << 16, vec![262_144, 262_144, 75_712]),
            (3 * min, usize::MAX, vec![3 * min]),
            (min, 1024, vec![min]),
        ] {
            let path = dir.path().join(format!("{rows}-{page_rows}.parquet"));
            one_group(&path, rows, page_rows, None);
            let source = batch_source(&path, "").unwrap();
            let morsels = morsels(source.as_ref()).unwrap();
            let got: Vec<i64> = morsels.iter().map(|m| m.len() as i64).collect();
            assert_eq!(got, sizes, "{rows} rows in pages of {page_rows}");
            assert!(morsels.concat().into_iter().eq(0..rows));
        }
    }

    /// A list column of `rows` rows, each one tag `t{row % 7}`.
    fn tags(rows: usize) -> arrow_array::ListArray {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let mut tags =
            arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new())
                .with_field(item);
        for i in 0..rows {
            tags.values().append_value(format!("t{}", i % 7));
            tags.append(true);
        }
        tags.finish()
    }

    /// Writes `batch` to `path` as one row group of pages of 4096 rows, with or without the
    /// offset index.
    fn write_one_group(path: &Path, batch: &RecordBatch, offset_index: bool) {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(None)
            .set_data_page_row_count_limit(4096)
            .set_offset_index_disabled(!offset_index)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        assert_eq!(writer.close().unwrap().num_row_groups(), 1);
    }

    /// A row group with a list column read is cut by its offset index, and is one morsel
    /// without one: a list's pages cannot be passed by on their headers, so each morsel would
    /// decode all pages before its own. Without the list, the same group is cut either way.
    #[test]
    fn a_row_group_with_a_list_column_is_cut_only_by_its_offset_index() {
        let dir = tempfile::tempdir().unwrap();
        let rows = 3 * SLICE_MIN_ROWS as usize;
        let n = Int64Array::from_iter_values(0..rows as i64);
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(n) as ArrayRef),
            ("tags", Arc::new(tags(rows)) as ArrayRef),
        ])
        .unwrap();
        for (no_index, with_list) in [(false, 3), (true, 1)] {
            let path = dir.path().join(format!("lists-{no_index}.parquet"));
            write_one_group(&path, &batch, !no_index);
            let lists = batch_source(&path, ", columns: {n: integer, tags: list}").unwrap();
            let mut read = Vec::new();
            let mut morsels_read = 0;
            for morsel in lists.open().unwrap().into_seq_iter() {
                morsels_read += 1;
                for batch in lists.decode(morsel.unwrap()).unwrap() {
                    read.extend(
                        (0..batch.num_rows())
                            .map(|row| crate::data::cell(batch.column(1).as_ref(), row).to_text()),
                    );
                }
            }
            assert_eq!(morsels_read, with_list, "offset index disabled: {no_index}");
            assert!(read
                .iter()
                .enumerate()
                .all(|(i, tags)| tags == &format!("t{}", i % 7)));
            assert_eq!(read.len(), rows);
            let flat = batch_source(&path, ", columns: {n: integer}").unwrap();
            let morsels = morsels(flat.as_ref()).unwrap();
            assert_eq!(morsels.len(), 3);
            assert!(morsels.concat().into_iter().eq(0..rows as i64));
        }
    }

    /// A struct's field is cut into morsels by its own pages: a list beside it in the struct,
    /// not read, does not keep the group whole.
    #[test]
    fn a_structs_field_is_cut_by_its_own_pages() {
        let dir = tempfile::tempdir().unwrap();
        let rows = 3 * SLICE_MIN_ROWS as usize;
        let tags = tags(rows);
        let inner = arrow_array::StructArray::from(vec![
            (
                Arc::new(Field::new("n", DataType::Int64, false)),
                Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
            ),
            (
                Arc::new(Field::new("tags", tags.data_type().clone(), true)),
                Arc::new(tags) as ArrayRef,
            ),
        ]);
        let batch = RecordBatch::try_from_iter([("s", Arc::new(inner) as ArrayRef)]).unwrap();
        let path = dir.path().join("struct.parquet");
        write_one_group(&path, &batch, false);
        let source = batch_source(&path, ", columns: {s.n: integer}").unwrap();
        let morsels = morsels(source.as_ref()).unwrap();
        assert_eq!(morsels.len(), 3);
        assert!(morsels.concat().into_iter().eq(0..rows as i64));
    }

    /// A bad row in a later morsel is told by its row in the group, not in its morsel.
    #[test]
    fn a_bad_row_is_placed_in_its_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("null.parquet");
        let null_at = 2 * SLICE_MIN_ROWS as i64 + 17;
        one_group(&path, 3 * SLICE_MIN_ROWS as i64, 4096, Some(null_at));
        let source = batch_source(&path, ", columns: {n: integer}").unwrap();
        let error = morsels(source.as_ref()).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "row group 0, row {null_at}: the required field `n` is null"
            )),
            "{error}"
        );
        let skip = batch_source(&path, ", on_error: skip, columns: {n: integer}").unwrap();
        let rows = morsels(skip.as_ref()).unwrap().concat();
        assert_eq!(rows.len(), 3 * SLICE_MIN_ROWS as usize - 1);
        let warnings = skip.warnings().join("\n");
        assert!(
            warnings.contains(&format!("row group 0, row {null_at}:")),
            "{warnings}"
        );
    }

    /// A plan places each morsel in its row group, and none past the last.
    #[test]
    fn a_plan_places_its_morsels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.parquet");
        one_group(&path, 10, 1024, None);
        let file = std::fs::File::open(&path).unwrap();
        let footer = read_footer(&file).unwrap();
        let plan = FilePlan::new(&file, footer, &[0]).unwrap();
        assert_eq!((plan.slices, plan.slice(0)), (1, Some((0, 0, 10))));
        assert_eq!(plan.slice(1), None);
    }
}
