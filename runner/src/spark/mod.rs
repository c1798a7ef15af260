//! The Spark engine: the same pipeline file run on a Spark cluster through Spark Connect
//! (Spark 3.4+'s gRPC protocol: an unresolved DataFrame plan goes to the cluster, Arrow
//! batches come back).
//!
//! The translation starts from the built pipeline (the plan's components), never from YAML:
//! the source and each step describe themselves as DataFrame operations (`BatchSource::spark`,
//! `MapTransform::spark`, ...), keeping runner's semantics exactly (`words.rs`,
//! `crate::expr`'s translation). The longest prefix of steps that translates runs on Spark and
//! must include the aggregation (what comes back is then small); the steps after it (a plugin,
//! say) and the sinks run here on the result, through the ordinary batch driver: the run
//! summary, the event bus and the sinks work as for any input.

pub mod connect;
pub mod frame;
pub mod result;
pub mod stream;
pub mod words;

use serde::{Deserialize, Serialize};

pub use connect::Remote;
pub use frame::{Frame, MASTODON_REFUSAL, NOT_TRANSLATED, SOURCE_NOT_TRANSLATED};

use crate::config::LoadedPipeline;
use crate::error::{Error, Result};
use crate::exec::BuiltPipeline;
use crate::sources::BuiltSource;
use crate::transforms::StageKind;

/// Rows a Spark result may have by default before the run fails rather than fill memory.
pub const DEFAULT_MAX_COLLECT_ROWS: u64 = 1_000_000;

/// Which engine runs the pipeline.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// runner's own engine, on this machine.
    #[default]
    Local,
    /// A Spark cluster, through Spark Connect.
    Spark,
}

/// `engine:` in a pipeline file: `{type: spark, remote: "sc://host:15002"}`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// `local` (default) or `spark`. `--engine` overrides it.
    #[serde(rename = "type", default)]
    pub kind: EngineKind,
    /// The Spark Connect address, `sc://host:15002` (PySpark's form: `/;token=...;use_ssl=true`
    /// may follow). `--remote` overrides it; without either, `SPARK_REMOTE` is read.
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub remote: Option<String>,
    /// The most rows Spark's result may have (default 1,000,000): past it the run fails with
    /// a clear error rather than exhausting this machine's memory.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_collect_rows: Option<u64>,
}

/// Where and how a pipeline runs on Spark.
#[derive(Debug, Clone)]
pub struct SparkSettings {
    /// The Spark Connect server, parsed from `--remote`, `engine.remote` or `SPARK_REMOTE`.
    pub remote: Remote,
    /// The most rows Spark's result may have (`engine.max_collect_rows`, default 1,000,000); past
    /// it the run fails.
    pub max_collect_rows: u64,
}

/// Decides the engine: `--engine` over `engine.type`; `--remote` alone means Spark. For Spark,
/// the address is `--remote`, else `engine.remote`, else `SPARK_REMOTE` (as PySpark reads it).
pub fn choose(
    engine: Option<EngineKind>,
    remote: Option<&str>,
    config: Option<&EngineConfig>,
) -> Result<Option<SparkSettings>> {
    let kind = engine.unwrap_or(match (remote, config) {
        (Some(_), _) => EngineKind::Spark,
        (None, Some(config)) => config.kind,
        (None, None) => EngineKind::Local,
    });
    if kind == EngineKind::Local {
        return Ok(None);
    }
    let from_env = std::env::var("SPARK_REMOTE").ok().filter(|v| !v.is_empty());
    let url = remote
        .map(str::to_owned)
        .or_else(|| config.and_then(|c| c.remote.clone()))
        .or(from_env)
        .ok_or_else(|| {
            Error::invalid(
                "the Spark engine needs the address of a Spark Connect server: --remote sc://host:15002, `engine: {type: spark, remote: ...}` in the file, or SPARK_REMOTE",
            )
        })?;
    let remote = Remote::parse(&url).map_err(|e| Error::invalid(format!("engine.remote: {e}")))?;
    let max_collect_rows = config
        .and_then(|c| c.max_collect_rows)
        .unwrap_or(DEFAULT_MAX_COLLECT_ROWS);
    if max_collect_rows == 0 {
        return Err(Error::invalid("engine.max_collect_rows must be at least 1"));
    }
    Ok(Some(SparkSettings {
        remote,
        max_collect_rows,
    }))
}

