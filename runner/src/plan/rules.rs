//! The rules that make the physical plan. Each reads what sources and steps declare
//! (`raw_text_lines`, `splits_text`, `per_value`, `counts_by`, `first_rows`, ...), never which
//! component a step is.
//!
//! - **count split text** (the word count): a source of raw text lines, a step that splits
//!   its line column into pieces, any steps that each decide a row by the piece alone
//!   (stopwords, a filter on the word, lowercase), then a count by the piece → one kernel that
//!   counts pieces straight from the input's bytes into per-worker tables, then applies the
//!   per-piece steps once per distinct piece (a filter of a value gives the same whether it
//!   runs before counting, on every row, or after, on the distinct values; a map of a value is
//!   followed by re-adding the counts of values that became equal). Batch runs have the
//!   word kernel; streams the separator kernel, without per-piece steps (a stream's state is
//!   checkpointed, and must hold what the unfused steps would have counted).
//! - **aggregate CSV fields**: a batch source of raw CSV records, any steps that keep rows by
//!   one column's value (filters), then an aggregation whose keys (text or integer) and
//!   arguments (text, integer or float) are input columns as they are → one kernel that
//!   splits each record's fields where it reads them, parses only the fields the steps need,
//!   asks the filters for their masks, and finds each kept row's group from the key's bytes,
//!   feeding the aggregation's own per-worker states. A morsel the kernel cannot read
//!   alone (quotes, a bad record, invalid UTF-8) goes through the source's reader into the same
//!   state, so the answer and the errors are the unfused ones.
//! - **stream to sinks**: a batch pipeline of row-wise steps, limits and sorts (no
//!   aggregation) hands its rows to the sinks as they are produced, in input order, with
//!   bounded memory; a reached limit stops the reading. A sort (a step that declares
//!   `sort_keys`) takes the rows in bounded memory instead: sorted runs spilled to temporary
//!   files and merged (`external_sort`), or only the first rows before a limit (`top_k`);
//!   the rows it merges go on through the steps after it, into the next sort or the sinks.

use serde::Serialize;

/// Whether a batch run spills the step's groups to disk past a memory limit.
fn spills(built: &BuiltStage) -> bool {
    matches!(&built.stage.kind, StageKind::Aggregate(a) if a.memory_limit().is_some())
}

/// Whether the step counts distinct values by grouping on them (a batch run's `count_distinct`).
fn groups_distinct(built: &BuiltStage) -> bool {
    matches!(&built.stage.kind, StageKind::Aggregate(a) if a.groups_distinct_values())
}

/// Whether the step's groups hold their values (distinct values, lists), which a memory limit
/// does not bound.
fn holds_values(built: &BuiltStage) -> bool {
    matches!(&built.stage.kind, StageKind::Aggregate(a) if a.holds_values())
}

use super::{BuiltStage, Operator, PhysicalPlan};
use crate::sources::BuiltSource;
use crate::transforms::{PerValue, StageKind, TextSplit};

/// Which kernel replaces the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// Words (tokenize) counted from input bytes, per worker (batch).
    WordCount,
    /// Pieces between separators (explode) counted from input bytes into the state (stream).
    SplitCount,
    /// CSV fields aggregated as the records are split (batch).
    CsvAggregate,
}

impl Kernel {
    /// Its operator's name in the physical plan.
    pub fn operator(self) -> &'static str {
        match self {
            Kernel::WordCount => "word_count_kernel",
            Kernel::SplitCount => "split_count_kernel",
            Kernel::CsvAggregate => "csv_aggregate_kernel",
        }
    }

    /// Its short name, as the run summary's `fused` gives it.
    pub fn short_name(self) -> &'static str {
        match self {
            Kernel::WordCount => "word count",
            Kernel::SplitCount => "split count",
            Kernel::CsvAggregate => "CSV aggregate",
        }
    }

    /// Its name for people.
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::WordCount => "word-count kernel",
            Kernel::SplitCount => "split-count kernel",
            Kernel::CsvAggregate => "CSV aggregate kernel",
        }
    }
}

