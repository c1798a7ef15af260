//! `runner plan FILE`: the pipeline as it will run — resolved paths, the source, each
//! transform with the columns it takes and gives, the physical plan's operators (which steps a
//! kernel runs), the sinks, cores, trigger and schedule — built exactly as `runner run` builds
//! it, without reading any data. The JSON form carries the logical and physical plans whole.

use serde::Serialize;

use crate::config::{LoadedPipeline, Mode, OutputMode};
use crate::exec::stream::Trigger;
use crate::exec::BuiltPipeline;
use crate::plan::{LogicalPlan, PhysicalPlan};
use crate::registry::SourceConfig;

/// What `runner plan` shows of a pipeline, as text or JSON.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The pipeline's `name`.
    pub pipeline: String,
    /// The pipeline file, as messages name it.
    pub file: String,
    /// `batch` or `stream`.
    pub mode: &'static str,
    /// Worker threads the run would use (resolved: never 0).
    pub cores: usize,
    /// The source and the columns it gives.
    pub source: PlanSource,
    /// Each transform, in pipeline order.
    pub transforms: Vec<PlanStage>,
    /// Each sink, in pipeline order.
    pub sinks: Vec<PlanSink>,
    /// Stream mode: when epochs run, and what sinks receive.
    pub trigger: Option<String>,
    /// Stream mode: what sinks receive each epoch (`complete`, `update`, `append`); `None` in batch
    /// mode.
    pub output_mode: Option<&'static str>,
    /// Stream mode: where the checkpoint is kept and how often it is saved.
    pub checkpoint: Option<String>,
    /// Stream mode: when the stream stops by itself (`stop_after`, `max_epochs`).
    pub stops: Option<String>,
    /// When `runner schedule` runs the pipeline; `None` without `schedule:`.
    pub schedule: Option<PlanSchedule>,
    /// Where the run summary is written, resolved; `None` without `summary:`.
    pub summary: Option<String>,
    /// The pipeline as typed nodes with their declared capabilities.
    pub logical: LogicalPlan,
    /// How it runs: the operators the rules made.
    pub physical: PhysicalPlan,
    /// With `--engine spark`: what Spark runs and what runs here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spark: Option<crate::spark::SparkPlan>,
}

/// The source in a plan.
#[derive(Debug, Serialize)]
pub struct PlanSource {
    /// The source's YAML `type:` name.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Where it reads, with paths resolved.
    pub reads: String,
    /// The columns it gives, as `name: type`.
    pub columns: Vec<String>,
}