/// What runs where, for `runner plan` and the run's log.
#[derive(Debug, Clone, Serialize)]
pub struct SparkPlan {
    /// The address (never with its token).
    pub remote: String,
    /// The DataFrame program sent, as PySpark-like text.
    pub program: String,
    /// The steps Spark runs (`transforms.N`), after reading the source.
    pub on_spark: Vec<String>,
    /// The steps run here on Spark's result, then the sinks.
    pub locally: Vec<String>,
    /// Things to know (a local path every executor must see).
    pub warnings: Vec<String>,
}

/// The translation: the frame Spark runs and how many leading steps it covers.
struct Translation {
    frame: Frame,
    steps: usize,
}

/// Translates the source and the longest prefix of steps; fails (exit 2) when that prefix
/// does not reach the aggregation, naming the step and why. `unbuilt`: the first step
/// `runner plan` left unbuilt (a plugin).
fn translate(
    loaded: &LoadedPipeline,
    pipeline: &BuiltPipeline,
    unbuilt: Option<usize>,
) -> Result<Translation> {
    let config = &loaded.config;
    let refuse = |what: String, location: &serde_saphyr::Location, why: &str| {
        Error::invalid(format!(
            "{}: {what} cannot run on Spark: {why}",
            loaded.at(location)
        ))
    };
    let mut frame = pipeline.source.spark().map_err(|why| {
        refuse(
            format!("source ({})", config.source.value.type_name()),
            &config.source.referenced,
            &why,
        )
    })?;
    let last_aggregate = pipeline
        .stages
        .iter()
        .rposition(|s| matches!(s.stage.kind, StageKind::Aggregate(_)));
    // A stream's steps after the aggregation run here on each epoch's result (Spark's
    // streaming sorts and limits take only some output modes).
    let translatable = match (frame.streaming(), last_aggregate) {
        (true, Some(aggregate)) => aggregate + 1,
        _ => pipeline.stages.len(),
    };
    let mut steps = 0;
    let mut refusal = None;
    for (i, built) in pipeline.stages.iter().enumerate().take(translatable) {
        let translated = match &built.stage.kind {
            StageKind::Map(map) => map.spark(frame.clone()),
            StageKind::Aggregate(aggregation) => aggregation.spark(frame.clone()),
            StageKind::Global(global) => global.spark(frame.clone()),
        };
        match translated {
            Ok(next) => {
                frame = next;
                steps = i + 1;
            }
            Err(why) => {
                refusal = Some((i, why));
                break;
            }
        }
    }
    // A step `runner plan` did not build loads native code (a plugin).
    if refusal.is_none() {
        if let Some(first) = unbuilt {
            refusal = Some((first, crate::transforms::plugin::SPARK_REFUSAL.to_owned()));
        }
    }
    // Everything up to the aggregation runs on Spark, or nothing does; with no aggregation,
    // every step does (a step run here would need every row here).
    let needed = match (last_aggregate, unbuilt) {
        (Some(aggregate), _) => aggregate + 1,
        (None, Some(first)) => first + 1,
        (None, None) => pipeline.stages.len(),
    };
    if let Some((i, why)) = refusal.filter(|_| steps < needed) {
        let step = &config.transforms[i];
        // `runner plan` builds no step from the first plugin on: `i` may be past the built.
        let aggregation = pipeline
            .stages
            .get(i)
            .is_some_and(|s| matches!(s.stage.kind, StageKind::Aggregate(_)));
        let position = match last_aggregate {
            Some(aggregate) if aggregate == i => "(the aggregation)",
            Some(_) if aggregation => "before the last aggregation",
            Some(_) => "before the aggregation",
            None => "in a pipeline without an aggregation",
        };
        return Err(refuse(
            format!("transforms.{i} ({}) {position}", step.value.type_name()),
            &step.referenced,
            &why,
        ));
    }
    Ok(Translation { frame, steps })
}

