//! The CSV aggregate kernel (the plan's `aggregate_csv_fields` rule): an `aggregate` (or a
//! `group_count` by one text column) after a CSV file source, with only filters of one column
//! each in between, reads each morsel's bytes itself. It splits the records at the delimiter,
//! parses only the fields the filters and the aggregation name (with the parsers Arrow's CSV
//! reader uses, so values are the same), checks the other declared fields as the reader does,
//! asks the filters which rows they keep (`keep_mask`), finds each kept row's group from the
//! key's bytes in a per-worker table, and adds the rows to the aggregation's own per-worker
//! state, merged once.
//!
//! A morsel whose every line is a record (no blank line, no record short or long: the usual
//! file) is split at a stride: one pass finds every delimiter and newline (`csv_scan`), then
//! each column's fields are read in a loop of their own, numbers by parsers for their plain
//! spellings, and text keys that sit next to each other in the record are looked up by their
//! bytes where they lie. Other morsels are split field by field.
//!
//! Arrow's reader builds every declared column of every row and encodes the keys again for
//! the aggregation; the kernel skips both (1.4–1.9× faster on the records benchmark's CSV,
//! where parsing the numbers and reading the file are now much of what is left). It handles
//! the plain form of CSV only. A morsel with a quote, a carriage return inside a line, invalid
//! UTF-8, a record with the wrong number of fields, an empty required field or a value that
//! does not parse goes whole through the source's own reader and the steps into the same
//! state, which reports bad records with their line numbers and applies `on_error` as without
//! the kernel.

use std::sync::Arc;

use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow_buffer::{NullBuffer, ScalarBuffer};
use arrow_cast::parse::Parser;
use rayon::prelude::*;

use super::batch::PerWorker;
use super::csv_scan;
use super::spilled_aggregate::{Aggregated, Spill};
use super::BuiltStage;
use crate::counts::{WordCounts, WordHasher, INLINE};
use crate::data::ValueType;
use crate::error::{Error, Result};
use crate::plan::{Fusion, Kernel};
use crate::sources::records::CsvLayout;
use crate::sources::BatchSource;
use crate::transforms::{
    AggregateState, Aggregation, MapTransform, PerValue, PlainColumns, StageKind,
};

/// The fused aggregation: which columns it reads and how.
pub struct CsvAggregate<'a> {
    aggregation: &'a dyn Aggregation,
    /// The steps before the aggregation (filters, run by their masks), and for each the
    /// column it decides by.
    filters: Vec<(&'a dyn MapTransform, usize)>,
    /// The same steps as built, for morsels the source's reader reads.
    prefix: &'a [BuiltStage],
    plain: PlainColumns,
    /// Whether each output column is a key, an argument or filtered (its values are kept);
    /// the others are only checked, as the source's reader checks every declared column.
    used: Vec<bool>,
    /// Each output column's type, and the columns as the source gives them.
    types: Vec<ValueType>,
    schema: arrow_schema::SchemaRef,
}

