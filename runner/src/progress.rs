//! A progress bar for batch input of a known size, on a terminal only: the source is wrapped so
//! each morsel advances the bar as it is read (once per MiB, never per row), and the
//! executors stay unaware of it. In a log file (stderr not a terminal) nothing is drawn.

use std::io::IsTerminal;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;
use crate::exec::BuiltPipeline;
use crate::sources::{BatchSource, BuiltSource, Morsel, Morsels, SourceCounters};

/// Whether bars may be drawn: stderr is a terminal that can redraw a line.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Wraps a batch pipeline's source so reading it advances a bar; returns the bar, to be
/// cleared when the run ends. Does nothing (returns `None`) for streams.
pub fn attach(pipeline: &mut BuiltPipeline) -> Option<ProgressBar> {
    if !matches!(pipeline.source, BuiltSource::Batch(_)) {
        return None;
    }
    let placeholder = BuiltSource::Batch(Box::new(Detached));
    let BuiltSource::Batch(inner) = std::mem::replace(&mut pipeline.source, placeholder) else {
        unreachable!("checked above")
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "reading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pipeline.source = BuiltSource::Batch(Box::new(WithProgress {
        inner,
        bar: bar.clone(),
    }));
    Some(bar)
}

struct WithProgress {
    inner: Box<dyn BatchSource>,
    bar: ProgressBar,
}

impl BatchSource for WithProgress {
    fn raw_text_lines(&self) -> bool {
        self.inner.raw_text_lines()
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn open(&self) -> Result<Morsels<'_>> {
        let morsels = self.inner.open()?;
        // Known only now: opening may have downloaded the input.
        match self.inner.input_bytes() {
            Some(total) if total > 0 => self.bar.set_length(total),
            _ => {
                self.bar.set_draw_target(ProgressDrawTarget::hidden());
                return Ok(morsels);
            }
        }
        let bar = self.bar.clone();
        let advance = move |morsel: Result<Morsel>| {
            if let Ok(m) = &morsel {
                bar.inc(m.bytes.len() as u64);
            }
            morsel
        };
        Ok(match morsels {
            Morsels::Sequential(iter) => Morsels::Sequential(Box::new(iter.map(advance))),
            Morsels::Indexed { count, read } => Morsels::Indexed {
                count,
                read: Box::new(move |i| advance(read(i))),
            },
        })
    }

    fn decode(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        self.inner.decode(morsel)
    }

    fn recycle(&self, bytes: Vec<u8>) {
        self.inner.recycle(bytes)
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    fn counters(&self) -> SourceCounters {
        self.inner.counters()
    }

    fn input_bytes(&self) -> Option<u64> {
        self.inner.input_bytes()
    }
}

/// Stands in for the source while it is being wrapped.
struct Detached;

impl BatchSource for Detached {
    fn schema(&self) -> SchemaRef {
        std::sync::Arc::new(arrow_schema::Schema::empty())
    }

    fn open(&self) -> Result<Morsels<'_>> {
        Ok(Morsels::Sequential(Box::new(std::iter::empty())))
    }

    fn decode(&self, _: Morsel) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
