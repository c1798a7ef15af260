//! `socket`: serve the result as lines of text to a TCP client, the role of the chapter's
//! `starttootstream.py` forwarder. It listens on `listen`, waits for a client (saying so in the
//! log), and writes one line per row; if the client goes away it waits for the next one.

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::{cell, column_index, type_label};
use crate::error::{Error, Result};

/// Listens, logs "waiting for a connection", then writes one line per row of `column`
/// (`joined`: a list column's elements joined with spaces). If the client goes away it waits for
/// the next one (at most once, like Spark's socket source); a client that reads nothing for
/// `write_timeout` is dropped. The chapter's forwarder: `pipelines/toots_to_socket.yaml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SocketSinkConfig {
    /// The address to listen on, e.g. `127.0.0.1:9876`.
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub listen: String,
    /// The column to write; defaults to the first.
    #[serde(default, deserialize_with = "crate::settings::env::opt_string")]
    pub column: Option<String>,
    /// `lines`: the value as text; `joined`: a list column's elements joined with spaces.
    #[serde(default)]
    pub format: SocketFormat,
    /// A client whose writes of an epoch's lines take longer than this in all (it stopped
    /// reading, or reads too slowly) is dropped and logged, and the next one awaited (default
    /// `30s`).
    #[serde(default, deserialize_with = "crate::settings::duration::opt")]
    #[schemars(with = "Option<String>")]
    pub write_timeout: Option<std::time::Duration>,
}

/// How the `socket` sink turns a cell into a line.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SocketFormat {
    /// The value as text (a list's elements joined with spaces); the default.
    #[default]
    Lines,
    /// A list column's elements joined with spaces (the column must be a list).
    Joined,
}

impl BuildSink for SocketSinkConfig {
    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if ctx.input.fields().is_empty() {
            return Err("the result has no columns to write".into());
        }
        let column = match &self.column {
            Some(name) => column_index(ctx.input, name)?,
            None => 0,
        };
        let data_type = ctx.input.field(column).data_type();
        if self.format == SocketFormat::Joined && !matches!(data_type, DataType::List(_)) {
            return Err(format!(
                "`format: joined` needs a list column, but `{}` holds {}",
                ctx.input.field(column).name(),
                type_label(data_type)
            ));
        }
        self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "listen: `{}` is not an address like 127.0.0.1:9876",
                self.listen
            )
        })?;
        Ok(Box::new(SocketSink {
            address: self.listen.clone(),
            column,
            listener: None,
            client: None,
            write_timeout: self.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
            spent: std::time::Duration::ZERO,
        }))
    }
}

const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `socket` sink at run time: listens on first use and writes each row to the connected client.
pub struct SocketSink {
    address: String,
    column: usize,
    listener: Option<TcpListener>,
    client: Option<TcpStream>,
    write_timeout: std::time::Duration,
    /// The time this epoch's writes to the client have taken so far: past `write_timeout`, a
    /// client that reads, but too slowly, is dropped too. Only time spent writing counts, not
    /// the time between the epoch's batches (the pipeline's, or other sinks').
    spent: std::time::Duration,
}

impl SocketSink {
    /// The connected client, waiting for one if there is none; `None` when the run is asked to
    /// stop while waiting (the wait polls the request, so SIGTERM ends it).
    fn client(&mut self) -> Result<Option<&mut TcpStream>> {
        if self.client.is_none() {
            if self.listener.is_none() {
                let listener = TcpListener::bind(&self.address).map_err(|e| {
                    Error::runtime(format!("cannot listen on {}: {e}", self.address))
                })?;
                listener.set_nonblocking(true).map_err(|e| {
                    Error::runtime(format!("cannot listen on {}: {e}", self.address))
                })?;
                self.listener = Some(listener);
            }
            tracing::warn!("waiting for a connection on {}", self.address);
            let listener = self
                .listener
                .as_ref()
                .ok_or_else(|| Error::runtime("no listener"))?;
            let (stream, peer) = loop {
                match listener.accept() {
                    Ok(accepted) => break accepted,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if crate::cancel::requested() {
                            return Ok(None);
                        }
                        wait_readable(listener, crate::cancel::POLL);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::runtime(format!(
                            "accepting a client on {} failed: {e}",
                            self.address
                        )))
                    }
                }
            };
            tracing::info!(%peer, "client connected");
            // Blocking writes, each at most one poll interval, so a stop request is seen.
            stream
                .set_nonblocking(false)
                .and_then(|_| stream.set_write_timeout(Some(crate::cancel::POLL)))
                .map_err(|e| Error::runtime(format!("client {peer}: {e}")))?;
            self.client = Some(stream);
        }
        Ok(self.client.as_mut())
    }
}

/// Waits until `listener` has a connection to accept, or `timeout` passes.
fn wait_readable(listener: &TcpListener, timeout: std::time::Duration) {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd for a descriptor the listener keeps open during the call.
    unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
}

