//! The record-batch model: Arrow `RecordBatch`es with named, typed columns, and the few helpers
//! every component needs to look columns up and read cells.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub use arrow_array;
pub use arrow_schema;

/// Rows per batch handed between transforms: small enough to stay in cache.
pub const BATCH_ROWS: usize = 8192;

/// The column types of runner's data model. Every source produces these Arrow types and every
/// component may rely on them: other Arrow types (a Parquet file's `int32`, say) are converted
/// when read (`normalize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// UTF-8 text (Arrow `Utf8`).
    Text,
    /// A 64-bit signed integer (Arrow `Int64`).
    Integer,
    /// A 64-bit float (Arrow `Float64`).
    Float,
    /// `true` or `false` (Arrow `Boolean`).
    Bool,
    /// Microseconds since the Unix epoch, UTC (Arrow `Timestamp(µs, "UTC")`).
    Timestamp,
    /// A list of text values, such as tokens (Arrow `List(Utf8)`).
    TextList,
}

impl ValueType {
    /// Every type, in the order messages list them.
    pub const ALL: [ValueType; 6] = [
        ValueType::Text,
        ValueType::Integer,
        ValueType::Float,
        ValueType::Bool,
        ValueType::Timestamp,
        ValueType::TextList,
    ];

    /// The type named `name` as pipelines write it (`text`, `integer`, `float`, `bool`,
    /// `timestamp`, `list of text`, and the usual synonyms).
    pub fn parse(name: &str) -> Result<ValueType, String> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "text" | "string" | "str" | "utf8" => ValueType::Text,
            "integer" | "int" | "long" | "bigint" | "i64" | "int64" => ValueType::Integer,
            "float" | "double" | "number" | "f64" | "float64" => ValueType::Float,
            "bool" | "boolean" => ValueType::Bool,
            "timestamp" | "time" | "datetime" => ValueType::Timestamp,
            "list of text" | "list<text>" | "text_list" | "list" => ValueType::TextList,
            _ => {
                let names = [
                    "text",
                    "integer",
                    "float",
                    "bool",
                    "timestamp",
                    "list of text",
                ];
                return Err(format!(
                    "`{name}` is not a type{} (types: {}; or their usual other names, such as `string`, `int`, `double`)",
                    closest(&lower, names)
                        .map_or(String::new(), |best| format!(", did you mean `{best}`?")),
                    names.join(", ")
                ));
            }
        })
    }

    /// The type's name as pipelines and messages write it (`text`, `list of text`).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Text => "text",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Timestamp => "timestamp",
            ValueType::TextList => "list of text",
        }
    }

    /// The Arrow type a column of this type is stored as.
    pub fn data_type(self) -> DataType {
        match self {
            ValueType::Text => DataType::Utf8,
            ValueType::Integer => DataType::Int64,
            ValueType::Float => DataType::Float64,
            ValueType::Bool => DataType::Boolean,
            ValueType::Timestamp => timestamp_type(),
            ValueType::TextList => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
            }
        }
    }

    /// The model's type stored as `data_type`, if it is one.
    pub fn of(data_type: &DataType) -> Option<ValueType> {
        Some(match data_type {
            DataType::Utf8 => ValueType::Text,
            DataType::Int64 => ValueType::Integer,
            DataType::Float64 => ValueType::Float,
            DataType::Boolean => ValueType::Bool,
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(tz)) if is_utc(tz) => {
                ValueType::Timestamp
            }
            DataType::List(item) if item.data_type() == &DataType::Utf8 => ValueType::TextList,
            _ => return None,
        })
    }

    /// The model's type for values stored as `data_type` by another program (a Parquet file):
    /// the type they are converted to when read, if they can be.
    pub fn convertible_from(data_type: &DataType) -> Option<ValueType> {
        use DataType as D;
        Some(match data_type {
            D::Utf8 | D::LargeUtf8 | D::Utf8View => ValueType::Text,
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => {
                ValueType::Integer
            }
            D::Float16
            | D::Float32
            | D::Float64
            | D::Decimal32(..)
            | D::Decimal64(..)
            | D::Decimal128(..)
            | D::Decimal256(..) => ValueType::Float,
            D::Boolean => ValueType::Bool,
            D::Timestamp(..) | D::Date32 | D::Date64 => ValueType::Timestamp,
            D::List(item) | D::LargeList(item) | D::FixedSizeList(item, _)
                if matches!(
                    ValueType::convertible_from(item.data_type()),
                    Some(ValueType::Text | ValueType::Integer | ValueType::Float | ValueType::Bool)
                ) && !item.data_type().is_nested() =>
            {
                ValueType::TextList
            }
            D::Dictionary(_, value) => return ValueType::convertible_from(value),
            _ => return None,
        })
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "+00:00" | "Z" | "utc" | "Etc/UTC")
}