/// The steps a kernel runs in place of their own code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fusion {
    /// Which kernel runs the steps.
    pub kernel: Kernel,
    /// The step that splits the text (its settings are the kernel's); none for a kernel that
    /// reads records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<usize>,
    /// Steps that keep or drop rows, run by the kernel on the rows it reads (the CSV
    /// aggregate's filters), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub row_wise: Vec<usize>,
    /// Steps applied to the distinct pieces after counting, in order.
    pub per_value: Vec<usize>,
    /// The aggregation the kernel feeds (the count, for the text kernels).
    pub count: usize,
    /// Whether the counts must come out in the count's own order (no step after it orders
    /// the rows whatever their input order).
    pub order_rows: bool,
}

impl Fusion {
    /// Every step the kernel covers, in order.
    pub fn steps(&self) -> Vec<usize> {
        let mut steps: Vec<usize> = self.split.into_iter().collect();
        steps.extend(&self.row_wise);
        steps.extend(&self.per_value);
        steps.push(self.count);
        steps
    }
}

/// The physical plan of a pipeline; `rules: false` (`--no-fusion`) runs every step as itself.
pub fn physical(source: &BuiltSource, stages: &[BuiltStage], rules: bool) -> PhysicalPlan {
    let streaming = matches!(source, BuiltSource::Stream(_));
    let (fusion, rule) = if !rules {
        (None, None)
    } else if let Some(fusion) = count_split_text(source, stages, streaming) {
        (Some(fusion), Some("count_split_text"))
    } else if let Some(fusion) = aggregate_csv_fields(source, stages) {
        (Some(fusion), Some("aggregate_csv_fields"))
    } else {
        (None, None)
    };
    let streams = !streaming && rules_stream_to_sinks(stages);
    let mut rules_applied: Vec<&'static str> = rule.into_iter().collect();
    if streams {
        rules_applied.push("stream_to_sinks");
    }
    let mut operators = vec![Operator {
        name: "scan",
        steps: Vec::new(),
        runs: if streaming {
            "a source task, into a bounded channel"
        } else {
            "morsels of the input, on every worker"
        },
    }];
    let covered = fusion.as_ref().map_or_else(Vec::new, Fusion::steps);
    if let Some(fusion) = &fusion {
        let spills = stages.get(fusion.count).is_some_and(spills);
        let holds_values = stages.get(fusion.count).is_some_and(holds_values);
        let groups_distinct = stages.get(fusion.count).is_some_and(groups_distinct);
        operators.push(Operator {
            name: fusion.kernel.operator(),
            steps: covered.clone(),
            runs: match fusion.kernel {
                Kernel::WordCount if spills => {
                    "from input bytes into per-worker counts, merged once; past the memory \
                     limit, spilled to temporary files and merged by word"
                }
                Kernel::WordCount => "from input bytes into per-worker counts, merged once",
                Kernel::SplitCount => "from each epoch's input bytes into the kept state",
                Kernel::CsvAggregate if spills && holds_values => {
                    "from input bytes into per-worker groups, merged once; past the memory \
                     limit, spilled to temporary files and merged by key (a group's distinct \
                     values and lists are held whole: the limit bounds how many groups are \
                     held, not one group's values)"
                }
                Kernel::CsvAggregate if spills && groups_distinct => {
                    "from input bytes into per-worker groups by the keys and the value \
                     count_distinct counts, merged once and counted per key; past the memory \
                     limit, spilled to temporary files and merged by key"
                }
                Kernel::CsvAggregate if spills => {
                    "from input bytes into per-worker groups, merged once; past the memory \
                     limit, spilled to temporary files and merged by key"
                }
                Kernel::CsvAggregate => "from input bytes into per-worker groups, merged once",
            },
        });
    }
    let mut merged = fusion.is_some();
    // After an aggregation that may spill, with only row-wise steps since: a second one takes
    // its groups as they are merged (`batch::aggregate_again`).
    let mut after_spilling = !streaming
        && fusion
            .as_ref()
            .is_some_and(|f| stages.get(f.count).is_some_and(spills));
    // In a streamed pipeline, after a sort: the steps take its rows as it merges them.
    let mut sorted = false;
    // An aggregation after a sort or a limit: the steps before it stream their rows into it.
    let streamed_into = match streaming {
        true => None,
        false => crate::exec::batch::streams_into_aggregation(stages),
    };
    // After an aggregation that may spill, with only steps that stream since: they take its
    // groups as they are merged, a sort in bounded memory (`batch::run`).
    let mut sorted_after_spilling = !streaming
        && fusion.as_ref().is_some_and(|f| {
            stages.get(f.count).is_some_and(spills)
                && crate::exec::pipelined::streams(&stages[f.count + 1..])
        });
    for (i, built) in stages.iter().enumerate() {
        if covered.contains(&i) {
            continue;
        }
        let streams_here = streams || streamed_into.is_some_and(|at| i < at);
        // Whether an aggregation here takes its input as it comes (so that it can spill):
        // from the source, from steps that stream into it, or from a spilled one's merge.
        let as_it_comes = streamed_into == Some(i)
            || after_spilling
            || stages[..i]
                .iter()
                .all(|s| matches!(s.stage.kind, StageKind::Map(_)));
        let (name, runs) = match &built.stage.kind {
            StageKind::Map(_) if merged && streaming => ("row_wise", "on each epoch's result"),
            StageKind::Map(_) if merged => ("row_wise", "on the merged result"),
            StageKind::Map(_) if streams_here && sorted => {
                ("row_wise", "on the sorted rows as they are merged")
            }
            StageKind::Map(_) if streams => (
                "row_wise",
                "on every worker, streamed to the sinks in input order",
            ),
            StageKind::Map(_) if streams_here => (
                "row_wise",
                "on every worker, streamed in input order to the steps after it",
            ),
            StageKind::Map(_) if streaming => ("row_wise", "on each epoch's new rows"),
            StageKind::Map(_) => ("row_wise", "on every worker"),
            StageKind::Aggregate(_) if streaming => ("hash_aggregate", "state kept across epochs"),
            StageKind::Aggregate(_) if after_spilling && spills(built) => (
                "hash_aggregate",
                "on the result of the steps before it; after an aggregation that spilled, on \
                 its groups as they are merged, itself spilling past the memory limit",
            ),
            StageKind::Aggregate(_) if streamed_into == Some(i) && spills(built) => (
                "hash_aggregate",
                "on the rows of the steps before it as they come; past the memory limit, \
                 spilled to temporary files and merged by key",
            ),
            StageKind::Aggregate(_) if streamed_into == Some(i) => (
                "hash_aggregate",
                "on the rows of the steps before it as they come",
            ),
            StageKind::Aggregate(_) if merged && spills(built) && !as_it_comes => (
                "hash_aggregate",
                "on the whole result of the steps before it, in memory (its memory limit \
                 applies where an aggregation takes its input as it comes)",
            ),
            StageKind::Aggregate(_) if merged => {
                ("hash_aggregate", "on the result of the steps before it")
            }
            StageKind::Aggregate(_) if spills(built) && holds_values(built) => (
                "hash_aggregate",
                "per worker, then merged; past the memory limit, spilled to temporary files \
                 and merged by key (a group's distinct values and lists are held whole: the \
                 limit bounds how many groups are held, not one group's values)",
            ),
            StageKind::Aggregate(_) if spills(built) && groups_distinct(built) => (
                "hash_aggregate",
                "per worker by the keys and the value count_distinct counts, then merged and \
                 counted per key; past the memory limit, spilled to temporary files and merged \
                 by key",
            ),
            StageKind::Aggregate(_) if spills(built) => (
                "hash_aggregate",
                "per worker, then merged; past the memory limit, spilled to temporary files \
                 and merged by key",
            ),
            StageKind::Aggregate(_) => ("hash_aggregate", "per worker, then merged"),
            StageKind::Global(global) if streams_here && global.sort_keys().is_some() => {
                let before_limit = stages.get(i + 1).is_some_and(|next| {
                    matches!(&next.stage.kind, StageKind::Global(g) if g.first_rows().is_some())
                });
                if before_limit {
                    (
                        "top_k",
                        "keeps only the first rows in key order, in bounded memory",
                    )
                } else {
                    (
                        "external_sort",
                        "in bounded memory: sorted runs spilled to temporary files, then merged",
                    )
                }
            }
            StageKind::Global(_) if streams_here && sorted => {
                ("limit", "in key order; stops the merge once reached")
            }
            StageKind::Global(_) if streams_here => {
                ("limit", "in input order; stops the reading once reached")
            }
            StageKind::Global(_) if streaming => ("whole_input", "on each epoch's result"),
            StageKind::Global(global) if sorted_after_spilling && global.sort_keys().is_some() => (
                "whole_input",
                "once, on the whole result; where the aggregation before it spills, on its \
                 merged groups in bounded memory (sorted runs spilled to temporary files, then \
                 merged)",
            ),
            StageKind::Global(global) if sorted_after_spilling && global.first_rows().is_some() => {
                let before = i.checked_sub(1).map(|b| &stages[b].stage.kind);
                let runs = match before {
                    Some(StageKind::Aggregate(a)) if a.result_order().is_some() => {
                        "once, on the whole result; where the aggregation before it spills, the \
                         sort of its merged groups into their order keeps only these first rows"
                    }
                    Some(StageKind::Aggregate(_)) => {
                        "once, on the whole result; where the aggregation before it spills, on \
                         its groups as they are merged, stopping the merge once reached"
                    }
                    _ => {
                        "once, on the whole result; where the aggregation before it spills, on \
                         the rows of the steps before it as they come, stopping them once reached"
                    }
                };
                ("whole_input", runs)
            }
            StageKind::Global(_) => ("whole_input", "once, on the whole result"),
        };
        merged |= !matches!(built.stage.kind, StageKind::Map(_)) && !streams_here;
        sorted = match &built.stage.kind {
            StageKind::Global(g) if g.sort_keys().is_some() => streams_here,
            StageKind::Aggregate(_) => false,
            _ => sorted,
        };
        let spilling = !streaming && spills(built) && as_it_comes;
        if let StageKind::Aggregate(_) = &built.stage.kind {
            sorted_after_spilling = spilling && crate::exec::pipelined::streams(&stages[i + 1..]);
        }
        after_spilling = match &built.stage.kind {
            StageKind::Aggregate(_) => spilling,
            // Sorts and limits stream the merged groups on, as row-wise steps do.
            _ => after_spilling,
        };
        match operators.last_mut() {
            // Consecutive row-wise steps run as one operator (one pass per batch).
            Some(last) if last.name == name && name == "row_wise" && last.runs == runs => {
                last.steps.push(i)
            }
            _ => operators.push(Operator {
                name,
                steps: vec![i],
                runs,
            }),
        }
    }
    PhysicalPlan {
        operators,
        rules_applied,
        fusion,
        streams_to_sinks: streams,
    }
}

