//! A Spark Connect session: the `sc://` address as PySpark reads it, the gRPC channel
//! (rustls when `use_ssl=true`), and plans sent for execution with their Arrow results read
//! back as a stream. The token never appears in a message: addresses are shown without it.

use std::time::Duration;

use runner_spark_connect_proto as pb;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use pb::spark_connect_service_client::SparkConnectServiceClient;

use crate::error::{Error, Result};

/// Spark Connect's default port.
pub const DEFAULT_PORT: u16 = 15002;
/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server has to answer the session's first request (a new session on a busy
/// cluster takes seconds).
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 pings during a query (past grpc-java's `permitKeepAliveTime` of 5 minutes), and how
/// long one may wait for its answer (a driver's garbage collection can pause it a while).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(330);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest gRPC message accepted: Spark sends Arrow batches of up to 4 MiB by default
/// (`spark.connect.grpc.arrow.maxBatchSize`); a message past this is a broken server.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A Spark Connect address: `sc://host[:port][/;param=value;...]` (`token`, `use_ssl`,
/// `user_id`; other parameters travel as gRPC headers, as PySpark sends them).
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// The server's host name or address.
    pub host: String,
    /// The server's port; [`DEFAULT_PORT`] (15002) when the address has none.
    pub port: u16,
    token: Option<String>,
    /// Whether to connect with TLS (`;use_ssl=true`); a token requires it unless the host is a
    /// loopback address.
    pub use_ssl: bool,
    /// The user the session runs as (`;user_id=`); `None` uses `$USER`, else `runner`.
    pub user_id: Option<String>,
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// The address without its token (safe to print).
impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            // An IPv6 address, bracketed as it was written.
            write!(f, "sc://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "sc://{}:{}", self.host, self.port)?;
        }
        if self.use_ssl {
            write!(f, "/;use_ssl=true")?;
        }
        Ok(())
    }
}

impl Remote {
    /// Reads an `sc://` address; the message says what is wrong, without the token.
    pub fn parse(url: &str) -> std::result::Result<Remote, String> {
        let rest = url.strip_prefix("sc://").ok_or_else(|| {
            format!(
                "`{}` is not a Spark Connect address: it starts with sc://, e.g. sc://localhost:15002",
                crate::redact::redact(url)
            )
        })?;
        let (authority, params) = match rest.split_once('/') {
            Some((authority, params)) => (authority, params),
            None => (rest, ""),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or("an IPv6 host needs its closing `]`")?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the Spark Connect address has no host (sc://host:15002)".into());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{port}` is not a port number (1 to 65535)"))?,
        };
        let mut remote = Remote {
            host: host.to_owned(),
            port,
            token: None,
            use_ssl: false,
            user_id: None,
            headers: Vec::new(),
        };
        for param in params.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').ok_or_else(|| {
                format!("`{}` is not a `name=value` parameter", param_shown(param))
            })?;
            match key {
                "token" => {
                    crate::redact::register(value);
                    remote.token = Some(value.to_owned());
                }
                "use_ssl" => {
                    remote.use_ssl = match value {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(format!("use_ssl is `true` or `false`, not `{other}`"))
                        }
                    }
                }
                "user_id" => remote.user_id = Some(value.to_owned()),
                header => {
                    let valid = !header.is_empty()
                        && header
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !valid {
                        return Err(format!("`{header}` is not a parameter name"));
                    }
                    remote
                        .headers
                        .push((header.to_ascii_lowercase(), value.to_owned()));
                }
            }
        }
        if remote.token.is_some() && !remote.use_ssl && !remote.is_loopback() {
            return Err(format!(
                "a token for {} would travel unencrypted: add `;use_ssl=true` to the address",
                remote.host
            ));
        }
        Ok(remote)
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A parameter as it may be shown: a token's value never is.
fn param_shown(param: &str) -> &str {
    if param.starts_with("token") {
        "token=…"
    } else {
        param
    }
}

