//! The run's event bus. The drivers publish typed events — the run started, its plan, input
//! read, each epoch's progress, each sink's write, warnings, the run's end — and whatever wants
//! to watch a run subscribes: the progress line and `--progress json` on stderr, the progress
//! bar, the run summary. A web page or a metrics endpoint is one more subscriber.
//!
//! Publishing locks the subscriber list once per event; events are per morsel (1 MiB) or per
//! epoch at most, never per row.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Something that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began (published first).
    RunStarted {
        /// The pipeline's `name`.
        pipeline: String,
        /// `batch` or `stream`.
        mode: &'static str,
        /// Worker threads the run uses.
        cores: usize,
    },
    /// The physical plan the run executes.
    Planned {
        /// The plan, as `runner plan` shows it.
        plan: crate::plan::PhysicalPlan,
    },
    /// A stream continues from its checkpoint.
    Resumed {
        /// The checkpoint directory, as a path for people.
        dir: String,
        /// The number of the first epoch this run makes (the epoch after the last committed one).
        next_epoch: u64,
        /// Rows of aggregation state restored from the checkpoint (0 without state).
        state_rows: usize,
        /// Where a positioned source resumes reading.
        from_byte: Option<u64>,
        /// Epochs recorded but not committed, redone first.
        redoing: usize,
    },
    /// The size of a batch run's input, when known before reading it.
    InputSize {
        /// The input's total size in bytes.
        bytes: u64,
    },
    /// Bytes of input read (a morsel of a batch run, chunks taken into a stream's epoch).
    InputRead {
        /// Bytes in this morsel.
        bytes: u64,
    },
    /// An epoch's result went to the sinks (a batch run is epoch 0).
    EpochFinished(EpochProgress),
    /// A batch run's first rows are about to reach a sink that prints on the terminal (a
    /// progress bar there goes first).
    OutputStarts,
    /// A sink took a result.
    SinkWrote {
        /// The sink's index in the pipeline's `sinks:` list, from 0.
        sink: usize,
        /// The epoch written (0 in a batch run).
        epoch: u64,
        /// Rows the sink took in this epoch.
        rows: u64,
    },
    /// What the sinks just took, as rows of the run's result (after every sink wrote them).
    ResultRows {
        /// The epoch whose result this is (0 in a batch run).
        epoch: u64,
        /// How these rows change the result so far.
        change: ResultChange,
        /// The rows themselves (a count in JSON).
        rows: ResultBatch,
    },
    /// A warning for the user, published before [`Event::RunFinished`].
    Warning {
        /// The warning, one sentence.
        message: String,
    },
    /// The run ended well (published last; a failed run ends without it).
    RunFinished {
        /// Input rows this run took (streams); `None` in a batch run. A resumed stream counts only
        /// its own rows.
        rows_in: Option<u64>,
        /// Rows handed to the sinks, summed over epochs.
        rows_out: u64,
        /// Epochs this run made (streams); `None` in a batch run.
        epochs: Option<u64>,
        /// Wall-clock time from the start of the run, in seconds.
        seconds: f64,
        /// Why it stopped (streams): `the source ended`, `interrupted`, ...
        reason: Option<&'static str>,
        /// Rows a windowed stream left out as later than its watermark.
        late_rows: Option<u64>,
    },
}

/// How rows handed to the sinks change the result so far, as the output mode says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResultChange {
    /// They are the whole result (`complete`, a batch run's table).
    Replace,
    /// They replace the rows with the same values in `keys` and add new ones (`update`).
    Upsert {
        /// The result's key columns: a row replaces the earlier row with the same values in these.
        keys: Vec<String>,
    },
    /// They come after the rows so far (`append`, a batch run without aggregation).
    Append,
}

/// Rows in an event: shared with the sinks' copy (an `Arc` clone), told as a count in JSON.
#[derive(Debug, Clone)]
pub struct ResultBatch(pub arrow_array::RecordBatch);

impl Serialize for ResultBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.num_rows() as u64)
    }
}

