//! Records in text: CSV and JSON lines, one record per line, decoded by Arrow's readers
//! (arrow-csv, arrow-json) into the model's types. Shared by the sources that read lines.
//!
//! A morsel of whole lines is decoded in one go; when that fails, its lines are decoded one by
//! one, so a bad record is found with its line number and, under `on_error: skip`, left out
//! alone. Timestamps are read as text and parsed by runner (RFC 3339 / ISO 8601, or epoch
//! seconds or milliseconds), which Arrow's readers do not all accept.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use serde::Deserialize;

use crate::data::{ValueType, BATCH_ROWS};

pub mod multi_line;
mod plain_json;
use plain_json::PlainJson;

/// Whether bytes the CSV reader left are only the line ends of its last record (it ends a
/// record at `\r` and takes the `\n` after it on its next call, which a full batch never makes).
fn only_line_ends(rest: &[u8]) -> bool {
    rest.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// A CSV line the reader took as more than one record: a carriage return alone ends a record
/// for CSV readers (Spark's, Python's, Arrow's), where runner's records end at line ends.
const MORE_RECORDS_THAN_LINES: &str = "a carriage return (\\r) inside the line ends a record for CSV readers, so the line holds more than one (runner reads one record per line: quote a field that holds one)";

/// [`MORE_RECORDS_THAN_LINES`] where records may span lines (`multi_line`).
const MORE_RECORDS_THAN_FOUND: &str = "a carriage return (\\r) outside quotes ends a record for CSV readers, so the record holds more than one (quote a field that holds one)";

/// How records are written in the input.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Each line is one row of one text column.
    #[default]
    Lines,
    /// Comma-separated values (RFC 4180 quoting; one record per line): a file starts with its
    /// header line, a socket's lines have none.
    Csv,
    /// One JSON object per line (newline-delimited JSON).
    Jsonl,
    /// Apache Parquet files (files only).
    Parquet,
}

impl Format {
    /// The format's name as `format:` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Lines => "lines",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// What happens to a record that does not parse or lacks a required field.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the run with the record's line number and the reason.
    #[default]
    Fail,
    /// Leave the record out, count it in the warnings, and go on.
    Skip,
}

/// One column to read: its name in the output, its type, whether a record must have it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// As written in `columns:` (a dotted path for a nested JSON field).
    pub name: String,
    /// The column's type; values are converted to it as they are read.
    pub value_type: ValueType,
    /// Whether a record without the field (or with it empty) is bad; `false` (`type?`) gives null
    /// instead.
    pub required: bool,
}

impl ColumnSpec {
    /// Parses a `columns:` entry: `name: type`, with `?` after the type for an optional field
    /// (missing or empty gives null).
    pub fn parse(name: &str, type_text: &str) -> Result<ColumnSpec, String> {
        let (type_text, required) = match type_text.trim().strip_suffix('?') {
            Some(t) => (t, false),
            None => (type_text.trim(), true),
        };
        Ok(ColumnSpec {
            name: name.to_owned(),
            value_type: ValueType::parse(type_text).map_err(|e| format!("columns: {name}: {e}"))?,
            required,
        })
    }
}

/// A record left out (or the one that stopped the run).
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Index of the line in the decoded bytes (0-based).
    pub line: usize,
    /// Why the record could not be read, one phrase.
    pub reason: String,
}

/// Where the declared columns are in a CSV record, for a kernel that splits records itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvLayout {
    /// The field separator.
    pub delimiter: u8,
    /// How many fields every record has (the header's).
    pub fields: usize,
    /// For each output column (schema order), its field's index in the record.
    pub positions: Vec<usize>,
    /// The output columns as declared (type, whether required).
    pub columns: Vec<ColumnSpec>,
}

/// Decodes lines of CSV or JSON into batches of `schema`.
pub struct RecordDecoder {
    format: Format,
    columns: Vec<ColumnSpec>,
    /// What the Arrow reader is asked for (timestamps as text; JSON paths as nested structs).
    read_schema: SchemaRef,
    /// What comes out.
    schema: SchemaRef,
    delimiter: u8,
    /// CSV: the character that escapes a quote in a quoted field, besides doubling it.
    escape: Option<u8>,
    /// CSV: the header's names, and which of them are read (in `columns` order).
    header: Vec<String>,
    projection: Option<Vec<usize>>,
    /// CSV: optional columns (`?`) the header does not have, by place in `columns`, with the
    /// type they are read as: null in every record.
    absent: Vec<(usize, DataType)>,
    /// JSON decoders that finished cleanly, for reuse.
    json_decoders: std::sync::Mutex<Vec<arrow_json::reader::Decoder>>,
    /// JSON lines: reads plain lines' declared fields without Arrow's reader (`plain_json`).
    plain_json: Option<PlainJson>,
    /// CSV: a quoted field may hold line breaks (`multi_line`), so records are cut where a
    /// line break falls outside quotes.
    multi_line: bool,
}

