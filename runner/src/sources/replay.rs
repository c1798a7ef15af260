//! `replay`: replays a tape recorded by the mastodon source's `record_to` (JSONL of
//! `{"event", "data", "t"}`), with the original timing scaled by `speed` (or as fast as
//! possible with `max`), through the same event handling as the live stream. Demos and tests
//! run offline with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc::Sender;

use super::mastodon::{decode_rows, event_to_line, status_schema, EventStats, Filters};
use super::{
    BuildSource, BuiltSource, Chunk, Delivery, SourceContext, SourcePosition, StreamSource,
};

/// Stream mode. `path` is a tape the `mastodon` source wrote with `record_to` (one JSON line
/// per event: `event`, `data`, `t` seconds since the start); its events go through the same
/// handling as the live stream's and give the same columns. With a `checkpoint:`, a restarted
/// stream goes on from where the last commit stopped. A line that is not a recorded event is
/// an error naming it, except a last line cut short (no newline, as a recording stopped
/// mid-write leaves it): that one is skipped with a warning. `pipelines/tapes/sample.jsonl` is a
/// synthetic tape (invented accounts and hashtags) made by `python3 bench/make_tape.py`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySourceConfig {
    /// The tape (JSONL written by the mastodon source's `record_to`), relative to the pipeline.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// `1` replays in real time, `10` ten times faster, `max` without waiting.
    #[serde(default)]
    pub speed: Speed,
    /// Only statuses with at least one hashtag.
    #[serde(default)]
    pub only_with_tags: bool,
    /// A longer line of the tape is an error rather than read into memory (a recorded event
    /// is at most the mastodon source's `max_event_bytes`, JSON-escaped). Default 16 MiB.
    #[serde(
        default = "default_max_line_bytes",
        deserialize_with = "crate::settings::size::bytes"
    )]
    #[schemars(with = "String")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    16 << 20
}

/// How fast a tape is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// The recorded timing divided by this factor (`1` is real time, `10` ten times faster); always
    /// above 0.
    Factor(f64),
    /// As fast as possible, without waiting.
    Max,
}

impl Default for Speed {
    fn default() -> Self {
        Speed::Factor(1.0)
    }
}

/// As it is written in YAML (the reference pages show the default through it).
impl serde::Serialize for Speed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Speed::Factor(n) => s.serialize_f64(*n),
            Speed::Max => s.serialize_str("max"),
        }
    }
}

impl schemars::JsonSchema for Speed {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Speed".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`1` replays in real time, `10` ten times faster, `max` without waiting.",
            "anyOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "const": "max" }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
            // Anything else (a bool, a list): said in the setting's own words below.
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0.0 && n.is_finite() => Ok(Speed::Factor(n)),
            Raw::Text(t) if t == "max" => Ok(Speed::Max),
            Raw::Text(t) => match t.parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Ok(Speed::Factor(n)),
                _ => Err(serde::de::Error::custom(format!(
                    "speed must be a number above 0 or `max`, not `{t}`"
                ))),
            },
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "speed must be above 0, not {n}"
            ))),
            Raw::Other(_) => Err(serde::de::Error::custom(
                "speed must be a number above 0 or `max`",
            )),
        }
    }
}

impl BuildSource for ReplaySourceConfig {
    fn build(&self, ctx: &SourceContext) -> Result<BuiltSource, String> {
        if self.path.as_os_str() == "-" {
            return Err("`path: -`: a tape is read from a file, by offsets into it (where a run starts, ends and, with a checkpoint, resumes), and standard input has none: save it to a file first".into());
        }
        Ok(BuiltSource::Stream(Box::new(ReplaySource {
            config: self.clone(),
            path: crate::settings::resolve_against(ctx.base_dir, &self.path),
            stats: Arc::new(EventStats::default()),
        })))
    }
}

/// A wait for the tape's next event this long or longer is warned of.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// The `replay` source at run time: a recorded tape's events, paced by `speed`, through the live
/// stream's handling.
pub struct ReplaySource {
    config: ReplaySourceConfig,
    path: PathBuf,
    stats: Arc<EventStats>,
}

#[derive(Deserialize)]
struct Recorded {
    event: String,
    data: String,
    #[serde(default)]
    t: f64,
}

impl StreamSource for ReplaySource {
    fn spark(&self) -> std::result::Result<crate::spark::frame::Frame, String> {
        Err(crate::spark::frame::MASTODON_REFUSAL.into())
    }

    fn schema(&self) -> SchemaRef {
        status_schema()
    }