/// What an epoch did: the fields of Spark's `StreamingQueryProgress` that runner has.
#[derive(Debug, Clone, Serialize)]
pub struct EpochProgress {
    /// The epoch's number: from 0, or after a checkpoint's last epoch; a batch run's is 0.
    pub epoch: u64,
    /// Input rows taken into the epoch.
    pub rows: u64,
    /// Time since the previous epoch's trigger (or the start).
    pub since_previous: Duration,
    /// Processing the rows and computing the result, without the sinks.
    pub engine: Duration,
    /// Writing the result to every sink.
    pub sinks: Duration,
    /// How late a processing-time trigger fired.
    pub delay: Option<Duration>,
    /// Rows of aggregation state after the epoch (0 without an aggregation).
    pub state_rows: usize,
    /// Rows handed to the sinks in this epoch.
    pub out_rows: usize,
    /// A windowed aggregation's watermark and late rows.
    pub event_time: Option<crate::transforms::EventTimeProgress>,
}

impl EpochProgress {
    /// The epoch as one line for people: Spark's two rates (arrival and processing), digits
    /// grouped.
    pub fn text_line(&self) -> String {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let per_second = |rows: u64, time: Duration| {
            crate::data::group_digits((rows as f64 / time.as_secs_f64().max(1e-9)).round() as u64)
        };
        let event_time = self.event_time.map_or(String::new(), |e| {
            let watermark = e.watermark_ms.map_or(String::new(), |w| {
                format!(
                    ", watermark {}",
                    crate::data::format_timestamp(w.saturating_mul(1000))
                )
            });
            let late = match e.late_rows {
                0 => String::new(),
                n => format!(", {} late rows dropped", crate::data::group_digits(n)),
            };
            format!("{watermark}{late}")
        });
        format!(
            "epoch {}: {} rows in, {} rows/s arriving, {} rows/s processed, {} ms ({} ms in sinks), {} state rows, {} rows out{event_time}",
            self.epoch,
            crate::data::group_digits(self.rows),
            per_second(self.rows, self.since_previous),
            per_second(self.rows, self.engine),
            ms(self.engine + self.sinks),
            ms(self.sinks),
            crate::data::group_digits(self.state_rows as u64),
            crate::data::group_digits(self.out_rows as u64)
        )
    }

    /// The epoch as a Spark-like progress object (`--progress json`).
    pub fn spark_json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let mut duration = serde_json::json!({
            "triggerExecution": ms(self.engine + self.sinks),
            "addBatch": ms(self.sinks),
            "engine": ms(self.engine),
        });
        if let Some(delay) = self.delay {
            duration["triggerDelay"] = ms(delay).into();
        }
        let mut progress = serde_json::json!({
            "batchId": self.epoch,
            "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "numInputRows": self.rows,
            "inputRowsPerSecond": self.rows as f64 / self.since_previous.as_secs_f64().max(1e-9),
            "processedRowsPerSecond": self.rows as f64 / self.engine.as_secs_f64().max(1e-9),
            "durationMs": duration,
            "stateRows": self.state_rows,
            "sink": { "numOutputRows": self.out_rows },
        });
        if let Some(e) = self.event_time {
            // Spark's fields: the watermark the epoch ran under, and the late rows counted as
            // its state operator counts them (per window and key); runner adds the rows.
            if let Some(w) = e.watermark_ms {
                progress["eventTime"] = serde_json::json!({
                    "watermark": humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(w.max(0) as u64)
                    ).to_string(),
                });
            }
            progress["stateOperators"] = serde_json::json!([{
                "numRowsTotal": self.state_rows,
                "numRowsDroppedByWatermark": e.late_groups,
                "lateRows": e.late_rows,
                "windows": e.windows,
            }]);
        }
        progress
    }
}

/// Receives every event of a run, in order, on the thread that published it.
pub trait Subscriber: Send {
    /// Handles one event; it should be quick, as the publisher waits for it.
    fn notify(&mut self, event: &Event);
}

