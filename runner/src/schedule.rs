//! Schedules without cron: `schedule: "0 3 * * *"` in a pipeline, and `runner schedule FILE...`
//! running each pipeline at its times. Each run is a child `runner run` process, so a crash or
//! a leak in one run cannot take the scheduler down, and the run's lock, summary and exit code
//! are exactly those of a run from cron. A pipeline whose previous run is still going skips
//! that time (and says so) rather than overlapping itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::error::{Error, Result};

/// A parsed `schedule:`: a cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written in the pipeline.
    text: String,
    cron: Cron,
    /// `None`: the machine's local time, as cron uses.
    zone: Option<chrono_tz::Tz>,
}

/// Which field of a cron `expression` holds a number outside its range (`its hour is 25,
/// outside 0 to 23`), which the parser's own message ("Number out of bounds") does not say.
fn out_of_range(expression: &str) -> Option<String> {
    const FIVE: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of the month", 1, 31),
        ("month", 1, 12),
        ("day of the week", 0, 7),
    ];
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let named: Vec<(&str, u32, u32)> = match fields.len() {
        5 => FIVE.to_vec(),
        6 => std::iter::once(("second", 0, 59)).chain(FIVE).collect(),
        _ => return None,
    };
    for (field, (name, low, high)) in fields.iter().zip(named) {
        for part in field.split(',') {
            // `a-b/step`: the step is a count, not a value of the field.
            let values = part.split('/').next().unwrap_or(part);
            for value in values.split('-') {
                let Ok(number) = value.parse::<u32>() else {
                    continue;
                };
                if !(low..=high).contains(&number) {
                    return Some(format!("its {name} is {number}, outside {low} to {high}"));
                }
            }
        }
    }
    None
}

impl Schedule {
    /// Parses `0 3 * * *`, `*/10 * * * * *` (seconds first), `@daily`, optionally preceded by
    /// `CRON_TZ=<IANA zone>` (or `TZ=`), as cronie and Kubernetes write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let (zone, expression) = match trimmed
            .strip_prefix("CRON_TZ=")
            .or_else(|| trimmed.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (name, expression) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let zone: chrono_tz::Tz = name.parse().map_err(|_| {
                    format!("unknown time zone `{name}`; use an IANA name such as `Europe/Paris` or `UTC`")
                })?;
                (Some(zone), expression.trim())
            }
            None => (None, trimmed),
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                let why = out_of_range(expression).unwrap_or_else(|| e.to_string());
                format!(
                    "`{expression}` is not a valid cron expression ({why}); write five fields, `minute hour day-of-month month day-of-week`, such as `0 3 * * *` (six with seconds first)"
                )
            })?;
        let schedule = Schedule {
            text: trimmed.to_owned(),
            cron,
            zone,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!("`{expression}` never matches a date"));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `Europe/Paris`, or `local time`.
    pub fn zone_name(&self) -> String {
        self.zone
            .map_or_else(|| "local time".to_owned(), |z| z.name().to_owned())
    }

    /// The first time strictly after `after`, in the schedule's time zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<FixedOffset>> {
        match self.zone {
            Some(zone) => self
                .cron
                .find_next_occurrence(&after.with_timezone(&zone), false)
                .ok()
                .map(|t| t.fixed_offset()),
            None => self
                .cron
                .find_next_occurrence(&after.with_timezone(&Local), false)
                .ok()
                .map(|t| t.fixed_offset()),
        }
    }

    /// The next `count` times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<FixedOffset>> {
        let mut times = Vec::with_capacity(count);
        let mut from = after;
        while times.len() < count {
            let Some(next) = self.next_after(from) else {
                break;
            };
            from = next.with_timezone(&Utc);
            times.push(next);
        }
        times
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = crate::settings::env::string(d)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Schedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Schedule".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A cron expression (`0 3 * * *`; six fields put seconds first), optionally after `CRON_TZ=<zone> `.",
            "examples": ["0 3 * * *", "CRON_TZ=Europe/Paris 30 6 * * 1-5"],
        })
    }
}

/// How `runner schedule` starts each run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Passed on to `runner run`.
    pub lock_dir: Option<PathBuf>,
    /// Extra arguments for every `runner run` (`-q`, `--log-format json`).
    pub run_args: Vec<String>,
}

