//! The `runner` command line: `run`, `plan`, `validate`, `schedule`, `schema`, `test`, `list`,
//! `docs`, `plugin new`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

use runner::config::{self, Override};
use runner::error::Error;
use runner::exec;
use runner::registry;

const AFTER_HELP: &str = "\
Examples:
  runner run pipelines/romeo.yaml                  run a pipeline
  runner run pipelines/romeo.yaml --input notes.txt --cores 2
  cat notes.txt | runner run pipelines/romeo.yaml --input -
  runner validate pipelines/*.yaml                 check files (reading only what column inference needs)
  runner plan pipelines/romeo.yaml --format json   how it will run
  runner schedule pipelines/*.yaml                 run the ones with a `schedule:`

Exit codes:
  0  success (a stream stopped by SIGTERM/SIGINT included)
  1  the run failed (input, output, network, plugin, internal error)
  2  invalid pipeline file or command line
  3  another run of the same pipeline holds its lock (see --wait)
  130, 143  a batch run stopped by SIGINT (Ctrl-C) or SIGTERM (outputs left as they were);
       130 also when a second Ctrl-C stopped a stream at once

Security: a pipeline file is code. A `plugin` step loads and runs a shared library, on
`run` and `validate` (`plan` and `schedule --next` load none); run only pipeline files you
trust.";

/// Run data pipelines declared in YAML: a source, transforms, sinks; as a batch job or a stream.
#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about,
    propagate_version = true,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (-v info, -vv debug). `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// How logs, warnings and errors are written on stderr: plain text or one JSON object a
    /// line (for log collectors).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Worker threads (0 = every core); overrides `cores:` in the file.
        #[arg(long, value_name = "N")]
        cores: Option<usize>,
        /// Override or add a value before validation, e.g. --set transforms.3.where="count >= 100".
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<Override>,
        /// Read this input instead of the source's `path` (`-` for standard input), relative to
        /// the current directory.
        #[arg(long, value_name = "PATH")]
        input: Option<PathBuf>,
        /// Run every transform on its own (the reference path), even where a fused loop could
        /// replace them. Same result, slower; for checking and measuring.
        #[arg(long)]
        no_fusion: bool,
        /// How stream epochs are reported on stderr.
        #[arg(long, value_enum, default_value = "text")]
        progress: exec::stream::Progress,
        /// If another run of this pipeline is in progress (or another stream holds its
        /// checkpoint), wait this long (e.g. 5m) in all instead of exiting with code 3.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wait: Option<std::time::Duration>,
        /// Where lock files go (default: `$XDG_RUNTIME_DIR/runner-locks`, else `/tmp/runner-<uid>`).
        #[arg(
            long,
            value_name = "DIR",
            env = "RUNNER_LOCK_DIR",
            hide_env_values = true
        )]
        lock_dir: Option<PathBuf>,
        /// Write a JSON summary of the run to this file (replaces `summary:` in the pipeline).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// The engine: runner's own (`local`) or a Spark cluster through Spark Connect
        /// (`spark`); overrides `engine:` in the file.
        #[arg(long, value_enum)]
        engine: Option<runner::spark::EngineKind>,
        /// The Spark Connect address (`sc://host:15002`) for `--engine spark`; implies it.
        /// Default: `engine.remote` in the file, then SPARK_REMOTE.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// Serve a live page of the run (default 127.0.0.1:4040, or the next free port);
        /// overrides `ui:` in the file. Another machine's address needs --ui-token-env.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
        ui: Option<String>,
        /// Keep the live page up this long after the run ends (e.g. 60s; with --ui or `ui:`);
        /// Ctrl-C ends it.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ui_linger: Option<std::time::Duration>,
        /// The environment variable holding the live page's token (needed to bind an address
        /// other machines reach): `Authorization: Bearer TOKEN`, or `?token=TOKEN` once.
        #[arg(long, value_name = "VAR")]
        ui_token_env: Option<String>,
    },
    /// Show how a pipeline will run (paths, columns per step, fused stages, sinks, trigger,
    /// schedule) without running it or loading any plugin (steps from the first plugin on are
    /// listed as not checked). Only the start of an input whose columns are inferred is read.
    Plan {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Worker threads, as `runner run --cores`.
        #[arg(long, value_name = "N")]
        cores: Option<usize>,
        /// Override or add a value before validation.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<Override>,
        /// Text for people or JSON for programs.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// The plan without the optimizer's rules, as `runner run --no-fusion` runs it.
        #[arg(long)]
        no_fusion: bool,
        /// The engine: runner's own (`local`) or a Spark cluster through Spark Connect
        /// (`spark`); overrides `engine:` in the file.
        #[arg(long, value_enum)]
        engine: Option<runner::spark::EngineKind>,
        /// The Spark Connect address (`sc://host:15002`) for `--engine spark`; implies it.
        /// Default: `engine.remote` in the file, then SPARK_REMOTE.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
    },
    /// Run pipelines on their `schedule:` until SIGTERM or Ctrl-C; a pipeline never overlaps
    /// itself.
    Schedule {
        /// Pipeline files, each with a `schedule:`.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Print the next 5 run times of each pipeline and exit.
        #[arg(long)]
        next: bool,
        /// Where the runs' lock files go (passed to `runner run`).
        #[arg(
            long,
            value_name = "DIR",
            env = "RUNNER_LOCK_DIR",
            hide_env_values = true
        )]
        lock_dir: Option<PathBuf>,
    },
    /// Print a JSON Schema of the pipeline format, for editors.
    Schema,
    /// Check pipeline files without running them (only the start of an input whose columns
    /// are inferred is read). A `plugin` step's library is loaded and created to check its
    /// columns: validate only pipeline files you trust.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Override or add a value before validation.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<Override>,
    },
    /// Run the tests of whole pipelines: every `*.test.yaml` file in the folders given (or the
    /// files given). Inputs are fed to each pipeline's source; sinks are captured, never
    /// written. Exit code 1 when a test fails.
    Test {
        /// Test files or folders holding them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One line per test for people, or JSON lines for CI.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
    /// List every source, transform and sink.
    List,
    /// Write the reference pages (every key of every component, the pipeline file, this
    /// command line) generated from the definitions runner loads pipelines with.
    Docs {
        /// The folder to write them in.
        #[arg(long, value_name = "DIR", default_value = "docs/reference")]
        out: PathBuf,
        /// Write nothing; exit 1 when the pages there differ from the generated ones.
        #[arg(long)]
        check: bool,
    },
    /// Work with transform plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write a new plugin crate (Cargo.toml, src/lib.rs with a test, README) that builds as is.
    New {
        /// The plugin's name: lowercase letters, digits and _.
        name: String,
        /// The folder to create it in.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

/// `runner docs`: the reference pages, with the command line's page rendered from this parser.
/// `--ui` takes an optional address, so `runner run --ui sales.yaml` read the pipeline file as
/// the page's address (and then found no pipeline). A `.yaml` or `.yml` right after a bare
/// `--ui` is the pipeline: the flag is taken as given without an address.
fn ui_flag_before_a_pipeline(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    for at in 1..args.len() {
        let pipeline_next = args.get(at + 1).is_some_and(|next| {
            let next = next.to_string_lossy();
            next.ends_with(".yaml") || next.ends_with(".yml")
        });
        if args[at] == "--ui" && pipeline_next {
            args[at] = "--ui=".into();
        }
    }
    args
}

fn docs(out: &std::path::Path, check: bool, quiet: bool) -> Result<(), Error> {
    let pages = runner::docs::reference_pages(vec![cli_page()]);
    if !check {
        runner::docs::write(out, &pages)?;
        if !quiet {
            runner::outln!("wrote {} pages in {}", pages.len(), out.display());
        }
        return Ok(());
    }
    let problems = runner::docs::check(out, &pages)?;
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        runner::errln!("{problem}");
    }
    let pages = match problems.len() {
        1 => "1 reference page is".to_owned(),
        n => format!("{n} reference pages are"),
    };
    Err(Error::Runtime(format!(
        "{pages} out of date: run `runner docs --out {}`",
        out.display()
    )))
}

/// `cli.md`: the help of every command, as `runner help COMMAND` prints it.
fn cli_page() -> runner::docs::Page {
    use clap::CommandFactory;
    use std::fmt::Write as _;
    let mut command = Cli::command().term_width(100);
    command.build();
    let mut text = String::from(
        "<!-- Generated by `runner docs --out docs/reference`; edit the doc comments in runner/src/main.rs, not this page. -->\n\n# The command line\n\n",
    );
    // Trailing spaces would not survive an editor; the page must match byte for byte.
    let help = |command: &mut clap::Command| {
        let text = command.render_long_help().to_string();
        text.lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect::<String>()
    };
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|name| name != "help")
        .collect();
    let _ = writeln!(
        text,
        "Commands: {}.\n",
        names
            .iter()
            .map(|n| format!("[`{n}`](#runner-{n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(text, "## runner\n\n```text\n{}```", help(&mut command));
    for sub in command.get_subcommands_mut() {
        let name = sub.get_name().to_owned();
        if name == "help" {
            continue;
        }
        let _ = writeln!(text, "\n## runner {name}\n\n```text\n{}```", help(sub));
        for inner in sub.get_subcommands_mut() {
            let inner_name = inner.get_name().to_owned();
            if inner_name == "help" {
                continue;
            }
            let _ = writeln!(
                text,
                "\n### runner {name} {inner_name}\n\n```text\n{}```",
                help(inner)
            );
        }
    }
    runner::docs::Page {
        path: "cli.md".into(),
        text,
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    runner::config::duration::parse(text)
}

/// Logs go to stderr, without colours unless stderr is a terminal. A long-running command
/// (`schedule`) logs at info level with timestamps by default.
fn init_logging(quiet: bool, verbose: u8, format: LogFormat, daemon: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // JSON logs say what text logs say: warnings and errors, plus the notes `Say` prints
        // (the run's one-line result) under their own target.
        (false, 0) if daemon => "info",
        (false, 0) if format == LogFormat::Json => "warn,runner_note=info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    use tracing_subscriber::prelude::*;
    let mut unread_filter = None;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|e| {
        // Set but not a filter: said once logging is up, rather than ignored.
        if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
            unread_filter = Some(e.to_string());
        }
        tracing_subscriber::EnvFilter::new(default)
    });
    let logs = tracing_subscriber::fmt::layer().with_writer(|| runner::redact::RedactingStderr);
    let logs = if format == LogFormat::Json {
        logs.json().with_current_span(false).boxed()
    } else {
        let coloured = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        runner::redact::set_coloured_logs(coloured);
        let logs = logs.with_ansi(coloured);
        if verbose == 0 && !daemon {
            // Warnings read as runner's own messages (`warning: ...`); timestamps and levels
            // come with -v.
            logs.event_format(runner::io::plain_log::PlainEvents)
                .boxed()
        } else {
            logs.with_target(false).boxed()
        }
    };
    // The live page hears warnings whatever the log level (`-q` included).
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(runner::ui::LogTap.with_filter(tracing_subscriber::filter::LevelFilter::WARN))
        .init();
    if let Some(why) = unread_filter {
        tracing::warn!("RUST_LOG is not a log filter ({why}); logging as without it");
    }
}

/// Ends the process on a command line clap refused: as clap says it, or, where the line asks
/// for `--log-format json`, as one JSON log event (a program reading the log reads this error
/// too). Help and the version are printed as they are.
fn usage_error(error: clap::Error, args: &[std::ffi::OsString]) -> ! {
    use clap::error::ErrorKind;
    let json = args
        .windows(2)
        .any(|pair| pair[0] == "--log-format" && pair[1] == "json")
        || args.iter().any(|arg| arg == "--log-format=json");
    let shown = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || shown {
        error.exit()
    }
    init_logging(false, 0, LogFormat::Json, false);
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Say {
        json: true,
        quiet: false,
    }
    .error(message.strip_prefix("error: ").unwrap_or(&message));
    std::process::exit(error.exit_code())
}

/// Messages for the person or program reading stderr: plain lines, or JSON log events.
#[derive(Clone, Copy)]
struct Say {
    json: bool,
    quiet: bool,
}

impl Say {
    fn error(self, message: &str) {
        let redacted = runner::redact::redact(message);
        let message = runner::error::escape_controls(&redacted);
        if self.json {
            tracing::error!("{message}");
        } else {
            runner::errln!("error: {message}");
        }
    }

    fn warning(self, message: &str) {
        let redacted = runner::redact::redact(message);
        let message = runner::error::escape_controls(&redacted);
        if self.quiet {
        } else if self.json {
            tracing::warn!("{message}");
        } else {
            runner::errln!("warning: {message}");
        }
    }

    fn note(self, message: &str) {
        let redacted = runner::redact::redact(message);
        let message = runner::error::escape_controls(&redacted);
        if self.quiet {
        } else if self.json {
            tracing::info!(target: "runner_note", "{message}");
        } else {
            runner::errln!("{message}");
        }
    }
}

fn main() -> ExitCode {
    ignore_file_size_signal();
    runner::error::record_panics();
    // `RUNNER_LOCK_DIR=` (set but empty) means unset, as an empty variable does for most
    // tools; clap would refuse it as a missing value of `--lock-dir`. Nothing runs yet on
    // another thread.
    if std::env::var_os("RUNNER_LOCK_DIR").is_some_and(|dir| dir.is_empty()) {
        std::env::remove_var("RUNNER_LOCK_DIR");
    }
    let args = ui_flag_before_a_pipeline(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => usage_error(error, &args),
    };
    let daemon = matches!(&cli.command, Command::Schedule { next: false, .. });
    init_logging(cli.quiet, cli.verbose, cli.log_format, daemon);
    let say = Say {
        json: cli.log_format == LogFormat::Json,
        quiet: cli.quiet,
    };
    let outcome = match cli.command {
        Command::Run {
            pipeline,
            cores,
            mut overrides,
            input,
            no_fusion,
            progress,
            wait,
            lock_dir,
            summary,
            engine,
            remote,
            ui,
            ui_linger,
            ui_token_env,
        } => {
            if let Some(input) = input {
                // A command-line path is relative to where the command runs (a `path:` in the
                // file, to the file).
                let input = if input == std::path::Path::new("-") || input.is_absolute() {
                    input
                } else {
                    std::env::current_dir().map_or(input.clone(), |cwd| cwd.join(&input))
                };
                overrides.push(Override::input(&input.to_string_lossy()));
            }
            let progress = if cli.quiet {
                exec::stream::Progress::Off
            } else {
                progress
            };
            let options = RunOptions {
                cores,
                overrides,
                no_fusion,
                progress,
                summary,
                say,
                engine,
                remote,
                ui: runner::ui::UiOptions {
                    requested: ui.map(|address| Some(address).filter(|a| !a.is_empty())),
                    linger: ui_linger,
                    token_env: ui_token_env,
                },
            };
            run(&pipeline, lock_dir.as_deref(), wait, &options)
        }
        Command::Plan {
            pipeline,
            cores,
            overrides,
            format,
            no_fusion,
            engine,
            remote,
        } => config::load(&pipeline, &overrides).and_then(|loaded| {
            // No plugin is loaded: the steps from the first plugin on are listed unchecked.
            let (mut built, unbuilt) = exec::build_for_plan(&loaded, cores)?;
            if no_fusion {
                built.without_rules();
            }
            let mut plan = runner::explain::plan(&loaded, &built, unbuilt);
            if let Some(settings) =
                runner::spark::choose(engine, remote.as_deref(), loaded.config.engine.as_ref())?
            {
                plan.on_spark(runner::spark::plan(&loaded, &built, unbuilt, &settings)?);
            }
            match format {
                PlanFormat::Text => runner::out!("{}", runner::redact::redact(&plan.to_text())),
                PlanFormat::Json => runner::outln!(
                    "{}",
                    runner::redact::redact(
                        &serde_json::to_string_pretty(&plan).unwrap_or_default()
                    )
                ),
            }
            Ok(())
        }),
        Command::Schedule {
            pipelines,
            next,
            lock_dir,
        } => {
            if next {
                runner::schedule::print_next(&pipelines, 5)
            } else {
                let mut run_args = Vec::new();
                if cli.quiet {
                    run_args.push("--quiet".to_owned());
                }
                if say.json {
                    run_args.extend(["--log-format".to_owned(), "json".to_owned()]);
                }
                let options = runner::schedule::Options { lock_dir, run_args };
                runner::schedule::run(&pipelines, &options)
            }
        }
        Command::Schema => {
            let schema = runner::schema::pipeline_schema();
            runner::outln!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(())
        }
        Command::Validate {
            pipelines,
            overrides,
        } => validate(&pipelines, &overrides, cli.quiet, say),
        Command::List => {
            list();
            Ok(())
        }
        Command::Docs { out, check } => docs(&out, check, cli.quiet),
        Command::Test { paths, format } => test(&paths, format == PlanFormat::Json, cli.quiet),
        Command::Plugin(PluginCommand::New { name, dir }) => {
            runner::plugin::new::create(&name, &dir).map(|new| {
                runner::outln!("wrote {}", new.path.display());
                if new.in_workspace {
                    runner::outln!("next: cargo test -p {name} && cargo build --release -p {name}");
                    runner::outln!("      (the library: target/release/lib{name}.so)");
                } else {
                    runner::outln!(
                        "next: cd {} && cargo test && cargo build --release",
                        new.path.display()
                    );
                    runner::outln!(
                        "      (the library: {}/target/release/lib{name}.so)",
                        new.path.display()
                    );
                }
            })
        }
    };
    // A full disk under standard output fails a command that otherwise went well, and is
    // said besides the error of one that failed.
    let stdout_failure = runner::io::console::stdout_failure()
        .map(|failure| format!("cannot write to standard output: {failure}"));
    let outcome = match (outcome, stdout_failure) {
        (Ok(()), Some(failure)) => Err(Error::runtime(failure)),
        (Err(error), Some(failure)) => {
            say.error(&failure);
            Err(error)
        }
        (outcome, None) => outcome,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say.error(&error.to_string());
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

struct RunOptions {
    cores: Option<usize>,
    overrides: Vec<Override>,
    no_fusion: bool,
    progress: exec::stream::Progress,
    summary: Option<PathBuf>,
    say: Say,
    engine: Option<runner::spark::EngineKind>,
    remote: Option<String>,
    ui: runner::ui::UiOptions,
}

/// Takes the pipeline's lock, runs it, then writes its summary (also when it failed, and when
/// it panicked) and, for a batch run, prints the summary's one-line form. A run that never got
/// the lock because another holds it writes no summary: the summary file is the holder's.
fn run(
    path: &std::path::Path,
    lock_dir: Option<&std::path::Path>,
    wait: Option<std::time::Duration>,
    options: &RunOptions,
) -> Result<(), Error> {
    let mut recorder = runner::summary::Recorder::start(path, options.summary.clone());
    if let Some(refused) = recorder.refused_target() {
        return Err(Error::invalid(refused));
    }
    let mut page = None;
    let began = std::time::Instant::now();
    // Held until the run ends; the kernel releases it if the process dies.
    let outcome = match runner::lock::acquire(path, lock_dir, wait) {
        Err(locked @ Error::Locked(_)) => return Err(locked),
        Err(error) => {
            // The summary's path may be in the pipeline file: read it for that alone.
            if let Ok(loaded) = config::load(path, &options.overrides) {
                recorder.loaded(&loaded);
            }
            Err(error)
        }
        Ok(lock) => {
            // What is left of --wait is for a stream's checkpoint, which another pipeline
            // file's stream may hold.
            let wait_left = wait.map(|w| w.saturating_sub(began.elapsed()));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                execute(path, options, wait_left, &mut recorder, &mut page)
            }))
            .unwrap_or_else(|payload| Err(runner::error::from_panic(payload.as_ref())));
            drop(lock);
            outcome
        }
    };
    let summary = recorder.finish(outcome.as_ref().err());
    if let Some(target) = recorder.target() {
        if let Err(error) = summary.write(target) {
            match outcome {
                // The summary is part of what was asked: not writing it fails the run.
                Ok(_) => return Err(error),
                Err(_) => options
                    .say
                    .warning(&format!("the run summary was not written: {error}")),
            }
        }
    }
    if let Some(page) = page {
        let (code, error) = match &outcome {
            Ok(_) => (0, None),
            Err(e) => (
                e.exit_code(),
                Some(runner::redact::redact(&e.to_string()).into_owned()),
            ),
        };
        if !page.linger.is_zero() {
            options.say.note(&format!(
                "the live page stays up for {} at {} (Ctrl-C ends it)",
                humantime::format_duration(page.linger),
                page.url
            ));
        }
        page.finish(code, error);
    }
    let batch = outcome?;
    if batch {
        options.say.note(&summary.one_line());
    }
    Ok(())
}

/// Loads, builds and runs the pipeline, telling `recorder` what happens. Returns whether it
/// was a batch run.
fn execute(
    path: &std::path::Path,
    options: &RunOptions,
    wait: Option<std::time::Duration>,
    recorder: &mut runner::summary::Recorder,
    page: &mut Option<runner::ui::Server>,
) -> Result<bool, Error> {
    let say = options.say;
    if options.cores == Some(0) {
        tracing::debug!("--cores 0: using every core");
    }
    let loaded = config::load(path, &options.overrides)?;
    recorder.loaded(&loaded);
    if let Some(refused) = recorder.refused_target() {
        return Err(Error::invalid(refused));
    }
    let mut pipeline = exec::build(&loaded, options.cores)?;
    if let Some(checkpoint) = pipeline.stream.as_mut().and_then(|s| s.checkpoint.as_mut()) {
        checkpoint.lock_wait = wait;
    }
    // What a sink needs from outside (a database URL's variable), before anything is read.
    for sink in &pipeline.sinks {
        sink.ready()?;
    }
    // Bound before the run starts: a taken address fails the run before it reads anything.
    let bound = runner::ui::bind(&options.ui, loaded.config.ui.as_ref())?;
    let mut spark_stream = None;
    let mut on_spark = false;
    if let Some(settings) = runner::spark::choose(
        options.engine,
        options.remote.as_deref(),
        loaded.config.engine.as_ref(),
    )? {
        let prepared = runner::spark::prepare(&loaded, &mut pipeline, &settings)?;
        on_spark = true;
        spark_stream = prepared.stream;
        let spark = prepared.plan;
        recorder.on_spark(&spark);
        for warning in &spark.warnings {
            say.warning(warning);
        }
        tracing::info!(
            remote = %spark.remote,
            on_spark = spark.on_spark.join(", "),
            locally = spark.locally.join(", "),
            "running on Spark"
        );
    }
    if options.no_fusion {
        pipeline.without_rules();
    }
    if !pipeline.plan.rules_applied.is_empty() {
        tracing::info!("plan rules: {}", pipeline.plan.rules_applied.join(", "));
    }
    recorder.built(&mut pipeline);
    // Everything that watches the run subscribes to its events.
    let bus = runner::events::Bus::new();
    bus.subscribe(runner::events::ProgressPrinter {
        format: options.progress,
        json_logs: say.json,
    });
    let feed = runner::summary::SummaryFeed::watching(recorder.stage_rows());
    bus.subscribe(feed.clone());
    if !say.quiet && !say.json && runner::progress::enabled() {
        bus.subscribe(runner::progress::Bar::new());
    }
    if let Some(bound) = bound {
        let (info, chart) = runner::ui::describe(&loaded, &pipeline, on_spark);
        let live = runner::ui::live::Live::new(info, chart, recorder.stage_rows());
        let elsewhere = !bound.address.ip().is_loopback();
        let server = runner::ui::Server::start(bound, live.clone())?;
        // Printed whatever --quiet says: it is what --ui asked for.
        runner::errln!("live page: {}", server.url);
        if elsewhere {
            runner::errln!(
                "the live page is open to other machines that reach this address (each request needs the token)"
            );
        }
        bus.subscribe(runner::ui::live::LiveFeed(live));
        *page = Some(server);
    }
    runner::progress::meter(&mut pipeline, &bus);
    tracing::info!(pipeline = %pipeline.name, cores = pipeline.cores, "running");
    let ran = if pipeline.stream.is_some() {
        match &spark_stream {
            Some(query) => runner::spark::stream::run(&mut pipeline, query, &bus),
            None => exec::stream::run(&mut pipeline, &bus),
        }
        .map(|report| {
            say.note(&format!(
                "stopped ({}): {} epoch(s), {} rows in, {:.1} s",
                report.reason,
                report.epochs,
                report.rows_in,
                report.elapsed.as_secs_f64()
            ));
            if let Some(summary) = &report.source_summary {
                say.note(&format!("source: {summary}"));
            }
            report.warnings
        })
    } else {
        let _signals = runner::cancel::abort_on_signals();
        exec::batch::run(&mut pipeline, &bus).map(|report| {
            tracing::info!(
                rows = report.rows_out,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "done"
            );
            report.warnings
        })
    };
    let warnings = match ran {
        Ok(warnings) => warnings,
        Err(error) => {
            recorder.ran(&pipeline, &feed);
            return Err(error);
        }
    };
    for warning in &warnings {
        say.warning(warning);
    }
    let batch = pipeline.stream.is_none();
    recorder.ran(&pipeline, &feed);
    Ok(batch)
}

fn validate(paths: &[PathBuf], overrides: &[Override], quiet: bool, say: Say) -> Result<(), Error> {
    let mut failures = 0;
    for path in paths {
        // `pipelines/*.yaml` names the pipelines' tests too: each is checked as a test file.
        if runner::testing::is_test_file(path) {
            match runner::testing::validate(path) {
                Ok((pipeline, tests)) if !quiet => runner::outln!(
                    "ok: {} ({tests} test(s) of {})",
                    runner::error::escape_path(path),
                    runner::error::escape_path(&pipeline)
                ),
                Ok(_) => {}
                Err(error) if paths.len() == 1 => return Err(error),
                Err(error) => {
                    say.error(&error.to_string());
                    failures += 1;
                }
            }
            continue;
        }
        let checked = config::load(path, overrides).and_then(|loaded| {
            // A missing input makes the file invalid here, as `check_inputs` below says.
            if let Some(ui) = &loaded.config.ui {
                runner::ui::check_config(ui)
                    .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            }
            let pipeline = exec::build(&loaded, None).map_err(|e| match e {
                Error::Input { .. } => Error::invalid(format!("{}: {e}", path.display())),
                e => e,
            })?;
            // A file that runs on Spark: its translation is checked too (nothing is sent).
            if let Some(settings) =
                runner::spark::choose(None, None, loaded.config.engine.as_ref())?
            {
                runner::spark::plan(&loaded, &pipeline, None, &settings)?;
            }
            let inputs = match &pipeline.source {
                runner::sources::BuiltSource::Batch(source) => source.check_inputs(),
                runner::sources::BuiltSource::Stream(source) => source.check_inputs(),
            };
            match inputs {
                Ok(Some(note)) => say.warning(&format!("{}: {note}", path.display())),
                Ok(None) => {}
                Err(missing) => {
                    return Err(Error::invalid(format!("{}: {missing}", path.display())))
                }
            }
            Ok((loaded, pipeline))
        });
        match checked {
            Ok((loaded, pipeline)) if !quiet => runner::outln!(
                "ok: {} ({}: {} source, {} transform(s), {} sink(s))",
                runner::error::escape_path(path),
                runner::error::escape_controls(&pipeline.name),
                loaded.config.source.value.type_name(),
                pipeline.stages.len(),
                pipeline.sinks.len()
            ),
            Ok(_) => {}
            // One file: its error is the command's error.
            Err(error) if paths.len() == 1 => return Err(error),
            Err(error) => {
                say.error(&error.to_string());
                failures += 1;
            }
        }
    }
    if failures == 0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{failures} of {} pipeline files are not valid",
            paths.len()
        )))
    }
}

/// `runner test`: like `cargo test`, one line per test, the failures with their diffs, then a
/// count; `--format json`: one object per test and a summary object.
/// `quiet`: only failures and the count (as `cargo test -q` keeps them).
fn test(paths: &[PathBuf], json: bool, quiet: bool) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let files = runner::testing::find(paths)?;
    // Every file is read before anything runs: an invalid one stops the run (exit 2).
    let mut suites = Vec::new();
    for path in &files {
        suites.push((path.clone(), runner::testing::read(path)?));
    }
    let total: usize = suites.iter().map(|(_, f)| f.tests.len()).sum();
    if !json && !quiet {
        runner::outln!("\nrunning {total} test(s) from {} file(s)", suites.len());
    }
    let mut failed: Vec<runner::testing::Outcome> = Vec::new();
    let mut passed = 0usize;
    for (path, file) in &suites {
        runner::testing::run_file(path, file, &mut |outcome| {
            if json {
                runner::outln!(
                    "{}",
                    serde_json::json!({"type": "test", "file": outcome.file, "name": outcome.name, "result": if outcome.passed { "ok" } else { "failed" }, "failures": outcome.failures, "seconds": outcome.seconds})
                );
            } else if !(quiet && outcome.passed) {
                runner::outln!(
                    "test {} :: {} ... {}",
                    runner::error::escape_controls(&outcome.file),
                    runner::error::escape_controls(&outcome.name),
                    if outcome.passed { "ok" } else { "FAILED" }
                );
            }
            if outcome.passed {
                passed += 1;
            } else {
                failed.push(outcome.clone());
            }
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    if json {
        runner::outln!(
            "{}",
            serde_json::json!({"type": "summary", "passed": passed, "failed": failed.len(), "seconds": seconds})
        );
    } else {
        if !failed.is_empty() {
            runner::outln!("\nfailures:");
            for outcome in &failed {
                runner::outln!(
                    "\n---- {} :: {} ----",
                    runner::error::escape_controls(&outcome.file),
                    runner::error::escape_controls(&outcome.name)
                );
                for line in outcome.failures.iter().flat_map(|f| f.lines()) {
                    runner::outln!("{}", runner::error::escape_controls(line));
                }
            }
        }
        runner::outln!(
            "\ntest result: {}. {passed} passed; {} failed; finished in {seconds:.2}s\n",
            if failed.is_empty() { "ok" } else { "FAILED" },
            failed.len()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::runtime(format!(
            "{} of {total} pipeline test(s) failed",
            failed.len()
        )))
    }
}

fn list() {
    let width = registry::all().map(|c| c.name.len()).max().unwrap_or(0);
    let mut kind = "";
    for component in registry::all() {
        if component.kind != kind {
            kind = component.kind;
            runner::outln!("{}s:", kind);
        }
        runner::outln!("  {:width$}  {}", component.name, component.summary);
    }
}

/// Past a file-size limit (`ulimit -f`), the kernel kills a writing process with SIGXFSZ by
/// default, mid-write and without a message. Ignored, the write fails with EFBIG instead: the
/// sink reports it, removes its temporary file and the previous output stays (exit 1).
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: sets a signal disposition to "ignore" before any thread starts; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