    fn start(
        &self,
        tx: Sender<Delivery>,
        from: Option<SourcePosition>,
        _redo_until: Option<SourcePosition>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let (path, speed, stats) = (self.path.clone(), self.config.speed, self.stats.clone());
        let max_line_bytes = self.config.max_line_bytes;
        let filters = Filters {
            only_with_tags: self.config.only_with_tags,
            languages: vec![],
        };
        tokio::spawn(async move {
            crate::error::failpoint("replay-source");
            let cannot_read =
                |e: std::io::Error| format!("cannot read the tape {}: {e}", path.display());
            let mut file = tokio::fs::File::open(&path).await.map_err(cannot_read)?;
            // A restarted run goes on where its checkpoint says, with the recorded time there
            // as the new zero, so the pacing carries on rather than catching up.
            let start = from.unwrap_or(SourcePosition::at(0, 0.0));
            if start.offset > 0 {
                let length = file.metadata().await.map_err(cannot_read)?.len();
                if length < start.offset {
                    return Err(format!(
                        "the tape {} is shorter ({length} bytes) than the checkpoint's position ({} bytes): it was replaced; remove the checkpoint directory to start over",
                        path.display(),
                        start.offset
                    ));
                }
                file.seek(std::io::SeekFrom::Start(start.offset))
                    .await
                    .map_err(cannot_read)?;
            }
            let mut reader = tokio::io::BufReader::new(file);
            let mut position = start.clone();
            let started = Instant::now();
            let mut number = 0u64;
            let mut bytes = Vec::new();
            loop {
                bytes.clear();
                // At most one byte past the cap: a longer line is refused unread.
                let read = (&mut reader)
                    .take(max_line_bytes as u64 + 1)
                    .read_until(b'\n', &mut bytes)
                    .await
                    .map_err(cannot_read)?;
                if read == 0 {
                    break;
                }
                number += 1;
                let at = || {
                    if start.offset > 0 {
                        format!("line {number} after byte {}", start.offset)
                    } else {
                        format!("line {number}")
                    }
                };
                if read > max_line_bytes && bytes.last() != Some(&b'\n') {
                    return Err(format!(
                        "{} {} is longer than {} bytes (`max_line_bytes`): not a recorded event",
                        path.display(),
                        at(),
                        max_line_bytes
                    ));
                }
                position.offset += read as u64;
                // A UTF-8 byte order mark at the tape's start is not part of its first event.
                let mut text = bytes.as_slice();
                if position.offset == read as u64 {
                    text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
                }
                // A last line without its newline that does not read is what a recording
                // stopped mid-write leaves: the events before it stand, it is skipped.
                let cut_short = bytes.last() != Some(&b'\n');
                let recorded = std::str::from_utf8(text)
                    .map_err(|e| format!("is not UTF-8 text ({e}): not a recorded event"))
                    .and_then(|line| match line.trim().is_empty() {
                        true => Ok(None),
                        false => serde_json::from_str::<Recorded>(line)
                            .map(Some)
                            .map_err(|e| format!("is not a recorded event: {e}")),
                    });
                let recorded = match recorded {
                    Ok(Some(recorded)) => recorded,
                    Ok(None) => continue,
                    Err(why) if cut_short => {
                        stats.malformed(format!(
                            "{} {} (the tape's last) is cut short without its newline, as a recording stopped mid-write leaves it, and {why}",
                            path.display(),
                            at()
                        ));
                        break;
                    }
                    Err(why) => return Err(format!("{} {} {why}", path.display(), at())),
                };
                if let Speed::Factor(factor) = speed {
                    let wait = ((recorded.t - start.time) / factor).max(0.0);
                    let due = Duration::try_from_secs_f64(wait)
                        .ok()
                        .and_then(|wait| started.checked_add(wait))
                        .ok_or_else(|| {
                            format!(
                                "{} line {number}: its time t = {:e} is {wait:e} s away at speed {factor:e}, too far to wait for",
                                path.display(),
                                recorded.t
                            )
                        })?;
                    // A long silence is said, not slept through quietly (a tape whose `t` are
                    // Unix times jumps decades at its first event).
                    let ahead = due.saturating_duration_since(std::time::Instant::now());
                    if ahead >= LONG_WAIT {
                        tracing::warn!(
                            "{} line {number}: its event is {} ahead at speed {factor} (t = {}): waiting for it; `speed: max` replays without the pauses",
                            crate::error::escape_path(&path),
                            humantime::format_duration(Duration::from_secs(ahead.as_secs())),
                            recorded.t
                        );
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                position.time = recorded.t;
                if let Some(row) = event_to_line(&recorded.event, &recorded.data, &filters, &stats)
                {
                    let delivery = Delivery {
                        resume_at: Some(position.clone()),
                        ..Delivery::from(row)
                    };
                    if tx.send(delivery).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    fn positioned(&self) -> bool {
        true
    }

    fn check_inputs(&self) -> std::result::Result<Option<String>, String> {
        match self.path.exists() {
            true => Ok(None),
            false => Err(format!(
                "the tape {} does not exist (no such file or directory)",
                self.path.display()
            )),
        }
    }

    fn decode(&self, chunks: &[Chunk]) -> crate::error::Result<RecordBatch> {
        Ok(decode_rows(&status_schema(), chunks, &self.stats))
    }

    fn warnings(&self) -> Vec<String> {
        self.stats.warnings()
    }

    fn summary(&self) -> Option<String> {
        Some(self.stats.summary())
    }

    fn counters(&self) -> super::SourceCounters {
        self.stats.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_accepts_numbers_and_max() {
        let parse = |y: &str| serde_saphyr::from_str::<ReplaySourceConfig>(y);
        assert_eq!(
            parse("{path: t, speed: 10}").unwrap().speed,
            Speed::Factor(10.0)
        );
        assert_eq!(parse("{path: t, speed: max}").unwrap().speed, Speed::Max);
        assert_eq!(parse("{path: t}").unwrap().speed, Speed::Factor(1.0));
        assert!(parse("{path: t, speed: 0}").is_err());
        assert!(parse("{path: t, speed: fast}").is_err());
    }
}