/// One Spark Connect session, with the runtime its calls run on (the engine's threads are not
/// async: each call blocks on it). Clones share the connection and the session.
#[derive(Clone)]
pub struct Session {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    client: SparkConnectServiceClient<Channel>,
    remote: Remote,
    session_id: String,
    user_id: String,
}

impl Session {
    /// Connects; a server that does not answer is "cannot reach Spark Connect at sc://...".
    pub fn connect(remote: &Remote) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::runtime(format!("cannot start the Spark Connect client: {e}")))?;
        let unreachable = |e: &dyn std::fmt::Display| {
            let said = e.to_string();
            // A server that does not speak TLS answers the handshake with plain bytes.
            let hint = if remote.use_ssl && said.contains("InvalidContentType") {
                " (use_ssl=true, and the server did not answer in TLS: does it serve without it?)"
            } else {
                ""
            };
            Error::runtime(format!(
                "cannot reach Spark Connect at {remote}: {}{hint}",
                clean(&said)
            ))
        };
        let scheme = if remote.use_ssl { "https" } else { "http" };
        let host = if remote.host.contains(':') {
            format!("[{}]", remote.host)
        } else {
            remote.host.clone()
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{}", remote.port))
            .map_err(|e| unreachable(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            // A server (or a path to it) that stops answering is found by HTTP/2 pings while a
            // query runs: the run fails instead of waiting for ever. Not more often: gRPC
            // servers (Spark's keeps grpc-java's defaults) close a connection that pings more
            // than every 5 minutes, and a query may be silent that long.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(format!("runner/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| unreachable(&e))?;
        if remote.use_ssl {
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .with_webpki_roots()
                        .domain_name(remote.host.clone()),
                )
                .map_err(|e| unreachable(&e))?;
        }
        let channel = runtime
            .block_on(endpoint.connect())
            .map_err(|e| unreachable(&crate::error::error_chain(&e)))?;
        let client = SparkConnectServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let user_id = remote
            .user_id
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "runner".to_owned());
        let session = Session {
            runtime: std::sync::Arc::new(runtime),
            client,
            remote: remote.clone(),
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id,
        };
        // Spark 3.x wraps an integer overflow round and casts a value that does not fit to
        // null unless ANSI mode is on; runner fails on both, so the session runs in it (the
        // default from Spark 4).
        session.set_config(&[("spark.sql.ansi.enabled", "true")])?;
        Ok(session)
    }

    /// Sets the session's Spark SQL settings (the first request: a server that accepts the
    /// connection and never answers is found here, within `FIRST_ANSWER_TIMEOUT`).
    fn set_config(&self, pairs: &[(&str, &str)]) -> Result<()> {
        let mut request = self.request(pb::ConfigRequest {
            session_id: self.session_id.clone(),
            client_observed_server_side_session_id: None,
            user_context: Some(self.user_context()),
            operation: Some(pb::config_request::Operation {
                op_type: Some(pb::config_request::operation::OpType::Set(
                    pb::config_request::Set {
                        pairs: pairs
                            .iter()
                            .map(|(key, value)| pb::KeyValue {
                                key: (*key).to_owned(),
                                value: Some((*value).to_owned()),
                            })
                            .collect(),
                        silent: None,
                    },
                )),
            }),
            client_type: Some(format!("runner/{}", env!("CARGO_PKG_VERSION"))),
        })?;
        request.set_timeout(FIRST_ANSWER_TIMEOUT);
        let mut client = self.client.clone();
        self.runtime
            .block_on(client.config(request))
            .map_err(|status| refused(&self.remote, &status))?;
        Ok(())
    }

    /// The address the session is connected to.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// A request with the session's headers (the token as a bearer token).
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(token) = &self.remote.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                Error::invalid("the Spark Connect token has characters a header cannot carry")
            })?;
            metadata.insert("authorization", value);
        }
        for (name, value) in &self.remote.headers {
            let name: tonic::metadata::MetadataKey<tonic::metadata::Ascii> = name
                .parse()
                .map_err(|_| Error::invalid(format!("`{name}` cannot be a header name")))?;
            let value = value.parse().map_err(|_| {
                Error::invalid(format!("the value of `{name}` cannot be a header value"))
            })?;
            metadata.insert(name, value);
        }
        Ok(request)
    }

    fn user_context(&self) -> pb::UserContext {
        pb::UserContext {
            user_id: self.user_id.clone(),
            user_name: self.user_id.clone(),
            extensions: Vec::new(),
        }
    }

    /// Sends `plan` for execution; its responses are read with `Execution::next_response`.
    pub fn execute(&self, plan: pb::plan::OpType) -> Result<Execution> {
        let request = self.request(pb::ExecutePlanRequest {
            session_id: self.session_id.clone(),
            client_observed_server_side_session_id: None,
            user_context: Some(self.user_context()),
            operation_id: Some(uuid::Uuid::new_v4().to_string()),
            plan: Some(pb::Plan {
                op_type: Some(plan),
            }),
            client_type: Some(format!("runner/{}", env!("CARGO_PKG_VERSION"))),
            request_options: Vec::new(),
            tags: Vec::new(),
        })?;
        let mut client = self.client.clone();
        let response = self
            .runtime
            .block_on(client.execute_plan(request))
            .map_err(|status| refused(&self.remote, &status))?;
        Ok(Execution {
            stream: response.into_inner(),
            session: self.clone(),
        })
    }
}

