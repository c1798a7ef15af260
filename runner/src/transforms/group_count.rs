//! `group_count`: count rows per distinct value of one or more columns. Each worker counts into
//! its own table; tables are merged once at the end (Spark's combiner), and the result is sorted
//! by key so it never depends on the number of cores.

use std::any::Any;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use super::{
    AggregateState, Aggregation, BuildContext, BuildTransform, Stage, StageKind, TextCounter,
};
use crate::counts::TextCounts;
use crate::data::{column_index, key_column, type_label};
use crate::error::Result;

/// One row per distinct key with its count: the `by` columns, then `count` (`as`), most
/// frequent first, ties by key. Counted per worker and merged once; in a stream the counts
/// persist across epochs and checkpoints. With `window`, counts per event-time window, as
/// Spark's `window()` does (see [Streaming](../../streaming.md#windows-and-watermarks)). The
/// shorthand of `aggregate` with `count()`, with the fused word-count speed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupCountConfig {
    /// The column (or list of columns) to group by.
    pub by: OneOrMany,
    /// The name of the count column.
    #[serde(
        default = "default_as",
        rename = "as",
        deserialize_with = "crate::settings::env::string"
    )]
    pub output: String,
    /// Count per event-time window: `{column: created_at, size: 10m, slide: 5m}`. The output
    /// starts with `window_start` and `window_end`; each window's rows come most frequent
    /// first.
    #[serde(default)]
    pub window: Option<super::window::WindowConfig>,
    /// Streams: how late a row may arrive and still count (see `aggregate`), e.g. `2m`.
    #[serde(default, deserialize_with = "crate::settings::duration::opt_delay")]
    #[schemars(with = "Option<String>")]
    pub watermark: Option<std::time::Duration>,
    /// Batch runs: the memory the counts may take (all workers together) before they are
    /// spilled to temporary files, merged at the end (see `aggregate`), e.g. `512MiB`.
    /// Default: half the machine's memory (or of the container's limit). Streams keep their
    /// counts in memory, and so do windows (a limit with `window` is refused).
    #[serde(default, deserialize_with = "crate::settings::size::opt")]
    #[schemars(with = "Option<String>")]
    pub memory_limit: Option<u64>,
}