impl RecordDecoder {
    /// A decoder of `format` records into `columns` (CSV fields by position: [`RecordDecoder::csv`]
    /// finds them by header name); an error when there are no columns or a JSON path is both a
    /// value and an object.
    pub fn new(format: Format, columns: Vec<ColumnSpec>, delimiter: u8) -> Result<Self, String> {
        if columns.is_empty() {
            return Err("columns: no columns to read".into());
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.value_type.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        let read_type = |c: &ColumnSpec| match c.value_type {
            ValueType::Timestamp => DataType::Utf8,
            // Arrow's JSON reader cuts 2.5 to 2 for an integer column: the number is read as
            // written and `exact_integers` decides.
            ValueType::Integer if format == Format::Jsonl => DataType::Utf8,
            // Arrow's reader takes `+5`, `012` or `1.5 ` in a string as a float: the number is
            // read as written and `json_floats` decides, as it decides integers.
            ValueType::Float if format == Format::Jsonl => DataType::Utf8,
            // A CSV field holds a list as the sinks write it: a JSON array (`["a b",null]`).
            ValueType::TextList if format == Format::Csv => DataType::Utf8,
            other => other.data_type(),
        };
        let read_schema = match format {
            Format::Jsonl => {
                let mut fields = nested_fields(
                    &columns
                        .iter()
                        .map(|c| (c.name.as_str(), read_type(c)))
                        .collect::<Vec<_>>(),
                )?;
                // A dotted name is also a key of its own (`{"log.level": "info"}`, as flattened
                // logs write them), read first.
                fields.extend(
                    columns
                        .iter()
                        .filter(|c| c.name.contains('.'))
                        .map(|c| Field::new(&c.name, read_type(c), true)),
                );
                Arc::new(Schema::new(fields))
            }
            _ => Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(&c.name, read_type(c), true))
                    .collect::<Vec<_>>(),
            )),
        };
        Ok(RecordDecoder {
            format,
            read_schema,
            schema,
            delimiter,
            escape: None,
            header: Vec::new(),
            projection: None,
            absent: Vec::new(),
            json_decoders: std::sync::Mutex::new(Vec::new()),
            plain_json: match format {
                Format::Jsonl => PlainJson::new(&columns),
                _ => None,
            },
            columns,
            multi_line: false,
        })
    }

    /// The decoder with CSV records that may hold line breaks in quoted fields (`multi_line`).
    pub fn with_multi_line(mut self, multi_line: bool) -> Self {
        self.multi_line = multi_line && self.format == Format::Csv;
        self
    }

    /// A CSV decoder for files whose header is `header`: the declared columns are found in
    /// it by name (the others are read as text and dropped).
    pub fn csv(
        header: Vec<String>,
        columns: Vec<ColumnSpec>,
        delimiter: u8,
    ) -> Result<Self, String> {
        let mut decoder = RecordDecoder::new(Format::Csv, columns, delimiter)?;
        let mut fields: Vec<Field> = header
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let mut projection = Vec::with_capacity(decoder.columns.len());
        let mut absent = Vec::new();
        let columns_declared: Vec<&str> = decoder.columns.iter().map(|c| c.name.as_str()).collect();
        // Where each name first is: a file may have 100,000 columns, and a search per column
        // would take time quadratic in them.
        let mut place_in_header: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(header.len());
        for (index, name) in header.iter().enumerate() {
            place_in_header.entry(name.as_str()).or_insert(index);
        }
        for (place, (spec, read)) in decoder
            .columns
            .iter()
            .zip(decoder.read_schema.fields())
            .enumerate()
        {
            // An optional column a file's header lacks (an older file of a stream, say) is
            // null in its records.
            let found = place_in_header.get(spec.name.as_str()).copied();
            if !spec.required && found.is_none() {
                absent.push((place, read.data_type().clone()));
                continue;
            }
            let index = found.ok_or_else(|| {
                // A name declared already is no likely typo.
                let undeclared = header
                    .iter()
                    .map(String::as_str)
                    .filter(|h| !columns_declared.contains(h));
                format!(
                    "the CSV header has no column `{}`{} (header: {}); write `{}?` in `columns:` to read it as null where a file lacks it",
                    spec.name,
                    crate::data::closest(&spec.name, undeclared)
                        .map_or(String::new(), |b| format!(", did you mean `{b}`?")),
                    header.join(", "),
                    spec.value_type.name()
                )
            })?;
            fields[index] = read.as_ref().clone();
            projection.push(index);
        }
        decoder.read_schema = Arc::new(Schema::new(fields));
        decoder.header = header;
        decoder.projection = Some(projection);
        decoder.absent = absent;
        Ok(decoder)
    }

    /// Where each declared column is in a record (CSV decoders made from a header).
    pub fn csv_layout(&self) -> Option<CsvLayout> {
        // The kernel that splits records itself splits them at every line break.
        if !self.absent.is_empty() || self.multi_line {
            return None;
        }
        Some(CsvLayout {
            delimiter: self.delimiter,
            fields: self.header.len(),
            positions: self.projection.clone()?,
            columns: self.columns.clone(),
        })
    }

    /// The columns as declared.
    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// The CSV field separator.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The CSV escape character (`escape:`), if any.
    pub fn escape(&self) -> Option<u8> {
        self.escape
    }

    /// This decoder, reading `escape` before a quote in a quoted field as Spark's CSV writer
    /// puts it there (`"a\"b"`).
    pub fn with_escape(mut self, escape: Option<u8>) -> Self {
        self.escape = escape;
        self
    }

    /// The CSV header this decoder was made for.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The columns the decoded batches have, as `columns:` declares them.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Decodes the lines of `bytes` (whole lines; blank lines are not records). Bad records are
    /// returned, not decoded; the caller decides between failing and skipping.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Vec<RecordBatch>, Vec<BadRecord>), String> {
        let mut records: Vec<(usize, &[u8])> = Vec::new();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if self.multi_line {
            for (index, raw) in multi_line::records(bytes, self.delimiter) {
                let record = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !record.iter().all(u8::is_ascii_whitespace) {
                    records.push((index, record));
                }
            }
        } else if !bytes.is_empty() {
            let mut start = 0;
            let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
            for (index, end) in ends.enumerate() {
                let raw = &body[start..end];
                start = end + 1;
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    records.push((index, line));
                }
            }
        }
        let mut batches = Vec::new();
        let mut bad = Vec::new();
        if self.format == Format::Csv && memchr::memchr(b'"', bytes).is_some() {
            records.retain(|&(line, record)| {
                match multi_line::quote_problem(record, self.delimiter, self.escape) {
                    Some(reason) => {
                        bad.push(BadRecord { line, reason });
                        false
                    }
                    None => true,
                }
            });
        }
        for chunk in records.chunks(BATCH_ROWS) {
            let mut good = Vec::new();
            self.decode_halving(bytes, chunk, &mut good, &mut bad, false);
            match good.len() {
                0 => {}
                1 => batches.append(&mut good),
                _ => batches.push(
                    arrow_select::concat::concat_batches(&self.schema, &good)
                        .map_err(|e| e.to_string())?,
                ),
            }
        }
        bad.sort_by_key(|b| b.line);
        Ok((batches, bad))
    }

    /// Decodes `records` (lines of `bytes`) into `good` batches, in order, and the records the
    /// readers refuse into `bad`. Records are read in runs, the first run all of them. When a
    /// run is refused and the reader named the record (CSV), the records before it are read
    /// as one run, it alone, and the next run is twice as long as what was read since the
    /// last refusal; otherwise the run is halved. A bad record among good ones costs a few
    /// reads, and a file with many (a messy file under `on_error: skip`) reads runs about as
    /// long as the gaps between them: halving down to each of them cost a reader per record.
    ///
    /// A CSV value refused (a messy file's usual fault) has the records after it screened once
    /// ([`Self::csv_value_refusals`]): those the reader would refuse for a value are told so
    /// at once, and the rest read in runs, instead of a reader for each (`screened`: done).
    fn decode_halving<'a>(
        &self,
        bytes: &'a [u8],
        records: &[(usize, &'a [u8])],
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadRecord>,
        screened: bool,
    ) {
        let mut rest = records;
        let mut run_length = records.len();
        while !rest.is_empty() {
            let run = &rest[..run_length.clamp(1, rest.len())];
            // A record alone is read on its own bytes, which gives the readers' most specific
            // reason for refusing it.
            let whole = match (run.len(), self.multi_line) {
                (1, _) => None,
                (_, true) => adjacent(bytes, run),
                (_, false) => contiguous(bytes, run),
            };
            match self.decode_lines(run, whole) {
                Ok((batch, mut rejected)) => {
                    if batch.num_rows() > 0 {
                        good.push(batch);
                    }
                    bad.append(&mut rejected);
                    rest = &rest[run.len()..];
                    run_length = run.len().saturating_mul(2);
                }
                Err(Refusal { reason, .. }) if run.len() == 1 => {
                    bad.push(BadRecord {
                        line: run[0].0,
                        reason: match self.format {
                            Format::Jsonl => unquoted_when_not_a_string(reason, run[0].1),
                            _ => reason,
                        },
                    });
                    rest = &rest[1..];
                    run_length = 2;
                }
                Err(Refusal {
                    at: Some(at),
                    reason,
                    own,
                }) if at < run.len() => {
                    if at > 0 {
                        // Read before the named record, they are most likely good.
                        self.decode_halving(bytes, &run[..at], good, bad, screened);
                    }
                    match own {
                        true => bad.push(BadRecord {
                            line: run[at].0,
                            reason,
                        }),
                        false => self.decode_halving(bytes, &run[at..=at], good, bad, screened),
                    }
                    rest = &rest[at + 1..];
                    run_length = (at + 1).saturating_mul(2).max(16);
                    if own && !screened && self.format == Format::Csv && !self.multi_line {
                        if let Some(refusals) = self.csv_value_refusals(rest) {
                            let mut readable = Vec::with_capacity(rest.len());
                            for (&record, refusal) in rest.iter().zip(refusals) {
                                match refusal {
                                    Some(reason) => bad.push(BadRecord {
                                        line: record.0,
                                        reason,
                                    }),
                                    None => readable.push(record),
                                }
                            }
                            self.decode_halving(bytes, &readable, good, bad, true);
                            return;
                        }
                    }
                }
                Err(_) => run_length = run.len() / 2,
            }
        }
    }

    /// For each CSV record (one a line), the reason Arrow's reader would refuse it for a value,
    /// found without a reader per record: the fields are split by one `csv` reader, and each
    /// read column's field parsed as Arrow's reader parses it (`Parser` for numbers, `true` or
    /// `false` in any case for bool, an empty field null), the first refused in the columns'
    /// order told in the reader's words. `None` for a record that looks readable or has another
    /// problem (its field count, invalid UTF-8), which the reader then decides; `None` for all
    /// when the records do not split one a line.
    fn csv_value_refusals(&self, records: &[(usize, &[u8])]) -> Option<Vec<Option<String>>> {
        use arrow_cast::parse::Parser as _;
        let mut joined = Vec::with_capacity(records.iter().map(|r| r.1.len() + 1).sum());
        for (_, record) in records {
            joined.extend_from_slice(record);
            joined.push(b'\n');
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(self.delimiter)
            .escape(self.escape)
            .from_reader(&joined[..]);
        let fields = self.read_schema.fields();
        let read: Vec<usize> = match &self.projection {
            Some(projection) => projection.clone(),
            None => (0..fields.len()).collect(),
        };
        let mut record = csv::ByteRecord::new();
        let mut refusals = Vec::with_capacity(records.len());
        for _ in records {
            if !reader.read_byte_record(&mut record).ok()? {
                return None;
            }
            if record.len() != fields.len() || std::str::from_utf8(record.as_slice()).is_err() {
                refusals.push(None);
                continue;
            }
            let refused = read.iter().find_map(|&column| {
                let value = std::str::from_utf8(record.get(column)?).ok()?;
                let data_type = fields[column].data_type();
                let reads = value.is_empty()
                    || match data_type {
                        DataType::Int64 => arrow_array::types::Int64Type::parse(value).is_some(),
                        DataType::Float64 => {
                            arrow_array::types::Float64Type::parse(value).is_some()
                        }
                        DataType::Boolean => {
                            value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
                        }
                        _ => true,
                    };
                (!reads).then(|| {
                    csv_message(
                        arrow_schema::ArrowError::ParseError(format!(
                            "Error while parsing value '{value}' as type '{data_type}' for column {column} at line 0. Row data: ''"
                        )),
                        &self.read_schema,
                        !self.header.is_empty(),
                    )
                })
            });
            refusals.push(refused);
        }
        // Every record one line: no more of them in the bytes.
        match reader.read_byte_record(&mut record) {
            Ok(false) => Some(refusals),
            _ => None,
        }
    }

    /// Decodes records (line index, bytes) into one batch; rows that lack a required field or
    /// hold a bad timestamp are left out and returned. `whole`: the records' bytes as one
    /// slice, when they are consecutive lines ending in a newline (the readers then take them
    /// without a copy).
    fn decode_lines(
        &self,
        records: &[(usize, &[u8])],
        whole: Option<&[u8]>,
    ) -> Result<(RecordBatch, Vec<BadRecord>), Refusal> {
        let plain = match &self.plain_json {
            Some(plain) => plain.read(records, whole),
            None => None,
        };
        let mut bad_rows: BTreeMap<usize, String> = BTreeMap::new();
        let columns: Vec<ArrayRef> = match plain {
            Some(read) if read.others.is_empty() => read.columns,
            // The lines the plain reader gave back, read by Arrow's reader into their rows;
            // when that fails, each alone: a bad one is among them (the plain reader read the
            // rest), and it is told from the good ones without reading the run again.
            Some(read) => {
                let others: Vec<(usize, &[u8])> = read.others.iter().map(|&i| records[i]).collect();
                let columns = match self.read_records(&others, None) {
                    Ok(columns) => columns,
                    Err(_) if others.len() > 1 => {
                        let mut alone = Vec::with_capacity(others.len());
                        for (index, other) in read.others.iter().zip(&others) {
                            match self.read_records(std::slice::from_ref(other), None) {
                                Ok(columns) => alone.push(columns),
                                Err(refusal) => {
                                    let reason =
                                        unquoted_when_not_a_string(refusal.reason, other.1);
                                    bad_rows.insert(*index, reason);
                                    // A row of nulls holds its place until it is left out.
                                    alone.push(
                                        read.columns
                                            .iter()
                                            .map(|c| arrow_array::new_null_array(c.data_type(), 1))
                                            .collect(),
                                    );
                                }
                            }
                        }
                        (0..read.columns.len())
                            .map(|c| {
                                let pieces: Vec<&dyn arrow_array::Array> =
                                    alone.iter().map(|row| row[c].as_ref()).collect();
                                arrow_select::concat::concat(&pieces).map_err(|e| e.to_string())
                            })
                            .collect::<Result<_, String>>()?
                    }
                    Err(refusal) => return Err(refusal),
                };
                let mut from = Vec::with_capacity(records.len());
                let mut next = read.others.iter().copied().enumerate().peekable();
                for row in 0..records.len() {
                    match next.next_if(|&(_, other)| other == row) {
                        Some((index, _)) => from.push((1, index)),
                        None => from.push((0, row)),
                    }
                }
                read.columns
                    .iter()
                    .zip(&columns)
                    .map(|(plain, other)| {
                        arrow_select::interleave::interleave(
                            &[plain.as_ref(), other.as_ref()],
                            &from,
                        )
                        .map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, String>>()?
            }
            None => self.read_records(records, whole)?,
        };
        let mut out = Vec::with_capacity(columns.len());
        for (spec, column) in self.columns.iter().zip(columns) {
            let column = if spec.value_type == ValueType::Timestamp {
                let text = column.as_string::<i32>();
                let mut values = Vec::with_capacity(text.len());
                for (row, value) in text.iter().enumerate() {
                    values.push(match value.map(|v| (v, crate::data::parse_timestamp(v))) {
                        None => None,
                        Some((_, Some(micros))) => Some(micros),
                        Some((v, None)) => {
                            bad_rows.entry(row).or_insert_with(|| {
                                format!(
                                    "`{}`: \"{}\" is not a timestamp (RFC 3339, ISO 8601, or an epoch number; years 1 to 9999)",
                                    spec.name,
                                    crate::error::shortened(v)
                                )
                            });
                            None
                        }
                    });
                }
                Arc::new(arrow_array::TimestampMicrosecondArray::from(values).with_timezone("UTC"))
                    as ArrayRef
            } else if spec.value_type == ValueType::TextList
                && column.data_type() == &DataType::Utf8
            {
                let text = column.as_string::<i32>();
                let mut lists = arrow_array::builder::ListBuilder::new(
                    arrow_array::builder::StringBuilder::new(),
                );
                for (row, value) in text.iter().enumerate() {
                    match value.map(|v| (v, csv_list(v))) {
                        None => lists.append_null(),
                        Some((_, Some(items))) => {
                            for item in items {
                                lists.values().append_option(item);
                            }
                            lists.append(true);
                        }
                        Some((v, None)) => {
                            bad_rows.entry(row).or_insert_with(|| {
                                format!(
                                    "`{}`: \"{}\" is not a list (a JSON array of texts, as `[\"a\",null]`)",
                                    spec.name,
                                    crate::error::shortened(v)
                                )
                            });
                            lists.append_null();
                        }
                    }
                }
                Arc::new(lists.finish()) as ArrayRef
            } else {
                column
            };
            if spec.required && column.null_count() > 0 {
                for row in (0..column.len()).filter(|&r| column.is_null(r)) {
                    bad_rows
                        .entry(row)
                        .or_insert_with(|| format!("the required field `{}` is missing or empty (write `{}?` in `columns:` to read it as null)", spec.name, spec.value_type.name()));
                }
            }
            out.push(column);
        }
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            out,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(records.len())),
        )
        .map_err(|e| e.to_string())?;
        if bad_rows.is_empty() {
            return Ok((batch, Vec::new()));
        }
        let keep: arrow_array::BooleanArray = (0..records.len())
            .map(|r| Some(!bad_rows.contains_key(&r)))
            .collect();
        let kept =
            arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
        let bad = bad_rows
            .into_iter()
            .map(|(row, reason)| BadRecord {
                line: records[row].0,
                reason,
            })
            .collect();
        Ok((kept, bad))
    }

    /// The declared columns of `records` as Arrow's readers read them (before timestamps are
    /// parsed and required fields checked).
    fn read_records(
        &self,
        records: &[(usize, &[u8])],
        whole: Option<&[u8]>,
    ) -> Result<Vec<ArrayRef>, Refusal> {
        let read = match self.format {
            Format::Csv => self.read_csv(records, whole)?,
            _ => match self.read_json(records, whole) {
                Ok(read) => read,
                // A line alone that holds an object or array where a text is declared: read
                // with that value as its JSON text, as Spark reads it.
                Err(refusal) => match (records, whole) {
                    ([(line, bytes)], None) => match nested_values_as_text(bytes, &self.columns) {
                        Some(rewritten) => self
                            .read_json(&[(*line, &rewritten[..])], None)
                            .map_err(|_| refusal)?,
                        None => return Err(refusal.into()),
                    },
                    _ => return Err(refusal.into()),
                },
            },
        };
        if read.num_rows() != records.len() {
            // Read line by line, a CSV line that gives no record has a quote left open.
            return Err(match (self.format, records.len()) {
                (Format::Csv, 1) if self.multi_line => "a quoted field is never closed: its quote runs to the end of the input".to_owned(),
                (Format::Csv, 1) => "a quoted field does not end on its line (runner reads one record per line, as Spark does by default: `multi_line: true` reads fields that hold line breaks)".to_owned(),
                _ => format!("{} records read from {} lines", read.num_rows(), records.len()),
            }
            .into());
        }
        match self.format {
            Format::Jsonl => self
                .columns
                .iter()
                .map(|c| {
                    let column = flat_column(&read, &c.name)?;
                    match c.value_type {
                        ValueType::Integer => exact_integers(&column, &c.name),
                        ValueType::Float => json_floats(&column, &c.name),
                        _ => Ok(column),
                    }
                })
                .collect::<Result<_, String>>()
                .map_err(Refusal::from),
            _ => {
                let mut columns = read.columns().to_vec();
                for (place, data_type) in &self.absent {
                    columns.insert(
                        *place,
                        arrow_array::new_null_array(data_type, read.num_rows()),
                    );
                }
                Ok(columns)
            }
        }
    }

    fn read_csv(
        &self,
        records: &[(usize, &[u8])],
        whole: Option<&[u8]>,
    ) -> Result<RecordBatch, Refusal> {
        let refused = |e: arrow_schema::ArrowError| {
            let at = refused_record(&e);
            let value = matches!(&e, arrow_schema::ArrowError::ParseError(m) if m.starts_with("Error while parsing value"));
            let reason = csv_message(e, &self.read_schema, !self.header.is_empty());
            Refusal {
                // Reworded, it no longer counts lines of the run.
                own: value && !reason.contains(" at line "),
                reason,
                at,
            }
        };
        let mut builder = arrow_csv::ReaderBuilder::new(self.read_schema.clone());
        if let Some(projection) = &self.projection {
            builder = builder.with_projection(projection.clone());
        }
        if let Some(escape) = self.escape {
            builder = builder.with_escape(escape);
        }
        let mut decoder = builder
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(records.len().max(1))
            .build_decoder();
        if let Some(whole) = whole {
            let mut fed = 0;
            while fed < whole.len() {
                let used = decoder.decode(&whole[fed..]).map_err(refused)?;
                if used == 0 {
                    break;
                }
                fed += used;
            }
            if !only_line_ends(&whole[fed..]) {
                // The batch is full (as many records as lines) before the bytes end.
                return Err(self.more_records_than_lines().into());
            }
            return match decoder.flush().map_err(refused)? {
                Some(batch) => Ok(batch),
                None => Ok(RecordBatch::new_empty(self.projected_schema())),
            };
        }
        for (_, line) in records {
            let mut input: Vec<u8> = Vec::with_capacity(line.len() + 1);
            input.extend_from_slice(line);
            input.push(b'\n');
            let mut fed = 0;
            while fed < input.len() {
                let used = decoder.decode(&input[fed..]).map_err(|e| {
                    let refusal = refused(e);
                    Refusal {
                        reason: with_exact_count(refusal.reason, line, self.delimiter, self.escape),
                        ..refusal
                    }
                })?;
                if used == 0 {
                    break;
                }
                fed += used;
            }
            if !only_line_ends(&input[fed..]) {
                return Err(self.more_records_than_lines().into());
            }
        }
        match decoder.flush().map_err(refused)? {
            Some(batch) => Ok(batch),
            None => Ok(RecordBatch::new_empty(self.projected_schema())),
        }
    }

    fn more_records_than_lines(&self) -> String {
        match self.multi_line {
            true => MORE_RECORDS_THAN_FOUND.to_owned(),
            false => MORE_RECORDS_THAN_LINES.to_owned(),
        }
    }

    fn projected_schema(&self) -> SchemaRef {
        match &self.projection {
            Some(p) => Arc::new(
                self.read_schema
                    .project(p)
                    .expect("projection from the header"),
            ),
            None => self.read_schema.clone(),
        }
    }

    fn read_json(
        &self,
        records: &[(usize, &[u8])],
        whole: Option<&[u8]>,
    ) -> Result<RecordBatch, String> {
        // Decoders are reused: a fresh one's buffers cost page faults on every morsel.
        let pooled = self
            .json_decoders
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop());
        let mut decoder = match pooled {
            Some(decoder) => decoder,
            None => arrow_json::ReaderBuilder::new(self.read_schema.clone())
                .with_batch_size(BATCH_ROWS)
                .with_coerce_primitive(true)
                .build_decoder()
                .map_err(|e| e.to_string())?,
        };
        // A whole run of lines is read at once (each line one object is checked by the row
        // count); when that fails the lines are read one by one, which finds the bad one.
        let whole_run = whole.map(|w| [(0usize, w)]);
        let records = match &whole_run {
            Some(one) => &one[..],
            None => records,
        };
        for (_, line) in records {
            if whole.is_none() && line.trim_ascii_start().first() != Some(&b'{') {
                return Err(
                    "the line is not a JSON object (JSON lines hold one object per line)".into(),
                );
            }
            strict_json(line)?;
            let line = plain_json::surrogate_pairs_as_utf8(line);
            let mut fed = 0;
            while fed < line.len() {
                let used = decoder
                    .decode(&line[fed..])
                    .map_err(|e| json_message(e.to_string(), &self.columns))?;
                if used == 0 {
                    break;
                }
                fed += used;
            }
            if !line[fed..].iter().all(u8::is_ascii_whitespace) {
                // The decoder is full: more objects than lines (or than a batch holds).
                return Err("more than one JSON value on a line".into());
            }
            // A line holding a partial object is not a record: the next line must not finish it.
            if whole.is_none() && decoder.has_partial_record() {
                return Err("the JSON object does not end on its line".into());
            }
        }
        let batch = match decoder
            .flush()
            .map_err(|e| json_message(e.to_string(), &self.columns))?
        {
            Some(batch) => batch,
            None => RecordBatch::new_empty(self.read_schema.clone()),
        };
        // Only a decoder that ended cleanly goes back (one that failed may hold a partial
        // record).
        if let Ok(mut pool) = self.json_decoders.lock() {
            if pool.len() < 16 {
                pool.push(decoder);
            }
        }
        Ok(batch)
    }
}