/// The bytes of `batch`'s rows. Not `get_array_memory_size`: the batches of one decoded
/// chunk are slices of the same arrays, each of which would count them all.
pub fn held_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// Arrow's type for the model's timestamps.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
}

/// `batch` with every column converted to the model's types (see `ValueType::convertible_from`)
/// and the schema `schema` (from `normalized_schema`).
pub fn normalize(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow_cast::cast(column, field.data_type())
                    .map_err(|e| format!("column `{}`: {e}", field.name()))
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// `schema` with each field's type replaced by the model's (every column nullable), or an
/// error naming a column of a type the model has no place for.
pub fn normalized_schema(schema: &Schema) -> Result<SchemaRef, String> {
    let fields = schema
        .fields()
        .iter()
        .map(|field| {
            ValueType::convertible_from(field.data_type())
                .map(|t| Field::new(field.name(), t.data_type(), true))
                .ok_or_else(|| {
                    format!(
                        "column `{}` holds {}, which runner cannot read (types: text, integer, float, bool, timestamp, list of text)",
                        field.name(),
                        field.data_type()
                    )
                })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// A float as a grouping key, as Spark groups them: `-0.0` is `0.0` and every NaN is one NaN.
pub fn float_key(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else {
        x + 0.0
    }
}

/// Floats in Spark's order (`SQLOrderingUtil.compareDoubles`): `-0.0` equals `0.0`, and every
/// NaN, whatever its sign bit, equals every other and is above every number.
pub fn compare_floats(x: f64, y: f64) -> std::cmp::Ordering {
    float_key(x).total_cmp(&float_key(y))
}

/// [`float_key`] over a float column; any other column as it is.
pub fn float_keys(column: ArrayRef) -> ArrayRef {
    match column.as_primitive_opt::<arrow_array::types::Float64Type>() {
        Some(floats) => Arc::new(floats.unary::<_, Float64Type>(float_key)),
        None => column,
    }
}

/// A float as text, as `cast(x as text)` writes it (Arrow's cast, with `ryu`): `1.0`, `0.1`, `1e19`,
/// `1e-7`, `-0.0`, `inf`, `NaN`, so a float reads as a float and every sink writes it alike.
pub fn float_text(x: f64) -> String {
    ryu::Buffer::new().format(x).to_owned()
}

/// Microseconds since the epoch as RFC 3339 in UTC (`2024-05-01T12:00:00Z`, with a fraction
/// only when there is one), as every sink prints timestamps.
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => format!("{micros}µs"),
    }
}

/// Parses a timestamp as sources read one: RFC 3339 / ISO 8601 (`2024-05-01T12:00:00Z`,
/// `2024-05-01 12:00:00+02:00`, a date `2024-05-01`; no offset means UTC; Spark's shorter
/// forms `2024-05` and `2024-05-01 12`, and zones `UTC`, `GMT+2`), or a number of
/// seconds since the epoch (milliseconds when it has more than 11 digits, microseconds past 14,
/// nanoseconds past 17), in the years 1 to 9999.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let micros = parse_any_timestamp(text).or_else(|| spark_short_forms(text.trim()))?;
    // Years 1 to 9999, which RFC 3339 writes (and Spark's timestamps hold).
    timestamp_in_range(micros).then_some(micros)
}

/// Parses a text as Spark's cast of a text to a timestamp reads it (`cast`, `try_cast`, and a
/// text compared with a timestamp): the forms [`parse_timestamp`] reads, and Spark's shorter
/// ones (`2024`, `2024-05`, `2024-05-01 12`) and zone words (`UTC`, `GMT+2`), but no epoch
/// number: `'2024'` is the year 2024, not 2024 seconds after 1970. Spaces and control
/// characters around it are trimmed, as Spark trims them.
pub fn parse_timestamp_text(text: &str) -> Option<i64> {
    let text = text.trim_matches(|c: char| c <= ' ');
    // Unicode spaces (U+00A0, U+3000) are not trimmed by Spark: such a text is none.
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return None;
    }
    if text.is_empty() || text.parse::<f64>().is_ok() {
        // A year alone is a timestamp; any other number is none (an epoch number's text).
        return match text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
            true => parse_timestamp(&format!("{text}-01-01")),
            false => None,
        };
    }
    parse_timestamp(text)
}