/// `by: word` or `by: [word, lang]`, each item with where it is in the file (errors point at
/// the item they are about).
#[derive(Debug, Clone, schemars::JsonSchema)]
#[schemars(untagged)]
pub enum OneOrMany {
    /// One column, written as a string.
    One(#[schemars(with = "String")] serde_saphyr::Spanned<String>),
    /// Several columns, written as a list.
    Many(#[schemars(with = "Vec<String>")] Vec<serde_saphyr::Spanned<String>>),
}

impl OneOrMany {
    /// Items built in code (no place in a file).
    pub fn unplaced(items: impl IntoIterator<Item = String>) -> OneOrMany {
        let unknown = serde_saphyr::Location::UNKNOWN;
        OneOrMany::Many(
            items
                .into_iter()
                .map(|item| serde_saphyr::Spanned::new(item, unknown, unknown))
                .collect(),
        )
    }

    /// The items with their places, in order.
    pub fn items(&self) -> &[serde_saphyr::Spanned<String>] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }

    /// The column names, in order.
    pub fn to_vec(&self) -> Vec<String> {
        self.items().iter().map(|item| item.value.clone()).collect()
    }

    /// Where the item that the build error `message` is about is written: the expression it
    /// quotes (`in `ITEM` at character N`), else the first item it names in backticks, whole
    /// or by its first word (`count desc`) or its `as` name.
    pub fn locate(&self, message: &str) -> Option<serde_saphyr::Location> {
        let items = self.items();
        let quoted = |text: &str| message.contains(&format!("`{}`", text.trim()));
        items
            .iter()
            .find(|item| {
                let shown = item.value.replace(['\n', '\r', '\t'], " ");
                message.contains(&format!("in `{shown}` at character"))
            })
            .or_else(|| items.iter().find(|item| quoted(&item.value)))
            .or_else(|| {
                items.iter().find(|item| {
                    let first = item.value.split_whitespace().next().unwrap_or_default();
                    let alias = item.value.rsplit_once(" as ").map(|(_, alias)| alias);
                    (!first.is_empty() && quoted(first)) || alias.is_some_and(quoted)
                })
            })
            .map(|item| item.referenced)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The value as written, before its place is attached to a single item.
        enum Written {
            One(String),
            Many(Vec<serde_saphyr::Spanned<String>>),
        }
        // YAML reads `007` as the number 7: the name as written is gone.
        const NUMBER: &str = "a column named like a number must be quoted here, e.g. `'2024'`";
        struct WrittenVisitor;
        impl<'de> serde::de::Visitor<'de> for WrittenVisitor {
            type Value = Written;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name or a list of column names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Written, E> {
                Ok(Written::One(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Written, E> {
                Err(E::custom(NUMBER))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Written, E> {
                Err(E::custom(NUMBER))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Written, E> {
                Err(E::custom(NUMBER))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Written, E> {
                // YAML reads y, n, yes, no, on, off, true and false as booleans here.
                Err(E::custom(
                    "a column named like a YAML boolean (y, n, yes, no, on, off, true, false) must be quoted here, e.g. `'n'`",
                ))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Written, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Written::Many(items))
            }
        }
        impl<'de> Deserialize<'de> for Written {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(WrittenVisitor)
            }
        }
        let written = serde_saphyr::Spanned::<Written>::deserialize(d)?;
        Ok(match written.value {
            Written::One(one) => OneOrMany::One(serde_saphyr::Spanned::new(
                one,
                written.referenced,
                written.defined,
            )),
            Written::Many(many) => OneOrMany::Many(many),
        })
    }
}

/// A text built in code, with no place in a file.
/// Column names as expressions name them: in backticks.
fn backticked(names: &[String]) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|name| match name.contains('`') {
            false => Ok(format!("`{name}`")),
            true => Err(format!(
                "cannot group by `{name}`: its name holds a backtick"
            )),
        })
        .collect()
}

fn unplaced(text: &str) -> serde_saphyr::Spanned<String> {
    let unknown = serde_saphyr::Location::UNKNOWN;
    serde_saphyr::Spanned::new(text.to_owned(), unknown, unknown)
}

fn default_as() -> String {
    "count".into()
}

impl BuildTransform for GroupCountConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        // Each key as its column's name, however written (bare, or in backticks).
        let names = self
            .by
            .to_vec()
            .iter()
            .map(|written| {
                key_column(ctx.input, written).map(|i| ctx.input.field(i).name().clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Err("`by` needs at least one column".into());
        }
        if self.window.is_some() && self.memory_limit.is_some() {
            // As `aggregate` says it: the limit would be taken and not kept.
            return Err(
                "`memory_limit` applies to counts without a window (windows are kept in memory)"
                    .into(),
            );
        }
        if self.window.is_some() || self.watermark.is_some() {
            // Windows hold the general aggregation's tables: count() per key.
            let counting = super::aggregate::AggregateConfig {
                by: Some(OneOrMany::unplaced(backticked(&names)?)),
                aggs: [(self.output.clone(), unplaced("count()"))]
                    .into_iter()
                    .collect(),
                window: None,
                watermark: None,
                // Windows keep their groups in memory (a limit is refused above).
                memory_limit: None,
            };
            let stage = counting.build(ctx)?;
            let keys = names.len();
            return super::aggregate::window_stage(
                &self.window,
                self.watermark,
                ctx,
                stage,
                Some(keys),
            );
        }
        let mut keys = Vec::new();
        let mut fields = Vec::new();
        for name in &names {
            let index = column_index(ctx.input, name)?;
            let data_type = ctx.input.field(index).data_type();
            // Keys of any type `aggregate` groups by (a list is not one).
            if matches!(data_type, DataType::List(_)) {
                return Err(format!(
                    "cannot group by `{name}`: it holds {} (explode it first)",
                    type_label(data_type)
                ));
            }
            if keys.contains(&index) {
                return Err(format!("`{name}` is listed twice in `by`"));
            }
            keys.push(index);
            fields.push(Field::new(name, data_type.clone(), true));
        }
        if names.contains(&self.output) {
            return Err(format!(
                "the count column `{}` clashes with a `by` column; rename it with `as`",
                self.output
            ));
        }
        fields.push(Field::new(&self.output, DataType::Int64, false));
        let output: SchemaRef = Arc::new(Schema::new(fields));
        let general = match keys.len() == 1 && output.field(0).data_type() == &DataType::Utf8 {
            true => None,
            false => Some(self.general(&names, ctx)?),
        };
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Aggregate(Box::new(GroupCount {
                keys,
                output,
                memory_limit: self.memory_limit,
                general,
            })),
        })
    }

    fn error_location(&self, message: &str) -> Option<serde_saphyr::Location> {
        self.by.locate(message)
    }
}

impl GroupCountConfig {
    /// For keys other than one text column: the general aggregation counting rows (its table
    /// keeps every key in one buffer, with no allocation per group), whose result
    /// `CountFirst` puts most frequent first.
    fn general(
        &self,
        names: &[String],
        ctx: &BuildContext,
    ) -> Result<Box<dyn Aggregation>, String> {
        let counting = super::aggregate::AggregateConfig {
            by: Some(OneOrMany::unplaced(backticked(names)?)),
            aggs: [(self.output.clone(), unplaced("count()"))]
                .into_iter()
                .collect(),
            window: None,
            watermark: None,
            memory_limit: self.memory_limit,
        };
        match counting.build(ctx)?.kind {
            StageKind::Aggregate(aggregation) => Ok(aggregation),
            _ => unreachable!("an aggregate builds an aggregation"),
        }
    }
}

/// The built `group_count` transform: counts rows per distinct key.
pub struct GroupCount {
    keys: Vec<usize>,
    output: SchemaRef,
    /// `memory_limit:` as written (bytes); `None`: the machine's default.
    memory_limit: Option<u64>,
    /// Keys other than one text column are counted by the general aggregation.
    general: Option<Box<dyn Aggregation>>,
}

impl GroupCount {
    /// The input columns it groups by.
    pub fn keys(&self) -> &[usize] {
        &self.keys
    }

