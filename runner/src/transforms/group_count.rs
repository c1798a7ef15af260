//! `group_count`: count rows per distinct value of one or more columns. Each worker counts into
//! its own table; tables are merged once at the end (Spark's combiner), and the result is sorted
//! by key so it never depends on the number of cores.

use std::any::Any;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use hashbrown::HashMap;
use serde::Deserialize;

use super::{
    AggregateState, Aggregation, BuildContext, BuildTransform, Stage, StageKind, TextCounter,
};
use crate::counts::TextCounts;
use crate::data::{column_index, type_label};
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
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub watermark: Option<std::time::Duration>,
    /// Batch runs: the memory the counts may take (all workers together) before they are
    /// spilled to temporary files, merged at the end (see `aggregate`), e.g. `512MiB`.
    /// Default: half the machine's memory (or of the container's limit). The word count
    /// kernel and streams keep their counts in memory.
    #[serde(default, deserialize_with = "crate::settings::size::opt")]
    #[schemars(with = "Option<String>")]
    pub memory_limit: Option<u64>,
}

/// `by: word` or `by: [word, lang]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One column, written as a string.
    One(String),
    /// Several columns, written as a list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The column names, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

fn default_as() -> String {
    "count".into()
}

impl BuildTransform for GroupCountConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Stage, String> {
        let names = self.by.to_vec();
        if names.is_empty() {
            return Err("`by` needs at least one column".into());
        }
        if self.window.is_some() || self.watermark.is_some() {
            // Windows hold the general aggregation's tables: count() per key.
            let counting = super::aggregate::AggregateConfig {
                by: Some(self.by.clone()),
                aggs: [(self.output.clone(), "count()".to_owned())]
                    .into_iter()
                    .collect(),
                window: None,
                watermark: None,
                // Windows keep their groups in memory: the aggregation refuses a limit.
                memory_limit: self.memory_limit,
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
            if !matches!(
                data_type,
                DataType::Utf8 | DataType::Int64 | DataType::Boolean
            ) {
                return Err(format!(
                    "cannot group by `{name}`: it holds {}",
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
        Ok(Stage {
            output: output.clone(),
            kind: StageKind::Aggregate(Box::new(GroupCount {
                keys,
                output,
                memory_limit: self.memory_limit,
            })),
        })
    }
}

/// The built `group_count` transform: counts rows per distinct key.
pub struct GroupCount {
    keys: Vec<usize>,
    output: SchemaRef,
    /// `memory_limit:` as written (bytes); `None`: the machine's default.
    memory_limit: Option<u64>,
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
        let single_text =
            self.keys.len() == 1 && self.output.field(0).data_type() == &DataType::Utf8;
        Box::new(GroupCountState {
            keys: self.keys.clone(),
            output: self.output.clone(),
            table: if single_text {
                Table::Text(TextCounts::default(), 0)
            } else {
                Table::Keys(HashMap::new())
            },
            key_bytes: 0,
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

/// One part of a group key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Null,
    Bool(bool),
    Int(i64),
    Text(Box<str>),
}

enum Table {
    /// The common case, one text column: look up by `&str`, allocate only for new words.
    /// The second field counts nulls.
    Text(TextCounts, i64),
    Keys(HashMap<Vec<Key>, i64>),
}

/// A `group_count` state: the count of each key seen so far.
pub struct GroupCountState {
    keys: Vec<usize>,
    output: SchemaRef,
    table: Table,
    /// The bytes of the text in `Table::Keys`' keys.
    key_bytes: usize,
}

fn key_at(array: &dyn Array, row: usize) -> Key {
    if array.is_null(row) {
        return Key::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Key::Text(array.as_string::<i32>().value(row).into()),
        DataType::Int64 => Key::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Boolean => Key::Bool(array.as_boolean().value(row)),
        _ => Key::Null,
    }
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
    /// Returns false when the state is not keyed by one text column.
    #[inline]
    pub fn add_text(&mut self, word: &str, count: i64) -> bool {
        match &mut self.table {
            Table::Text(map, _) => {
                map.add(word, count);
                true
            }
            Table::Keys(_) => false,
        }
    }

    /// Adds one of each word (cut from valid UTF-8 at ASCII bytes), faster than one by one.
    pub fn add_each_text(&mut self, words: &[&[u8]]) -> bool {
        match &mut self.table {
            Table::Text(map, _) => {
                map.add_each(words);
                true
            }
            Table::Keys(_) => false,
        }
    }

    /// Rows (groups) held so far.
    pub fn len(&self) -> usize {
        match &self.table {
            Table::Text(map, nulls) => map.len() + usize::from(*nulls > 0),
            Table::Keys(map) => map.len(),
        }
    }

    /// Whether no row has been counted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key and its count, most frequent first (`by_count`) or by key alone; ties by key.
    fn sorted_keys(&self, by_count: bool) -> Vec<(Vec<Key>, i64)> {
        let mut rows: Vec<(Vec<Key>, i64)> = match &self.table {
            Table::Text(map, nulls) => {
                let mut rows: Vec<_> = map
                    .iter()
                    .map(|(k, v)| (vec![Key::Text(k.into())], v))
                    .collect();
                if *nulls > 0 {
                    rows.push((vec![Key::Null], *nulls));
                }
                rows
            }
            Table::Keys(map) => map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        };
        // Most frequent first, ties by key: deterministic, and what a `limit` or a reader wants.
        match by_count {
            true => rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))),
            false => rows.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
        }
        rows
    }
}

/// The group number `GroupedRows` gives the null key (text keys have their `TextCounts` ids).
const NULL_GROUP: usize = usize::MAX;

impl super::GroupedRows for GroupCountState {
    fn groups_of(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let (Table::Text(map, _), Some(text)) = (
            &mut self.table,
            keys.first().and_then(|k| k.as_string_opt::<i32>()),
        ) else {
            return Err(crate::error::Error::runtime(
                "group_count: grouped rows need one text key",
            ));
        };
        Ok((0..rows)
            .map(|row| match text.is_valid(row) {
                true => map.id_of(text.value(row)),
                false => NULL_GROUP,
            })
            .collect())
    }

    fn add_grouped(&mut self, ids: &[usize], _args: &[Option<ArrayRef>]) -> Result<()> {
        let Table::Text(map, nulls) = &mut self.table else {
            return Err(crate::error::Error::runtime(
                "group_count: grouped rows need one text key",
            ));
        };
        for &id in ids {
            match id {
                NULL_GROUP => *nulls += 1,
                id => map.add_to(id, 1),
            }
        }
        Ok(())
    }
}

impl AggregateState for GroupCountState {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.table {
            Table::Text(map, nulls) => {
                let column = batch.column(self.keys[0]).as_string::<i32>();
                if column.null_count() == 0 {
                    map.add_column(column);
                    return Ok(());
                }
                for word in column.iter() {
                    match word {
                        Some(word) => map.add(word, 1),
                        None => *nulls += 1,
                    }
                }
            }
            Table::Keys(map) => {
                let columns: Vec<&ArrayRef> = self.keys.iter().map(|&k| batch.column(k)).collect();
                for row in 0..batch.num_rows() {
                    let key: Vec<Key> = columns.iter().map(|c| key_at(c.as_ref(), row)).collect();
                    let entry = map.entry(key);
                    if let hashbrown::hash_map::Entry::Vacant(_) = &entry {
                        self.key_bytes += text_bytes(entry.key());
                    }
                    *entry.or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn AggregateState>) -> Result<()> {
        let other = other
            .into_any()
            .downcast::<GroupCountState>()
            .expect("merging states of one aggregation");
        // Keys of both (an over-estimate when they share keys).
        self.key_bytes += other.key_bytes;
        match (&mut self.table, other.table) {
            (Table::Text(mine, my_nulls), Table::Text(mut theirs, nulls)) => {
                *my_nulls += nulls;
                if mine.len() < theirs.len() {
                    std::mem::swap(mine, &mut theirs);
                }
                for (k, v) in theirs.iter() {
                    mine.add(k, v);
                }
            }
            (Table::Keys(mine), Table::Keys(theirs)) => {
                for (k, v) in theirs {
                    *mine.entry(k).or_insert(0) += v;
                }
            }
            _ => unreachable!("states of one aggregation have one table kind"),
        }
        Ok(())
    }

    fn result(&self) -> Result<RecordBatch> {
        if let Table::Text(map, 0) = &self.table {
            // The common case, without copying keys: sort references, build the arrays once.
            let rows = map.sorted();
            let keys = arrow_array::StringArray::from_iter_values(rows.iter().map(|(k, _)| *k));
            let counts = arrow_array::Int64Array::from_iter_values(rows.iter().map(|(_, c)| *c));
            return Ok(RecordBatch::try_new(
                self.output.clone(),
                vec![Arc::new(keys), Arc::new(counts)],
            )
            .expect("columns built from the output schema"));
        }
        Ok(self.batch_of(&self.sorted_keys(true)))
    }

    /// In key order, as a spill needs (a checkpoint reads any order).
    fn snapshot(&self) -> Result<RecordBatch> {
        Ok(self.batch_of(&self.sorted_keys(false)))
    }

    fn spillable_bytes(&self) -> Option<usize> {
        Some(match &self.table {
            Table::Text(map, _) => map.memory_bytes(),
            Table::Keys(map) => {
                let entry = std::mem::size_of::<(Vec<Key>, i64)>() + 1;
                map.capacity() * entry
                    + map.len() * (self.keys.len() * std::mem::size_of::<Key>() + 16)
                    + self.key_bytes
            }
        })
    }

    fn rows(&self) -> usize {
        self.len()
    }

    fn restore(&mut self, table: &RecordBatch) -> Result<()> {
        self.restore_rows(table)
    }

    fn text_counter(&mut self) -> Option<&mut dyn TextCounter> {
        match self.table {
            Table::Text(..) => Some(self),
            Table::Keys(_) => None,
        }
    }

    fn grouped(&mut self) -> Option<&mut dyn super::GroupedRows> {
        match self.table {
            Table::Text(..) => Some(self),
            Table::Keys(_) => None,
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The bytes of a key's texts.
fn text_bytes(key: &[Key]) -> usize {
    key.iter()
        .map(|k| match k {
            Key::Text(t) => t.len(),
            _ => 0,
        })
        .sum()
}

impl GroupCountState {
    /// The output table of `rows` (keys and counts), in their order.
    fn batch_of(&self, rows: &[(Vec<Key>, i64)]) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (position, field) in self
            .output
            .fields()
            .iter()
            .enumerate()
            .take(self.keys.len())
        {
            let column: ArrayRef = match field.data_type() {
                DataType::Utf8 => {
                    let mut b = StringBuilder::new();
                    for (key, _) in rows {
                        match &key[position] {
                            Key::Text(s) => b.append_value(s),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                DataType::Int64 => {
                    let mut b = Int64Builder::new();
                    for (key, _) in rows {
                        b.append_option(match key[position] {
                            Key::Int(i) => Some(i),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                _ => {
                    let mut b = BooleanBuilder::new();
                    for (key, _) in rows {
                        b.append_option(match key[position] {
                            Key::Bool(v) => Some(v),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push(column);
        }
        columns.push(Arc::new(arrow_array::Int64Array::from_iter_values(
            rows.iter().map(|(_, c)| *c),
        )));
        RecordBatch::try_new(self.output.clone(), columns)
            .expect("columns built from the output schema")
    }

    /// Adds the counts of a table of this step's output columns (a checkpoint's, a spill's).
    fn restore_rows(&mut self, table: &RecordBatch) -> Result<()> {
        if table.schema().fields() != self.output.fields() {
            return Err(crate::error::Error::runtime(format!(
                "the saved state has columns {:?}, group_count gives {:?}",
                crate::data::columns(&table.schema()),
                crate::data::columns(&self.output)
            )));
        }
        let key_count = self.keys.len();
        let counts = table.column(key_count).as_primitive::<Int64Type>();
        match &mut self.table {
            Table::Text(map, nulls) => {
                let words = table.column(0).as_string::<i32>();
                for (word, count) in words.iter().zip(counts.values()) {
                    match word {
                        Some(word) => map.add(word, *count),
                        None => *nulls += count,
                    }
                }
            }
            Table::Keys(map) => {
                for (row, count) in counts.values().iter().enumerate() {
                    let key: Vec<Key> = (0..key_count)
                        .map(|c| key_at(table.column(c).as_ref(), row))
                        .collect();
                    let entry = map.entry(key);
                    if let hashbrown::hash_map::Entry::Vacant(_) = &entry {
                        self.key_bytes += text_bytes(entry.key());
                    }
                    *entry.or_insert(0) += count;
                }
            }
        }
        Ok(())
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
            let mut after = agg.new_state();
            after.restore(&before.result().unwrap()).unwrap();
            after.update(&second).unwrap();
            assert_eq!(after.result().unwrap(), uninterrupted.result().unwrap());
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