/// Spark's shorter forms of a timestamp (`2024-05`, `2024-05-01 12`) and its zone words
/// (`UTC`, `GMT+2`), written out in the forms [`parse_any_timestamp`] reads; `None` when `text`
/// is none of them.
fn spark_short_forms(text: &str) -> Option<i64> {
    // `UTC`, `GMT` and `UT`, alone or with an offset, as the zone: an offset or `Z`.
    let mut zoned = text.to_owned();
    for word in ["UTC", "GMT", "UT"] {
        if let Some(at) = zoned.rfind(word) {
            let offset = zoned[at + word.len()..].to_owned();
            let before = zoned[..at].trim_end().to_owned();
            let offset = match offset.as_str() {
                "" => "Z".to_owned(),
                o if o.starts_with(['+', '-']) => {
                    let (sign, rest) = o.split_at(1);
                    match rest.split_once(':') {
                        Some((h, m)) if h.len() <= 2 => format!("{sign}{h:0>2}:{m}"),
                        None if rest.len() <= 2 => format!("{sign}{rest:0>2}:00"),
                        _ => return None,
                    }
                }
                _ => return None,
            };
            zoned = before + &offset;
            break;
        }
    }
    let (date, time) = match zoned.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (zoned.as_str(), None),
    };
    // A year and month: its first day.
    let date = match date.matches('-').count() {
        1 => format!("{date}-01"),
        _ => date.to_owned(),
    };
    let full = match time {
        None => date,
        // An hour alone (with its zone, if any): on the hour.
        Some(time) => {
            let digits = time.bytes().take_while(u8::is_ascii_digit).count();
            match digits > 0 && digits <= 2 && !time[digits..].starts_with(':') {
                true => format!("{date}T{}:00{}", &time[..digits], &time[digits..]),
                false => format!("{date}T{time}"),
            }
        }
    };
    (full != text).then(|| parse_any_timestamp(&full)).flatten()
}