    /// The columns it gives: the keys, then the count.
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }
}

impl Aggregation for GroupCount {
    fn new_state(&self) -> Box<dyn AggregateState> {
        if let Some(general) = &self.general {
            return Box::new(CountFirst {
                inner: general.new_state(),
                output: self.output.clone(),
            });
        }
        Box::new(GroupCountState {
            keys: self.keys.clone(),
            output: self.output.clone(),
            words: TextCounts::default(),
            nulls: 0,
        })
    }

    fn memory_limit(&self) -> Option<usize> {
        Some(match self.memory_limit {
            Some(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
            None => crate::settings::size::default_memory_limit(),
        })
    }

    /// Most frequent first, then by key.
    fn result_order(&self) -> Option<Vec<super::SortKey>> {
        let count = super::SortKey {
            column: self.keys.len(),
            descending: true,
        };
        let keys = (0..self.keys.len()).map(|column| super::SortKey {
            column,
            descending: false,
        });
        Some(std::iter::once(count).chain(keys).collect())
    }

    fn counts_by(&self) -> Option<&[usize]> {
        Some(&self.keys)
    }

    /// Declared for one text key (its state then takes grouped rows): `count()` per key.
    fn plain_columns(&self) -> Option<super::PlainColumns> {
        (self.keys.len() == 1 && self.output.field(0).data_type() == &DataType::Utf8).then(|| {
            super::PlainColumns {
                keys: self.keys.clone(),
                args: vec![None],
            }
        })
    }

    fn key_columns(&self) -> usize {
        self.keys.len()
    }

    /// `groupBy(keys).count()`, then runner's order of the counts: most frequent first, ties
    /// by the keys ascending (nulls first).
    fn spark(
        &self,
        input: crate::spark::frame::Frame,
    ) -> Result<crate::spark::frame::Frame, String> {
        use crate::spark::frame::{call, col, lit_i32};
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|&k| input.columns()[k].clone())
            .collect();
        let count = self.output.field(self.keys.len()).name().clone();
        let mut order = vec![col(&count).sort_key(true)];
        order.extend(keys.iter().map(|k| col(k).sort_key(false)));
        Ok(input
            .group_by(
                &keys,
                vec![(call("count", vec![lit_i32(1)]).alias(&count), count)],
            )
            .sort(order))
    }
}

/// A `group_count` state by one text column: the count of each word seen so far (looked up
/// by `&str`, allocating only for new words) and of nulls.
pub struct GroupCountState {
    keys: Vec<usize>,
    output: SchemaRef,
    words: TextCounts,
    nulls: i64,
}

impl TextCounter for GroupCountState {
    fn add_text(&mut self, key: &str, count: i64) {
        GroupCountState::add_text(self, key, count);
    }

    fn add_each_text(&mut self, keys: &[&[u8]]) {
        GroupCountState::add_each_text(self, keys);
    }
}

impl GroupCountState {
    /// Adds `count` occurrences of `word` (used by fused fast paths that count themselves).
    #[inline]
    pub fn add_text(&mut self, word: &str, count: i64) {
        self.words.add(word, count);
    }