/// One transform in a plan.
#[derive(Debug, Serialize)]
pub struct PlanStage {
    /// Its place in the pipeline file (`transforms.2`).
    pub step: String,
    /// The transform's YAML `type:` name.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// The columns it receives, as `name: type`; empty when not checked (after an unloaded plugin).
    pub input: Vec<String>,
    /// The columns it gives, as `name: type`; empty when not checked (after an unloaded plugin).
    pub output: Vec<String>,
    /// How the stage is executed: per batch on every worker, per worker then merged, or once
    /// on the whole result.
    pub runs: &'static str,
    /// Set when a kernel runs the stage.
    pub fused: Option<&'static str>,
    /// What the stage says of itself beyond its type (a plugin: its name and file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One sink in a plan.
#[derive(Debug, Serialize)]
pub struct PlanSink {
    /// Its place in the pipeline file (`sinks.0`).
    pub step: String,
    /// The sink's YAML `type:` name.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// The file it writes, resolved; `None` for a sink that writes no file (stdout, socket,
    /// PostgreSQL).
    pub writes: Option<String>,
}

/// The pipeline's `schedule:` in a plan.
#[derive(Debug, Serialize)]
pub struct PlanSchedule {
    /// The cron expression as written (with its `CRON_TZ=` prefix, if any).
    pub expression: String,
    /// The time zone it runs in: an IANA name, or `local time`.
    pub zone: String,
    /// The next five run times.
    pub next: Vec<String>,
}

/// The plan of a built pipeline.
/// The plan of a built pipeline; `unbuilt`: the first step left unbuilt (`exec::build_for_plan`
/// stops before a plugin, whose library `runner plan` does not load).
pub fn plan(loaded: &LoadedPipeline, pipeline: &BuiltPipeline, unbuilt: Option<usize>) -> Plan {
    let config = &loaded.config;
    let source_schema = pipeline.source.schema();
    let fused = pipeline.plan.fused_steps();
    let kernel = pipeline.plan.fusion.as_ref().map(|f| f.kernel.describe());
    let mut input = source_schema.clone();
    let mut transforms: Vec<PlanStage> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(i, built)| {
            let operator = pipeline
                .plan
                .operators
                .iter()
                .find(|o| o.steps.contains(&i));
            let stage = PlanStage {
                step: format!("transforms.{i}"),
                type_name: built.type_name,
                input: crate::data::columns(&input),
                output: crate::data::columns(&built.stage.output),
                runs: match &pipeline.plan.fusion {
                    Some(f) if f.per_value.contains(&i) => {
                        "once per distinct piece, after counting"
                    }
                    _ => operator.map_or("", |o| o.runs),
                },
                fused: if fused.contains(&i) { kernel } else { None },
                // What the step says of itself, as the logical plan holds it.
                detail: pipeline.logical.steps.get(i).and_then(|s| s.detail.clone()),
            };
            input = built.stage.output.clone();
            stage
        })
        .collect();
    if let Some(first) = unbuilt {
        // Their columns come from the plugin's library, which `plan` does not load.
        for (i, step) in config.transforms.iter().enumerate().skip(first) {
            let builder = step.value.builder();
            transforms.push(PlanStage {
                step: format!("transforms.{i}"),
                type_name: step.value.type_name(),
                input: Vec::new(),
                output: Vec::new(),
                runs: "not checked: runner plan loads no plugin (runner validate does)",
                fused: None,
                detail: builder.loads_code().map(|path| {
                    format!(
                        "plugin from {} (not loaded)",
                        loaded.resolve(path).display()
                    )
                }),
            });
        }
    }
    let sinks = config
        .sinks
        .iter()
        .enumerate()
        .map(|(i, sink)| PlanSink {
            step: format!("sinks.{i}"),
            type_name: sink.value.type_name(),
            writes: sink
                .value
                .builder()
                .output_path()
                .map(|p| loaded.resolve(p).display().to_string()),
        })
        .collect();
    let (trigger, output_mode) = match &pipeline.stream {
        Some(stream) => (
            Some(match stream.trigger {
                Trigger::Continuous => "continuous (an epoch as soon as rows arrive)".to_owned(),
                Trigger::ProcessingTime(every) => {
                    format!("processing_time {}", humantime::format_duration(every))
                }
                Trigger::AvailableNow => "available_now (until the source ends)".to_owned(),
            }),
            Some(match stream.output_mode {
                // Decided by the steps after the plugin when none is written.
                _ if unbuilt.is_some() && config.output_mode.is_none() => {
                    "decided by the steps after the plugin"
                }
                OutputMode::Complete => "complete",
                OutputMode::Update => "update",
                OutputMode::Append => "append",
            }),
        ),
        None => (None, None),
    };
    let schedule = config.schedule.as_ref().map(|s| PlanSchedule {
        expression: s.as_str().to_owned(),
        zone: s.zone_name(),
        next: s
            .upcoming(chrono::Utc::now(), 5)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect(),
    });
    Plan {
        pipeline: pipeline.name.clone(),
        file: loaded.display_name.clone(),
        mode: match config.mode {
            Mode::Batch => "batch",
            Mode::Stream => "stream",
        },
        cores: pipeline.cores,
        source: PlanSource {
            type_name: config.source.value.type_name(),
            reads: reads(loaded),
            columns: crate::data::columns(&source_schema),
        },
        transforms,
        sinks,
        trigger,
        output_mode,
        stops: pipeline.stream.as_ref().and_then(|s| {
            let mut stops = Vec::new();
            if let Some(after) = s.stop_after {
                stops.push(format!("after {}", humantime::format_duration(after)));
            }
            if let Some(epochs) = s.max_epochs {
                stops.push(format!("after {epochs} epoch(s)"));
            }
            (!stops.is_empty()).then(|| stops.join(" or "))
        }),
        checkpoint: pipeline
            .stream
            .as_ref()
            .and_then(|s| s.checkpoint.as_ref())
            .map(|c| {
                let outlook = crate::exec::checkpoint::Checkpoint::new(
                    c.dir.clone(),
                    c.every,
                    &config.name,
                    c.identity.clone(),
                )
                .outlook();
                format!("{} every {} epoch(s); {outlook}", c.dir.display(), c.every)
            }),
        schedule,
        summary: config
            .summary
            .as_deref()
            .map(|p| loaded.resolve(p).display().to_string()),
        logical: pipeline.logical.clone(),
        physical: pipeline.plan.clone(),
        spark: None,
    }
}