/// [`parse_timestamp`] without the range check.
fn parse_any_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    // chrono reads a leap second (`:60`) as one that rolls into the next minute; Spark reads
    // it as no timestamp (null), so it is not one here either.
    fn leap(t: &impl chrono::Timelike) -> bool {
        t.nanosecond() >= 1_000_000_000
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return (!leap(&t)).then(|| t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        // An offset of hours alone (`+02`), as PostgreSQL prints a `timestamptz`.
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(text, format) {
            return (!leap(&t)).then(|| t.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return (!leap(&t)).then(|| t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    match text.parse::<i64>() {
        Ok(n) => epoch_integer_micros(n),
        // Nanoseconds past i64 (20 digits, after the year 2262): exactly, not through a float.
        Err(_) if text.parse::<i128>().is_ok() => {
            let nanos = text.parse::<i128>().ok()?;
            i64::try_from(nanos.div_euclid(1_000)).ok()
        }
        Err(_) => epoch_decimal_micros(text)
            .unwrap_or_else(|| text.parse::<f64>().ok().and_then(epoch_number_micros)),
    }
}

/// An epoch number written with a fraction and no exponent (`1714564800.9999996`), decided
/// on its digits: its unit by the whole part's size, as [`epoch_integer_micros`] decides it,
/// and the fraction past microseconds cut off, as Spark's cast cuts it (a float would round
/// `.9999996` up to the next second). `None` when `text` is not so written; `Some(None)` when
/// it is out of range.
fn epoch_decimal_micros(text: &str) -> Option<Option<i64>> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.')?;
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let Ok(whole) = (if whole.is_empty() {
        Ok(0)
    } else {
        whole.parse::<i64>()
    }) else {
        return Some(None);
    };
    // The fraction's digits that reach microseconds in the whole part's unit.
    let (unit, kept) = if whole < 100_000_000_000 {
        (1_000_000, 6)
    } else if whole < 100_000_000_000_000 {
        (1_000, 3)
    } else if whole < 100_000_000_000_000_000 {
        (1, 0)
    } else {
        // Nanoseconds floored, as `epoch_integer_micros` floors them.
        let rest = whole % 1_000 != 0 || fraction.bytes().any(|b| b != b'0');
        let micros = whole / 1_000;
        return Some(Some(match (negative, rest) {
            (true, true) => -micros - 1,
            (true, false) => -micros,
            (false, _) => micros,
        }));
    };
    let mut part = 0i64;
    for place in 0..kept {
        let digit = fraction
            .as_bytes()
            .get(place)
            .map_or(0, |b| i64::from(b - b'0'));
        part = part * 10 + digit;
    }
    let micros = whole.checked_mul(unit).and_then(|m| m.checked_add(part));
    Some(micros.map(|m| if negative { -m } else { m }))
}

/// Whether `micros` since the epoch is in the years 1 to 9999, which every timestamp holds.
pub fn timestamp_in_range(micros: i64) -> bool {
    (FIRST_MICROS..=LAST_MICROS).contains(&micros)
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds since the epoch.
const FIRST_MICROS: i64 = -62_135_596_800_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

/// `epoch_number_micros` for an integer, exactly.
pub fn epoch_integer_micros(n: i64) -> Option<i64> {
    let magnitude = n.unsigned_abs();
    if magnitude < 100_000_000_000 {
        n.checked_mul(1_000_000)
    } else if magnitude < 100_000_000_000_000 {
        n.checked_mul(1_000)
    } else if magnitude < 100_000_000_000_000_000 {
        Some(n)
    } else {
        // Nanoseconds floored, as Spark reads them from Parquet.
        Some(n.div_euclid(1_000))
    }
}

/// A number of seconds, milliseconds or microseconds since the epoch, told apart by size
/// (seconds up to 11 integer digits: year 5138; milliseconds up to 14; microseconds up to 17;
/// nanoseconds beyond), in microseconds.
pub fn epoch_number_micros(n: f64) -> Option<i64> {
    if !n.is_finite() {
        return None;
    }
    // Decided on the float's shortest digits (`1.000001`, not 1.000001 × 10^6 =
    // 1000000.9999999999 cut to 1000000), as a text number is.
    let digits = n.to_string();
    if let Ok(whole) = digits.parse::<i64>() {
        return epoch_integer_micros(whole);
    }
    if let Some(micros) = epoch_decimal_micros(&digits) {
        return micros;
    }
    let magnitude = n.abs();
    let micros = if magnitude < 1e11 {
        n * 1e6
    } else if magnitude < 1e14 {
        n * 1e3
    } else if magnitude < 1e17 {
        n
    } else {
        n / 1e3
    };
    // Cut off past microseconds, as Spark's cast does.
    (micros.abs() < 9.2e18).then(|| micros.trunc() as i64)
}

/// A schema with one non-null UTF-8 column.
pub fn text_schema(column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo
/// (a column name; the loader uses it for keys and types too).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        // Not a word that changes whole (`zz` is no typo of `a`).
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < word.len().max(c.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The index of column `name`, or an error listing the columns there are.
pub fn column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "there is no column `{name}`{} (columns here: {})",
            closest(name, names.iter().copied())
                .map_or(String::new(), |best| format!(", did you mean `{best}`?")),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ) + if names == ["line"] {
            // The first mistake with a CSV file: the source reads its lines as text.
            "; the rows are lines of text: to read a file's columns, give its source `format: csv` (or jsonl, parquet)"
        } else {
            ""
        }
    })
}

/// The column a key names, written as its name (`first name`, spaces and all) or in backticks as
/// an expression writes it (`` `first name` ``).
pub fn key_column(schema: &Schema, written: &str) -> Result<usize, String> {
    if let Ok(index) = schema.index_of(written) {
        return Ok(index);
    }
    match written
        .strip_prefix('`')
        .and_then(|w| w.strip_suffix('`'))
        .filter(|inner| !inner.is_empty() && !inner.contains('`'))
    {
        Some(inner) => column_index(schema, inner),
        None => column_index(schema, written),
    }
}

/// The index of column `name`, which must hold text.
pub fn text_column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    let index = column_index(schema, name)?;
    match schema.field(index).data_type() {
        DataType::Utf8 => Ok(index),
        other => Err(format!(
            "column `{name}` holds {}, but text is needed here",
            type_label(other)
        )),
    }
}

/// How a column type is called in messages.
pub fn type_label(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "text".into(),
        DataType::Int64 | DataType::UInt64 | DataType::Int32 => "integers".into(),
        DataType::Float64 => "numbers".into(),
        DataType::Boolean => "booleans".into(),
        DataType::Timestamp(..) => "timestamps".into(),
        DataType::List(inner) => format!("lists of {}", type_label(inner.data_type())),
        other => format!("{other}"),
    }
}