/// Row-wise steps, limits and sorts: nothing holds the whole input in memory.
fn rules_stream_to_sinks(stages: &[BuiltStage]) -> bool {
    crate::exec::pipelined::streams(stages)
}

/// The count-split-text rule (see the module's documentation).
fn count_split_text(
    source: &BuiltSource,
    stages: &[BuiltStage],
    streaming: bool,
) -> Option<Fusion> {
    if !source.raw_text_lines() {
        return None;
    }
    let map = |i: usize| match stages.get(i).map(|s| &s.stage.kind) {
        Some(StageKind::Map(m)) => Some(m.as_ref()),
        _ => None,
    };
    // The source's rows are its lines, in its only column: column 0.
    let (kernel, column) = match map(0)?.splits_text()? {
        TextSplit::Words { column, .. } if !streaming => (Kernel::WordCount, column),
        TextSplit::Separator { column, .. } if streaming => (Kernel::SplitCount, column),
        _ => return None,
    };
    if column != 0 {
        return None;
    }
    let mut per_value = Vec::new();
    let mut next = 1;
    while let Some(step) = map(next) {
        match step.per_value() {
            Some(PerValue::Keeps { column: c } | PerValue::Maps { column: c })
                if c == column && kernel == Kernel::WordCount && !step.needs_finish() =>
            {
                per_value.push(next)
            }
            _ => return None,
        }
        next += 1;
    }
    let StageKind::Aggregate(aggregation) = &stages.get(next)?.stage.kind else {
        return None;
    };
    if aggregation.counts_by()? != [column] {
        return None;
    }
    // Row-wise steps keep order; the first step that cares about order decides.
    let order_rows = !stages[next + 1..]
        .iter()
        .find(|s| !matches!(s.stage.kind, StageKind::Map(_)))
        .is_some_and(|s| match &s.stage.kind {
            StageKind::Global(global) => global.order_independent(),
            _ => false,
        });
    Some(Fusion {
        kernel,
        split: Some(0),
        row_wise: Vec::new(),
        per_value,
        count: next,
        order_rows,
    })
}