/// The bus: cheap to clone (clones share subscribers).
#[derive(Clone, Default)]
pub struct Bus {
    subscribers: Arc<Mutex<Vec<Box<dyn Subscriber>>>>,
}

impl Bus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Adds a subscriber for every event published from now on.
    pub fn subscribe(&self, subscriber: impl Subscriber + 'static) {
        self.lock().push(Box::new(subscriber));
    }

    /// Hands `event` to every subscriber.
    pub fn publish(&self, event: Event) {
        for subscriber in self.lock().iter_mut() {
            subscriber.notify(&event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Subscriber>>> {
        // A subscriber that panicked leaves the list as it was: keep publishing.
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How epochs are reported on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// One short line per epoch.
    Text,
    /// One Spark-like progress object per epoch (JSON lines).
    Json,
    /// Nothing.
    Off,
}

/// Prints epochs (and a stream's resumption) on stderr, as a line or a JSON object.
pub struct ProgressPrinter {
    /// Whether to print a line, a JSON object, or nothing.
    pub format: Progress,
    /// Logs are JSON objects (`--log-format json`): lines go out as log events too, so that
    /// every line on stderr is one.
    pub json_logs: bool,
}

impl ProgressPrinter {
    fn line(&self, text: &str) {
        if self.json_logs {
            tracing::info!(target: "runner_note", "{text}");
        } else {
            crate::errln!("{text}");
        }
    }
}

impl Subscriber for ProgressPrinter {
    fn notify(&mut self, event: &Event) {
        match (self.format, event) {
            (Progress::Off, _) => {}
            (Progress::Text, Event::EpochFinished(epoch)) => self.line(&epoch.text_line()),
            // A JSON object already: as it is.
            (Progress::Json, Event::EpochFinished(epoch)) => {
                crate::errln!("{}", epoch.spark_json())
            }
            (
                _,
                Event::Resumed {
                    dir,
                    next_epoch,
                    state_rows,
                    from_byte,
                    redoing,
                },
            ) => {
                let at = from_byte.map_or(String::new(), |b| {
                    format!(", reading from byte {b} of the source")
                });
                let redo = match redoing {
                    0 => String::new(),
                    n => format!(", redoing {n} uncommitted epoch(s) first"),
                };
                self.line(&format!(
                    "resuming from the checkpoint in {dir}: next epoch {next_epoch}, {state_rows} state rows{at}{redo}"
                ));
            }
            _ => {}
        }
    }
}

/// Keeps every event, for tests and for subscribers that read a run after it ends.
#[derive(Clone, Default)]
pub struct Recorded(pub Arc<Mutex<Vec<Event>>>);

impl Subscriber for Recorded {
    fn notify(&mut self, event: &Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let bus = Bus::new();
        let (first, second) = (Recorded::default(), Recorded::default());
        bus.subscribe(first.clone());
        bus.subscribe(second.clone());
        bus.publish(Event::InputRead { bytes: 1 });
        bus.publish(Event::Warning {
            message: "w".into(),
        });
        for recorded in [first, second] {
            let events = recorded.0.lock().unwrap();
            assert!(matches!(events[0], Event::InputRead { bytes: 1 }));
            assert!(matches!(&events[1], Event::Warning { message } if message == "w"));
        }
    }

    #[test]
    fn the_epoch_line_has_both_rates_with_grouped_digits() {
        let stats = EpochProgress {
            epoch: 3,
            rows: 17_452_585,
            since_previous: Duration::from_secs(10),
            engine: Duration::from_secs(1),
            sinks: Duration::from_millis(20),
            delay: None,
            state_rows: 1_234,
            event_time: None,
            out_rows: 20,
        };
        assert_eq!(
            stats.text_line(),
            "epoch 3: 17,452,585 rows in, 1,745,259 rows/s arriving, 17,452,585 rows/s processed, 1020 ms (20 ms in sinks), 1,234 state rows, 20 rows out"
        );
        let json = stats.spark_json();
        assert_eq!(json["batchId"], 3);
        assert_eq!(json["durationMs"]["triggerExecution"], 1020.0);
    }
}