/// Column `index` of `batch` as text. Only call with an index checked by `text_column_index`.
pub fn text(batch: &RecordBatch, index: usize) -> &StringArray {
    batch.column(index).as_string::<i32>()
}

/// One cell, borrowed from a batch, for sinks and sorting.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// An empty cell.
    Null,
    /// A text value.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// A list of cells (a `list of text` column's value).
    List(Vec<Cell<'a>>),
}

impl Cell<'_> {
    /// The cell as a field of a delimited file (`tsv`, CSV): as `to_text`, but a list as a
    /// JSON array, so that its items (which may hold spaces, or be null) read back as they were,
    /// and an infinite float as `Infinity` (`inf` is read as null by Spark's CSV reader; runner,
    /// DuckDB and Polars read both).
    pub fn to_field(&self) -> String {
        match self {
            Cell::List(_) => self.to_json().to_string(),
            Cell::Float(f) if f.is_infinite() => {
                let sign = if *f < 0.0 { "-" } else { "" };
                format!("{sign}Infinity")
            }
            other => other.to_text(),
        }
    }

    /// The cell as plain text (lists joined with spaces, null as empty).
    pub fn to_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => (*s).to_owned(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => float_text(*f),
            Cell::Bool(b) => b.to_string(),
            Cell::Timestamp(t) => format_timestamp(*t),
            Cell::List(items) => items
                .iter()
                .map(Cell::to_text)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The cell as a JSON value: timestamps as RFC 3339 text, lists as arrays; a NaN or infinite
    /// float becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Text(s) => (*s).into(),
            Cell::Int(i) => (*i).into(),
            Cell::Float(f) => (*f).into(),
            Cell::Bool(b) => (*b).into(),
            Cell::Timestamp(t) => format_timestamp(*t).into(),
            Cell::List(items) => items.iter().map(Cell::to_json).collect(),
        }
    }
}

/// Reads row `row` of `array`.
pub fn cell(array: &dyn Array, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => Cell::Timestamp(
            array
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                .value(row),
        ),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let values: &dyn Array = list.values().as_ref();
            Cell::List((start..end).map(|i| cell(values, i)).collect())
        }
        _ => Cell::Null,
    }
}

/// A batch with one text column, for tests and sources.
pub fn text_batch(column: &str, values: impl IntoIterator<Item = impl AsRef<str>>) -> RecordBatch {
    let array: ArrayRef = Arc::new(StringArray::from_iter_values(values));
    RecordBatch::try_new(text_schema(column), vec![array])
        .expect("one text column matches its schema")
}

/// A `word`, `count` batch, the shape of a word count's result (for tests).
#[cfg(test)]
pub(crate) fn word_counts(words: &[&str], counts: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("word", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
    ]));
    let words: ArrayRef = Arc::new(StringArray::from(words.to_vec()));
    let counts: ArrayRef = Arc::new(arrow_array::Int64Array::from(counts.to_vec()));
    RecordBatch::try_new(schema, vec![words, counts]).expect("two columns matching the schema")
}

/// The columns' names, in order.
pub fn columns_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// `name: type` for each column, as plans and checkpoints show them.
pub fn columns(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
        .collect()
}