    /// Adds one of each word (cut from valid UTF-8 at ASCII bytes), faster than one by one.
    pub fn add_each_text(&mut self, words: &[&[u8]]) {
        self.words.add_each(words);
    }

    /// Rows (groups) held so far.
    pub fn len(&self) -> usize {
        self.words.len() + usize::from(self.nulls > 0)
    }

    /// Whether no row has been counted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The words and their counts in this order, after the nulls' count when there are any.
    fn batch_of(&self, nulls_at: Option<usize>, rows: &[(&str, i64)]) -> RecordBatch {
        let mut keys = StringBuilder::new();
        let mut counts = Int64Builder::new();
        for (at, &(word, count)) in rows.iter().enumerate() {
            if nulls_at == Some(at) {
                keys.append_null();
                counts.append_value(self.nulls);
            }
            keys.append_value(word);
            counts.append_value(count);
        }
        if nulls_at == Some(rows.len()) {
            keys.append_null();
            counts.append_value(self.nulls);
        }
        RecordBatch::try_new(
            self.output.clone(),
            vec![Arc::new(keys.finish()), Arc::new(counts.finish())],
        )
        .expect("columns built from the output schema")
    }
}

/// The group number `GroupedRows` gives the null key (text keys have their `TextCounts` ids).
const NULL_GROUP: usize = usize::MAX;

impl super::GroupedRows for GroupCountState {
    fn groups_of(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let Some(text) = keys.first().and_then(|k| k.as_string_opt::<i32>()) else {
            return Err(crate::error::Error::runtime(
                "group_count: grouped rows need one text key",
            ));
        };
        Ok((0..rows)
            .map(|row| match text.is_valid(row) {
                true => self.words.id_of(text.value(row)),
                false => NULL_GROUP,
            })
            .collect())
    }

    fn add_grouped(&mut self, ids: &[usize], _args: &[Option<ArrayRef>]) -> Result<()> {
        for &id in ids {
            match id {
                NULL_GROUP => self.nulls += 1,
                id => self.words.add_to(id, 1),
            }
        }
        Ok(())
    }
}