/// The responses of one executed plan.
pub struct Execution {
    session: Session,
    stream: tonic::Streaming<pb::ExecutePlanResponse>,
}

impl Execution {
    /// The next response; `None` when the server ended the stream.
    pub fn next_response(&mut self) -> Result<Option<pb::ExecutePlanResponse>> {
        let session = &self.session;
        let message = session
            .runtime
            .block_on(self.stream.message())
            .map_err(|status| refused(&session.remote, &status))?;
        if let Some(response) = &message {
            if response.session_id != session.session_id {
                return Err(Error::runtime(format!(
                    "Spark Connect at {} answered for another session",
                    session.remote
                )));
            }
        }
        Ok(message)
    }
}

impl Session {
    /// Runs a command (start or ask a streaming query) and returns its responses (a few small
    /// messages).
    pub fn command(
        &self,
        command: pb::command::CommandType,
    ) -> Result<Vec<pb::ExecutePlanResponse>> {
        let mut execution = self.execute(pb::plan::OpType::Command(pb::Command {
            command_type: Some(command),
        }))?;
        let mut responses = Vec::new();
        while let Some(response) = execution.next_response()? {
            let complete = matches!(
                response.response_type,
                Some(pb::execute_plan_response::ResponseType::ResultComplete(_))
            );
            responses.push(response);
            if complete || responses.len() > 1000 {
                break;
            }
        }
        Ok(responses)
    }
}

/// The error for a failed call: unreachable, or what Spark said (its first lines: Spark's
/// messages name the error class and the column or function at fault).
fn refused(remote: &Remote, status: &tonic::Status) -> Error {
    use tonic::Code;
    // A failure below gRPC (the peer does not speak HTTP/2, or hung up) carries its cause.
    match (status.code(), std::error::Error::source(status)) {
        (Code::Unknown | Code::Cancelled | Code::Internal, Some(cause)) => Error::runtime(format!(
            "cannot talk to Spark Connect at {remote} (is a Spark Connect server listening there?): {}",
            clean(&crate::error::error_chain(cause))
        )),
        (Code::Unavailable | Code::DeadlineExceeded, _) => Error::runtime(format!(
            "cannot reach Spark Connect at {remote}: {}",
            clean(
                &std::error::Error::source(status)
                    .map_or_else(|| status.message().to_owned(), crate::error::error_chain)
            )
        )),
        (Code::Unauthenticated | Code::PermissionDenied, _) => Error::runtime(format!(
            "Spark Connect at {remote} refused the credentials: {}",
            clean(status.message())
        )),
        // An HTTP/2 server that is not a gRPC one (a web server, a proxy's error page).
        (_, _) if status.message().contains("grpc-status header missing") => {
            Error::runtime(format!(
                "the server at {remote} answered as a web server, not as Spark Connect (is the address a Spark Connect server's, port 15002 by default?): {}",
                clean(status.message())
            ))
        }
        _ => Error::runtime(format!(
            "Spark at {remote} failed the query: {}",
            clean(status.message())
        )),
    }
}

