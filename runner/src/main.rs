//! The `runner` command line: `run`, `validate`, `list`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

use runner::config::{self, Override};
use runner::error::Error;
use runner::exec;
use runner::registry;

/// Run data pipelines declared in YAML: a source, transforms, sinks; as a batch job or a stream.
#[derive(Parser)]
#[command(name = "runner", version, about, propagate_version = true)]
struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (-v info, -vv debug). `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
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
        /// Run every transform on its own (the reference path), even where a fused loop could
        /// replace them. Same result, slower; for checking and measuring.
        #[arg(long)]
        no_fusion: bool,
        /// How stream epochs are reported on stderr.
        #[arg(long, value_enum, default_value = "text")]
        progress: exec::stream::Progress,
        /// If another run of this pipeline is in progress, wait this long (e.g. 5m) instead of
        /// exiting with code 3.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wait: Option<std::time::Duration>,
        /// Where lock files go (default: the system's temporary directory).
        #[arg(long, value_name = "DIR", env = "RUNNER_LOCK_DIR")]
        lock_dir: Option<PathBuf>,
    },
    /// Check pipeline files without reading any data.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Override or add a value before validation.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<Override>,
    },
    /// List every source, transform and sink.
    List,
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

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    runner::config::duration::parse(text)
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if verbose == 0 {
        // Warnings read as plain sentences; timestamps and module paths come with -v.
        logs.without_time().with_target(false).init();
    } else {
        logs.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let outcome = match cli.command {
        Command::Run {
            pipeline,
            cores,
            overrides,
            no_fusion,
            progress,
            wait,
            lock_dir,
        } => {
            let progress = if cli.quiet {
                exec::stream::Progress::Off
            } else {
                progress
            };
            // Held until the run ends; the kernel releases it if the process dies.
            runner::lock::acquire(&pipeline, lock_dir.as_deref(), wait)
                .and_then(|_lock| run(&pipeline, cores, &overrides, no_fusion, progress, cli.quiet))
        }
        Command::Validate {
            pipelines,
            overrides,
        } => validate(&pipelines, &overrides, cli.quiet),
        Command::List => {
            list();
            Ok(())
        }
        Command::Plugin(PluginCommand::New { name, dir }) => {
            runner::plugin::new::create(&name, &dir).map(|path| {
                println!("wrote {}", path.display());
                println!("next: cargo test -p {name} && cargo build --release -p {name}");
            })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn run(
    path: &std::path::Path,
    cores: Option<usize>,
    overrides: &[Override],
    no_fusion: bool,
    progress: exec::stream::Progress,
    quiet: bool,
) -> Result<(), Error> {
    if cores == Some(0) {
        tracing::debug!("--cores 0: using every core");
    }
    let loaded = config::load(path, overrides)?;
    let mut pipeline = exec::build(&loaded, cores)?;
    if no_fusion {
        pipeline.fusion = None;
    }
    if let Some(fusion) = &pipeline.fusion {
        tracing::info!(?fusion, "fused word count");
    }
    tracing::info!(pipeline = %pipeline.name, cores = pipeline.cores, "running");
    let warnings = if pipeline.stream.is_some() {
        let report = exec::stream::run(&mut pipeline, progress)?;
        if !quiet {
            eprintln!(
                "stopped ({}): {} epoch(s), {} rows in, {:.1} s",
                report.reason,
                report.epochs,
                report.rows_in,
                report.elapsed.as_secs_f64()
            );
            if let Some(summary) = &report.source_summary {
                eprintln!("source: {summary}");
            }
        }
        report.warnings
    } else {
        let report = exec::batch::run(&mut pipeline)?;
        tracing::info!(
            rows = report.rows_out,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "done"
        );
        report.warnings
    };
    if !quiet {
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}

fn validate(paths: &[PathBuf], overrides: &[Override], quiet: bool) -> Result<(), Error> {
    let mut failures = 0;
    for path in paths {
        let checked = config::load(path, overrides).and_then(|loaded| {
            let pipeline = exec::build(&loaded, None)?;
            Ok((loaded, pipeline))
        });
        match checked {
            Ok((loaded, pipeline)) if !quiet => println!(
                "ok: {} ({}: {} source, {} transform(s), {} sink(s))",
                path.display(),
                pipeline.name,
                loaded.config.source.value.type_name(),
                pipeline.stages.len(),
                pipeline.sinks.len()
            ),
            Ok(_) => {}
            // One file: its error is the command's error.
            Err(error) if paths.len() == 1 => return Err(error),
            Err(error) => {
                eprintln!("error: {error}");
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

fn list() {
    let width = registry::all().map(|c| c.name.len()).max().unwrap_or(0);
    let mut kind = "";
    for component in registry::all() {
        if component.kind != kind {
            kind = component.kind;
            println!("{}s:", kind);
        }
        println!("  {:width$}  {}", component.name, component.summary);
    }
}