/// What the source reads, with paths resolved against the pipeline file.
pub(crate) fn reads(loaded: &LoadedPipeline) -> String {
    match &loaded.config.source.value {
        SourceConfig::File(file) => {
            let path = loaded.resolve(&file.path);
            let state = match std::fs::metadata(&path) {
                _ if path.as_os_str() == "-" => "standard input".to_owned(),
                Ok(meta) if meta.is_dir() => "a directory".to_owned(),
                Ok(meta) => format!("{} bytes", meta.len()),
                Err(_) if path.to_string_lossy().contains(['*', '?', '[']) => "a glob".to_owned(),
                Err(_) => match &file.fetch {
                    Some(fetch) => format!("missing; downloaded from {} first", fetch.url),
                    None => "missing".to_owned(),
                },
            };
            format!("{} ({state})", path.display())
        }
        SourceConfig::Socket(socket) => format!(
            "{:?} {}:{}",
            socket.mode,
            socket.host.as_deref().unwrap_or("localhost"),
            socket.port
        )
        .to_lowercase(),
        SourceConfig::Mastodon(mastodon) => {
            format!("{} stream `{}`", mastodon.instance, mastodon.stream)
        }
        SourceConfig::Replay(replay) => {
            format!(
                "{} (a recorded stream)",
                loaded.resolve(&replay.path).display()
            )
        }
    }
}

impl Plan {
    /// The plan of a run on Spark: the steps Spark runs say so (no local kernel runs them).
    pub fn on_spark(&mut self, spark: crate::spark::SparkPlan) {
        for stage in &mut self.transforms {
            let on_spark = spark
                .on_spark
                .iter()
                .any(|s| s.split(' ').next() == Some(stage.step.as_str()));
            stage.fused = None;
            stage.runs = if on_spark {
                "on Spark"
            } else {
                "here, on Spark's result"
            };
        }
        self.spark = Some(spark);
    }

