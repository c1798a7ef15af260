//! `socket`: serve the result as lines of text to a TCP client, the role of the chapter's
//! `starttootstream.py` forwarder. It listens on `listen`, waits for a client (saying so in the
//! log), and writes one line per row; if the client goes away it waits for the next one.

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use serde::Deserialize;

use super::{BuildSink, Sink, SinkContext};
use crate::data::{cell, column_index, type_label};
use crate::error::{Error, Result};

/// Write rows as lines to a TCP client.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SocketSinkConfig {
    /// The address to listen on, e.g. `127.0.0.1:9876`.
    #[serde(deserialize_with = "crate::config::env::string")]
    pub listen: String,
    /// The column to write; defaults to the first.
    #[serde(default, deserialize_with = "crate::config::env::opt_string")]
    pub column: Option<String>,
    /// `lines`: the value as text; `joined`: a list column's elements joined with spaces.
    #[serde(default)]
    pub format: SocketFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SocketFormat {
    #[default]
    Lines,
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
        }))
    }
}

pub struct SocketSink {
    address: String,
    column: usize,
    listener: Option<TcpListener>,
    client: Option<TcpStream>,
}

impl SocketSink {
    /// The connected client, waiting for one if there is none.
    fn client(&mut self) -> Result<&mut TcpStream> {
        if self.client.is_none() {
            if self.listener.is_none() {
                let listener = TcpListener::bind(&self.address).map_err(|e| {
                    Error::runtime(format!("cannot listen on {}: {e}", self.address))
                })?;
                self.listener = Some(listener);
            }
            tracing::warn!("waiting for a connection on {}", self.address);
            let listener = self
                .listener
                .as_ref()
                .ok_or_else(|| Error::runtime("no listener"))?;
            let (stream, peer) = listener.accept().map_err(|e| {
                Error::runtime(format!(
                    "accepting a client on {} failed: {e}",
                    self.address
                ))
            })?;
            tracing::info!(%peer, "client connected");
            self.client = Some(stream);
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::runtime("no client"))
    }
}

impl Sink for SocketSink {
    fn write(&mut self, result: &RecordBatch, _epoch: u64) -> Result<()> {
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
        let client = self.client()?;
        if let Err(e) = client
            .write_all(text.as_bytes())
            .and_then(|_| client.flush())
        {
            // Like Spark's socket source on the other end, delivery is at most once.
            tracing::warn!(
                "the client went away ({e}); {} line(s) were not delivered",
                result.num_rows()
            );
            self.client = None;
        }
        Ok(())
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
        sink.write(&batch, 0).unwrap();
        sink.write(&text_batch("tags", ["last"]), 1).unwrap();
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