impl<'a> CsvAggregate<'a> {
    /// `None` when the steps do not declare what the plan says they do (they always do).
    pub fn new(
        fusion: &Fusion,
        source: &dyn BatchSource,
        stages: &'a [BuiltStage],
    ) -> Option<Self> {
        if fusion.kernel != Kernel::CsvAggregate || !source.raw_csv_records() {
            return None;
        }
        let StageKind::Aggregate(aggregation) = &stages.get(fusion.count)?.stage.kind else {
            return None;
        };
        let plain = aggregation.plain_columns()?;
        aggregation.new_state().grouped()?;
        let filters = fusion
            .row_wise
            .iter()
            .map(|&i| match &stages.get(i)?.stage.kind {
                StageKind::Map(step) => match step.per_value()? {
                    PerValue::Keeps { column } => Some((step.as_ref(), column)),
                    PerValue::Maps { .. } => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let filtered: Vec<usize> = filters.iter().map(|(_, column)| *column).collect();
        let schema = source.schema();
        let types = schema
            .fields()
            .iter()
            .map(|f| ValueType::of(f.data_type()))
            .collect::<Option<Vec<_>>>()?;
        let mut used = vec![false; types.len()];
        for &column in plain.keys.iter().chain(plain.args.iter().flatten()) {
            *used.get_mut(column)? = true;
        }
        for &column in &filtered {
            *used.get_mut(column)? = true;
        }
        crate::plan::csv_fields_readable(&plain, &filtered, &types).then_some(CsvAggregate {
            aggregation: aggregation.as_ref(),
            filters,
            prefix: &stages[..fusion.count],
            plain,
            used,
            types,
            schema,
        })
    }

    /// Aggregates the whole input (on the current rayon pool) into the aggregation's result.
    pub(crate) fn run(&self, source: &dyn BatchSource) -> Result<Aggregated<'a>> {
        let workers = PerWorker::new();
        let spill = Spill::new(self.aggregation, rayon::current_num_threads());
        source
            .open()?
            .into_par_iter()
            .try_for_each(|(index, morsel)| -> Result<()> {
                let morsel = morsel?;
                let full = workers.with(
                    || Worker::new(self.aggregation.new_state()),
                    |worker| -> Result<_> {
                        worker.state.begin_morsel(index as u64);
                        let layout = source.csv_layout();
                        let read = match &layout {
                            Some(layout) => worker.read(self, layout, &morsel.bytes)?,
                            None => false,
                        };
                        if read {
                            source.recycle(morsel.bytes);
                        } else {
                            for batch in super::batch::decode_through(source, self.prefix, morsel)?
                            {
                                worker.state.update(&batch)?;
                            }
                        }
                        let beside =
                            worker.groups.memory_bytes() + worker.span_groups.memory_bytes();
                        let full = spill.take_full(&mut worker.state, beside);
                        if full.is_some() {
                            worker.forget_groups();
                        }
                        Ok(full)
                    },
                )?;
                // Written with the worker's lock let go (see `Spill::take_full`).
                match full {
                    Some(full) => spill.write_full(full),
                    None => Ok(()),
                }
            })?;
        let state = spill.merge(workers.into_iter().map(|worker| worker.state))?;
        spill.finish(state)
    }
}

/// A column's values for the rows of one morsel.
enum Values {
    /// A column no key or argument reads: its fields are only checked.
    Check(ValueType),
    /// Byte ranges in the morsel; `None` for an empty field (null).
    Text(Vec<Option<(u32, u32)>>),
    Integer(Vec<i64>, Vec<bool>),
    Float(Vec<f64>, Vec<bool>),
}

impl Values {
    fn new(value_type: ValueType, used: bool) -> Values {
        match value_type {
            _ if !used => Values::Check(value_type),
            ValueType::Integer => Values::Integer(Vec::new(), Vec::new()),
            ValueType::Float => Values::Float(Vec::new(), Vec::new()),
            _ => Values::Text(Vec::new()),
        }
    }

    fn truncate(&mut self, rows: usize) {
        match self {
            Values::Check(_) => {}
            Values::Text(spans) => spans.truncate(rows),
            Values::Integer(v, valid) => {
                v.truncate(rows);
                valid.truncate(rows);
            }
            Values::Float(v, valid) => {
                v.truncate(rows);
                valid.truncate(rows);
            }
        }
    }

    /// Adds the field `text[start..end]`; `false` when it does not parse or is empty though
    /// required (the morsel then goes to the source's reader, which says why).
    fn push(&mut self, text: &str, start: usize, end: usize, required: bool) -> bool {
        // Arrow's CSV reader reads an empty field as null.
        if start == end {
            if required {
                return false;
            }
            match self {
                Values::Check(_) => {}
                Values::Text(spans) => spans.push(None),
                Values::Integer(v, valid) => {
                    v.push(0);
                    valid.push(false);
                }
                Values::Float(v, valid) => {
                    v.push(0.0);
                    valid.push(false);
                }
            }
            return true;
        }
        let Some(field) = text.get(start..end) else {
            return false;
        };
        match self {
            Values::Check(value_type) => return parses(field, *value_type),
            Values::Text(spans) => spans.push(Some((start as u32, end as u32))),
            Values::Integer(v, valid) => match super::csv_scan::parse_integer(text, start, end) {
                Some(x) => {
                    v.push(x);
                    valid.push(true);
                }
                None => return false,
            },
            Values::Float(v, valid) => match super::csv_scan::parse_float(text, start, end) {
                Some(x) => {
                    v.push(x);
                    valid.push(true);
                }
                None => return false,
            },
        }
        true
    }

    /// The values of `rows` (of the morsel), as an array.
    fn take(&self, text: &str, rows: &[usize]) -> ArrayRef {
        match self {
            Values::Check(_) => {
                arrow_array::new_null_array(&arrow_schema::DataType::Utf8, rows.len())
            }
            Values::Text(spans) => {
                Arc::new(StringArray::from_iter(rows.iter().map(|&row| {
                    spans[row].and_then(|(s, e)| text.get(s as usize..e as usize))
                })))
            }
            Values::Integer(v, valid) => Arc::new(Int64Array::from_iter(
                rows.iter().map(|&row| valid[row].then_some(v[row])),
            )),
            Values::Float(v, valid) => Arc::new(Float64Array::from_iter(
                rows.iter().map(|&row| valid[row].then_some(v[row])),
            )),
        }
    }

    /// Row `row`'s key bytes, for the worker's table: a tag (null or not) and the field.
    fn key_bytes(&self, text: &str, row: usize, out: &mut Vec<u8>) {
        match self {
            Values::Check(_) => out.push(0),
            // A length byte (1 to 254 for up to 253 bytes; 255 then four bytes), so that short
            // keys fit the table's inline 16 bytes; 0 for null.
            Values::Text(spans) => match spans[row] {
                Some((s, e)) => {
                    let len = e - s;
                    if len < 254 {
                        out.push(len as u8 + 1);
                    } else {
                        out.push(255);
                        out.extend_from_slice(&len.to_le_bytes());
                    }
                    out.extend_from_slice(&text.as_bytes()[s as usize..e as usize]);
                }
                None => out.push(0),
            },
            Values::Integer(v, valid) => match valid[row] {
                true => {
                    out.push(1);
                    out.extend_from_slice(&v[row].to_le_bytes());
                }
                false => out.push(0),
            },
            Values::Float(v, valid) => match valid[row] {
                true => {
                    out.push(1);
                    let bits = crate::data::float_key(v[row]).to_bits();
                    out.extend_from_slice(&bits.to_le_bytes());
                }
                false => out.push(0),
            },
        }
    }

    /// The values as an Arrow array (copied: a filter and an aggregate may read one column).
    fn to_array(&self, text: &str) -> ArrayRef {
        let nulls = |valid: &[bool]| valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        match self {
            Values::Check(_) => Arc::new(StringArray::new_null(0)),
            Values::Text(spans) => Arc::new(
                spans
                    .iter()
                    .map(|span| span.and_then(|(s, e)| text.get(s as usize..e as usize)))
                    .collect::<StringArray>(),
            ),
            Values::Integer(v, valid) => {
                Arc::new(Int64Array::new(ScalarBuffer::from(v.clone()), nulls(valid)))
            }
            Values::Float(v, valid) => Arc::new(Float64Array::new(
                ScalarBuffer::from(v.clone()),
                nulls(valid),
            )),
        }
    }
}

/// Whether a field of a column no key or argument reads is what the source's reader accepts.
fn parses(field: &str, value_type: ValueType) -> bool {
    match value_type {
        ValueType::Integer => Int64Type::parse(field).is_some(),
        ValueType::Float => Float64Type::parse(field).is_some(),
        // As arrow-csv's `parse_bool` (private to it).
        ValueType::Bool => {
            field.eq_ignore_ascii_case("true") || field.eq_ignore_ascii_case("false")
        }
        // The source reads timestamps as text and parses them itself.
        ValueType::Timestamp => crate::data::parse_timestamp(field).is_some(),
        ValueType::Text => true,
        ValueType::TextList => false,
    }
}

/// Where the fields of a morsel split at a stride are (see `Worker::seps`), and the column
/// readers: each reads one field of every record, `false` when one is refused (does not parse,
/// or is empty though required).
struct Places<'a> {
    seps: &'a [u32],
    fields: usize,
    bytes: &'a [u8],
    carriage_returns: bool,
}

impl Places<'_> {
    /// Where field `field` of each of the first `rows` records starts and ends.
    #[inline(always)]
    fn of(&self, field: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        // A carriage return before a newline ends the record (lone ones were refused).
        let strip = self.carriage_returns && field + 1 == self.fields;
        // A morsel may hold no whole record (the end of one that began in the morsel
        // before): `seps` then holds less than a record's places.
        let places = |from: usize| self.seps.get(from..).unwrap_or_default();
        let starts = places(field).iter().step_by(self.fields);
        let ends = places(field + 1).iter().step_by(self.fields);
        starts.zip(ends).take(rows).map(move |(&start, &end)| {
            let (start, mut end) = (start.wrapping_add(1) as usize, end as usize);
            if strip && end > start && self.bytes[end - 1] == b'\r' {
                end -= 1;
            }
            (start, end)
        })
    }

    /// Whether field `field`'s numbers are read eight at a time (`csv_scan::plain_numbers`):
    /// where the CPU can, and no carriage return is to be cut from the field.
    fn lanes(&self, field: usize) -> bool {
        csv_scan::lanes_available() && !(self.carriage_returns && field + 1 == self.fields)
    }