/// The aggregate-CSV-fields rule (see the module's documentation).
fn aggregate_csv_fields(source: &BuiltSource, stages: &[BuiltStage]) -> Option<Fusion> {
    let BuiltSource::Batch(source) = source else {
        return None;
    };
    if !source.raw_csv_records() {
        return None;
    }
    // Steps that keep rows by one column's value (filters), then the aggregation.
    let mut row_wise = Vec::new();
    let mut filtered = Vec::new();
    while let Some(StageKind::Map(step)) = stages.get(row_wise.len()).map(|s| &s.stage.kind) {
        match step.per_value() {
            Some(PerValue::Keeps { column }) if !step.needs_finish() => {
                filtered.push(column);
                row_wise.push(row_wise.len());
            }
            _ => return None,
        }
    }
    let count = row_wise.len();
    let StageKind::Aggregate(aggregation) = &stages.get(count)?.stage.kind else {
        return None;
    };
    if aggregation.windowed().is_some() {
        return None;
    }
    let plain = aggregation.plain_columns()?;
    let types = source
        .schema()
        .fields()
        .iter()
        .map(|f| crate::data::ValueType::of(f.data_type()))
        .collect::<Option<Vec<_>>>()?;
    csv_fields_readable(&plain, &filtered, &types).then(|| Fusion {
        kernel: Kernel::CsvAggregate,
        split: None,
        row_wise,
        per_value: Vec::new(),
        count,
        order_rows: true,
    })
}

/// Whether the CSV aggregate kernel reads an aggregation of these columns after filters of
/// the `filtered` columns (the source's columns have `types`): keys of text or integers,
/// arguments and filtered columns of text, integers or floats, and every declared column one
/// it can check as the source's reader does (not a list).
pub fn csv_fields_readable(
    plain: &crate::transforms::PlainColumns,
    filtered: &[usize],
    types: &[crate::data::ValueType],
) -> bool {
    use crate::data::ValueType as T;
    let type_of = |column: &usize| types.get(*column).copied();
    plain
        .keys
        .iter()
        .all(|k| matches!(type_of(k), Some(T::Text | T::Integer)))
        && plain
            .args
            .iter()
            .flatten()
            .chain(filtered)
            .all(|a| matches!(type_of(a), Some(T::Text | T::Integer | T::Float)))
        && !types.contains(&T::TextList)
}