/// `runner plan --engine spark`: what would run where, reading no data.
pub fn plan(
    loaded: &LoadedPipeline,
    pipeline: &BuiltPipeline,
    unbuilt: Option<usize>,
    settings: &SparkSettings,
) -> Result<SparkPlan> {
    let translation = translate(loaded, pipeline, unbuilt)?;
    Ok(describe(loaded, &translation, settings))
}

fn describe(
    loaded: &LoadedPipeline,
    translation: &Translation,
    settings: &SparkSettings,
) -> SparkPlan {
    let steps = |range: std::ops::Range<usize>| -> Vec<String> {
        range
            .map(|i| {
                format!(
                    "transforms.{i} ({})",
                    loaded.config.transforms[i].value.type_name()
                )
            })
            .collect()
    };
    SparkPlan {
        remote: settings.remote.to_string(),
        program: translation.frame.text(),
        on_spark: steps(0..translation.steps),
        locally: steps(translation.steps..loaded.config.transforms.len()),
        warnings: translation.frame.warnings().to_vec(),
    }
}

/// A pipeline made ready to run on Spark.
pub struct Prepared {
    /// What `runner plan` shows: the program sent to Spark, and which steps run where.
    pub plan: SparkPlan,
    /// Stream mode: the query to start (the pipeline then runs through `stream::run`).
    pub stream: Option<stream::SparkStream>,
}

/// Makes `pipeline` run on Spark: the translated steps leave the local plan, the steps after
/// them and the sinks stay. A batch pipeline's source becomes Spark's result; a stream's query
/// is returned, to run with `stream::run`.
pub fn prepare(
    loaded: &LoadedPipeline,
    pipeline: &mut BuiltPipeline,
    settings: &SparkSettings,
) -> Result<Prepared> {
    let translation = translate(loaded, pipeline, None)?;
    // Checked first, downloaded second: a refused pipeline downloads nothing.
    if let BuiltSource::Batch(source) = &pipeline.source {
        source.fetch_missing()?;
    }
    let described = describe(loaded, &translation, settings);
    let schema = match translation.steps {
        0 => pipeline.source.schema(),
        n => pipeline.stages[n - 1].stage.output.clone(),
    };
    if let Some(stream) = &pipeline.stream {
        let at = &loaded.display_name;
        if !translation.frame.streaming() {
            return Err(Error::invalid(format!(
                "{at}: this source does not stream on Spark"
            )));
        }
        if stream.checkpoint.is_some() {
            return Err(Error::invalid(format!(
                "{at}: `checkpoint:` is not supported on Spark yet (Spark keeps a query's state itself); remove it or run with --engine local"
            )));
        }
        let aggregates = pipeline.stages[..translation.steps]
            .iter()
            .any(|s| matches!(s.stage.kind, StageKind::Aggregate(_)));
        if !aggregates || stream.output_mode == crate::config::OutputMode::Append {
            return Err(Error::invalid(format!(
                "{at}: a stream on Spark needs an aggregation, in `complete` or `update` output mode"
            )));
        }
        let query = stream::SparkStream {
            relation: translation.frame.relation().clone(),
            remote: settings.remote.clone(),
            max_rows: settings.max_collect_rows,
            schema,
            change: crate::exec::stream::result_change(
                &pipeline.stages[..translation.steps],
                stream.output_mode,
            ),
        };
        pipeline.stages.drain(..translation.steps);
        pipeline.logical =
            crate::plan::LogicalPlan::new("spark", &pipeline.source, &pipeline.stages);
        pipeline.plan = crate::plan::rules::physical(&pipeline.source, &pipeline.stages, false);
        return Ok(Prepared {
            plan: described,
            stream: Some(query),
        });
    }
    let result = result::SparkResult::new(
        translation.frame.relation().clone(),
        settings.remote.clone(),
        schema,
        settings.max_collect_rows,
    );
    pipeline.source = BuiltSource::Batch(Box::new(result));
    pipeline.stages.drain(..translation.steps);
    pipeline.logical = crate::plan::LogicalPlan::new("spark", &pipeline.source, &pipeline.stages);
    pipeline.plan = crate::plan::rules::physical(&pipeline.source, &pipeline.stages, true);
    Ok(Prepared {
        plan: described,
        stream: None,
    })
}
