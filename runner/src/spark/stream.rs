//! A stream on Spark: `readStream` (the socket source) → the translated steps up to the
//! aggregation → `writeStream.format("memory").outputMode("complete")` with the pipeline's
//! trigger, started through Spark Connect. runner follows the query's progress (Spark's
//! `StreamingQueryProgress`, asked for every 200 ms) and, for every finished batch, reads the
//! memory table (the whole result in complete mode), runs the steps after the aggregation here,
//! and hands the rows to the sinks as epoch `batchId`, publishing the epoch's progress from
//! Spark's figures. `update` mode: the rows whose values changed since the previous batch
//! (what Spark's update mode emits for a count). Ctrl-C, SIGTERM, `stop_after` and
//! `max_epochs` stop the query; a query that fails ends the run with Spark's message.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use runner_spark_connect_proto as pb;

use super::connect::{Remote, Session};
use crate::config::OutputMode;
use crate::error::{Error, Result};
use crate::events::{Bus, EpochProgress, Event};
use crate::exec::stream::{StreamReport, Trigger};
use crate::exec::BuiltPipeline;
use crate::transforms::StageKind;

/// How often the query's progress is asked for.
const POLL: Duration = Duration::from_millis(200);

/// A streaming query to start on Spark.
pub struct SparkStream {
    /// The streaming frame, up to and including the aggregation.
    pub relation: pb::Relation,
    /// The Spark Connect server that runs the query.
    pub remote: Remote,
    /// The most rows one epoch's result may have (`engine.max_collect_rows`); past it the run
    /// fails.
    pub max_rows: u64,
    /// The aggregation's output columns.
    pub schema: SchemaRef,
    /// What each epoch's rows are to the result so far (by the local plan's aggregation).
    pub change: crate::events::ResultChange,
}

/// One finished batch, from Spark's progress JSON.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    batch: u64,
    input_rows: u64,
    duration: Duration,
    state_rows: usize,
}

fn progress_of(json: &str) -> Option<Progress> {
    tracing::debug!(progress = json, "Spark progress");
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(Progress {
        batch: value.get("batchId")?.as_u64()?,
        // Spark's JSON has it per source (PySpark's `numInputRows` is their sum).
        input_rows: value
            .get("sources")
            .and_then(|s| s.as_array())
            .map_or(0, |sources| {
                sources
                    .iter()
                    .filter_map(|s| s.get("numInputRows").and_then(|n| n.as_u64()))
                    .sum()
            }),
        duration: Duration::from_millis(
            value
                .pointer("/durationMs/triggerExecution")
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
        ),
        state_rows: value
            .pointer("/stateOperators/0/numRowsTotal")
            .and_then(|v| v.as_u64())
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

/// The streaming query, started.
struct Query {
    session: Session,
    id: pb::StreamingQueryInstanceId,
    /// The memory table, read as `spark.table(name)`.
    table: pb::Relation,
}

impl Query {
    fn ask(
        &self,
        command: pb::streaming_query_command::Command,
    ) -> Result<Option<pb::streaming_query_command_result::ResultType>> {
        let responses = self
            .session
            .command(pb::command::CommandType::StreamingQueryCommand(
                pb::StreamingQueryCommand {
                    query_id: Some(self.id.clone()),
                    command: Some(command),
                },
            ))?;
        Ok(responses.into_iter().find_map(|r| match r.response_type {
            Some(pb::execute_plan_response::ResponseType::StreamingQueryCommandResult(result)) => {
                result.result_type
            }
            _ => None,
        }))
    }

    /// The finished batches Spark remembers, oldest first.
    fn progress(&self) -> Result<Vec<Progress>> {
        use pb::streaming_query_command_result::ResultType;
        match self.ask(pb::streaming_query_command::Command::RecentProgress(true))? {
            Some(ResultType::RecentProgress(recent)) => Ok(recent
                .recent_progress_json
                .iter()
                .filter_map(|json| progress_of(json))
                .collect()),
            _ => Err(Error::runtime(
                "Spark did not say how its streaming query is progressing",
            )),
        }
    }

    /// `Err` with Spark's message when the query stopped on an error; `Ok(false)` when it
    /// stopped otherwise.
    fn active(&self) -> Result<bool> {
        use pb::streaming_query_command_result::ResultType;
        if let Some(ResultType::Status(status)) =
            self.ask(pb::streaming_query_command::Command::Status(true))?
        {
            if status.is_active {
                return Ok(true);
            }
        }
        if let Some(ResultType::Exception(exception)) =
            self.ask(pb::streaming_query_command::Command::Exception(true))?
        {
            if let Some(message) = exception.exception_message {
                let first = message.lines().next().unwrap_or_default().to_owned();
                return Err(Error::runtime(format!(
                    "Spark's streaming query failed: {}",
                    crate::error::escape_controls(&first)
                )));
            }
        }
        Ok(false)
    }

    fn stop(&self) -> Result<()> {
        self.ask(pb::streaming_query_command::Command::Stop(true))
            .map(|_| ())
    }
}

/// SIGINT/SIGTERM ask the run to stop (it stops the query, then ends); a second SIGINT exits.
fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    Some(()) = async { match terminate.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
                }
                if crate::cancel::requested() {
                    tracing::error!("interrupted again: exiting without stopping Spark's query");
                    std::process::exit(130);
                }
                tracing::info!("stopping: stopping Spark's streaming query");
                crate::cancel::request();
            }
        });
    });
}