/// A pipeline and when it runs next.
struct Job {
    path: PathBuf,
    name: String,
    schedule: Schedule,
    summary: Option<PathBuf>,
    next: Option<DateTime<FixedOffset>>,
    running: Arc<AtomicBool>,
}

/// Loads every pipeline; the first invalid one is the error. Files without a `schedule:` are
/// skipped with a note (as cron users pass `pipelines/*.yaml`); none with one is an error.
/// With `build`, scheduled pipelines are also built (validated), which loads their plugins;
/// `--next` only reads the files.
fn load_jobs(paths: &[PathBuf], build: bool) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut unscheduled = Vec::new();
    for path in paths {
        // `pipelines/*.yaml` names the pipelines' tests too: they are not pipelines.
        if crate::testing::is_test_file(path) {
            continue;
        }
        let loaded = crate::config::load(path, &[])?;
        let Some(schedule) = loaded.config.schedule.clone() else {
            unscheduled.push(path.display().to_string());
            continue;
        };
        if build {
            crate::exec::build(&loaded, None)?;
        }
        jobs.push(Job {
            path: path.clone(),
            name: loaded.config.name.clone(),
            summary: loaded.config.summary.as_deref().map(|p| loaded.resolve(p)),
            next: schedule.next_after(Utc::now()),
            schedule,
            running: Arc::new(AtomicBool::new(false)),
        });
    }
    if jobs.is_empty() && unscheduled.is_empty() {
        return Err(Error::invalid(format!(
            "{}: only test files (`runner test` runs them); `runner schedule` takes pipeline files",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if jobs.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no `schedule:` in {}; add one such as `schedule: \"0 3 * * *\"` to run a pipeline with `runner schedule`",
            unscheduled.join(", "),
            if unscheduled.len() == 1 { "this pipeline" } else { "any of these pipelines" }
        )));
    }
    if !unscheduled.is_empty() {
        tracing::warn!(
            "skipping {} pipeline(s) without a `schedule:`: {}",
            unscheduled.len(),
            unscheduled.join(", ")
        );
    }
    Ok(jobs)
}

/// `runner schedule --next`: the next `count` times of each pipeline, one per line.
pub fn print_next(paths: &[PathBuf], count: usize) -> Result<()> {
    let jobs = load_jobs(paths, false)?;
    let now = Utc::now();
    for job in &jobs {
        let shown = |text: &str| crate::error::escape_controls(text).into_owned();
        crate::outln!(
            "{} ({}): `{}`, {}",
            crate::error::escape_path(&job.path),
            shown(&job.name),
            shown(job.schedule.as_str()),
            shown(&job.schedule.zone_name())
        );
        for time in job.schedule.upcoming(now, count) {
            crate::outln!("  {}", time.format("%Y-%m-%d %H:%M:%S %:z (%a)"));
        }
    }
    Ok(())
}

/// Runs every pipeline on its schedule until SIGTERM or SIGINT, then waits for the runs in
/// progress and returns.
pub fn run(paths: &[PathBuf], options: &Options) -> Result<()> {
    let jobs = load_jobs(paths, true)?;
    let executable = std::env::current_exe()
        .map_err(|e| Error::runtime(format!("cannot find the runner executable: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the scheduler: {e}")))?;
    runtime.block_on(run_jobs(jobs, &executable, options))
}