    /// Where field `field` of record `row` starts and ends.
    #[inline(always)]
    fn one(&self, row: usize, field: usize) -> (usize, usize) {
        let start = self.seps[row * self.fields + field].wrapping_add(1) as usize;
        let mut end = self.seps[row * self.fields + field + 1] as usize;
        if self.carriage_returns
            && field + 1 == self.fields
            && end > start
            && self.bytes[end - 1] == b'\r'
        {
            end -= 1;
        }
        (start, end)
    }

    /// Field `field` of `rows` as text (an empty field is null).
    fn texts(&self, text: &str, rows: impl Iterator<Item = usize>, field: usize) -> ArrayRef {
        let values = rows.map(|row| {
            let (start, end) = self.one(row, field);
            (start != end).then(|| &text[start..end])
        });
        Arc::new(StringArray::from_iter(values))
    }

    /// Where the key from field `first` to field `last` of record `row` lies, hashed for
    /// `groups`, with its slot prefetched: (hash, head, start, length).
    #[inline(always)]
    fn key(
        &self,
        groups: &WordCounts,
        row: usize,
        first: usize,
        last: usize,
    ) -> (u64, [u64; 2], usize, usize) {
        let (start, _) = self.one(row, first);
        let (_, end) = self.one(row, last);
        let (hash, head) = groups.hash_in(self.bytes, start, end - start);
        groups.prefetch(hash);
        (hash, head, start, end - start)
    }

    #[inline(never)]
    fn check(&self, text: &str, field: usize, rows: usize, required: bool, of: ValueType) -> bool {
        // Any text is text: only an empty required field is refused.
        if of == ValueType::Text && !required {
            return true;
        }
        self.of(field, rows).all(|(start, end)| match start == end {
            true => !required,
            false => parses(&text[start..end], of),
        })
    }

    #[inline(never)]
    fn spans(
        &self,
        field: usize,
        rows: usize,
        required: bool,
        spans: &mut Vec<Option<(u32, u32)>>,
    ) -> bool {
        let mut empty = false;
        spans.extend(self.of(field, rows).map(|(start, end)| {
            empty |= start == end;
            (start != end).then_some((start as u32, end as u32))
        }));
        !(required && empty)
    }

    #[inline(never)]
    fn integers(
        &self,
        text: &str,
        field: usize,
        rows: usize,
        required: bool,
        (values, valid): (&mut Vec<i64>, &mut Vec<bool>),
        others: &mut Vec<u32>,
    ) -> bool {
        let (mut refused, mut empty) = (false, false);
        if self.lanes(field) {
            (refused, empty) = self.in_lanes(
                text,
                (field, rows, required),
                values,
                others,
                csv_scan::parse_integer,
            );
        } else {
            values.extend(self.of(field, rows).map(|(start, end)| {
                let value = csv_scan::parse_integer(text, start, end);
                refused |= value.is_none() && (start != end || required);
                empty |= start == end;
                value.unwrap_or(0)
            }));
        }
        // A value that did not parse is only an empty field here (a null).
        self.validity(field, rows, empty, valid);
        !refused
    }

    #[inline(never)]
    fn floats(
        &self,
        text: &str,
        field: usize,
        rows: usize,
        required: bool,
        (values, valid): (&mut Vec<f64>, &mut Vec<bool>),
        others: &mut Vec<u32>,
    ) -> bool {
        let (mut refused, mut empty) = (false, false);
        let from = values.len();
        if self.lanes(field) {
            (refused, empty) = self.in_lanes(
                text,
                (field, rows, required),
                values,
                others,
                csv_scan::parse_float,
            );
        } else {
            let powers = others;
            powers.clear();
            values.extend(self.of(field, rows).map(|(start, end)| {
                let value = csv_scan::parse_float_parts(text, start, end);
                refused |= value.is_none() && (start != end || required);
                empty |= start == end;
                let (numerator, power) = value.unwrap_or((0.0, 0));
                powers.push(power as u32);
                numerator
            }));
            csv_scan::divide_by_powers(&mut values[from..], powers);
        }
        self.validity(field, rows, empty, valid);
        !refused
    }
}

impl Places<'_> {
    /// Field `field` of each record read by `csv_scan::plain_numbers`, and the fields it left
    /// by `parse`, into `values`: whether one was refused, and whether one was empty.
    #[inline(always)]
    fn in_lanes<T: csv_scan::Lanes>(
        &self,
        text: &str,
        (field, rows, required): (usize, usize, bool),
        values: &mut Vec<T>,
        others: &mut Vec<u32>,
        parse: fn(&str, usize, usize) -> Option<T>,
    ) -> (bool, bool) {
        let (mut refused, mut empty) = (false, false);
        let from = values.len();
        values.resize(from + rows, T::default());
        others.clear();
        let shape = (self.fields, field, rows);
        csv_scan::plain_numbers(self.bytes, self.seps, shape, &mut values[from..], others);
        for &row in others.iter() {
            let (start, end) = self.one(row as usize, field);
            let value = parse(text, start, end);
            refused |= value.is_none() && (start != end || required);
            empty |= start == end;
            values[from + row as usize] = value.unwrap_or_default();
        }
        (refused, empty)
    }

    /// Which fields are not empty (not null): all, unless `empty` says one is.
    fn validity(&self, field: usize, rows: usize, empty: bool, valid: &mut Vec<bool>) {
        match empty {
            false => valid.resize(valid.len() + rows, true),
            true => valid.extend(self.of(field, rows).map(|(start, end)| start != end)),
        }
    }
}

/// The longest morsel split at a stride: a file's pieces (256 KiB) and a stream's morsels
/// (1 MiB) with the line that ends them.
const STRIDED_BYTES: usize = 2 << 20;

/// What `Worker::split_strided` made of a morsel.
enum Strided {
    /// Every record read: this many.
    Rows(usize),
    /// A field does not parse or a required one is empty: the source's reader says which.
    Refused,
    /// Not every line is a record of the layout's fields: split field by field instead.
    Irregular,
}

/// Where the splitting is in the current line.
struct Line {
    /// Records read so far.
    rows: usize,
    /// The field being read, and where it starts.
    field: usize,
    field_start: usize,
    /// Where the line starts.
    start: usize,
}

/// The places in `block` that hold `delimiter` or a newline, one bit per byte.
#[inline(always)]
fn breaks(block: &[u8; 64], delimiter: u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut mask = 0u64;
        for part in 0..4 {
            // SAFETY: SSE2 is part of the x86-64 baseline; the load reads 16 bytes inside
            // `block`.
            let bits = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().add(part * 16) as *const __m128i);
                let hits = _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(delimiter as i8)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                );
                _mm_movemask_epi8(hits) as u16 as u64
            };
            mask |= bits << (part * 16);
        }
        mask
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block.iter().enumerate().fold(0u64, |mask, (i, &b)| {
            mask | (u64::from(b == delimiter || b == b'\n') << i)
        })
    }
}