/// Runs the stream on Spark until it stops; the query is stopped whatever happens.
pub fn run(pipeline: &mut BuiltPipeline, stream: &SparkStream, bus: &Bus) -> Result<StreamReport> {
    let settings = pipeline
        .stream
        .clone()
        .ok_or_else(|| Error::runtime("this pipeline is not a stream"))?;
    watch_signals();
    let started = Instant::now();
    bus.publish(Event::RunStarted {
        pipeline: pipeline.name.clone(),
        mode: "stream",
        cores: pipeline.cores,
    });
    bus.publish(Event::Planned {
        plan: pipeline.plan.clone(),
    });
    let session = Session::connect(&stream.remote)?;
    let name = format!("runner_{}", uuid::Uuid::new_v4().simple());
    use pb::write_stream_operation_start::Trigger as SparkTrigger;
    let trigger = match settings.trigger {
        Trigger::ProcessingTime(every) => Some(SparkTrigger::ProcessingTimeInterval(format!(
            "{} milliseconds",
            every.as_millis().max(1)
        ))),
        Trigger::AvailableNow => Some(SparkTrigger::AvailableNow(true)),
        Trigger::Continuous => None,
    };
    let responses = session.command(pb::command::CommandType::WriteStreamOperationStart(
        pb::WriteStreamOperationStart {
            input: Some(stream.relation.clone()),
            format: "memory".to_owned(),
            output_mode: "complete".to_owned(),
            query_name: name.clone(),
            trigger,
            ..Default::default()
        },
    ))?;
    let id = responses
        .into_iter()
        .find_map(|r| match r.response_type {
            Some(pb::execute_plan_response::ResponseType::WriteStreamOperationStartResult(
                started,
            )) => started.query_id,
            _ => None,
        })
        .ok_or_else(|| Error::runtime("Spark did not start the streaming query"))?;
    let query = Query {
        session,
        id,
        table: pb::Relation {
            common: None,
            rel_type: Some(pb::relation::RelType::Read(pb::Read {
                is_streaming: false,
                read_type: Some(pb::read::ReadType::NamedTable(pb::read::NamedTable {
                    unparsed_identifier: format!("`{name}`"),
                    options: Default::default(),
                })),
            })),
        },
    };
    tracing::info!(query = %name, "Spark's streaming query started");
    let followed = follow(pipeline, stream, &query, &settings, bus, started);
    let stopped = query.stop();
    let report = followed?;
    stopped?;
    Ok(report)
}