/// A column type in the words plans use (`text`, `integer`, `list of text`).
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Int64 => "integer".into(),
        DataType::Float64 => "float".into(),
        DataType::Boolean => "bool".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("list of {}", type_name(item.data_type()))
        }
        other => other.to_string(),
    }
}

/// `17452585` as `17,452,585`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Concatenates batches of one schema (an empty list gives an empty batch).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    match batches {
        [] => RecordBatch::new_empty(schema.clone()),
        [one] => one.clone(),
        many => arrow_select::concat::concat_batches(schema, many)
            .expect("batches of one pipeline stage share its schema"),
    }
}

/// Builds a text column from pieces of bytes known to be UTF-8 (cut from valid text at
/// character boundaries): the bytes are copied without a check per piece, and the whole column
/// is validated once at the end (`finish`), far cheaper than a check per row.
pub struct TextColumnBuilder {
    values: Vec<u8>,
    offsets: Vec<i32>,
}

impl TextColumnBuilder {
    /// An empty builder with room for `rows` values of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextColumnBuilder {
            values: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Appends one value.
    #[inline]
    pub fn push(&mut self, piece: &[u8]) {
        self.values.extend_from_slice(piece);
        // Past i32 offsets the column is refused by `finish` (checked there once).
        self.offsets.push(self.values.len() as i32);
    }

    /// The number of values appended since the last `finish`.
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The column; an error when the pieces were not UTF-8 or exceed 2 GiB.
    pub fn finish(&mut self) -> Result<arrow_array::StringArray, String> {
        let (values, offsets) = self.take_parts();
        text_column_from_parts(values, offsets)
    }

    /// The parts so far, leaving room for as many in the next column (not growing from
    /// nothing again: a copy and page faults at each doubling).
    fn take_parts(&mut self) -> (Vec<u8>, Vec<i32>) {
        let next_values = Vec::with_capacity(self.values.capacity());
        let mut next_offsets = Vec::with_capacity(self.offsets.capacity());
        next_offsets.push(0);
        (
            std::mem::replace(&mut self.values, next_values),
            std::mem::replace(&mut self.offsets, next_offsets),
        )
    }

    /// `finish` without checking the bytes again; an error past 2 GiB.
    ///
    /// # Safety
    /// Every piece pushed since the last `finish` was valid UTF-8 (a line of text already
    /// checked as a whole, cut at ASCII bytes).
    pub unsafe fn finish_valid(&mut self) -> Result<arrow_array::StringArray, String> {
        let (values, offsets) = self.take_parts();
        if values.len() > i32::MAX as usize {
            return Err("a text column of more than 2 GiB in one batch".into());
        }
        // SAFETY: `push` appended each piece and its end offset, so the offsets rise from 0
        // to the bytes' end; the pieces are UTF-8 (the caller's promise), so the bytes are
        // and every offset is at a character boundary.
        Ok(unsafe { valid_text_column(values, offsets) })
    }
}

/// A text column from parts that are known to be right.
///
/// # Safety
/// `offsets` start at 0, never fall and end at `values.len()` (at most `i32::MAX`); `values`
/// is UTF-8 and every offset is at a character boundary.
unsafe fn valid_text_column(values: Vec<u8>, offsets: Vec<i32>) -> arrow_array::StringArray {
    // SAFETY: the offsets are in order and in bounds (the caller's promise).
    let offsets = unsafe {
        arrow_buffer::OffsetBuffer::new_unchecked(arrow_buffer::ScalarBuffer::from(offsets))
    };
    // SAFETY: the offsets are valid for the bytes, the bytes UTF-8 and the offsets at
    // character boundaries (the caller's promise): all `new_unchecked` requires; no nulls.
    unsafe {
        arrow_array::StringArray::new_unchecked(
            offsets,
            arrow_buffer::Buffer::from_vec(values),
            None,
        )
    }
}