    /// The plan as text for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Column names and paths come from the data and the command line.
        let mut line = |text: String| {
            // One line each: a newline in a name must not make a line of its own.
            let text = text.replace('\n', "\\n");
            out.push_str(&crate::error::escape_controls(&text));
            out.push('\n');
        };
        line(format!("pipeline  {} ({})", self.pipeline, self.file));
        match &self.spark {
            None => line(format!("mode      {}, {} core(s)", self.mode, self.cores)),
            Some(spark) => {
                line(format!(
                    "engine    Spark Connect at {} ({} mode; Spark decides the parallelism)",
                    spark.remote, self.mode
                ));
                let mut on_spark = vec!["source".to_owned()];
                on_spark.extend(spark.on_spark.iter().cloned());
                line(format!("on Spark  {}", on_spark.join(", ")));
                // Line by line: `line` writes a line break inside a text as `\n`.
                for program_line in spark.program.lines() {
                    line(format!("          {program_line}"));
                }
                let mut here = spark.locally.clone();
                here.push("sinks".to_owned());
                line(format!("here      {}, on Spark's result", here.join(", ")));
                for warning in &spark.warnings {
                    line(format!("warning   {warning}"));
                }
            }
        }
        if let Some(trigger) = &self.trigger {
            line(format!(
                "trigger   {trigger}, output mode {}",
                self.output_mode.unwrap_or("?")
            ));
        }
        if let Some(stops) = &self.stops {
            line(format!(
                "stops     {stops}, at the end of the source, or on SIGTERM"
            ));
        }
        if let Some(checkpoint) = &self.checkpoint {
            line(format!("checkpoint {checkpoint}"));
        }
        if let Some(schedule) = &self.schedule {
            line(format!(
                "schedule  `{}` ({}), next {}",
                schedule.expression,
                schedule.zone,
                schedule.next.first().map_or("never", String::as_str)
            ));
        }
        if let Some(summary) = &self.summary {
            line(format!("summary   {summary}"));
        }
        line(format!(
            "source    {}: {}",
            self.source.type_name, self.source.reads
        ));
        line(format!("          -> {}", self.source.columns.join(", ")));
        for stage in &self.transforms {
            line(format!(
                "{:<16}{} [{}{}]",
                stage.step,
                stage.type_name,
                stage.runs,
                stage
                    .fused
                    .map_or(String::new(), |f| format!("; in the {f}"))
            ));
            if let Some(detail) = &stage.detail {
                line(format!("                {detail}"));
            }
            if !stage.output.is_empty() {
                line(format!(
                    "                {} -> {}",
                    stage.input.join(", "),
                    stage.output.join(", ")
                ));
            }
        }
        let operators: Vec<String> = self
            .physical
            .operators
            .iter()
            .map(|o| match o.steps.as_slice() {
                [] => o.name.to_owned(),
                [one] => format!("{}(transforms.{one})", o.name),
                [first, .., last] => format!("{}(transforms.{first}..{last})", o.name),
            })
            .collect();
        if self.spark.is_none() {
            line(format!("operators {}", operators.join(" -> ")));
        }
        if let Some(fusion) = self
            .physical
            .fusion
            .as_ref()
            .filter(|_| self.spark.is_none())
        {
            let steps: Vec<String> = fusion
                .steps()
                .iter()
                .map(|i| format!("transforms.{i}"))
                .collect();
            line(format!(
                "fused     {} run as one {} from input bytes (--no-fusion runs them one by one)",
                steps.join(", "),
                fusion.kernel.describe()
            ));
        }
        for sink in &self.sinks {
            line(format!(
                "{:<16}{}{}",
                sink.step,
                sink.type_name,
                sink.writes
                    .as_ref()
                    .map_or(String::new(), |w| format!(" -> {w}"))
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_columns_fusion_and_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "name: t\nsource:\n  type: file\n  path: in.txt\ntransforms:\n  - type: tokenize\n  - type: group_count\n    by: word\n  - type: sort\n    by: count desc\nsinks:\n  - type: csv\n    path: out/c.csv\n",
        )
        .unwrap();
        let loaded = crate::config::load(&path, &[]).unwrap();
        let built = crate::exec::build(&loaded, Some(2)).unwrap();
        let plan = plan(&loaded, &built, None);
        assert_eq!(plan.cores, 2);
        assert_eq!(plan.transforms[0].input, ["line: text"]);
        assert_eq!(plan.transforms[1].output, ["word: text", "count: integer"]);
        assert!(plan.transforms[0].fused.is_some() && plan.transforms[1].fused.is_some());
        assert!(plan.transforms[2].fused.is_none());
        assert!(
            plan.source.reads.ends_with("in.txt (missing)"),
            "{}",
            plan.source.reads
        );
        assert_eq!(
            plan.sinks[0].writes.as_deref(),
            Some(dir.path().join("out/c.csv").to_str().unwrap())
        );
        let text = plan.to_text();
        assert!(
            text.contains("fused     transforms.0, transforms.1 run as one word-count kernel"),
            "{text}"
        );
    }
}
