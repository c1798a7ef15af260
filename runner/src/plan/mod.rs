//! The plan: the one description of a pipeline that everything reads — the executors, `runner
//! plan`, the run summary and checkpoint identity.
//!
//! The **logical plan** is the pipeline as typed nodes (the source, each step, with the columns
//! it takes and gives, and the capabilities it declares). The **physical plan** is made from it
//! by rules (`rules.rs`): operators that say how each step runs (on every worker, per worker
//! then merged, once on the whole result, streamed to the sinks) and, where the declared
//! capabilities allow, a kernel that replaces several steps. Rules read capabilities only,
//! never which component a step is; `--no-fusion` builds the physical plan without them.

pub mod rules;

use serde::Serialize;

use crate::sources::BuiltSource;
use crate::transforms::{PerValue, Stage, StageKind, TextSplit};

pub use rules::{csv_fields_readable, Fusion, Kernel};

/// A transform ready to run, with what messages need to name it.
pub struct BuiltStage {
    /// `transforms.N (type)`, for messages.
    pub label: String,
    /// Where the step is written (`pipeline.yaml:7:5`), so an error while it runs points there.
    pub at: String,
    /// The YAML `type:` name.
    pub type_name: &'static str,
    /// The built transform: its output columns and how it runs.
    pub stage: Stage,
}

impl BuiltStage {
    /// An error of this step while it runs, located in the pipeline file.
    pub fn failed(&self, why: impl std::fmt::Display) -> crate::error::Error {
        let why = why.to_string();
        let why = self.own_words(&why).unwrap_or(&why);
        crate::error::Error::runtime(format!("{}: {}: {why}", self.at, self.label))
    }

    /// `error` located at this step when the step said it (an aggregation's runtime messages
    /// begin `aggregate: `); any other error as it is.
    pub fn locate(&self, error: crate::error::Error) -> crate::error::Error {
        match error {
            crate::error::Error::Runtime(message) => match self.own_words(&message) {
                Some(why) => self.failed(why),
                None => crate::error::Error::Runtime(message),
            },
            other => other,
        }
    }

    /// A message of this step's own, without the prefix naming the step's type.
    fn own_words<'m>(&self, message: &'m str) -> Option<&'m str> {
        let own = |prefix: &str| message.strip_prefix(prefix)?.strip_prefix(": ");
        own(self.type_name).or_else(|| match self.stage.kind {
            StageKind::Aggregate(_) => own("aggregate"),
            _ => None,
        })
    }
}

/// The warnings of the row-wise stages (rows they left out), each named by its step.
pub fn stage_warnings(stages: &[BuiltStage]) -> Vec<String> {
    stages
        .iter()
        .filter_map(|s| match &s.stage.kind {
            crate::transforms::StageKind::Map(map) => Some((s, map.warnings())),
            _ => None,
        })
        .flat_map(|(s, warnings)| {
            warnings
                .into_iter()
                .map(move |w| format!("{}: {w}", s.label))
        })
        .collect()
}

/// The pipeline as typed nodes, with what each declares about itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogicalPlan {
    /// The source node.
    pub source: SourceNode,
    /// One node per transform, in pipeline order.
    pub steps: Vec<StepNode>,
}

/// The source in the logical plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceNode {
    /// The source's YAML `type:` name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The columns it gives, as `name: type`.
    pub columns: Vec<String>,
    /// `bounded` (read to its end) or `unbounded` (read as it arrives).
    pub input: &'static str,
    /// Declared capabilities, such as `raw_text_lines`.
    pub capabilities: Vec<String>,
}