async fn run_jobs(mut jobs: Vec<Job>, executable: &Path, options: &Options) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch =
        |kind| signal(kind).map_err(|e| Error::runtime(format!("cannot watch signals: {e}")));
    let mut terminate = watch(SignalKind::terminate())?;
    let mut interrupt = watch(SignalKind::interrupt())?;
    for job in &jobs {
        match &job.next {
            Some(next) => tracing::info!(
                pipeline = %job.path.display(),
                schedule = job.schedule.as_str(),
                next = %next.to_rfc3339(),
                "scheduled"
            ),
            None => tracing::warn!(pipeline = %job.path.display(), "no future run time"),
        }
    }
    let mut runs = tokio::task::JoinSet::new();
    let signal = loop {
        let now = Utc::now();
        for job in jobs.iter_mut() {
            let Some(due) = job.next.filter(|due| *due <= now) else {
                continue;
            };
            if job.running.load(Ordering::SeqCst) {
                tracing::warn!(
                    pipeline = %job.path.display(),
                    due = %due.to_rfc3339(),
                    "the previous run is still going; skipping this run"
                );
            } else {
                start_run(job, executable, options, &mut runs);
            }
            // Times missed while a run was due (or the machine slept) are not caught up.
            job.next = job.schedule.next_after(now.max(due.with_timezone(&Utc)));
        }
        let wake = jobs.iter().filter_map(|j| j.next).min();
        let sleep = wake.map_or(std::time::Duration::from_secs(3600), |at| {
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        });
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
        }
    };
    let running = jobs
        .iter()
        .filter(|j| j.running.load(Ordering::SeqCst))
        .count();
    tracing::info!(
        running,
        "{signal}: starting no more runs; waiting for those in progress"
    );
    while runs.join_next().await.is_some() {}
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Starts `runner run` for `job` and a task that logs its end.
fn start_run(job: &Job, executable: &Path, options: &Options, runs: &mut tokio::task::JoinSet<()>) {
    let mut command = tokio::process::Command::new(executable);
    command.arg("run").arg(&job.path).args(&options.run_args);
    if let Some(dir) = &options.lock_dir {
        command.arg("--lock-dir").arg(dir);
    }
    // Its own process group: a Ctrl-C at the terminal stops the scheduler, which lets the
    // run finish, instead of killing the run half-way.
    command.stdin(Stdio::null()).process_group(0);
    let started = std::time::Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(pipeline = %job.path.display(), "cannot start the run: {e}");
            return;
        }
    };
    tracing::info!(
        pipeline = %job.path.display(),
        pid = child.id().unwrap_or(0),
        "run started"
    );
    job.running.store(true, Ordering::SeqCst);
    let running = job.running.clone();
    let path = job.path.display().to_string();
    let summary = job
        .summary
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    runs.spawn(async move {
        let status = child.wait().await;
        running.store(false, Ordering::SeqCst);
        let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        match status {
            Ok(status) => {
                let code = status
                    .code()
                    .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
                if status.success() {
                    tracing::info!(pipeline = %path, exit_code = %code, seconds, summary = %summary, "run finished");
                } else {
                    tracing::warn!(pipeline = %path, exit_code = %code, seconds, summary = %summary, "run finished");
                }
            }
            Err(e) => tracing::error!(pipeline = %path, "lost track of the run: {e}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn standard_five_fields_in_a_named_zone() {
        let schedule = Schedule::parse("CRON_TZ=Europe/Paris 0 3 * * *").unwrap();
        let times = schedule.upcoming(at("2026-06-01T12:00:00Z"), 2);
        let texts: Vec<String> = times.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            texts,
            ["2026-06-02T03:00:00+02:00", "2026-06-03T03:00:00+02:00"]
        );
        assert_eq!(schedule.zone_name(), "Europe/Paris");
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let schedule = Schedule::parse("TZ=UTC */20 * * * * *").unwrap();
        let times = schedule.upcoming(at("2026-06-01T12:00:00Z"), 3);
        let texts: Vec<String> = times.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            texts,
            [
                "2026-06-01T12:00:20+00:00",
                "2026-06-01T12:00:40+00:00",
                "2026-06-01T12:01:00+00:00"
            ]
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let e = Schedule::parse("0 25 * * *").unwrap_err();
        assert!(
            e.contains(
                "`0 25 * * *` is not a valid cron expression (its hour is 25, outside 0 to 23)"
            ),
            "{e}"
        );
        let e = Schedule::parse("0 0 3 1-13 *").unwrap_err();
        assert!(e.contains("(its month is 13, outside 1 to 12)"), "{e}");
        let e = Schedule::parse("60 */5 * * * *").unwrap_err();
        assert!(e.contains("(its second is 60, outside 0 to 59)"), "{e}");
        let e = Schedule::parse("CRON_TZ=Mars/Olympus 0 3 * * *").unwrap_err();
        assert!(e.contains("unknown time zone `Mars/Olympus`"), "{e}");
        assert!(Schedule::parse("").is_err());
    }

    #[test]
    fn an_invalid_schedule_in_a_pipeline_is_located() {
        let text = "name: t\nschedule: 0 3 * *\nsource:\n  type: file\n  path: in.txt\nsinks:\n  - type: stdout\n";
        let e = crate::config::parse(text, "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.yaml:2:"), "{e}");
        assert!(e.contains("not a valid cron expression"), "{e}");
    }
}
