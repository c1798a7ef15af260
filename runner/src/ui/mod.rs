//! The live page of a run (`--ui`, `ui:`): a small HTTP server on its own thread and runtime,
//! fed by the run's event bus. `live` keeps what the page shows; `http` serves it (the page,
//! `/api/*`, `/events` as Server-Sent Events, `/metrics` for Prometheus). The page's files are
//! embedded in the binary: no CDN, nothing fetched from the internet.

pub mod http;
pub mod live;
mod serve;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// `ui:` in a pipeline file: serve the live page for every run (`ui: {}` with the defaults).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// The address to serve on, e.g. `127.0.0.1:8080`. Default `127.0.0.1:4040`, or the next
    /// free port up to 4055, as Spark's UI does. Another machine's address needs `token_env`.
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub listen: Option<String>,
    /// How long a finished run keeps its page up, e.g. `60s` (default 0: the page goes with
    /// the process). Ctrl-C ends it early.
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub linger: Option<Duration>,
    /// The environment variable holding the token a browser must present (a bearer token, or
    /// `?token=` once, then a cookie). Required to bind anything but a loopback address.
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub token_env: Option<String>,
}

/// The page's settings, from the command line over `ui:`.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// `--ui` (with its address, when given).
    pub requested: Option<Option<String>>,
    /// `--ui-linger`: how long a finished run keeps its page up; `None` leaves it to `ui.linger`.
    pub linger: Option<Duration>,
    /// `--ui-token-env`: the variable holding the page's token; `None` leaves it to `ui.token_env`.
    pub token_env: Option<String>,
}

/// Where the default page goes, and how many ports after it are tried.
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 4040;
const DEFAULT_PORTS_TRIED: u16 = 16;
/// The shortest token accepted.
const MIN_TOKEN_CHARS: usize = 16;

/// Resolved settings: bound and checked, not serving yet.
pub struct Bound {
    listener: TcpListener,
    /// The address bound (with the port actually taken).
    pub address: SocketAddr,
    /// How long a finished run keeps its page up (zero: it goes with the process).
    pub linger: Duration,
    token: Option<String>,
}

/// Binds the page's address when the command line or the file asks for a page. Errors: a
/// non-loopback address without a token (exit 2), an address in use (exit 1).
pub fn bind(options: &UiOptions, config: Option<&UiConfig>) -> Result<Option<Bound>> {
    if options.requested.is_none() && config.is_none() {
        let stray = [
            ("--ui-linger", options.linger.is_some()),
            ("--ui-token-env", options.token_env.is_some()),
        ];
        if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
            return Err(Error::invalid(format!(
                "{flag} is for the live page, which this run does not serve: add --ui (or `ui:` in the pipeline file)"
            )));
        }
        return Ok(None);
    }
    let config = config.cloned().unwrap_or_default();
    let listen = options
        .requested
        .clone()
        .flatten()
        .filter(|a| !a.is_empty())
        .or(config.listen);
    let linger = options.linger.or(config.linger).unwrap_or_default();
    let token_env = options.token_env.clone().or(config.token_env);
    let token = match &token_env {
        None => None,
        Some(var) => {
            let value = std::env::var(var).unwrap_or_default();
            if value.chars().count() < MIN_TOKEN_CHARS {
                return Err(Error::invalid(format!(
                    "the live page's token: `{var}` must hold a token of at least {MIN_TOKEN_CHARS} characters (e.g. `export {var}=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')`), and it {}",
                    if value.is_empty() { "is empty or not set".to_owned() } else { format!("holds {}", value.chars().count()) }
                )));
            }
            crate::redact::register(&value);
            Some(value)
        }
    };
    let (listener, address) = match listen {
        Some(text) => {
            let address = parse_address(&text)?;
            if !address.ip().is_loopback() && token.is_none() {
                return Err(Error::invalid(format!(
                    "the live page on {address} could be reached from other machines: {}",
                    TOKEN_ADVICE
                )));
            }
            let listener = TcpListener::bind(address).map_err(|e| {
                Error::runtime(format!("cannot serve the live page on {address}: {e}"))
            })?;
            let address = listener.local_addr().unwrap_or(address);
            (listener, address)
        }
        None => first_free_port(DEFAULT_PORT, DEFAULT_PORTS_TRIED)?,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::runtime(format!("cannot serve the live page on {address}: {e}")))?;
    Ok(Some(Bound {
        listener,
        address,
        linger,
        token,
    }))
}

/// How to serve the page to other machines.
const TOKEN_ADVICE: &str = "give --ui-token-env VAR or `token_env: VAR` under `ui:` (a token in the variable VAR), or serve on 127.0.0.1";