/// Text from the server, made safe for a terminal (control characters escaped) and kept
/// short: without Java's stack frames, without the advice to turn ANSI mode off (runner sets
/// it), at most 20 lines.
fn clean(text: &str) -> String {
    let stack_frame = |line: &str| {
        let line = line.trim_start();
        line.starts_with("at ") && line.ends_with(')')
            || line.starts_with("... ") && line.ends_with(" more")
    };
    let kept: Vec<&str> = text.lines().filter(|line| !stack_frame(line)).collect();
    let mut lines: Vec<String> = kept
        .iter()
        .take(20)
        .map(|line| crate::error::escape_controls(&without_ansi_advice(line)).into_owned())
        .collect();
    if kept.len() > 20 {
        lines.push("…".into());
    }
    lines.join("\n")
}

/// `line` without Spark's advice to set `spark.sql.ansi.enabled` to `false`: runner sets it to
/// `true` on purpose (as its own engine fails there), so the advice does not apply.
fn without_ansi_advice(line: &str) -> std::borrow::Cow<'_, str> {
    const ADVICE: &str = "If necessary set \"spark.sql.ansi.enabled\" to \"false\"";
    let Some(start) = line.find(ADVICE) else {
        return line.into();
    };
    let rest = &line[start..];
    // The advice is one sentence ("... to bypass this error."); what follows stays.
    let end = rest.find(". ").map_or(rest.len(), |at| at + 2);
    format!("{}{}", &line[..start], &rest[end..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_messages_lose_java_stack_frames_and_the_ansi_advice() {
        let message = "[ARITHMETIC_OVERFLOW] long overflow. Use 'try_add' to tolerate overflow and return NULL instead. If necessary set \"spark.sql.ansi.enabled\" to \"false\" to bypass this error. SQLSTATE: 22003\n\tat org.apache.spark.sql.errors.QueryExecutionErrors$.arithmeticOverflowError(QueryExecutionErrors.scala:640)\n\t... 12 more";
        assert_eq!(
            clean(message),
            "[ARITHMETIC_OVERFLOW] long overflow. Use 'try_add' to tolerate overflow and return NULL instead. SQLSTATE: 22003"
        );
    }

    #[test]
    fn addresses_read_as_pyspark_reads_them() {
        let remote = Remote::parse("sc://spark-master").unwrap();
        assert_eq!((remote.host.as_str(), remote.port), ("spark-master", 15002));
        let remote =
            Remote::parse("sc://h:443/;use_ssl=true;token=s3cret;user_id=ana;x-team=data").unwrap();
        assert_eq!(remote.port, 443);
        assert!(remote.use_ssl);
        assert_eq!(remote.user_id.as_deref(), Some("ana"));
        assert_eq!(remote.headers, [("x-team".to_owned(), "data".to_owned())]);
        assert_eq!(remote.to_string(), "sc://h:443/;use_ssl=true");
        assert!(!format!("{remote:?}").contains("s3cret"));
        let remote = Remote::parse("sc://[::1]:15003").unwrap();
        assert_eq!((remote.host.as_str(), remote.port), ("::1", 15003));
    }

    #[test]
    fn bad_addresses_say_why_without_the_token() {
        for (url, expected) in [
            ("http://h:15002", "starts with sc://"),
            ("sc://:15002", "no host"),
            ("sc://h:99999", "not a port number"),
            ("sc://h/;use_ssl=yes", "`true` or `false`"),
            ("sc://h/;token=s3cret", "unencrypted"),
            ("sc://h/;tokens3cret", "token=…"),
        ] {
            let error = Remote::parse(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("s3cret"), "{url}: {error}");
        }
        // A token to this machine may go without TLS (a local test server).
        assert!(Remote::parse("sc://127.0.0.1/;token=t").is_ok());
    }

    #[test]
    fn server_text_is_made_safe() {
        assert_eq!(clean("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\nc");
    }
}