/// One transform in the logical plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepNode {
    /// `transforms.N`.
    pub step: String,
    /// The transform's YAML `type:` name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The columns it receives, as `name: type`.
    pub input: Vec<String>,
    /// The columns it gives, as `name: type`.
    pub output: Vec<String>,
    /// `row_wise`, `aggregate` or `whole_input` (needs all its input at once: sort, limit).
    pub role: &'static str,
    /// Declared capabilities, each a short phrase (`splits line into words`, `keeps rows by
    /// word`, `counts by word`, `needs finish`, ...).
    pub capabilities: Vec<String>,
    /// What the step says of itself beyond its type (a plugin: its name and file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl LogicalPlan {
    /// The logical plan of built components.
    pub fn new(source_type: &str, source: &BuiltSource, stages: &[BuiltStage]) -> LogicalPlan {
        let mut capabilities = Vec::new();
        if source.raw_text_lines() {
            capabilities.push("raw_text_lines".to_owned());
        }
        if let BuiltSource::Stream(stream) = source {
            if stream.positioned() {
                capabilities.push("positioned".to_owned());
            }
        }
        let mut input = source.schema();
        let steps = stages
            .iter()
            .enumerate()
            .map(|(i, built)| {
                let name = |column: usize| {
                    input
                        .fields()
                        .get(column)
                        .map_or_else(|| format!("#{column}"), |f| f.name().clone())
                };
                let mut capabilities = Vec::new();
                let (role, detail) = match &built.stage.kind {
                    StageKind::Map(map) => {
                        capabilities.push("row_wise".to_owned());
                        match map.splits_text() {
                            Some(TextSplit::Words { column, .. }) => {
                                capabilities.push(format!("splits {} into words", name(column)))
                            }
                            Some(TextSplit::Separator {
                                column, separator, ..
                            }) => capabilities
                                .push(format!("splits {} at {separator:?}", name(column))),
                            None => {}
                        }
                        match map.per_value() {
                            Some(PerValue::Keeps { column }) => {
                                capabilities.push(format!("keeps rows by {}", name(column)))
                            }
                            Some(PerValue::Maps { column }) => {
                                capabilities.push(format!("maps each {} alone", name(column)))
                            }
                            None => {}
                        }
                        if map.needs_finish() {
                            capabilities.push("stateful: needs finish".to_owned());
                        }
                        ("row_wise", map.describe())
                    }
                    StageKind::Aggregate(aggregation) => {
                        capabilities.push("stateful".to_owned());
                        if let Some(keys) = aggregation.counts_by() {
                            let keys: Vec<String> = keys.iter().map(|k| name(*k)).collect();
                            capabilities.push(format!("counts by {}", keys.join(", ")));
                        }
                        if let Some(limit) = aggregation.memory_limit() {
                            capabilities.push(format!(
                                "memory limit {} (batch runs)",
                                bytesize::ByteSize(limit as u64).display().iec()
                            ));
                        }
                        let described = aggregation.windowed().map(|w| {
                            capabilities.push("event-time windows".to_owned());
                            let watermark = w.watermark.map_or(String::new(), |d| {
                                format!(", watermark {}", humantime::format_duration(d))
                            });
                            format!("windows of {} on {}{watermark}", w.window, w.column)
                        });
                        ("aggregate", described)
                    }
                    StageKind::Global(global) => {
                        if let Some(rows) = global.first_rows() {
                            capabilities.push(format!("keeps the first {rows} rows"));
                        }
                        if global.order_independent() {
                            capabilities.push("output order independent of input order".into());
                        }
                        ("whole_input", None)
                    }
                };
                let node = StepNode {
                    // The step's place in the file (a Spark run plans only the steps after
                    // those Spark ran).
                    step: built
                        .label
                        .split(' ')
                        .next()
                        .map_or_else(|| format!("transforms.{i}"), str::to_owned),
                    type_name: built.type_name.to_owned(),
                    input: crate::data::columns(&input),
                    output: crate::data::columns(&built.stage.output),
                    role,
                    capabilities,
                    detail,
                };
                input = built.stage.output.clone();
                node
            })
            .collect();
        LogicalPlan {
            source: SourceNode {
                type_name: source_type.to_owned(),
                columns: crate::data::columns(&source.schema()),
                input: match source {
                    BuiltSource::Batch(_) => "bounded",
                    BuiltSource::Stream(_) => "unbounded",
                },
                capabilities,
            },
            steps,
        }
    }
}

/// How the pipeline runs: operators in order, each covering some steps.
#[derive(Debug, Clone, Serialize)]
pub struct PhysicalPlan {
    /// The operators, from the scan to the last step.
    pub operators: Vec<Operator>,
    /// The rules that rewrote the plan (empty with `--no-fusion`).
    pub rules_applied: Vec<&'static str>,
    /// The kernel that replaces steps, when a rule chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// A batch run whose rows go to the sinks as they are produced (no aggregation, no sort).
    pub streams_to_sinks: bool,
}

/// One operator of the physical plan: how some steps run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Operator {
    /// What runs: `scan`, `row_wise`, `word_count_kernel`, `hash_aggregate`, ...
    pub name: &'static str,
    /// The steps it runs (indices into `transforms`).
    pub steps: Vec<usize>,
    /// Where and how often it runs.
    pub runs: &'static str,
}

impl PhysicalPlan {
    /// The steps a kernel runs in place of their own code.
    pub fn fused_steps(&self) -> Vec<usize> {
        self.fusion.as_ref().map_or_else(Vec::new, Fusion::steps)
    }
}