/// What `validate` can tell of a file's `ui:` without serving the page: its address reads,
/// and an address other machines could reach names the variable of its token.
pub fn check_config(config: &UiConfig) -> Result<()> {
    if let Some(text) = &config.listen {
        let address = parse_address(text)?;
        if !address.ip().is_loopback() && config.token_env.is_none() {
            return Err(Error::invalid(format!(
                "`ui.listen: {}` could be reached from other machines: {TOKEN_ADVICE}",
                crate::error::escape_controls(text)
            )));
        }
    }
    Ok(())
}

/// `127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`, `0.0.0.0:4040`, or a port alone.
fn parse_address(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    let with_host = match text.strip_prefix(':').unwrap_or(text).parse::<u16>() {
        Ok(port) => format!("{DEFAULT_HOST}:{port}"),
        Err(_) => text.to_owned(),
    };
    with_host
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Error::invalid(format!(
                "the live page's address `{text}` is not HOST:PORT (e.g. 127.0.0.1:8080)"
            ))
        })
}

/// The first of `count` ports from `first` free on the loopback address.
fn first_free_port(first: u16, count: u16) -> Result<(TcpListener, SocketAddr)> {
    let mut last = None;
    for port in first..first.saturating_add(count) {
        let address: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, port).into();
        match TcpListener::bind(address) {
            Ok(listener) => return Ok((listener, address)),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::runtime(format!(
        "cannot serve the live page: ports {first}–{} on {DEFAULT_HOST} are taken ({}); give --ui HOST:PORT",
        first.saturating_add(count - 1),
        last.map_or_else(String::new, |e| e.to_string())
    )))
}

/// What the page says about the run before it starts, and how it draws the result.
pub fn describe(
    loaded: &crate::config::LoadedPipeline,
    pipeline: &crate::exec::BuiltPipeline,
    on_spark: bool,
) -> (live::RunInfo, Option<live::ChartChoice>) {
    use crate::exec::stream::Trigger;
    let config = &loaded.config;
    let sinks = config
        .sinks
        .iter()
        .enumerate()
        .map(|(i, sink)| match sink.value.builder().output_path() {
            Some(path) => format!(
                "sinks.{i} ({}: {})",
                sink.value.type_name(),
                loaded.resolve(path).display()
            ),
            None => format!("sinks.{i} ({})", sink.value.type_name()),
        })
        .collect();
    let stream = pipeline.stream.as_ref();
    let info = live::RunInfo {
        pipeline: pipeline.name.clone(),
        file: loaded.path.display().to_string(),
        mode: if stream.is_some() { "stream" } else { "batch" },
        cores: pipeline.cores,
        trigger: stream.map(|s| match s.trigger {
            Trigger::Continuous => "continuous".to_owned(),
            Trigger::ProcessingTime(every) => {
                format!("processing_time {}", humantime::format_duration(every))
            }
            Trigger::AvailableNow => "available_now".to_owned(),
        }),
        output_mode: stream.map(|s| match s.output_mode {
            crate::config::OutputMode::Complete => "complete",
            crate::config::OutputMode::Update => "update",
            crate::config::OutputMode::Append => "append",
        }),
        engine: if on_spark { "spark" } else { "local" },
        source: format!(
            "source ({}: {})",
            config.source.value.type_name(),
            crate::explain::reads(loaded)
        ),
        steps: pipeline.stages.iter().map(|s| s.label.clone()).collect(),
        sinks,
    };
    let chart = config.sinks.iter().find_map(|s| match &s.value {
        crate::registry::SinkConfig::Chart(chart) => Some(chart),
        _ => None,
    });
    (info, live::ChartChoice::choose(&pipeline.output, chart))
}