/// The bytes of `records` as one slice of `bytes` when they are consecutive lines and the last
/// one ends in a newline.
fn contiguous<'a>(bytes: &'a [u8], records: &[(usize, &'a [u8])]) -> Option<&'a [u8]> {
    let (first, last) = (records.first()?, records.last()?);
    if last.0 - first.0 + 1 != records.len() {
        return None;
    }
    let start = first.1.as_ptr() as usize - bytes.as_ptr() as usize;
    let line_end = last.1.as_ptr() as usize - bytes.as_ptr() as usize + last.1.len();
    // The line's own end: `\n`, or `\r\n` (the `\r` was cut from the record).
    let end = match bytes.get(line_end..) {
        Some([b'\n', ..]) => line_end + 1,
        Some([b'\r', b'\n', ..]) => line_end + 2,
        _ => return None,
    };
    Some(&bytes[start..end])
}

/// The bytes of `records` as one slice of `bytes` when each starts right after the line end
/// of the one before (records of several lines, `multi_line`) and the last one ends in a
/// newline.
fn adjacent<'a>(bytes: &'a [u8], records: &[(usize, &'a [u8])]) -> Option<&'a [u8]> {
    let offset = |record: &[u8]| record.as_ptr() as usize - bytes.as_ptr() as usize;
    // Where a record's line end ends: after `\n`, or `\r\n` (the `\r` was cut from it).
    let after = |record: &[u8]| {
        let end = offset(record) + record.len();
        match bytes.get(end..) {
            Some([b'\n', ..]) => Some(end + 1),
            Some([b'\r', b'\n', ..]) => Some(end + 2),
            _ => None,
        }
    };
    let start = offset(records.first()?.1);
    let mut end = start;
    for (_, record) in records {
        if offset(record) != end {
            return None;
        }
        end = after(record)?;
    }
    Some(&bytes[start..end])
}

/// Arrow's CSV reader's message, in runner's words where it is one of the usual two: the
/// column named (Arrow numbers it) and Arrow's line number left out (it counts the lines it
/// was handed, one record when a bad one is looked for; the caller names the file's line).
/// Why a run of records was refused, and which record of the run (its index) the reader
/// named, when it named one: where to look first, not a fact (a wrong index only costs reads).
struct Refusal {
    reason: String,
    at: Option<usize>,
    /// Whether `reason` is the named record's own, as read alone it would be refused: a
    /// value that does not parse (Arrow reads a column for every record before the next
    /// column, so the first column it refuses is that record's first bad one too).
    own: bool,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal {
            reason,
            at: None,
            own: false,
        }
    }
}

/// The record of a run that Arrow's CSV reader names in `e` (an index into the run): a
/// value's parse error says `at line N` counting from 0 (one flush from the run's start),
/// a record's field count or bad UTF-8 `for line N` counting from 1.
fn refused_record(e: &arrow_schema::ArrowError) -> Option<usize> {
    let (arrow_schema::ArrowError::ParseError(text) | arrow_schema::ArrowError::CsvError(text)) = e
    else {
        return None;
    };
    let number = |after: &str| -> Option<usize> {
        let rest = &text[text.find(after)? + after.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..digits].parse().ok()
    };
    number(" at line ").or_else(|| number(" for line ")?.checked_sub(1))
}

fn csv_message(e: arrow_schema::ArrowError, header: &Schema, has_header: bool) -> String {
    let text = match e {
        arrow_schema::ArrowError::ParseError(m) | arrow_schema::ArrowError::CsvError(m) => m,
        other => other.to_string(),
    };
    // Arrow's messages are one line: a line break in one is a value's (a quoted field).
    let text = reworded(&text, header, has_header).unwrap_or_else(|| text.replace('\n', "\\n"));
    crate::error::escape_controls(&text).into_owned()
}

/// Arrow stops counting a record's fields one past the header's: "more than 5 fields" is told
/// with the number the record has (`line` is the one record Arrow was handed).
fn with_exact_count(message: String, line: &[u8], delimiter: u8, escape: Option<u8>) -> String {
    let Some(rest) = message.strip_prefix("more than ") else {
        return message;
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .escape(escape)
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => match rest.split_once(' ') {
            Some((_, words)) => format!("{} {words}", record.len()),
            None => message,
        },
        _ => message,
    }
}

/// `csv_message`'s rewording; `None` for another message (or a column not in `header`).
/// Without a header line (a socket's records), the fields are counted against the columns
/// declared.
fn reworded(text: &str, header: &Schema, has_header: bool) -> Option<String> {
    use std::sync::OnceLock;
    static VALUE: OnceLock<regex::Regex> = OnceLock::new();
    static FIELDS: OnceLock<regex::Regex> = OnceLock::new();
    let value = VALUE.get_or_init(|| {
        regex::Regex::new(
            r"(?s)^Error while parsing value '(.*)' as type '(\w+)' for column (\d+) at line \d+\. Row data: '.*'$",
        )
        .expect("a valid pattern")
    });
    if let Some(found) = value.captures(text) {
        let field = header.fields().get(found[3].parse::<usize>().ok()?)?;
        // A value that spells Arrow's own words could shift the match into the row data:
        // the column found must be of the type the message names.
        if field.data_type().to_string() != found[2] {
            return None;
        }
        let kind = type_words(&found[2])?;
        return Some(format!(
            "`{}`: \"{}\" is not {kind}",
            field.name(),
            crate::error::shortened(&found[1])
        ));
    }
    static UTF8: OnceLock<regex::Regex> = OnceLock::new();
    let utf8 = UTF8.get_or_init(|| {
        regex::Regex::new(r"^Encountered invalid UTF-8 data for line \d+ and field (\d+)$")
            .expect("a valid pattern")
    });
    if let Some(found) = utf8.captures(text) {
        // Arrow counts fields from 1, over the whole header.
        let field = found[1].parse::<usize>().ok()?.checked_sub(1)?;
        let name = header.fields().get(field)?.name();
        return Some(format!("`{name}`: not UTF-8"));
    }
    let fields = FIELDS.get_or_init(|| {
        regex::Regex::new(
            r"^incorrect number of fields for line \d+, expected (\d+) got (more than )?(\d+)$",
        )
        .expect("a valid pattern")
    });
    let found = fields.captures(text)?;
    let more = found.get(2).map_or("", |_| "more than ");
    Some(match has_header {
        true => format!(
            "{more}{} fields where the header has {}",
            &found[3], &found[1]
        ),
        false => format!(
            "{more}{} fields where {} columns are declared",
            &found[3], &found[1]
        ),
    })
}

/// A CSV field's list: a JSON array whose items are what a JSON list column takes (texts,
/// numbers and booleans as written, nulls); `None` for anything else.
fn csv_list(field: &str) -> Option<Vec<Option<String>>> {
    let items: Vec<serde_json::Value> = serde_json::from_str(field).ok()?;
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Null => Some(None),
            serde_json::Value::String(text) => Some(Some(text)),
            serde_json::Value::Number(n) => Some(Some(n.to_string())),
            serde_json::Value::Bool(b) => Some(Some(b.to_string())),
            _ => None,
        })
        .collect()
}

/// How deep arrays and objects may nest in a JSON record: Arrow's reader builds its messages
/// about a value by recursion, which a line of 100,000 `[` would take past the stack (Jackson,
/// Spark's reader, stops at 1,000 by default).
pub(crate) const MAX_JSON_NESTING: usize = 1000;

/// An error when arrays and objects in `lines` nest deeper than `limit` (strings are passed by).
fn nesting_within(lines: &[u8], limit: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &byte) in lines.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(format!(
                        "arrays and objects nest more than {limit} deep (at byte {})",
                        at + 1
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => depth = 0,
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `lines` are standard JSON (RFC 8259) before Arrow's reader reads them: it takes
/// `1.5.3`, `01` or a trailing comma into a text column as if they were numbers or nothing.
/// (The plain JSON reader checks its lines itself.) Raw control characters in strings are let
/// through, as both readers let them (a tab pasted into a text is common).
fn strict_json(lines: &[u8]) -> Result<(), String> {
    nesting_within(lines, MAX_JSON_NESTING)?;
    let controls = |b: &u8| *b < 0x20 && *b != b'\n' && *b != b'\r';
    let spaced: Vec<u8>;
    let lines = if lines.iter().any(controls) {
        spaced = lines
            .iter()
            .map(|&b| if controls(&b) { b' ' } else { b })
            .collect();
        &spaced[..]
    } else {
        lines
    };
    let values = serde_json::Deserializer::from_slice(lines).into_iter::<serde::de::IgnoredAny>();
    for value in values {
        if let Err(e) = value {
            let text = e.to_string();
            let said = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(said, _)| said);
            return Err(format!("not valid JSON: {said} at byte {}", e.column()));
        }
    }
    Ok(())
}

/// `line` with each object or array found where `columns` declare a text (or as an item of a
/// list of text) written as its JSON text (`{"b":1}`), as Spark's JSON reader gives it; `None`
/// when there is none, or the line is not a JSON object.
fn nested_values_as_text(line: &[u8], columns: &[ColumnSpec]) -> Option<Vec<u8>> {
    fn find<'a>(value: &'a mut serde_json::Value, path: &str) -> Option<&'a mut serde_json::Value> {
        let object = value.as_object_mut()?;
        // A key holding the dot itself first, as the readers read it.
        if object.contains_key(path) {
            return object.get_mut(path);
        }
        let (at, _) = path
            .match_indices('.')
            .find(|(at, _)| object.get(&path[..*at]).is_some_and(|v| v.is_object()))?;
        find(object.get_mut(&path[..at])?, &path[at + 1..])
    }
    let nested = |v: &serde_json::Value| v.is_object() || v.is_array();
    let mut parsed: serde_json::Value = serde_json::from_slice(line).ok()?;
    let mut changed = false;
    for spec in columns {
        let Some(value) = find(&mut parsed, &spec.name) else {
            continue;
        };
        match spec.value_type {
            ValueType::Text if nested(value) => {
                *value = serde_json::Value::String(value.to_string());
                changed = true;
            }
            ValueType::TextList => {
                for item in value.as_array_mut().into_iter().flatten() {
                    if nested(item) {
                        *item = serde_json::Value::String(item.to_string());
                        changed = true;
                    }
                }
            }
            _ => {}
        }
    }
    changed.then(|| serde_json::to_vec(&parsed).ok()).flatten()
}