/// One worker's state and scratch space.
struct Worker {
    state: Box<dyn AggregateState>,
    /// Key bytes (see `Values::key_bytes`) to the state's group number. Several spellings of
    /// one integer key are several entries with one group.
    groups: WordCounts,
    /// The values of each column read, for the morsel's rows (`read` order).
    values: Vec<Values>,
    /// For each field of a record, the index into `values` of the column it holds, if read.
    slots: Vec<Option<usize>>,
    /// Whether each entry of `values` is required.
    required: Vec<bool>,
    /// The layout `slots` was made for.
    layout: Option<CsvLayout>,
    ids: Vec<usize>,
    /// The rows the filters kept.
    kept: Vec<usize>,
    /// The morsel's keys, one after another (`key_ends`), and their hashes and heads.
    key: Vec<u8>,
    key_ends: Vec<usize>,
    hashes: Vec<(u64, [u64; 2])>,
    /// For a morsel split at a stride (`split_strided`): entry 0 is `u32::MAX` (the place
    /// before the first field, so that every field starts one past a place), then the place of
    /// every delimiter and newline; record `r`'s field `f` ends at entry `r * fields + f + 1`.
    seps: Vec<u32>,
    /// Whether the current morsel was split at a stride, and whether it has carriage returns.
    strided: bool,
    carriage_returns: bool,
    /// When the keys are text fields next to each other in key order (first and last field):
    /// a row's key is the bytes from its first key field to its last, delimiters included
    /// (fields hold no delimiter, so the bytes tell the keys apart; an empty field is null).
    key_fields: Option<(usize, usize)>,
    /// Such keys to the state's group number.
    span_groups: WordCounts,
    /// For each column, whether it is such a key and nothing else reads it (no places kept).
    span_key_only: Vec<bool>,
    /// For each column, its field in the record (the layout's).
    positions: Vec<usize>,
    /// The fields of the required columns among those (`span_key_only`).
    required_span_keys: Vec<usize>,
    /// Scratch: the records whose number a column's lanes left to the one-field parsers, or
    /// the powers of ten a float column's numerators are divided by.
    others: Vec<u32>,
    /// The keys a morsel met first (each its row and the place of its bytes), given group
    /// numbers by the state all at once after the morsel's lookups (`PENDING`).
    new_keys: Vec<(usize, usize, usize)>,
    /// Where `ids` holds a key's place in `new_keys` instead of its group.
    pending: Vec<usize>,
    /// Whether the keys go straight to the state (`find_groups_in_state`): set once most rows
    /// bring new keys to a table of over `DIRECT_GROUPS`.
    direct: bool,
}

/// See `Worker::direct`.
const DIRECT_GROUPS: usize = 1 << 18;

/// A worker's table holds `PENDING | k` for the `k`th key new in the morsel until the state
/// numbers it (the state's numbers are below 2^62, or `usize::MAX` for group_count's null).
const PENDING: u64 = 1 << 62;

fn is_pending(value: u64) -> bool {
    value >> 62 == 1
}

impl Worker {
    fn new(state: Box<dyn AggregateState>) -> Worker {
        Worker {
            state,
            groups: WordCounts::new(WordHasher::default()),
            key_ends: Vec::new(),
            hashes: Vec::new(),
            values: Vec::new(),
            slots: Vec::new(),
            required: Vec::new(),
            layout: None,
            ids: Vec::new(),
            kept: Vec::new(),
            key: Vec::new(),
            seps: Vec::new(),
            strided: false,
            carriage_returns: false,
            key_fields: None,
            span_groups: WordCounts::new(WordHasher::default()),
            span_key_only: Vec::new(),
            positions: Vec::new(),
            required_span_keys: Vec::new(),
            others: Vec::new(),
            new_keys: Vec::new(),
            pending: Vec::new(),
            direct: false,
        }
    }

    /// Forgets the group numbers of keys seen (the state was spilled and replaced).
    fn forget_groups(&mut self) {
        self.groups = WordCounts::new(WordHasher::default());
        self.span_groups = WordCounts::new(WordHasher::default());
        self.direct = false;
    }

    /// Makes the slots for `layout` (once: every file of a source has the same header).
    fn prepare(&mut self, kernel: &CsvAggregate, layout: &CsvLayout) {
        if self.layout.as_ref() == Some(layout) {
            return;
        }
        self.slots = vec![None; layout.fields];
        self.values.clear();
        self.required.clear();
        for (column, &position) in layout.positions.iter().enumerate() {
            self.slots[position] = Some(column);
            self.values
                .push(Values::new(kernel.types[column], kernel.used[column]));
            self.required.push(layout.columns[column].required);
        }
        let key_fields: Vec<usize> = kernel
            .plain
            .keys
            .iter()
            .map(|&column| layout.positions[column])
            .collect();
        let text_keys = kernel
            .plain
            .keys
            .iter()
            .all(|&column| kernel.types[column] == ValueType::Text);
        let adjacent = key_fields.windows(2).all(|pair| pair[1] == pair[0] + 1);
        self.key_fields = match (key_fields.first(), key_fields.last()) {
            (Some(&first), Some(&last)) if text_keys && adjacent => Some((first, last)),
            _ => None,
        };
        self.span_key_only = (0..layout.positions.len())
            .map(|column| {
                self.key_fields.is_some()
                    && kernel.plain.keys.contains(&column)
                    && !kernel.plain.args.contains(&Some(column))
                    && !kernel.filters.iter().any(|&(_, c)| c == column)
            })
            .collect();
        self.positions = layout.positions.clone();
        self.required_span_keys = (0..layout.positions.len())
            .filter(|&column| self.span_key_only[column] && self.required[column])
            .map(|column| layout.positions[column])
            .collect();
        self.layout = Some(layout.clone());
    }

    /// Aggregates the records of `bytes`; `false` (and nothing added) when the morsel must go
    /// through the source's reader instead.
    fn read(&mut self, kernel: &CsvAggregate, layout: &CsvLayout, bytes: &[u8]) -> Result<bool> {
        self.prepare(kernel, layout);
        let Some((rows, text)) = self.split(layout, bytes) else {
            return Ok(false);
        };
        self.add(kernel, text, rows)?;
        Ok(true)
    }