/// A running page server.
pub struct Server {
    /// The run's live state, which the bus subscriber updates and the page reads.
    pub live: Arc<live::Live>,
    /// The page's address, `http://host:port/`.
    pub url: String,
    /// How long a finished run keeps its page up (zero: it goes with the process).
    pub linger: Duration,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Where warnings logged anywhere in the process go while a page is served.
static LOG_TAP: OnceLock<tokio::sync::mpsc::Sender<String>> = OnceLock::new();

impl Server {
    /// Starts serving `live` on the bound address, on a thread of its own: the page's work
    /// never takes the pipeline's threads.
    pub fn start(bound: Bound, live: Arc<live::Live>) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runner-ui")
            .enable_all()
            .build()
            .map_err(|e| Error::runtime(format!("cannot start the live page's server: {e}")))?;
        let url = format!("http://{}/", bound.address);
        let app = http::router(
            live.clone(),
            http::Access {
                token: bound.token.map(Arc::from),
                loopback_port: bound
                    .address
                    .ip()
                    .is_loopback()
                    .then(|| bound.address.port()),
            },
        );
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(bound.listener).map_err(|e| {
                Error::runtime(format!(
                    "cannot serve the live page on {}: {e}",
                    bound.address
                ))
            })?
        };
        runtime.spawn(serve::serve(listener, app));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(live::CLIENT_QUEUE);
        if LOG_TAP.set(tx).is_ok() {
            let warned = live.clone();
            runtime.spawn(async move {
                while let Some(message) = rx.recv().await {
                    warned.warn(&message);
                }
            });
        }
        Ok(Server {
            live,
            url,
            linger: bound.linger,
            runtime: Some(runtime),
        })
    }

    /// Tells the page how the run ended, then keeps it up for the linger time (Ctrl-C or
    /// SIGTERM ends that early).
    pub fn finish(mut self, exit_code: i32, error: Option<String>) {
        self.live.ended(exit_code, error);
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if !self.linger.is_zero() {
            runtime.block_on(async {
                let interrupted = async {
                    #[cfg(unix)]
                    {
                        use tokio::signal::unix::{signal, SignalKind};
                        match signal(SignalKind::terminate()) {
                            Ok(mut term) => {
                                tokio::select! {
                                    _ = tokio::signal::ctrl_c() => {}
                                    _ = term.recv() => {}
                                }
                            }
                            Err(_) => {
                                let _ = tokio::signal::ctrl_c().await;
                            }
                        }
                    }
                    #[cfg(not(unix))]
                    {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(self.linger) => {}
                    _ = interrupted => {}
                }
            });
        }
        // The last state reaches the open pages (within a second: a page that reads nothing
        // does not hold the process), then open event streams, which never end by themselves,
        // are stopped without waiting for them.
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while !self.live.delivered() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Taken from the queue is not yet written: one more turn for the connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        runtime.shutdown_background();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A `tracing` layer that hands warnings and errors to the live page, when one is served
/// (the page shows reconnects, skipped lines and the like as they happen). It never blocks:
/// when the page's queue is full, the message is dropped there (it is still logged).
pub struct LogTap;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogTap {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let Some(tap) = LOG_TAP.get() else { return };
        let mut message = MessageText(String::new());
        event.record(&mut message);
        let _ = tap.try_send(crate::redact::redact(&message.0).into_owned());
    }
}

struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_options_without_a_page_are_refused() {
        let linger = UiOptions {
            linger: Some(Duration::from_secs(60)),
            ..UiOptions::default()
        };
        let err = bind(&linger, None).err().unwrap().to_string();
        assert!(err.contains("--ui-linger is for the live page"), "{err}");
        let token = UiOptions {
            token_env: Some("VAR".into()),
            ..UiOptions::default()
        };
        let err = bind(&token, None).err().unwrap().to_string();
        assert!(err.contains("--ui-token-env is for the live page"), "{err}");
        assert!(bind(&UiOptions::default(), None).unwrap().is_none());
    }

    #[test]
    fn another_machines_address_needs_a_token() {
        let options = UiOptions {
            requested: Some(Some("0.0.0.0:0".into())),
            ..UiOptions::default()
        };
        let error = bind(&options, None).err().unwrap();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--ui-token-env"), "{error}");
        // `validate` says so of the file's `ui:` too.
        let file = |listen: &str, token_env: Option<&str>| UiConfig {
            listen: Some(listen.into()),
            token_env: token_env.map(Into::into),
            ..UiConfig::default()
        };
        let error = check_config(&file("0.0.0.0:4099", None)).unwrap_err();
        assert!(
            error.to_string().contains("`token_env: VAR` under `ui:`"),
            "{error}"
        );
        assert!(check_config(&file("0.0.0.0:4099", Some("TOKEN"))).is_ok());
        assert!(check_config(&file("127.0.0.1:4099", None)).is_ok());
        assert!(check_config(&file("not an address", None)).is_err());
    }

    #[test]
    fn a_short_or_missing_token_is_refused() {
        let options = UiOptions {
            requested: Some(Some("127.0.0.1:0".into())),
            token_env: Some("RUNNER_TEST_UI_TOKEN_THAT_IS_NOT_SET".into()),
            ..UiOptions::default()
        };
        let error = bind(&options, None).err().unwrap();
        assert!(error.to_string().contains("is empty or not set"), "{error}");
    }

    #[test]
    fn a_taken_default_port_moves_to_the_next_free_one() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        match first_free_port(port, 16) {
            Ok((_, address)) => assert!(address.port() > port, "{address}"),
            // The ports after it may all be taken on a busy machine: then the error says so.
            Err(e) => assert!(e.to_string().contains("are taken"), "{e}"),
        }
        let error = first_free_port(port, 1).err().unwrap().to_string();
        assert!(error.contains(&format!("ports {port}–{port}")), "{error}");
    }

    #[test]
    fn a_port_alone_is_on_the_loopback_address() {
        assert_eq!(parse_address("8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(
            parse_address(":8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert!(parse_address("no port").is_err());
    }

    #[test]
    fn a_taken_address_is_an_error_that_names_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let options = UiOptions {
            requested: Some(Some(address.clone())),
            ..UiOptions::default()
        };
        let error = bind(&options, None).err().unwrap();
        assert_eq!(error.exit_code(), 1);
        assert!(error.to_string().contains(&address), "{error}");
    }
}