/// A bad JSON line's reason (`` `a`: "1.5" is not an integer``) with the value unquoted when
/// the line holds it as a number or a boolean, not a string: the quotes would send the reader
/// looking for a string that is not there.
fn unquoted_when_not_a_string(reason: String, line: &[u8]) -> String {
    let Some((path, rest)) = reason.strip_prefix('`').and_then(|r| r.split_once("`: \"")) else {
        return reason;
    };
    let Some((value, why)) = rest.split_once("\" is not ") else {
        return reason;
    };
    fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
        let object = value.as_object()?;
        // A key holding the dot itself first, as the readers read it.
        if let Some(found) = object.get(path) {
            return Some(found);
        }
        path.match_indices('.')
            .find_map(|(at, _)| lookup(object.get(&path[..at])?, &path[at + 1..]))
    }
    let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(line) else {
        return reason;
    };
    match lookup(&parsed, path) {
        Some(serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            format!("`{path}`: {value} is not {why}")
        }
        _ => reason,
    }
}

/// Arrow's JSON reader's message, with the field it was decoding named as `columns:` names it
/// (`account.acct`, not Arrow's "whilst decoding field" once per level) and a value that does
/// not parse as its type said as `csv_message` says it.
fn json_message(text: String, columns: &[ColumnSpec]) -> String {
    let mut rest = text.trim_start_matches("Json error: ");
    let mut path: Vec<&str> = Vec::new();
    while let Some(inner) = rest.strip_prefix("whilst decoding field '") {
        let Some((name, after)) = inner.split_once("': ") else {
            break;
        };
        path.push(name);
        rest = after;
    }
    let said = rest
        .strip_prefix("failed to parse ")
        .and_then(|r| r.rsplit_once(" as "))
        .and_then(|(value, kind)| {
            let value = crate::error::shortened(value);
            Some(format!("{value} is not {}", type_words(kind)?))
        })
        .or_else(|| {
            let value = rest.strip_prefix("expected boolean got ")?;
            Some(format!(
                "{} is not true or false",
                crate::error::shortened(value)
            ))
        })
        .or_else(|| {
            // A value where an object holds the declared fields (`account.acct` of a line
            // whose `account` is a text).
            let value = rest.strip_prefix("expected { got ")?;
            Some(format!(
                "{} is not an object (a dotted path reads a field of one)",
                crate::error::shortened(value)
            ))
        })
        .or_else(|| {
            // Integers are read as text (see `exact_integers`): an array or object there.
            let value = rest.strip_prefix("expected string got ")?;
            let dotted = path.join(".");
            let spec = columns.iter().find(|c| c.name == dotted)?;
            let words = match spec.value_type {
                ValueType::Integer => "an integer",
                ValueType::Timestamp => "a timestamp",
                _ => "a text",
            };
            Some(format!("{} is not {words}", crate::error::shortened(value)))
        });
    let said = said.as_deref().unwrap_or(rest);
    let text = match path.is_empty() {
        true => said.to_owned(),
        false => format!("`{}`: {said}", path.join(".")),
    };
    crate::error::escape_controls(&text).into_owned()
}