/// A text column (no nulls) from its bytes and offsets (`offsets[0] == 0`, one more than
/// rows); an error when they do not make UTF-8 values or the bytes exceed 2 GiB (offsets
/// written as `len as i32` past that are refused here, once).
pub fn text_column_from_parts(
    values: Vec<u8>,
    offsets: Vec<i32>,
) -> Result<arrow_array::StringArray, String> {
    if values.len() > i32::MAX as usize {
        return Err("a text column of more than 2 GiB in one batch".into());
    }
    // Arrow's own check runs the standard library's scalar UTF-8 validation over the whole
    // buffer: a tenth of the `tokenize` step's time. The same checks in one pass, with SIMD
    // validation: offsets rising from 0 to the end, each at a character start, bytes UTF-8.
    let mut previous = 0i32;
    let mut in_order = offsets.first() == Some(&0)
        && offsets
            .last()
            .is_some_and(|&last| last as usize == values.len());
    let mut at_boundaries = true;
    for &offset in &offsets {
        in_order &= previous <= offset;
        // A continuation byte is 0b10xx_xxxx; the end offset has no byte.
        at_boundaries &= values
            .get(offset as usize)
            .is_none_or(|&b| b & 0xC0 != 0x80);
        previous = offset;
    }
    if !in_order {
        return Err("a text column's offsets do not cover its bytes in order".into());
    }
    if !at_boundaries || simdutf8::basic::from_utf8(&values).is_err() {
        return Err("a text column that is not UTF-8".into());
    }
    // SAFETY: checked above: the offsets start at 0, never fall, end at the bytes' end and
    // sit at character boundaries; the bytes are UTF-8.
    Ok(unsafe { valid_text_column(values, offsets) })
}

/// The rows of `batch` where `keep` is set (no nulls in `keep`). Text columns without nulls are
/// copied by a kernel of ours: Arrow's calls `memcpy` per value, and short words cost far
/// more that way (measured on the word count without fusion: a third of the `stopwords` step).
pub fn filter_batch(
    batch: &RecordBatch,
    keep: &arrow_buffer::BooleanBuffer,
) -> Result<RecordBatch, String> {
    let mask = arrow_array::BooleanArray::new(keep.clone(), None);
    let columns = batch
        .columns()
        .iter()
        .map(
            |column| match column.as_any().downcast_ref::<arrow_array::StringArray>() {
                Some(text) if text.null_count() == 0 => {
                    filter_text(text, keep).map(|c| Arc::new(c) as arrow_array::ArrayRef)
                }
                _ => arrow_select::filter::filter(column, &mask).map_err(|e| e.to_string()),
            },
        )
        .collect::<Result<Vec<_>, String>>()?;
    RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(keep.count_set_bits())),
    )
    .map_err(|e| e.to_string())
}

/// Bytes a short value is copied with (one fixed-size copy), and the slack kept for it.
const VALUE_COPY: usize = 16;

/// The values of `text` (no nulls) where `keep` is set, each of up to 16 bytes moved with one
/// fixed-size copy.
fn filter_text(
    text: &arrow_array::StringArray,
    keep: &arrow_buffer::BooleanBuffer,
) -> Result<arrow_array::StringArray, String> {
    let offsets = text.value_offsets();
    let data = text.value_data();
    let mut kept_offsets = Vec::with_capacity(keep.count_set_bits() + 1);
    kept_offsets.push(0i32);
    let most = (offsets[text.len()] - offsets[0]) as usize;
    // Not zeroed: each value is appended, a short one as 16 bytes cut back to its length
    // (`truncate` only sets the length).
    let mut values = Vec::with_capacity(most + VALUE_COPY);
    for row in keep.set_indices() {
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let len = end - start;
        match data.get(start..start + VALUE_COPY) {
            Some(sixteen) if len <= VALUE_COPY => {
                let value_end = values.len() + len;
                values.extend_from_slice(sixteen);
                values.truncate(value_end);
            }
            _ => values.extend_from_slice(&data[start..end]),
        }
        kept_offsets.push(values.len() as i32);
    }
    let written = values.len();
    if written > i32::MAX as usize {
        return Err("a text column of more than 2 GiB in one batch".into());
    }
    // SAFETY: the bytes are whole values of `text`, each UTF-8 (a `StringArray`'s own
    // invariant), laid end to end; the offsets are their running ends from 0, so they rise,
    // end at `written` and sit at the values' boundaries.
    Ok(unsafe { valid_text_column(values, kept_offsets) })
}