/// Writes `bytes` to `client`, giving up once the epoch's writes have taken `timeout` in all
/// (`spent` of it before this call, and what this call takes added to it), or when a stop is
/// requested (`Ok(false)`).
fn write_all_or_give_up(
    client: &mut TcpStream,
    mut bytes: &[u8],
    timeout: std::time::Duration,
    spent: &mut std::time::Duration,
) -> std::io::Result<bool> {
    let started = std::time::Instant::now();
    let before = *spent;
    let deadline = started + timeout.saturating_sub(before);
    let result = write_until(client, &mut bytes, timeout, deadline);
    *spent = before + started.elapsed();
    result
}

fn write_until(
    client: &mut TcpStream,
    bytes: &mut &[u8],
    timeout: std::time::Duration,
    deadline: std::time::Instant,
) -> std::io::Result<bool> {
    while !bytes.is_empty() {
        match client.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *bytes = &bytes[n..];
                if !bytes.is_empty() && std::time::Instant::now() >= deadline {
                    return Err(too_slow(timeout));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if crate::cancel::requested() {
                    return Ok(false);
                }
                if std::time::Instant::now() >= deadline {
                    return Err(too_slow(timeout));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn too_slow(timeout: std::time::Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "writing the epoch's lines to it took longer than {} (write_timeout)",
            humantime::format_duration(timeout)
        ),
    )
}

impl Sink for SocketSink {
    fn begin(&mut self, _epoch: u64) -> Result<()> {
        self.spent = std::time::Duration::ZERO;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Sends the rows as they come: a client reads a large result as it is produced.
    fn write(&mut self, result: &RecordBatch) -> Result<Flow> {
        let mut text = String::new();
        let column = result.column(self.column);
        for row in 0..result.num_rows() {
            text.push_str(
                &cell(column.as_ref(), row)
                    .to_text()
                    .replace(['\n', '\r'], " "),
            );
            text.push('\n');
        }
        let timeout = self.write_timeout;
        if self.client()?.is_none() {
            tracing::warn!(
                "stopping: no client took these {} line(s) on {}",
                result.num_rows(),
                self.address
            );
            return Ok(Flow::Enough);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(Flow::More);
        };
        match write_all_or_give_up(client, text.as_bytes(), timeout, &mut self.spent) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("stopping: the client had not taken all lines of the epoch");
                return Ok(Flow::Enough);
            }
            Err(e) => {
                // Like Spark's socket source on the other end, delivery is at most once.
                // Lines written before the failure may still have sat in the kernel's
                // buffers, unread: this batch's are a lower bound of what was lost.
                tracing::warn!(
                    "dropping the client ({e}); at least {} line(s) were not delivered (lines sent earlier may not have been read either)",
                    result.num_rows()
                );
                self.client = None;
                // The next client has the whole `write_timeout` for what is left.
                self.spent = std::time::Duration::ZERO;
            }
        }
        Ok(Flow::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::text_batch;
    use std::io::Read;

    #[test]
    fn waits_for_a_client_and_writes_one_line_per_row() {
        let batch = text_batch("tags", ["rust ai", "go"]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config: SocketSinkConfig =
            serde_saphyr::from_str(&format!("listen: 127.0.0.1:{port}")).unwrap();
        let mut sink = config
            .build(&SinkContext {
                input: &batch.schema(),
                base_dir: std::path::Path::new("."),
                streaming: true,
                appending: false,
                updating: false,
                checkpointed: false,
                fresh_stream: false,
                stream_id: Default::default(),
                pipeline: "test",
            })
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut stream = loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => break s,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            };
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            text
        });
        crate::sinks::write_result(sink.as_mut(), &batch, 0).unwrap();
        crate::sinks::write_result(sink.as_mut(), &text_batch("tags", ["last"]), 1).unwrap();
        drop(sink);
        assert_eq!(reader.join().unwrap(), "rust ai\ngo\nlast\n");
    }

    #[test]
    fn bad_settings_are_build_errors() {
        let batch = text_batch("tags", ["x"]);
        let ctx = SinkContext {
            input: &batch.schema(),
            base_dir: std::path::Path::new("."),
            streaming: false,
            appending: false,
            updating: false,
            checkpointed: false,
            fresh_stream: false,
            stream_id: Default::default(),
            pipeline: "test",
        };
        let config: SocketSinkConfig = serde_saphyr::from_str("{listen: 'localhost'}").unwrap();
        assert!(config.build(&ctx).err().unwrap().contains("not an address"));
        let config: SocketSinkConfig =
            serde_saphyr::from_str("{listen: '127.0.0.1:1', format: joined}").unwrap();
        assert!(config
            .build(&ctx)
            .err()
            .unwrap()
            .contains("needs a list column"));
    }
}
