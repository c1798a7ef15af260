//! Wiring: turns a loaded pipeline file into built components (validating every step against
//! the schema flowing into it) and runs them. Only this module knows how the parts connect.

pub mod batch;
pub mod fused;

use arrow_schema::SchemaRef;

use crate::config::{LoadedPipeline, Mode};
use crate::error::{Error, Result};
use crate::sinks::{Sink, SinkContext};
use crate::sources::{BatchSource, SourceContext};
use crate::transforms::{BuildContext, Stage};

/// A transform ready to run, with what messages need to name it.
pub struct BuiltStage {
    /// `transforms.N (type)`, for messages.
    pub label: String,
    pub stage: Stage,
}

/// A validated pipeline, ready to run.
pub struct BuiltPipeline {
    pub name: String,
    pub source: Box<dyn BatchSource>,
    pub stages: Vec<BuiltStage>,
    /// The schema the sinks receive.
    pub output: SchemaRef,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Worker threads (already resolved: never 0).
    pub cores: usize,
    /// Leading stages that run as one fused loop, when the pipeline has that shape.
    pub fusion: Option<fused::Fusion>,
}

/// Resolves `cores: 0` to the number of CPUs.
pub fn resolve_cores(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Builds every component, checking each step against the columns it receives. Reads no data.
pub fn build(loaded: &LoadedPipeline, cores: Option<usize>) -> Result<BuiltPipeline> {
    let config = &loaded.config;
    if config.mode == Mode::Stream {
        return Err(Error::invalid(format!(
            "{}: `mode: stream` is not available in this version of runner; use `mode: batch`",
            loaded.display_name
        )));
    }
    let base_dir = loaded.base_dir.as_path();
    let source = config
        .source
        .value
        .builder()
        .build(&SourceContext { base_dir })
        .map_err(|e| {
            Error::invalid(format!(
                "{}: source ({}): {e}",
                loaded.at(&config.source.referenced),
                config.source.value.type_name()
            ))
        })?;

    let mut schema = source.schema();
    let mut stages = Vec::new();
    for (index, step) in config.transforms.iter().enumerate() {
        let label = format!("transforms.{index} ({})", step.value.type_name());
        let stage = step
            .value
            .builder()
            .build(&BuildContext {
                input: &schema,
                base_dir,
            })
            .map_err(|e| {
                Error::invalid(format!("{}: {label}: {e}", loaded.at(&step.referenced)))
            })?;
        schema = stage.output.clone();
        stages.push(BuiltStage { label, stage });
    }

    let mut sinks = Vec::new();
    for (index, sink) in config.sinks.iter().enumerate() {
        let built = sink
            .value
            .builder()
            .build(&SinkContext {
                input: &schema,
                base_dir,
            })
            .map_err(|e| {
                Error::invalid(format!(
                    "{}: sinks.{index} ({}): {e}",
                    loaded.at(&sink.referenced),
                    sink.value.type_name()
                ))
            })?;
        sinks.push(built);
    }

    let fusion = fused::detect(&stages, &source.schema());
    Ok(BuiltPipeline {
        fusion,
        name: config.name.clone(),
        source,
        stages,
        output: schema,
        sinks,
        cores: resolve_cores(cores.unwrap_or(config.cores)),
    })
}