/// How a message says a value is not of Arrow type `kind` (only the types `columns:` reads).
fn type_words(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Int64" => "an integer",
        "Float64" => "a float",
        "Boolean" => "true or false",
        _ => return None,
    })
}

/// Integers as JSON writes them (and strings holding them): an integer, or a number with no
/// fraction that a float holds exactly (`1e3`, `12.0`); anything else is an error, not cut to
/// an integer. The plain JSON reader reads the same.
fn exact_integers(text: &ArrayRef, name: &str) -> Result<ArrayRef, String> {
    let text = text.as_string::<i32>();
    let mut values = Vec::with_capacity(text.len());
    for value in text.iter() {
        values.push(match value {
            None => None,
            Some(written) => Some(exact_integer(written.as_bytes()).ok_or_else(|| {
                format!(
                    "`{name}`: \"{}\" is not an integer",
                    crate::error::shortened(written)
                )
            })?),
        });
    }
    Ok(Arc::new(arrow_array::Int64Array::from(values)))
}

/// Floats as JSON writes them (and strings holding them, or Spark's words for the values JSON
/// has no number for: `NaN`, `Infinity`, `-Infinity`, `+INF`, `-INF`); anything else (`+5`,
/// `012`, `1.5 `) is an error. Parsed by the parser Arrow's reader and the plain reader use.
fn json_floats(text: &ArrayRef, name: &str) -> Result<ArrayRef, String> {
    let text = text.as_string::<i32>();
    let mut values = Vec::with_capacity(text.len());
    for value in text.iter() {
        values.push(match value {
            None => None,
            Some(written) => Some(json_float(written).ok_or_else(|| {
                format!(
                    "`{name}`: \"{}\" is not a float",
                    crate::error::shortened(written)
                )
            })?),
        });
    }
    Ok(Arc::new(arrow_array::Float64Array::from(values)))
}