fn follow(
    pipeline: &mut BuiltPipeline,
    stream: &SparkStream,
    query: &Query,
    settings: &crate::exec::stream::StreamSettings,
    bus: &Bus,
    started: Instant,
) -> Result<StreamReport> {
    let deadline = settings.stop_after.and_then(|d| started.checked_add(d));
    let mut handled: Option<u64> = None;
    let mut previous: Option<RecordBatch> = None;
    let (mut epochs, mut rows_in, mut rows_out) = (0u64, 0u64, 0u64);
    let mut previous_fire = started;
    let reason;
    loop {
        if crate::cancel::requested() {
            reason = "interrupted";
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            reason = "stop_after reached";
            break;
        }
        if settings.max_epochs.is_some_and(|max| epochs >= max) {
            reason = "max_epochs reached";
            break;
        }
        let new: Vec<Progress> = query
            .progress()?
            .into_iter()
            .filter(|p| handled.is_none_or(|h| p.batch > h))
            .collect();
        let Some(mut latest) = new.last().cloned() else {
            if !query.active()? {
                reason = "the query stopped";
                break;
            }
            std::thread::sleep(POLL);
            continue;
        };
        // The table holds the latest batch's result: read it until no batch finished while
        // reading (then the rows are those of the batch they are numbered with).
        let mut input_rows: u64 = new.iter().map(|p| p.input_rows).sum();
        let mut result = super::result::collect(
            &query.session,
            &query.table,
            &stream.schema,
            stream.max_rows,
        )?;
        for _ in 0..3 {
            let after: Vec<Progress> = query
                .progress()?
                .into_iter()
                .filter(|p| p.batch > latest.batch)
                .collect();
            let Some(last) = after.last().cloned() else {
                break;
            };
            input_rows += after.iter().map(|p| p.input_rows).sum::<u64>();
            latest = last;
            result = super::result::collect(
                &query.session,
                &query.table,
                &stream.schema,
                stream.max_rows,
            )?;
        }
        handled = Some(latest.batch);
        let fired_at = Instant::now();
        let computing = Instant::now();
        let emitted = match settings.output_mode {
            OutputMode::Update => changed_rows(&result, previous.as_ref())?,
            _ => result.clone(),
        };
        previous = Some(result);
        let out = run_suffix(pipeline, emitted)?;
        let engine = latest.duration + computing.elapsed();
        let writing = Instant::now();
        crate::exec::stream::write_sinks(
            &mut pipeline.sinks,
            &out,
            latest.batch,
            &stream.change,
            bus,
        )?;
        bus.publish(Event::EpochFinished(EpochProgress {
            epoch: latest.batch,
            rows: input_rows,
            since_previous: fired_at.saturating_duration_since(previous_fire),
            engine,
            sinks: writing.elapsed(),
            delay: None,
            state_rows: latest.state_rows,
            out_rows: out.num_rows(),
            event_time: None,
        }));
        previous_fire = fired_at;
        epochs += 1;
        rows_in += input_rows;
        rows_out += out.num_rows() as u64;
    }
    // What the sinks left out (a chart's values below zero), told as a local run tells it.
    let warnings: Vec<String> = pipeline.sinks.iter().flat_map(|s| s.warnings()).collect();
    for message in &warnings {
        bus.publish(Event::Warning {
            message: message.clone(),
        });
    }
    bus.publish(Event::RunFinished {
        rows_in: Some(rows_in),
        rows_out,
        epochs: Some(epochs),
        seconds: started.elapsed().as_secs_f64(),
        reason: Some(reason),
        late_rows: None,
    });
    Ok(StreamReport {
        epochs,
        rows_in,
        rows_out,
        elapsed: started.elapsed(),
        warnings,
        source_summary: None,
        reason,
    })
}

/// The steps after the aggregation, run here on an epoch's rows.
fn run_suffix(pipeline: &BuiltPipeline, mut batch: RecordBatch) -> Result<RecordBatch> {
    for built in &pipeline.stages {
        batch = match &built.stage.kind {
            StageKind::Map(map) => map.apply(&batch)?,
            StageKind::Global(global) => global.apply(batch)?,
            StageKind::Aggregate(_) => {
                return Err(Error::runtime(
                    "a second aggregation cannot run here on a stream from Spark",
                ))
            }
        };
    }
    Ok(batch)
}

/// The rows of `current` that are not in `previous` as they are (new groups, changed counts):
/// what an update-mode epoch emits.
fn changed_rows(current: &RecordBatch, previous: Option<&RecordBatch>) -> Result<RecordBatch> {
    let Some(previous) = previous else {
        return Ok(current.clone());
    };
    let fields: Vec<arrow_row::SortField> = current
        .schema()
        .fields()
        .iter()
        .map(|f| arrow_row::SortField::new(f.data_type().clone()))
        .collect();
    let converter =
        arrow_row::RowConverter::new(fields).map_err(|e| Error::runtime(e.to_string()))?;
    let before = converter
        .convert_columns(previous.columns())
        .map_err(|e| Error::runtime(e.to_string()))?;
    let seen: HashSet<arrow_row::Row<'_>> = before.iter().collect();
    let now = converter
        .convert_columns(current.columns())
        .map_err(|e| Error::runtime(e.to_string()))?;
    let keep: arrow_array::BooleanArray =
        now.iter().map(|row| Some(!seen.contains(&row))).collect();
    arrow_select::filter::filter_record_batch(current, &keep)
        .map_err(|e| Error::runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn counts(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn update_mode_emits_new_and_changed_groups() {
        let before = counts(&[("a", 2), ("b", 1)]);
        let now = counts(&[("a", 3), ("b", 1), ("c", 1)]);
        assert_eq!(
            changed_rows(&now, Some(&before)).unwrap(),
            counts(&[("a", 3), ("c", 1)])
        );
        assert_eq!(changed_rows(&now, None).unwrap(), now);
    }

    #[test]
    fn progress_is_read_from_sparks_json() {
        let json = r#"{"id":"x","batchId":7,"durationMs":{"triggerExecution":35},"stateOperators":[{"numRowsTotal":9}],"sources":[{"numInputRows":100},{"numInputRows":20}]}"#;
        assert_eq!(
            progress_of(json),
            Some(Progress {
                batch: 7,
                input_rows: 120,
                duration: Duration::from_millis(35),
                state_rows: 9
            })
        );
        assert_eq!(progress_of("{\"batchId\": -1}"), None);
        assert_eq!(progress_of("not json"), None);
    }
}