/// Bytes as lowercase hexadecimal (digests in summaries, checksums, checkpoints).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_is_no_timestamp_as_in_spark() {
        for text in [
            "2024-12-31T23:59:60.5Z",
            "2024-05-01T12:59:60+02:00",
            "2024-05-01 12:59:60",
            "2024-05-01T12:59:60",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
        assert_eq!(
            parse_timestamp("2024-12-31T23:59:59.5Z").map(format_timestamp),
            Some("2024-12-31T23:59:59.500Z".to_owned())
        );
    }

    #[test]
    fn a_text_cast_to_a_timestamp_is_read_as_spark_reads_it() {
        let at = |text: &str| parse_timestamp_text(text).map(format_timestamp);
        let cases = [
            ("2024", Some("2024-01-01T00:00:00Z")),
            ("2024-05", Some("2024-05-01T00:00:00Z")),
            ("2024-05-01", Some("2024-05-01T00:00:00Z")),
            ("2024-05-01 12", Some("2024-05-01T12:00:00Z")),
            ("2024-05-01T12:00:00 UTC", Some("2024-05-01T12:00:00Z")),
            ("2024-05-01T12:00:00GMT+2", Some("2024-05-01T10:00:00Z")),
            ("2024-05-01 12:00:00UTC-01:30", Some("2024-05-01T13:30:00Z")),
            (" 2024-05-01T12:00:00Z\n", Some("2024-05-01T12:00:00Z")),
            ("\u{1}2024-05-01", Some("2024-05-01T00:00:00Z")),
            ("1714564800", None),
            ("1714564800.5", None),
            ("-1", None),
            ("1e9", None),
            ("12", None),
            ("", None),
            ("\u{a0}2024-05-01", None),
            ("2024-05-01T12:00:00Europe/Paris", None),
        ];
        for (text, want) in cases {
            assert_eq!(at(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn sources_read_sparks_shorter_forms_and_zone_words_but_keep_epoch_numbers() {
        let at = |text: &str| parse_timestamp(text).map(format_timestamp);
        assert_eq!(at("2024-01").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(at("2024-01-02T03").as_deref(), Some("2024-01-02T03:00:00Z"));
        assert_eq!(
            at("2024-01-02 03:04:05 UTC").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            at("2024-01-02T03:04:05GMT+01:00").as_deref(),
            Some("2024-01-02T02:04:05Z")
        );
        assert_eq!(at("2024").as_deref(), Some("1970-01-01T00:33:44Z"));
        assert_eq!(at("2024-05-01 12:59:60"), None);
        assert_eq!(at("never"), None);
    }

    #[test]
    fn epoch_nanoseconds_past_i64_are_read_exactly() {
        // 2500-01-01T00:00:00.123456Z, plus 789 ns cut off: a float would round the micros.
        let micros = 16_725_225_600_123_456i64;
        assert_eq!(
            parse_timestamp("16725225600123456789"),
            Some(micros),
            "{:?}",
            parse_timestamp("16725225600123456789").map(format_timestamp)
        );
        assert_eq!(parse_timestamp("-16725225600123456789"), Some(-micros - 1));
        // Past the year 9999: none.
        assert_eq!(parse_timestamp("999999999999999999999"), None);
    }

    #[test]
    fn column_lookup_suggests_close_names() {
        let schema = Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ]);
        assert_eq!(column_index(&schema, "count").unwrap(), 1);
        assert_eq!(key_column(&schema, "`count`").unwrap(), 1);
        assert_eq!(key_column(&schema, "count").unwrap(), 1);
        assert!(key_column(&schema, "`cuont`")
            .unwrap_err()
            .contains("did you mean `count`"));
        let err = column_index(&schema, "cuont").unwrap_err();
        assert!(
            err.contains("did you mean `count`?") && err.contains("word, count"),
            "{err}"
        );
        assert!(text_column_index(&schema, "count")
            .unwrap_err()
            .contains("holds integers"));
    }

    #[test]
    fn cells_read_back_as_text_and_json() {
        let batch = text_batch("w", ["a", "b"]);
        assert_eq!(cell(batch.column(0).as_ref(), 1), Cell::Text("b"));
        assert_eq!(Cell::Int(3).to_json(), serde_json::json!(3));
        assert_eq!(
            concat(&batch.schema(), &[batch.clone(), batch.clone()]).num_rows(),
            4
        );
    }
}