/// `written` as a float: a JSON number, or one of Spark's words for NaN and the infinities.
fn json_float(written: &str) -> Option<f64> {
    match written {
        "NaN" | "+NaN" | "-NaN" => return Some(f64::NAN),
        "Infinity" | "+Infinity" | "+INF" => return Some(f64::INFINITY),
        "-Infinity" | "-INF" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let bytes = written.as_bytes();
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let (mantissa, exponent) = match digits.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&digits[..at], Some(&digits[at + 1..])),
        None => (digits, None),
    };
    let (whole, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], Some(&mantissa[at + 1..])),
        None => (mantissa, None),
    };
    let all_digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    let exponent_digits =
        exponent.map(|e| e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e));
    let well_formed = all_digits(whole)
        && (whole == b"0" || whole[0] != b'0')
        && fraction.is_none_or(all_digits)
        && exponent_digits.is_none_or(all_digits);
    well_formed
        .then(|| lexical_core::parse::<f64>(bytes).ok())
        .flatten()
}

/// `written` as an integer: a JSON number whose value is a whole number in i64 (`12`, `-0`,
/// `1e3`, `12.50e1`), decided on its digits, not through a float (which would round
/// `4503599627370496.5` to a whole number).
pub(super) fn exact_integer(written: &[u8]) -> Option<i64> {
    let (negative, rest) = match written.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, written),
    };
    // The usual case: digits only (JSON allows no leading zero).
    if !rest.is_empty()
        && rest.iter().all(u8::is_ascii_digit)
        && (rest.len() == 1 || rest[0] != b'0')
    {
        return lexical_core::parse::<i64>(written).ok();
    }
    let (mantissa, exponent) = match rest.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    let exponent_digits =
        exponent.map(|e| e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e));
    let well_formed = !whole.is_empty()
        && (whole == b"0" || whole[0] != b'0')
        && whole.iter().chain(fraction).all(u8::is_ascii_digit)
        && (mantissa.len() == whole.len() || !fraction.is_empty())
        && exponent_digits.is_none_or(|e| !e.is_empty() && e.iter().all(u8::is_ascii_digit));
    if !well_formed {
        return None;
    }
    let digits = || whole.iter().chain(fraction).copied();
    let Some(first) = digits().position(|d| d != b'0') else {
        // Zero, whatever its exponent.
        return Some(0);
    };
    let exponent: i64 = match exponent {
        None => 0,
        // Past i32 a nonzero number is out of range or has a fraction either way.
        Some(e) => std::str::from_utf8(e).ok()?.parse::<i32>().ok()?.into(),
    };
    // The decimal point sits `point` digits in; past it every digit must be 0.
    let point = usize::try_from((exponent + whole.len() as i64).max(0)).ok()?;
    if digits().skip(point).any(|d| d != b'0') {
        return None;
    }
    // i64 has 19 digits: more before the point is out of range (and a long loop).
    if point.saturating_sub(first) > 19 {
        return None;
    }
    let mut magnitude: i128 = 0;
    let mut written = digits().skip(first);
    for _ in first..point {
        let digit = written.next().map_or(0, |d| i128::from(d - b'0'));
        magnitude = magnitude * 10 + digit;
    }
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// Fields for dotted paths (`account.acct`) as nested structs (`account: {acct}`).
fn nested_fields(paths: &[(&str, DataType)]) -> Result<Vec<Field>, String> {
    /// A first path segment: its deeper paths, and its own type when it is a leaf.
    type Group = (Vec<(String, DataType)>, Option<DataType>);
    // By name, in the order first met (a list searched once per path took seconds for an
    // object of tens of thousands of keys).
    let mut groups: indexmap::IndexMap<String, Group> = indexmap::IndexMap::new();
    for (path, data_type) in paths {
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (*path, None),
        };
        let group = groups.entry(head.to_owned()).or_default();
        match rest {
            Some(rest) => group.0.push((rest.to_owned(), data_type.clone())),
            None => group.1 = Some(data_type.clone()),
        }
    }
    groups
        .into_iter()
        .map(
            |(name, (children, leaf))| match (leaf, children.is_empty()) {
                (Some(t), true) => Ok(Field::new(name, t, true)),
                (None, false) => {
                    let refs: Vec<(&str, DataType)> = children
                        .iter()
                        .map(|(n, t)| (n.as_str(), t.clone()))
                        .collect();
                    Ok(Field::new(
                        name,
                        DataType::Struct(Fields::from(nested_fields(&refs)?)),
                        true,
                    ))
                }
                _ => Err(format!(
                    "columns: `{name}` is read both as a value and as an object with fields"
                )),
            },
        )
        .collect()
}

/// The column at dotted `path` of a batch read with `nested_fields` (null where a parent is).
fn flat_column(batch: &RecordBatch, path: &str) -> Result<ArrayRef, String> {
    let nested = nested_column(batch, path)?;
    // The key `a.b` itself, where a line has it (see `RecordDecoder::new`).
    match batch.column_by_name(path) {
        Some(literal) if path.contains('.') && literal.null_count() < literal.len() => {
            let has =
                arrow_arith::boolean::is_not_null(literal.as_ref()).map_err(|e| e.to_string())?;
            arrow_select::zip::zip(&has, literal, &nested).map_err(|e| e.to_string())
        }
        _ => Ok(nested),
    }
}

/// The column at dotted `path` of the nested fields.
fn nested_column(batch: &RecordBatch, path: &str) -> Result<ArrayRef, String> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or(path);
    let mut column = batch
        .column_by_name(first)
        .cloned()
        .ok_or_else(|| format!("no field `{first}`"))?;
    for part in parts {
        let parent = column.as_struct().clone();
        let child = parent
            .column_by_name(part)
            .cloned()
            .ok_or_else(|| format!("no field `{part}` in `{path}`"))?;
        column = match parent.nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let data = child.to_data();
                let merged = arrow_buffer::NullBuffer::union(Some(nulls), data.nulls());
                arrow_array::make_array(
                    data.into_builder()
                        .nulls(merged)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
            }
            _ => child,
        };
    }
    Ok(column)
}

/// Records arriving on a stream (a socket's lines, a file stream's chunks): each chunk of whole
/// lines decoded on its own, chunks in parallel; bad records fail the run or are counted.
pub struct StreamRecords {
    decoder: RecordDecoder,
    on_error: OnError,
    encoding_errors: super::file::EncodingErrors,
    /// Lines of invalid UTF-8 repaired or left out.
    utf8: super::LineCounts,
    bad: std::sync::atomic::AtomicU64,
    first_bad: std::sync::Mutex<Option<String>>,
}

impl StreamRecords {
    /// Decodes with `decoder`; a line of invalid UTF-8 is repaired, left out or fails the run
    /// as `encoding_errors` says, a bad record as `on_error` says.
    pub fn new(
        decoder: RecordDecoder,
        on_error: OnError,
        encoding_errors: super::file::EncodingErrors,
    ) -> Self {
        StreamRecords {
            decoder,
            on_error,
            encoding_errors,
            utf8: Default::default(),
            bad: Default::default(),
            first_bad: Default::default(),
        }
    }

    /// The columns the decoded batches have.
    pub fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    /// Decodes `chunks` into one batch. `at(chunk, line)` says where a bad record is (its
    /// 0-based line in its chunk), for the error or the warning.
    ///
    /// Chunks (a socket's reads are small) are joined into one piece per worker, so the
    /// readers get long runs of lines, and the pieces are decoded in parallel.
    pub fn decode(
        &self,
        chunks: &[Vec<u8>],
        at: impl Fn(usize, usize) -> String + Sync,
    ) -> crate::error::Result<RecordBatch> {
        self.decode_each(chunks, &[], at)
    }