    /// Splits and parses every record; the number of rows and the morsel as text (validated
    /// once, here), or `None` for a morsel the kernel does not read (see the module's
    /// documentation).
    fn split<'b>(&mut self, layout: &CsvLayout, bytes: &'b [u8]) -> Option<(usize, &'b str)> {
        for values in &mut self.values {
            values.truncate(0);
        }
        // Field places are kept as 32-bit offsets (a morsel is 1 MiB unless a line is longer).
        if u32::try_from(bytes.len()).is_err() || memchr::memchr(b'"', bytes).is_some() {
            return None;
        }
        // Arrow's CSV reader ends a record at a lone `\r` too.
        self.strided = false;
        self.carriage_returns = false;
        for at in memchr::memchr_iter(b'\r', bytes) {
            if bytes.get(at + 1) != Some(&b'\n') {
                return None;
            }
            self.carriage_returns = true;
        }
        let text = simdutf8::basic::from_utf8(bytes).ok()?;
        match self.split_strided(layout, text) {
            Strided::Rows(rows) => {
                self.strided = true;
                return Some((rows, text));
            }
            Strided::Refused => return None,
            Strided::Irregular => {
                for values in &mut self.values {
                    values.truncate(0);
                }
            }
        }
        let mut line = Line {
            rows: 0,
            field: 0,
            field_start: 0,
            start: 0,
        };
        let mut block = [0u8; 64];
        for (index, chunk) in bytes.chunks(64).enumerate() {
            let base = index * 64;
            let mut breaks = match <&[u8; 64]>::try_from(chunk) {
                Ok(full) => breaks(full, layout.delimiter),
                Err(_) => {
                    block[..chunk.len()].copy_from_slice(chunk);
                    breaks(&block, layout.delimiter) & ((1u64 << chunk.len()) - 1)
                }
            };
            while breaks != 0 {
                let at = base + breaks.trailing_zeros() as usize;
                breaks &= breaks - 1;
                if bytes[at] == b'\n' {
                    self.end_line(layout, text, &mut line, at)?;
                } else {
                    self.end_field(text, &mut line, at)?;
                }
            }
        }
        if line.start < bytes.len() {
            self.end_line(layout, text, &mut line, bytes.len())?;
        }
        Some((line.rows, text))
    }

    /// Splits a morsel whose every line is a record of the layout's fields (no blank line, no
    /// record short or long: the usual file), one column at a time: all delimiters and
    /// newlines are found in one pass, and record `r`'s fields are then at a fixed stride.
    #[inline(never)]
    fn split_strided(&mut self, layout: &CsvLayout, text: &str) -> Strided {
        let bytes = text.as_bytes();
        let fields = layout.fields;
        // One field is one place per line: a blank line would look like a record. A morsel
        // made long by a long line is split field by field, so that the places (four bytes
        // per byte at worst) stay a few MiB per worker.
        if fields < 2 || matches!(layout.delimiter, b'\n' | b'\r') || bytes.len() > STRIDED_BYTES {
            return Strided::Irregular;
        }
        let room = bytes.len() + 66;
        if self.seps.len() < room {
            self.seps.resize(room, 0);
        }
        self.seps[0] = u32::MAX;
        let (mut count, mut newlines) =
            super::csv_scan::separators(bytes, layout.delimiter, &mut self.seps, 1);
        // A last line without its newline ends at the morsel's end.
        if bytes.last().is_some_and(|&b| b != b'\n') {
            self.seps[1 + count] = bytes.len() as u32;
            count += 1;
            newlines += 1;
        }
        let rows = newlines;
        if count != rows * fields {
            return Strided::Irregular;
        }
        let seps = &self.seps[..1 + count];
        // As many places as fields, and every `fields`-th one ends a line: so every line has
        // exactly the layout's fields (the others are delimiters).
        let whitespace_delimiter = layout.delimiter.is_ascii_whitespace();
        // Whether a required key read as a span is empty in some record (checked here, where
        // the record's places are in cache anyway).
        let mut empty_key = false;
        for row in 0..rows {
            let end = seps[(row + 1) * fields] as usize;
            if end != bytes.len() && bytes[end] != b'\n' {
                return Strided::Irregular;
            }
            for &field in &self.required_span_keys {
                let at = row * fields + field;
                empty_key |= seps[at].wrapping_add(1) == seps[at + 1];
            }
            // With a tab or space delimiter, a line of only those is blank, not a record.
            if whitespace_delimiter {
                let start = seps[row * fields].wrapping_add(1) as usize;
                if bytes[start..end].iter().all(u8::is_ascii_whitespace) {
                    return Strided::Irregular;
                }
            }
        }
        let places = Places {
            seps,
            fields,
            bytes,
            carriage_returns: self.carriage_returns,
        };
        for (column, &field) in layout.positions.iter().enumerate() {
            let required = self.required[column];
            let read = match &mut self.values[column] {
                Values::Check(value_type) => places.check(text, field, rows, required, *value_type),
                // A key read as a span of the record needs no places of its own.
                Values::Text(_) if self.span_key_only.get(column) == Some(&true) => {
                    !(required && empty_key)
                }
                Values::Text(spans) => places.spans(field, rows, required, spans),
                Values::Integer(v, valid) => {
                    places.integers(text, field, rows, required, (v, valid), &mut self.others)
                }
                Values::Float(v, valid) => {
                    places.floats(text, field, rows, required, (v, valid), &mut self.others)
                }
            };
            if !read {
                return Strided::Refused;
            }
        }
        Strided::Rows(rows)
    }

    /// The field of `line` that ends at `at` (a delimiter or the line's end).
    #[inline(always)]
    fn end_field(&mut self, text: &str, line: &mut Line, at: usize) -> Option<()> {
        if let Some(&Some(slot)) = self.slots.get(line.field) {
            let required = self.required[slot];
            if !self.values[slot].push(text, line.field_start, at, required) {
                return None;
            }
        }
        line.field += 1;
        line.field_start = at + 1;
        Some(())
    }

    /// The line that ends at `at` (its newline, or the morsel's end).
    #[inline(always)]
    fn end_line(
        &mut self,
        layout: &CsvLayout,
        text: &str,
        line: &mut Line,
        at: usize,
    ) -> Option<()> {
        let bytes = text.as_bytes();
        let end = if at > line.start && bytes[at - 1] == b'\r' {
            at - 1
        } else {
            at
        };
        let first = bytes.get(line.start).copied().unwrap_or(b'\n');
        if (end == line.start || first.is_ascii_whitespace())
            && bytes[line.start..end].iter().all(u8::is_ascii_whitespace)
        {
            // Blank lines are not records: drop what its fields added.
            for values in &mut self.values {
                values.truncate(line.rows);
            }
        } else {
            self.end_field(text, line, end)?;
            if line.field != layout.fields {
                return None;
            }
            line.rows += 1;
        }
        line.field = 0;
        line.field_start = at + 1;
        line.start = at + 1;
        Some(())
    }

    /// Which rows the filters keep (`None`: no filter, every row): each filter is asked for
    /// its mask on the rows the ones before it kept, as when they run one after another.
    fn keep(&self, kernel: &CsvAggregate, text: &str, rows: usize) -> Result<Option<BooleanArray>> {
        if kernel.filters.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = (0..kernel.types.len())
            .map(|column| {
                if kernel.filters.iter().any(|&(_, c)| c == column) {
                    self.values[column].to_array(text)
                } else {
                    arrow_array::new_null_array(&kernel.types[column].data_type(), rows)
                }
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let mut batch = RecordBatch::try_new_with_options(kernel.schema.clone(), columns, &options)
            .map_err(|e| Error::runtime(format!("the CSV aggregate kernel: {e}")))?;
        let mut kept: Vec<usize> = (0..rows).collect();
        for (index, &(filter, _)) in kernel.filters.iter().enumerate() {
            let step = &kernel.prefix[index];
            let mask = filter
                .keep_mask(&batch)
                .ok_or_else(|| step.failed("gave no mask to the kernel"))?
                .map_err(|e| step.failed(e))?;
            kept = kept
                .into_iter()
                .zip(mask.values().iter())
                .filter_map(|(row, keep)| keep.then_some(row))
                .collect();
            if index + 1 < kernel.filters.len() {
                batch = arrow_select::filter::filter_record_batch(&batch, &mask)
                    .map_err(|e| step.failed(e))?;
            }
        }
        let mut bits = arrow_buffer::BooleanBufferBuilder::new(rows);
        bits.append_n(rows, false);
        for row in kept {
            bits.set_bit(row, true);
        }
        Ok(Some(BooleanArray::new(bits.finish(), None)))
    }

    /// Finds the groups of the rows split and adds them to the state.
    fn add(&mut self, kernel: &CsvAggregate, text: &str, rows: usize) -> Result<()> {
        let keep = self.keep(kernel, text, rows)?;
        self.kept.clear();
        match &keep {
            Some(mask) => self.kept.extend(mask.values().set_indices()),
            None => self.kept.extend(0..rows),
        }
        self.ids.clear();
        if self.direct {
            self.find_groups_in_state(kernel, text)?;
        } else {
            if let (true, Some(key_fields)) = (self.strided, self.key_fields) {
                self.find_span_groups(kernel, text, key_fields)?;
            } else {
                self.find_groups(kernel, text)?;
            }
            // Most rows bring a new key, and the table is large: it only doubles the state's
            // work (grouping by a timestamp or an id), so the keys go to the state from now on.
            let table = self.groups.len() + self.span_groups.len();
            if self.new_keys.len() * 2 > self.kept.len() && table > DIRECT_GROUPS {
                self.direct = true;
                self.groups = WordCounts::new(WordHasher::default());
                self.span_groups = WordCounts::new(WordHasher::default());
            }
        }
        let grouped = self
            .state
            .grouped()
            .ok_or_else(|| Error::runtime("the CSV aggregate kernel needs a grouped state"))?;
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; self.values.len()];
        let args: Vec<Option<ArrayRef>> = kernel
            .plain
            .args
            .iter()
            .map(|arg| {
                arg.map(|column| {
                    arrays[column]
                        .get_or_insert_with(|| self.values[column].to_array(text))
                        .clone()
                })
            })
            .collect();
        let args = match &keep {
            Some(mask) => args
                .into_iter()
                .map(|arg| {
                    arg.map(|array| arrow_select::filter::filter(&array, mask))
                        .transpose()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::runtime(format!("the CSV aggregate kernel: {e}")))?,
            None => args,
        };
        grouped.add_grouped(&self.ids, &args)
    }

    /// The groups of the kept rows (`ids`), from their key bytes (see `Values::key_bytes`).
    #[inline(never)]
    fn find_groups(&mut self, kernel: &CsvAggregate, text: &str) -> Result<()> {
        let key_slots = &kernel.plain.keys;
        let grouped = self
            .state
            .grouped()
            .ok_or_else(|| Error::runtime("the CSV aggregate kernel needs a grouped state"))?;
        // Every row's key bytes and hash first; then the lookups, each slot prefetched a few
        // rows ahead (a table of thousands of groups lives in L2, not L1).
        self.key.clear();
        self.key_ends.clear();
        self.hashes.clear();
        for &row in &self.kept {
            for &slot in key_slots {
                self.values[slot].key_bytes(text, row, &mut self.key);
            }
            self.key_ends.push(self.key.len());
        }
        // Hashed in a loop of its own: a wide load right after the bytes' copy would wait for
        // the copy's stores.
        let mut start = 0;
        for &end in &self.key_ends {
            self.hashes.push(self.groups.hash_of(&self.key[start..end]));
            start = end;
        }
        const AHEAD: usize = 8;
        for &(hash, _) in self.hashes.iter().take(AHEAD) {
            self.groups.prefetch(hash);
        }
        self.new_keys.clear();
        self.pending.clear();
        let mut start = 0;
        for index in 0..self.kept.len() {
            if let Some(&(hash, _)) = self.hashes.get(index + AHEAD) {
                self.groups.prefetch(hash);
            }
            let end = self.key_ends[index];
            let key = &self.key[start..end];
            let (hash, head) = self.hashes[index];
            let placeholder = PENDING | self.new_keys.len() as u64;
            let (id, new) = self
                .groups
                .get_or_insert_hashed(hash, head, key, placeholder);
            if new {
                self.new_keys.push((self.kept[index], start, end - start));
            }
            if is_pending(id) {
                self.pending.push(self.ids.len());
            }
            self.ids.push(id as usize);
            start = end;
        }
        if !self.new_keys.is_empty() {
            let rows: Vec<usize> = self.new_keys.iter().map(|&(row, _, _)| row).collect();
            let keys: Vec<ArrayRef> = key_slots
                .iter()
                .map(|&slot| self.values[slot].take(text, &rows))
                .collect();
            let numbers = grouped.groups_of(&keys, rows.len())?;
            for (&(_, start, len), &number) in self.new_keys.iter().zip(&numbers) {
                self.groups
                    .set(&self.key[start..start + len], number as u64);
            }
            resolve_pending(&mut self.ids, &self.pending, &numbers);
        }
        Ok(())
    }

    /// The groups of the kept rows, from the state itself (no table of the worker's own).
    fn find_groups_in_state(&mut self, kernel: &CsvAggregate, text: &str) -> Result<()> {
        let places = Places {
            seps: &self.seps,
            fields: self.layout.as_ref().map_or(0, |layout| layout.fields),
            bytes: text.as_bytes(),
            carriage_returns: self.carriage_returns,
        };
        let keys: Vec<ArrayRef> = kernel
            .plain
            .keys
            .iter()
            .map(|&column| match self.strided && self.span_key_only[column] {
                // A key read as part of a span has no values of its own.
                true => places.texts(text, self.kept.iter().copied(), self.positions[column]),
                false => self.values[column].take(text, &self.kept),
            })
            .collect();
        let grouped = self
            .state
            .grouped()
            .ok_or_else(|| Error::runtime("the CSV aggregate kernel needs a grouped state"))?;
        self.ids = grouped.groups_of(&keys, self.kept.len())?;
        Ok(())
    }

    /// `find_groups` for keys that are one span of each row (`key_fields`): hashed where they
    /// lie in the morsel, with no copy.
    #[inline(never)]
    fn find_span_groups(
        &mut self,
        kernel: &CsvAggregate,
        text: &str,
        (first, last): (usize, usize),
    ) -> Result<()> {
        let bytes = text.as_bytes();
        let places = Places {
            seps: &self.seps,
            fields: self.layout.as_ref().map_or(0, |layout| layout.fields),
            bytes,
            carriage_returns: self.carriage_returns,
        };
        let grouped = self
            .state
            .grouped()
            .ok_or_else(|| Error::runtime("the CSV aggregate kernel needs a grouped state"))?;
        let groups = &mut self.span_groups;
        // Where each row's key lies, hashed and its slot prefetched `AHEAD` rows before its
        // lookup (a table of thousands of groups lives in L2, not L1).
        const AHEAD: usize = 8;
        let kept = &self.kept;
        let mut ahead = [(0, [0; 2], 0, 0); AHEAD];
        for (slot, &row) in ahead.iter_mut().zip(kept) {
            *slot = places.key(groups, row, first, last);
        }
        self.ids.clear();
        self.new_keys.clear();
        self.pending.clear();
        for (index, &row) in kept.iter().enumerate() {
            let (hash, head, start, len) = ahead[index % AHEAD];
            if let Some(&later) = kept.get(index + AHEAD) {
                ahead[index % AHEAD] = places.key(groups, later, first, last);
            }
            let placeholder = PENDING | self.new_keys.len() as u64;
            let (id, new) = if len <= INLINE {
                groups.get_or_insert_short(hash, head, len, placeholder)
            } else {
                groups.get_or_insert_hashed(hash, head, &bytes[start..start + len], placeholder)
            };
            if new {
                self.new_keys.push((row, start, len));
            }
            if is_pending(id) {
                self.pending.push(self.ids.len());
            }
            self.ids.push(id as usize);
        }
        if !self.new_keys.is_empty() {
            let keys: Vec<ArrayRef> = kernel
                .plain
                .keys
                .iter()
                .map(|&column| {
                    let rows = self.new_keys.iter().map(|&(row, _, _)| row);
                    places.texts(text, rows, self.positions[column])
                })
                .collect();
            let numbers = grouped.groups_of(&keys, self.new_keys.len())?;
            for (&(_, start, len), &number) in self.new_keys.iter().zip(&numbers) {
                groups.set(&bytes[start..start + len], number as u64);
            }
            resolve_pending(&mut self.ids, &self.pending, &numbers);
        }
        Ok(())
    }
}

/// Puts the group numbers the state gave a morsel's new keys (`numbers`, in `new_keys` order)
/// where `ids` holds their places instead (at `pending`).
fn resolve_pending(ids: &mut [usize], pending: &[usize], numbers: &[usize]) {
    for &at in pending {
        ids[at] = numbers[(ids[at] as u64 & !PENDING) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::records::ColumnSpec;

    fn layout(fields: usize, columns: &[(usize, &str, bool)]) -> CsvLayout {
        CsvLayout {
            delimiter: b',',
            fields,
            positions: columns.iter().map(|c| c.0).collect(),
            columns: columns
                .iter()
                .map(|&(_, t, required)| ColumnSpec {
                    name: "c".into(),
                    value_type: ValueType::parse(t).unwrap(),
                    required,
                })
                .collect(),
        }
    }

    fn worker_for(layout: &CsvLayout, read: &[usize]) -> Worker {
        let mut worker = Worker::new(Box::new(NoState));
        worker.slots = vec![None; layout.fields];
        for (column, &position) in layout.positions.iter().enumerate() {
            worker.slots[position] = Some(column);
            let used = read.contains(&column);
            worker
                .values
                .push(Values::new(layout.columns[column].value_type, used));
            worker.required.push(layout.columns[column].required);
        }
        worker
    }

    struct NoState;
    impl AggregateState for NoState {
        fn update(&mut self, _: &RecordBatch) -> Result<()> {
            Ok(())
        }
        fn merge(&mut self, _: Box<dyn AggregateState>) -> Result<()> {
            Ok(())
        }
        fn result(&self) -> Result<RecordBatch> {
            Err(Error::runtime("none"))
        }
        fn rows(&self) -> usize {
            0
        }
        fn restore(&mut self, _: &RecordBatch) -> Result<()> {
            Ok(())
        }
        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
            self
        }
    }

    #[test]
    fn splits_plain_records_and_refuses_what_the_reader_must_decide() {
        // region (text), amount (integer, optional): fields 0 and 2 of three.
        // region (text), amount (integer, optional), then a flag no key or argument reads
        // (bool, checked all the same): fields 0, 2 and 1 of three.
        let layout = layout(
            3,
            &[(0, "text", true), (2, "integer", false), (1, "bool", false)],
        );
        let mut worker = worker_for(&layout, &[0, 1]);
        let good = b"north,TRUE,5\r\n\n  \nsouth,,\nwest,false,-7";
        assert_eq!(worker.split(&layout, good).map(|(rows, _)| rows), Some(3));
        let Values::Integer(v, valid) = &worker.values[1] else {
            panic!("integers")
        };
        assert_eq!(
            (v.as_slice(), valid.as_slice()),
            (&[5, 0, -7][..], &[true, false, true][..])
        );
        for bad in [
            &b"north,\"true\",5\n"[..],      // a quote: the reader unquotes
            b"north,true,5\rsouth,true,6\n", // a lone carriage return ends a record there
            b"north,yes,5\n",                // not a bool, though nothing reads it
            b"north,true\n",                 // too few fields
            b"north,true,5,6\n",             // too many
            b",true,5\n",                    // a required field empty
            b"north,true,five\n",            // not an integer
            b"nor\xffth,true,5\n",           // invalid UTF-8
        ] {
            assert_eq!(
                worker.split(&layout, bad).map(|(rows, _)| rows),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_stride_split_reads_what_the_field_by_field_split_reads() {
        // Tab-separated (a whitespace delimiter), with CRLF line ends and no newline at the end.
        let layout = CsvLayout {
            delimiter: b'\t',
            ..layout(2, &[(0, "text", true), (1, "float", false)])
        };
        let mut worker = worker_for(&layout, &[0, 1]);
        let plain = b"north\t1.5\r\nsouth\t\r\n\xc3\xa9t\xc3\xa9\t-0.25";
        assert_eq!(worker.split(&layout, plain).map(|(rows, _)| rows), Some(3));
        assert!(worker.strided);
        let Values::Float(v, valid) = &worker.values[1] else {
            panic!("floats")
        };
        assert_eq!(
            (v.as_slice(), valid.as_slice()),
            (&[1.5, 0.0, -0.25][..], &[true, false, true][..])
        );
        let Values::Text(spans) = &worker.values[0] else {
            panic!("text")
        };
        assert_eq!(spans, &[Some((0, 5)), Some((11, 16)), Some((19, 24))]);
        // A line of only the delimiter and spaces is blank, not a record: split field by field.
        let blank = b"north\t1.5\n \t \nsouth\t2\n";
        assert_eq!(worker.split(&layout, blank).map(|(rows, _)| rows), Some(2));
        assert!(!worker.strided);
        // A required field empty, a value that does not parse, invalid UTF-8, a quote or a
        // lone carriage return (found by the stride split's scan): the reader decides.
        for refused in [
            &b"north\t1.5\n\t2\n"[..],
            b"north\tx\n",
            b"north\t1.5\nso\xffuth\t2\n",
            b"north\t1.5\n\"south\"\t2\n",
            b"north\t1.5\rsouth\t2\n",
        ] {
            assert_eq!(worker.split(&layout, refused), None);
        }
    }

    /// Random records of `a` (text), `b` (integer?), `c` (float?), `d` (bool?), valid or
    /// blank lines, and in most morsels one disturbance that changes how Arrow's reader reads
    /// them (a quote, a lone carriage return, invalid UTF-8, a field too many, a value that
    /// does not parse) or should not (a quote inside a field, a field of spaces).
    fn random_morsel(seed: &mut u64) -> Vec<u8> {
        let mut next = |n: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n
        };
        let values: [&[&[u8]]; 4] = [
            &[b"north", b"x", b" ", b"\xc3\xa9t\xc3\xa9", b"a b", b"\t"],
            &[
                b"",
                b"7",
                b"-12",
                b"+3",
                b"0",
                b"9223372036854775807",
                b"4 ",
                b"380",
                b"-12345678",
            ],
            &[
                b"",
                b"1.5",
                b"-0.25",
                b"1e3",
                b"nan",
                b"inf",
                b"7",
                b"2.5 ",
                b"27.50",
                b"-100.125",
                b"0.1",
                b"12345.67",
            ],
            &[b"", b"true", b"FALSE", b"True"],
        ];
        const DISTURBANCES: &[&[u8]] = &[
            b"\"", b"\"q\"", b"\"a,b\"", b"x\"y", b"\r", b"\xff", b",", b"zz", b"1.2.3", b"",
        ];
        let lines = 1 + next(20);
        let disturbed = (next(4) != 0).then(|| (next(lines), next(4), next(10) as usize));
        let mut out = Vec::new();
        for line in 0..lines {
            if next(10) == 0 {
                out.extend_from_slice([&b""[..], b" ", b"\t \t"][next(3) as usize]);
                out.push(b'\n');
                continue;
            }
            for (field, choices) in values.iter().enumerate() {
                if field > 0 {
                    out.push(b',');
                }
                match disturbed {
                    Some((l, f, which)) if l == line && f == field as u64 => {
                        out.extend_from_slice(DISTURBANCES[which])
                    }
                    _ => out.extend_from_slice(choices[next(choices.len() as u64) as usize]),
                }
            }
            out.extend_from_slice(if next(5) == 0 { b"\r\n" } else { b"\n" });
        }
        out
    }

    #[test]
    fn what_the_kernel_reads_the_reader_reads_alike() {
        use crate::sources::records::RecordDecoder;
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let columns = vec![
            ColumnSpec::parse("a", "text").unwrap(),
            ColumnSpec::parse("b", "integer?").unwrap(),
            ColumnSpec::parse("c", "float?").unwrap(),
            ColumnSpec::parse("d", "bool?").unwrap(),
        ];
        let header = ["a", "b", "c", "d"].map(String::from).to_vec();
        let decoder = RecordDecoder::csv(header, columns, b',').unwrap();
        let layout = decoder.csv_layout().unwrap();
        let mut worker = worker_for(&layout, &[0, 1, 2]);
        let (mut seed, mut read, mut strided) = (0x2545_F491_4F6C_DD1D_u64, 0, 0);
        for _ in 0..20_000 {
            let bytes = random_morsel(&mut seed);
            let Some((rows, text)) = worker.split(&layout, &bytes) else {
                continue;
            };
            read += 1;
            strided += usize::from(worker.strided);
            let (batches, bad) = decoder.decode(&bytes).unwrap();
            let shown = String::from_utf8_lossy(&bytes);
            assert!(bad.is_empty(), "{shown:?}: the reader found {bad:?}");
            let batch = crate::data::concat(&decoder.schema(), &batches);
            assert_eq!(batch.num_rows(), rows, "{shown:?}");
            let Values::Text(spans) = &worker.values[0] else {
                panic!("text")
            };
            let a = batch.column(0).as_string::<i32>();
            for (row, span) in spans.iter().enumerate() {
                let kernel = span.map(|(s, e)| &text[s as usize..e as usize]);
                assert_eq!(kernel, a.is_valid(row).then(|| a.value(row)), "{shown:?}");
            }
            let (Values::Integer(ints, int_valid), Values::Float(floats, float_valid)) =
                (&worker.values[1], &worker.values[2])
            else {
                panic!("numbers")
            };
            let b = batch.column(1).as_primitive::<Int64Type>();
            let c = batch.column(2).as_primitive::<Float64Type>();
            for row in 0..rows {
                assert_eq!(int_valid[row], b.is_valid(row), "{shown:?}");
                assert_eq!(float_valid[row], c.is_valid(row), "{shown:?}");
                if int_valid[row] {
                    assert_eq!(ints[row], b.value(row), "{shown:?}");
                }
                if float_valid[row] {
                    assert_eq!(floats[row].to_bits(), c.value(row).to_bits(), "{shown:?}");
                }
            }
        }
        // Enough morsels were plain for the comparison to mean something.
        assert!(read > 500, "only {read} morsels read by the kernel");
        // Both splits were compared: the stride's (every line a record) and field by field.
        assert!(
            strided > 200 && read - strided > 200,
            "{strided} of {read} strided"
        );
    }
}