impl AggregateState for GroupCountState {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = batch.column(self.keys[0]).as_string::<i32>();
        if column.null_count() == 0 {
            self.words.add_column(column);
            return Ok(());
        }
        for word in column.iter() {
            match word {
                Some(word) => self.words.add(word, 1),
                None => self.nulls += 1,
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let mut other = other
            .into_any()
            .downcast::<GroupCountState>()
            .expect("merging states of one aggregation");
        self.nulls += other.nulls;
        if self.words.len() < other.words.len() {
            std::mem::swap(&mut self.words, &mut other.words);
        }
        for (word, count) in other.words.iter() {
            self.words.add(word, count);
        }
        Ok(())
    }

    /// Most frequent first, ties by word (nulls first among equal counts).
    fn result(&self) -> Result<RecordBatch> {
        let rows = self.words.sorted();
        let nulls_at = (self.nulls > 0).then(|| rows.partition_point(|&(_, c)| c > self.nulls));
        Ok(self.batch_of(nulls_at, &rows))
    }

    /// In key order (nulls first), as a spill needs (a checkpoint reads any order).
    fn snapshot(&self) -> Result<RecordBatch> {
        let mut rows: Vec<(&str, i64)> = self.words.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(self.batch_of((self.nulls > 0).then_some(0), &rows))
    }

    fn spillable_bytes(&self) -> Option<usize> {
        Some(self.words.memory_bytes())
    }

    fn rows(&self) -> usize {
        self.len()
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        if table.schema().fields() != self.output.fields() {
            return Err(crate::error::Error::runtime(format!(
                "the saved state has columns {:?}, group_count gives {:?}",
                crate::data::columns(&table.schema()),
                crate::data::columns(&self.output)
            )));
        }
        let words = table.column(0).as_string::<i32>();
        let counts = table.column(1).as_primitive::<Int64Type>();
        for (word, count) in words.iter().zip(counts.values()) {
            match word {
                Some(word) => self.words.add(word, *count),
                None => self.nulls += count,
            }
        }
        Ok(())
    }

    fn text_counter(&mut self) -> Option<&mut dyn TextCounter> {
        Some(self)
    }

    fn grouped(&mut self) -> Option<&mut dyn super::GroupedRows> {
        Some(self)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A `group_count` by keys other than one text column: the general aggregation's state
/// counting rows, its result most frequent first (ties by key, the order it comes in). Its
/// snapshot is the step's own columns, keys and counts, in key order, so checkpoints keep
/// their form.
struct CountFirst {
    inner: Box<dyn AggregateState>,
    output: SchemaRef,
}

impl AggregateState for CountFirst {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.inner.update(batch)
    }

    fn begin_morsel(&mut self, index: u64) {
        self.inner.begin_morsel(index);
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let other = other
            .into_any()
            .downcast::<CountFirst>()
            .expect("merging states of one aggregation");
        self.inner.merge(other.inner)
    }

    fn result(&self) -> Result<RecordBatch> {
        let by_key = self.snapshot()?;
        let counts = by_key
            .column(by_key.num_columns() - 1)
            .as_primitive::<Int64Type>()
            .values();
        let mut order: Vec<u32> = (0..by_key.num_rows() as u32).collect();
        // Stable: equal counts keep the keys' order.
        order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]));
        arrow_select::take::take_record_batch(&by_key, &arrow_array::UInt32Array::from(order))
            .map_err(|e| crate::error::Error::runtime(format!("group_count: {e}")))
    }

    fn snapshot(&self) -> Result<RecordBatch> {
        let by_key = self.inner.result()?;
        RecordBatch::try_new(self.output.clone(), by_key.columns().to_vec())
            .map_err(|e| crate::error::Error::runtime(format!("group_count: {e}")))
    }

    fn spillable_bytes(&self) -> Option<usize> {
        self.inner.spillable_bytes()
    }

    fn rows(&self) -> usize {
        self.inner.rows()
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        if table.schema().fields() != self.output.fields() {
            return Err(crate::error::Error::runtime(format!(
                "the saved state has columns {:?}, group_count gives {:?}",
                crate::data::columns(&table.schema()),
                crate::data::columns(&self.output)
            )));
        }
        let keys = table.num_columns() - 1;
        let counts = table.column(keys).as_primitive::<Int64Type>();
        let mut columns = table.columns()[..keys].to_vec();
        columns.push(super::aggregate::count_states(counts));
        let mut fields: Vec<Field> = self.output.fields()[..keys]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("state", DataType::Utf8, true));
        let states = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| crate::error::Error::runtime(format!("group_count: {e}")))?;
        self.inner.restore(&states)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{text_batch, text_schema};
    use crate::transforms::compliance::{run, texts};

    fn build(yaml: &str, schema: &SchemaRef) -> Result<Stage, String> {
        let config: GroupCountConfig = serde_saphyr::from_str(yaml).unwrap();
        config.build(&BuildContext {
            input: schema,
            base_dir: std::path::Path::new("."),
        })
    }

    #[test]
    fn counts_words_most_frequent_first() {
        let stage = build("by: word", &text_schema("word")).unwrap();
        let out = run(&stage, text_batch("word", ["b", "a", "b", "c", "b"]));
        assert_eq!(texts(&out, "word"), ["b", "a", "c"]);
        assert_eq!(texts(&out, "count"), ["3", "1", "1"]);
    }

    /// A key named with a space, bare or in backticks, keeps the column's own name, in the
    /// fused count, the general one and the windowed one.
    #[test]
    fn a_name_with_spaces_is_a_key_bare_or_in_backticks() {
        let schema = text_schema("first name");
        for by in ["by: first name", "by: '`first name`'"] {
            let out = run(
                &build(by, &schema).unwrap(),
                text_batch("first name", ["b", "a", "b"]),
            );
            assert_eq!(texts(&out, "first name"), ["b", "a"], "{by}");
            assert_eq!(texts(&out, "count"), ["2", "1"], "{by}");
        }
        let two = Arc::new(Schema::new(vec![
            Field::new("first name", DataType::Utf8, true),
            Field::new("t", crate::data::timestamp_type(), true),
        ]));
        assert!(build("by: ['`first name`', t]", &two).is_ok());
        assert!(build("{by: '`first name`', window: {column: t, size: 1m}}", &two).is_ok());
        assert!(build(
            "{by: t, window: {column: t, size: 1m}, memory_limit: 1MiB}",
            &two
        )
        .err()
        .unwrap()
        .contains("`memory_limit` applies to counts without a window"));
        assert!(build("by: '`frist name`'", &schema)
            .err()
            .unwrap()
            .contains("did you mean `first name`?"));
    }

    #[test]
    fn partial_states_merge_to_the_same_result() {
        let stage = build("{by: [word], as: n}", &text_schema("word")).unwrap();
        let StageKind::Aggregate(agg) = &stage.kind else {
            panic!("aggregate")
        };
        let mut left = agg.new_state();
        let mut right = agg.new_state();
        left.update(&text_batch("word", ["x", "y"])).unwrap();
        right.update(&text_batch("word", ["y", "z", "y"])).unwrap();
        left.merge(right).unwrap();
        let out = left.result().unwrap();
        assert_eq!(texts(&out, "word"), ["y", "x", "z"]);
        assert_eq!(texts(&out, "n"), ["3", "1", "1"]);
    }

    #[test]
    fn groups_by_floats_and_timestamps_as_aggregate_does() {
        use arrow_array::{Float64Array, TimestampMicrosecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("t", crate::data::timestamp_type(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(0.5),
                    Some(-0.0),
                    Some(0.0),
                    Some(f64::NAN),
                    Some(-f64::NAN),
                    Some(0.5),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        Some(0),
                        Some(0),
                        None,
                        None,
                        Some(0),
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let out = run(&build("by: [f, t]", &schema).unwrap(), batch.clone());
        // -0.0 is 0.0 and every NaN one NaN, as Spark groups them.
        assert_eq!(texts(&out, "f"), ["0.0", "0.5", "NaN"]);
        assert_eq!(texts(&out, "count"), ["2", "2", "2"]);
        let out = run(&build("by: t", &schema).unwrap(), batch);
        assert_eq!(texts(&out, "count"), ["4", "2"]);
        let lists = Arc::new(Schema::new(vec![Field::new(
            "tags",
            crate::data::ValueType::TextList.data_type(),
            true,
        )]));
        let error = build("by: tags", &lists).err().unwrap();
        assert!(
            error.contains("cannot group by `tags`: it holds lists of text (explode it first)"),
            "{error}"
        );
    }

    #[test]
    fn groups_by_several_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::StringArray::from(vec!["x", "x", "y"])),
                Arc::new(arrow_array::StringArray::from(vec!["1", "1", "1"])),
            ],
        )
        .unwrap();
        let out = run(&build("by: [a, b]", &schema).unwrap(), batch);
        assert_eq!(texts(&out, "a"), ["x", "y"]);
        assert_eq!(texts(&out, "count"), ["2", "1"]);
    }

    #[test]
    fn a_state_restored_from_its_result_continues_counting() {
        let text = build("by: word", &text_schema("word")).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, false),
        ]));
        let pairs = build("by: [a, b]", &schema).unwrap();
        let pair_batch = |a: Vec<Option<&str>>, b: Vec<&str>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow_array::StringArray::from(a)),
                    Arc::new(arrow_array::StringArray::from(b)),
                ],
            )
            .unwrap()
        };
        let cases = [
            (
                &text,
                text_batch("word", ["b", "a", "b"]),
                text_batch("word", ["c", "a", "b"]),
            ),
            (
                &pairs,
                pair_batch(vec![Some("x"), None, Some("x")], vec!["1", "2", "1"]),
                pair_batch(vec![None, Some("y")], vec!["2", "1"]),
            ),
        ];
        for (stage, first, second) in cases {
            let StageKind::Aggregate(agg) = &stage.kind else {
                panic!("aggregate")
            };
            let mut uninterrupted = agg.new_state();
            uninterrupted.update(&first).unwrap();
            uninterrupted.update(&second).unwrap();
            let mut before = agg.new_state();
            before.update(&first).unwrap();
            // From a checkpoint of either form: the result, or the snapshot (in key order).
            for saved in [before.result().unwrap(), before.snapshot().unwrap()] {
                let mut after = agg.new_state();
                after.restore(&saved).unwrap();
                after.update(&second).unwrap();
                assert_eq!(after.result().unwrap(), uninterrupted.result().unwrap());
            }
        }
        // A table of other columns is refused, not mixed in.
        let StageKind::Aggregate(agg) = &text.kind else {
            panic!("aggregate")
        };
        let error = agg
            .new_state()
            .restore(&pair_batch(vec![], vec![]))
            .unwrap_err();
        assert!(
            error.to_string().contains("the saved state has columns"),
            "{error}"
        );
    }

    #[test]
    fn bad_columns_are_build_errors() {
        assert!(build("by: wrd", &text_schema("word"))
            .err()
            .unwrap()
            .contains("did you mean `word`?"));
        assert!(build("{by: word, as: word}", &text_schema("word"))
            .err()
            .unwrap()
            .contains("clashes"));
        assert!(build("by: []", &text_schema("word"))
            .err()
            .unwrap()
            .contains("at least one"));
    }
}