    /// As [`StreamRecords::decode`], each chunk with its own decoder where `decoders` has one
    /// (CSV files, each read by its own header), the source's decoder otherwise. The decoders
    /// must give the source's columns.
    pub fn decode_each(
        &self,
        chunks: &[Vec<u8>],
        decoders: &[Option<Arc<RecordDecoder>>],
        at: impl Fn(usize, usize) -> String + Sync,
    ) -> crate::error::Result<RecordBatch> {
        use rayon::prelude::*;
        use std::sync::atomic::Ordering;
        let decoder_of = |index: usize| -> &RecordDecoder {
            match decoders.get(index) {
                Some(Some(decoder)) => decoder,
                _ => &self.decoder,
            }
        };
        let total: usize = chunks.iter().map(Vec::len).sum();
        let pieces = rayon::current_num_threads().max(1);
        let target = total / pieces + 1;
        // Consecutive chunks per piece, about `target` bytes each, all of one decoder.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (index, chunk) in chunks.iter().enumerate() {
            bytes += chunk.len();
            let last = index + 1 == chunks.len();
            if bytes >= target || last || !std::ptr::eq(decoder_of(index), decoder_of(index + 1)) {
                groups.push(start..index + 1);
                start = index + 1;
                bytes = 0;
            }
        }
        // The epoch's turn: its lines come after the last epoch's (see `LineCounts`).
        let turn = self.utf8.in_turn();
        let decoded: Vec<Vec<RecordBatch>> = groups
            .into_par_iter()
            .map(|group| -> crate::error::Result<Vec<RecordBatch>> {
                let parts = &chunks[group.clone()];
                let joined;
                let mut piece: &[u8] = if parts.len() == 1 {
                    &parts[0]
                } else {
                    joined = parts.concat();
                    &joined
                };
                // Back from the piece's line to its chunk's, for messages.
                let place = |mut line: usize| {
                    let mut chunk = group.start;
                    for (index, part) in parts.iter().enumerate() {
                        let lines = memchr::memchr_iter(b'\n', part).count();
                        chunk = group.start + index;
                        if line < lines {
                            break;
                        }
                        line -= lines;
                    }
                    crate::error::escape_controls(&at(chunk, line)).into_owned()
                };
                let repaired;
                if simdutf8::basic::from_utf8(piece).is_err() {
                    let at = (turn, group.start as u64);
                    repaired =
                        self.utf8
                            .repair_utf8(piece, self.encoding_errors, true, at, &place)?;
                    piece = &repaired;
                }
                let (batches, bad) = decoder_of(group.start)
                    .decode(piece)
                    .map_err(crate::error::Error::runtime)?;
                if let Some(BadRecord { line, reason }) = bad.first() {
                    let place = place(*line);
                    if self.on_error == OnError::Fail {
                        return Err(crate::error::Error::runtime(format!(
                            "{place}: the record cannot be read: {reason} (`on_error: skip` leaves such records out)"
                        )));
                    }
                    self.bad.fetch_add(bad.len() as u64, Ordering::Relaxed);
                    if let Ok(mut first) = self.first_bad.lock() {
                        first.get_or_insert_with(|| format!("{place}: {reason}"));
                    }
                }
                Ok(batches)
            })
            // In chunk order, so the error told is the first in the input, as a batch run's.
            .collect::<Vec<crate::error::Result<_>>>()
            .into_iter()
            .collect::<crate::error::Result<_>>()?;
        let batches: Vec<RecordBatch> = decoded.into_iter().flatten().collect();
        Ok(crate::data::concat(&self.decoder.schema(), &batches))
    }

    /// Records left out (`on_error: skip`) and lines of invalid UTF-8 so far.
    pub fn counters(&self) -> super::SourceCounters {
        super::SourceCounters {
            malformed_events: self.bad.load(std::sync::atomic::Ordering::Relaxed),
            ..self.utf8.counters()
        }
    }

    /// The warnings for the end of the run: lines of invalid UTF-8, records left out.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.utf8.warnings(usize::MAX);
        warnings.extend(self.bad_records_warning());
        warnings
    }

    fn bad_records_warning(&self) -> Option<String> {
        let bad = self.bad.load(std::sync::atomic::Ordering::Relaxed);
        (bad > 0).then(|| {
            let first = self
                .first_bad
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            format!("{bad} record(s) could not be read and were skipped; the first: {first}")
        })
    }
}

/// The header and the records of a CSV `head` with as many fields as the header, as they are
/// written (each with its line end).
fn csv_records_as_long_as_the_header(head: &[u8], delimiter: u8, escape: Option<u8>) -> Vec<u8> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .escape(escape)
        .from_reader(head);
    let mut record = csv::ByteRecord::new();
    let mut fields = None;
    let mut kept = Vec::with_capacity(head.len());
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let Some(start) = record.position().map(|p| p.byte() as usize) else {
            break;
        };
        let end = (reader.position().byte() as usize).min(head.len());
        if *fields.get_or_insert(record.len()) == record.len() {
            kept.extend_from_slice(&head[start.min(end)..end]);
        }
    }
    kept
}

/// What the first lines hold at one dotted path.
#[derive(Default)]
struct SeenAt {
    object: bool,
    boolean: bool,
    integer: bool,
    /// Integers past i64 (up to 2^64; larger ones parse as floats), kept as text with every
    /// digit, as the CSV inference keeps them.
    wide_integer: bool,
    float: bool,
    string: bool,
    /// Arrays of texts, numbers, booleans and nulls.
    list: bool,
    /// Arrays holding arrays or objects.
    nested_list: bool,
}

/// Columns inferred from the first JSON lines (up to 1,000 objects): nested objects become
/// dotted paths; integers → integer, with a fraction or an exponent → float, past i64 → text
/// (every digit kept), true/false → bool, strings → text (as Spark's inference, which leaves
/// timestamps as strings unless asked: declare them `timestamp`), arrays of values → list of
/// text, only nulls → text. What no column type reads (arrays of arrays or objects, a value in
/// some lines and an object in others, a flattened key under another column's value) is left
/// out, with a warning that names it.
fn infer_json_columns(head: &[u8]) -> Result<Vec<ColumnSpec>, String> {
    fn walk(
        prefix: &str,
        object: &serde_json::Map<String, serde_json::Value>,
        seen: &mut indexmap::IndexMap<String, SeenAt>,
    ) {
        use serde_json::Value;
        for (key, value) in object {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if let Value::Object(inner) = value {
                seen.entry(path.clone()).or_default().object = true;
                walk(&path, inner, seen);
                continue;
            }
            let at = seen.entry(path).or_default();
            match value {
                Value::Null | Value::Object(_) => {}
                Value::Bool(_) => at.boolean = true,
                Value::Number(n) if n.is_i64() => at.integer = true,
                Value::Number(n) if n.is_u64() => at.wide_integer = true,
                Value::Number(_) => at.float = true,
                Value::String(_) => at.string = true,
                Value::Array(items) => {
                    if items
                        .iter()
                        .any(|i| matches!(i, Value::Array(_) | Value::Object(_)))
                    {
                        at.nested_list = true;
                    } else {
                        at.list = true;
                    }
                }
            }
        }
    }
    let (objects, first_bad) = json_objects(head);
    let mut seen: indexmap::IndexMap<String, SeenAt> = indexmap::IndexMap::new();
    let mut read = 0;
    for line in objects.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(line) {
            walk("", &object, &mut seen);
            read += 1;
            if read == 1000 {
                break;
            }
        }
    }
    if read == 0 {
        return Err(format!(
            "cannot infer the columns: no JSON object among the first lines could be read ({})",
            first_bad.unwrap_or_else(|| "they are blank".into())
        ));
    }
    let mut columns = Vec::new();
    let mut left_out = Vec::new();
    // Paths that hold a value in some line: a path below one is a flattened key the readers
    // would look for inside that value. Paths left out take the paths below them along.
    let holds_value = |at: &SeenAt| {
        at.boolean
            || at.integer
            || at.wide_integer
            || at.float
            || at.string
            || at.list
            || at.nested_list
    };
    let mut gone: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (path, at) in &seen {
        // The nearest path above this one that holds a value or was left out (looked up by
        // each dotted prefix: linear in the paths, whatever their number).
        let above = path
            .match_indices('.')
            .map(|(i, _)| &path[..i])
            .find(|prefix| gone.contains(prefix) || seen.get(*prefix).is_some_and(&holds_value));
        if let Some(prefix) = above {
            left_out.push(format!(
                "`{path}` (below `{prefix}`, which holds a value in some lines)"
            ));
            gone.insert(path);
            continue;
        }
        let value = at.boolean || at.integer || at.wide_integer || at.float || at.string;
        let value_type = if at.nested_list {
            left_out.push(format!("`{path}` (arrays of arrays or objects)"));
            gone.insert(path);
            continue;
        } else if at.object && (value || at.list) {
            left_out.push(format!(
                "`{path}` (an object in some lines, a value in others)"
            ));
            gone.insert(path);
            continue;
        } else if at.object {
            // Its fields are columns of their own.
            continue;
        } else if at.list && value {
            left_out.push(format!(
                "`{path}` (an array in some lines, a value in others)"
            ));
            gone.insert(path);
            continue;
        } else if at.list {
            ValueType::TextList
        } else if at.string || at.wide_integer || (at.boolean && (at.integer || at.float)) {
            ValueType::Text
        } else if at.float {
            ValueType::Float
        } else if at.integer {
            ValueType::Integer
        } else if at.boolean {
            ValueType::Bool
        } else {
            ValueType::Text
        };
        columns.push(ColumnSpec {
            name: path.clone(),
            value_type,
            required: false,
        });
    }
    if !left_out.is_empty() {
        tracing::warn!(
            "columns inferred from the first JSON lines leave out {}: no column type reads them (list the columns to read in `columns:`)",
            left_out.join(", ")
        );
    }
    if columns.is_empty() {
        return Err(format!(
            "cannot infer the columns: the first lines' objects hold no field that can be read{}",
            if left_out.is_empty() {
                String::new()
            } else {
                format!(" ({})", left_out.join(", "))
            }
        ));
    }
    Ok(columns)
}

/// The lines of `head` that hold a JSON object, and what is wrong with the first that does
/// not (`line N: why`).
fn json_objects(head: &[u8]) -> (Vec<u8>, Option<String>) {
    let mut objects = Vec::with_capacity(head.len());
    let mut first_bad = None;
    for (index, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // A value, not `IgnoredAny`: that passes numbers out of range (`1e400`), which the
        // inference then fails on.
        let why = match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(_) if text.starts_with(b"{") => {
                objects.extend_from_slice(text);
                objects.push(b'\n');
                continue;
            }
            Ok(_) => "not a JSON object".to_owned(),
            // `1e400` is past serde_json's range, not the readers' (a float column reads it as
            // infinity): the line is looked at with such numbers as a float.
            Err(e) if e.to_string().starts_with("number out of range") => {
                let finite = infinite_numbers_as_zero(text);
                if matches!(
                    serde_json::from_slice::<serde_json::Value>(&finite),
                    Ok(serde_json::Value::Object(_))
                ) {
                    objects.extend_from_slice(&finite);
                    objects.push(b'\n');
                    continue;
                }
                crate::error::shortened(&e.to_string())
            }
            Err(e) => crate::error::shortened(&e.to_string()),
        };
        first_bad.get_or_insert_with(|| format!("line {}: {why}", index + 1));
    }
    (objects, first_bad)
}

/// A JSON line with each number outside strings that is past a float's range (`1e400`)
/// written `0.0`, so that it is seen as a float.
fn infinite_numbers_as_zero(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_string {
            let step = if b == b'\\' { 2 } else { 1 };
            out.extend_from_slice(&line[i..(i + step).min(line.len())]);
            in_string = b != b'"';
            i += step;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < line.len()
                && matches!(line[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = &line[start..i];
            let infinite = std::str::from_utf8(token)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_infinite);
            out.extend_from_slice(if infinite { b"0.0" } else { token });
        } else {
            in_string = b == b'"';
            out.push(b);
            i += 1;
        }
    }
    out
}

/// Columns inferred from the first lines of a CSV file (header first) or JSON lines: text,
/// integer, float, bool, timestamp, list of text; nested objects become dotted paths.
pub fn infer_columns(
    format: Format,
    head: &[u8],
    delimiter: u8,
    escape: Option<u8>,
) -> Result<Vec<ColumnSpec>, String> {
    // A record that cannot be read is a bad record when the file is read (`on_error`); it
    // must not stop the inference, nor sway it: the inference is tried again without it.
    let schema = match format {
        Format::Csv => {
            if head
                .strip_prefix(b"\xEF\xBB\xBF")
                .unwrap_or(head)
                .is_empty()
            {
                return Err("cannot infer the columns: the input is empty (a CSV file's first line names its columns)".into());
            }
            let header = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let header = header.strip_suffix(b"\r").unwrap_or(header);
            if let Some(problem) = multi_line::header_problem(header, delimiter) {
                return Err(format!("cannot infer the columns: {problem}"));
            }
            let infer = |head: &[u8]| {
                let format = arrow_csv::reader::Format::default();
                let format = match escape {
                    Some(escape) => format.with_escape(escape),
                    None => format,
                };
                format
                    .with_header(true)
                    .with_delimiter(delimiter)
                    .infer_schema(std::io::Cursor::new(head), Some(1000))
                    .map(|(schema, _)| schema)
            };
            infer(head)
                .or_else(|_| infer(&csv_records_as_long_as_the_header(head, delimiter, escape)))
                .map_err(|e| format!("cannot infer the columns: {e}"))?
        }
        _ => return infer_json_columns(head),
    };
    let mut columns = Vec::new();
    fn walk(prefix: &str, fields: &Fields, out: &mut Vec<ColumnSpec>) {
        for field in fields {
            let name = if prefix.is_empty() {
                field.name().clone()
            } else {
                format!("{prefix}.{}", field.name())
            };
            if let DataType::Struct(children) = field.data_type() {
                walk(&name, children, out);
                continue;
            }
            let value_type = match field.data_type() {
                DataType::Int64 | DataType::Int32 => ValueType::Integer,
                DataType::Float64 => ValueType::Float,
                DataType::Boolean => ValueType::Bool,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                    ValueType::Timestamp
                }
                DataType::List(_) => ValueType::TextList,
                _ => ValueType::Text,
            };
            out.push(ColumnSpec {
                name,
                value_type,
                required: false,
            });
        }
    }
    walk("", schema.fields(), &mut columns);
    if columns.is_empty() {
        return Err("cannot infer the columns: the first lines hold none".into());
    }
    if format == Format::Csv {
        settle_csv_types(&mut columns, head, delimiter);
        let names = unique_names(columns.iter().map(|c| c.name.clone()).collect());
        for (column, name) in columns.iter_mut().zip(names) {
            column.name = name;
        }
    }
    Ok(columns)
}

/// Arrow's inference goes by the look of a value (`2024-02-30` looks like a date): a type that
/// a value of the sample cannot be read as would make the file's own rows bad records, so such
/// a column is read as text, as DuckDB's sniffer falls back to VARCHAR.
fn settle_csv_types(columns: &mut [ColumnSpec], head: &[u8], delimiter: u8) {
    use arrow_cast::parse::Parser as _;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(head);
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    // Text columns whose every value the float reader reads, one at least a word for infinity:
    // Arrow's look-up takes `inf` and `NaN` for floats but not `Infinity` (the CSV sinks' own
    // spelling) or `-INF`, which Spark's inference takes, so such a column is a float column.
    let mut floats: Vec<Option<bool>> = columns
        .iter()
        .map(|c| (c.value_type == ValueType::Text).then_some(false))
        .collect();
    while rows < 1000 {
        match reader.read_record(&mut record) {
            Ok(true) => rows += 1,
            Ok(false) => break,
            // Invalid UTF-8 or a broken quote: a bad record when read, not a sample.
            Err(_) => continue,
        }
        if record.len() != columns.len() {
            continue;
        }
        for ((column, float), value) in columns.iter_mut().zip(&mut floats).zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            if let Some(infinity_seen) = *float {
                let reads = !value.bytes().any(|b| b.is_ascii_whitespace())
                    && arrow_array::types::Float64Type::parse(value).is_some();
                let infinity = value
                    .trim_start_matches(['+', '-'])
                    .eq_ignore_ascii_case("infinity")
                    || value
                        .trim_start_matches(['+', '-'])
                        .eq_ignore_ascii_case("inf");
                *float = reads.then_some(infinity_seen || infinity);
            }
            let reads = |t: ValueType| match t {
                ValueType::Integer => value.parse::<i64>().is_ok(),
                ValueType::Float => value.parse::<f64>().is_ok(),
                ValueType::Timestamp => crate::data::parse_timestamp(value).is_some(),
                _ => true,
            };
            if !reads(column.value_type) {
                column.value_type = ValueType::Text;
            }
        }
    }
    for (column, float) in columns.iter_mut().zip(floats) {
        if float == Some(true) {
            column.value_type = ValueType::Float;
        }
    }
}

/// The names in a CSV header line (without its line end): invalid UTF-8 replaced, made
/// unique by [`unique_names`].
pub fn csv_header_names(header: &[u8], delimiter: u8) -> Vec<String> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(header)
        .byte_records()
        .next()
        .and_then(|r| r.ok())
        .map(|r| {
            r.iter()
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .collect()
        })
        .map(unique_names)
        .unwrap_or_default()
}

/// A CSV header's names, so that every column can be named and none is dropped unseen: each
/// repeated one suffixed (`a`, `b`, `a_1`), a blank one named by its place (`column1`), as
/// DuckDB names them.
pub fn unique_names(names: Vec<String>) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    // A blank name is named by its place, zero-padded to the widest place (`column03`).
    let width = names.len().saturating_sub(1).to_string().len();
    // A name the header writes is never given to another column (`columns:` finds it by that
    // name): a repeated or made-up one takes the first suffix free of both (`a,a,a_1` reads
    // as `a`, `a_2`, `a_1`).
    let written: HashSet<String> = names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(names.len());
    for (place, name) in names.into_iter().enumerate() {
        let made_up = name.trim().is_empty();
        let name = match made_up {
            true => format!("column{place:0width$}"),
            false => name,
        };
        let mut unique = name.clone();
        if used.contains(&unique) || (made_up && written.contains(&unique)) {
            let count = counts.entry(name.clone()).or_insert(0);
            loop {
                *count += 1;
                unique = format!("{name}_{count}");
                if !used.contains(&unique) && !written.contains(&unique) {
                    break;
                }
            }
        }
        used.insert(unique.clone());
        out.push(unique);
    }
    out
}

#[cfg(test)]
mod tests;
