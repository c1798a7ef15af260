//! `postgres`: the result into a PostgreSQL table (tokio-postgres, TLS by rustls). Each result
//! is written at `commit` in one transaction: rows go in with `COPY ... FROM STDIN BINARY`
//! (through a temporary table for `upsert`), and the epoch is recorded in `runner_epochs` in
//! the same transaction, so a reader sees the old table or the new one and an epoch a
//! checkpointed stream redoes after a restart is recognised and skipped. A lost connection is
//! reconnected with backoff and the epoch retried as a whole (its rows are held until it is
//! committed; the stream waits meanwhile, holding its source back). The URL comes from an
//! environment variable and its password never reaches a log or a message.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use serde::Deserialize;
use tokio_postgres::types::{ToSql, Type};

use super::database::{self, quote_ident, DbMode, EpochPlan, EPOCHS_TABLE};
use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::{cell, Cell, ValueType};
use crate::error::{Error, Result};

/// The URL (`postgres://user:password@host:5432/db?sslmode=require`) is read from the variable
/// `url_env` names, never from the file, and never printed. Rows go by binary `COPY` in one
/// transaction per result, which also records its epoch in `runner_epochs`, so a checkpointed
/// stream's redone epoch is skipped: every epoch is written once. TLS is rustls. A lost
/// connection is reconnected with backoff and the epoch retried whole (a batch run gives up
/// after 60 s). Modes as the `sqlite` sink's. Types and guarantees: [Results into a
/// database](../../databases.md).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The environment variable holding the server's URL,
    /// `postgres://user:password@host:5432/database?sslmode=require` (`sslmode`: `disable`,
    /// `prefer` (default) or `require`; TLS by rustls with the system's and Mozilla's roots).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub url_env: String,
    /// The table (in the connection's schema).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub table: String,
    /// The columns that name a row: the primary key of a table runner creates, and what
    /// `upsert` matches on.
    #[serde(default)]
    pub key: Vec<String>,
    /// `replace` (default): the table holds the latest result; `upsert`: rows replace the
    /// ones with the same key; `append`: rows are added.
    #[serde(default)]
    pub mode: DbMode,
    /// Create the table from the result's columns when it is missing (default `true`).
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

/// How long a batch run keeps trying to reach the server before it fails (a stream keeps
/// trying until it is stopped).
const BATCH_RETRY_FOR: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl BuildSink for PostgresSinkConfig {
    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if self.url_env.trim().is_empty() {
            return Err("`url_env` must name an environment variable".into());
        }
        // The URL and its password are secrets for every output, from the start.
        if let Ok(url) = std::env::var(&self.url_env) {
            register_secrets(&url);
        }
        let keys = database::check(&self.table, &self.key, self.mode, ctx)?;
        // PostgreSQL cuts longer names to 63 bytes without a word: the table would be made
        // with the shortened name, and the next run would not find the column it writes.
        let long = std::iter::once(("the table name", self.table.as_str())).chain(
            ctx.input
                .fields()
                .iter()
                .map(|f| ("the column name", f.name().as_str())),
        );
        for (what, name) in long {
            if name.len() > MAX_NAME_BYTES {
                return Err(format!(
                    "{what} `{}` is {} bytes long; PostgreSQL keeps {MAX_NAME_BYTES} of a name and cuts the rest, so a later run would not find it: shorten it (`rename` for a column)",
                    crate::error::shortened(name),
                    name.len()
                ));
            }
        }
        let columns: Vec<(String, ValueType)> = ctx
            .input
            .fields()
            .iter()
            .filter_map(|f| Some((f.name().clone(), ValueType::of(f.data_type())?)))
            .collect();
        Ok(Box::new(PostgresSink {
            settings: Arc::new(Settings {
                url_env: self.url_env.clone(),
                table: self.table.clone(),
                columns,
                keys,
                mode: self.mode,
                create: self.create,
                pipeline: ctx.pipeline.to_owned(),
                // A new stream's epoch ids start at 0 again: none is a redone one.
                stream: database::LedgerStream::of(ctx),
                streaming: ctx.streaming,
            }),
            runtime: None,
            client: None,
            epoch: None,
        }))
    }
}

/// The longest name (of a table, a column) PostgreSQL keeps whole, in bytes (its
/// `NAMEDATALEN` less one).
const MAX_NAME_BYTES: usize = 63;

/// The URL and the password in it, for the redaction of every output.
fn register_secrets(url: &str) {
    crate::redact::register(url);
    if let Ok(config) = url.parse::<tokio_postgres::Config>() {
        if let Some(password) = config.get_password() {
            if let Ok(password) = std::str::from_utf8(password) {
                crate::redact::register(password);
            }
        }
    }
}

/// What a commit needs, shared with the thread that runs it.
struct Settings {
    url_env: String,
    table: String,
    columns: Vec<(String, ValueType)>,
    keys: Vec<usize>,
    mode: DbMode,
    create: bool,
    pipeline: String,
    /// The stream whose epochs the ledger records.
    stream: database::LedgerStream,
    streaming: bool,
}

/// The `postgres` sink at run time: holds each result's rows until commit, then writes them in one
/// transaction (connecting when needed).
pub struct PostgresSink {
    settings: Arc<Settings>,
    /// The sink's own runtime: the client's connection runs on it between epochs.
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<tokio_postgres::Client>,
    /// The epoch being written and its rows, held until they are committed.
    epoch: Option<(u64, Vec<RecordBatch>)>,
}

/// Why a commit failed: the connection (retried) or anything else (not).
enum Failure {
    Connection(String),
    Fatal(Error),
}

impl Settings {
    fn error(&self, doing: &str, e: impl std::fmt::Display) -> Error {
        Error::runtime(crate::redact::redact(&format!(
            "postgres table `{}`: {doing}: {e}",
            self.table
        )))
    }

    fn classify(&self, doing: &str, e: tokio_postgres::Error) -> Failure {
        use tokio_postgres::error::SqlState;
        // Lost: closed, failed in the network (an I/O error: refused, reset, timed out,
        // unresolved), or ended by the server. Anything else (TLS refused, a password
        // missing, a value refused) fails the same way when tried again.
        // A TLS handshake refused (a certificate not trusted, another host's name) comes as
        // an I/O error too, of invalid data: that fails the same way every time.
        let io = std::error::Error::source(&e)
            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                io.kind() != std::io::ErrorKind::InvalidData
                    && !io
                        .get_ref()
                        .is_some_and(|inner| inner.is::<rustls::Error>())
            });
        let lost = (e.is_closed()
            || io
            || e.code().is_some_and(|code| {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(code)
            }))
            && !is_auth_failure(&e);
        let message = error_text(&e);
        if lost {
            Failure::Connection(crate::redact::redact(&format!("{doing}: {message}")).into_owned())
        } else {
            Failure::Fatal(self.error(doing, message))
        }
    }

    fn url(&self) -> Result<String> {
        let url = std::env::var(&self.url_env).map_err(|_| {
            Error::runtime(format!(
                "postgres table `{}`: the environment variable {} is not set: export the server's URL in it: postgres://, then `user:password@` (credentials), `host:5432/database`",
                self.table, self.url_env
            ))
        })?;
        register_secrets(&url);
        Ok(url)
    }
}

fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

/// The server's message with its detail, else the error and its cause.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => crate::error::error_chain(e),
    }
}

/// The column of the upsert's temporary table that numbers the rows as sent, quoted: a name
/// a result hardly has, lengthened until none of `columns` has it.
fn incoming_order(columns: &[(String, ValueType)]) -> String {
    let mut name = "runner#order".to_owned();
    while columns.iter().any(|(column, _)| *column == name) {
        name.push('#');
    }
    quote_ident(&name)
}

/// A column's type in PostgreSQL.
fn sql_type(kind: ValueType) -> (&'static str, Type) {
    match kind {
        ValueType::Text => ("TEXT", Type::TEXT),
        ValueType::Integer => ("BIGINT", Type::INT8),
        ValueType::Float => ("DOUBLE PRECISION", Type::FLOAT8),
        ValueType::Bool => ("BOOLEAN", Type::BOOL),
        ValueType::Timestamp => ("TIMESTAMPTZ", Type::TIMESTAMPTZ),
        ValueType::TextList => ("TEXT[]", Type::TEXT_ARRAY),
    }
}

/// A cell as a value COPY sends.
fn sql_value(cell: Cell<'_>, kind: ValueType) -> Box<dyn ToSql + Sync + Send> {
    match cell {
        // A null of the column's own type: binary COPY checks every value's type.
        Cell::Null => match kind {
            ValueType::Text => Box::new(Option::<String>::None),
            ValueType::Integer => Box::new(Option::<i64>::None),
            ValueType::Float => Box::new(Option::<f64>::None),
            ValueType::Bool => Box::new(Option::<bool>::None),
            ValueType::Timestamp => Box::new(Option::<chrono::DateTime<chrono::Utc>>::None),
            ValueType::TextList => Box::new(Option::<Vec<String>>::None),
        },
        Cell::Text(s) => Box::new(s.to_owned()),
        Cell::Int(i) => Box::new(i),
        Cell::Float(f) => Box::new(f),
        Cell::Bool(b) => Box::new(b),
        Cell::Timestamp(t) => Box::new(chrono::DateTime::from_timestamp_micros(t)),
        Cell::List(items) => Box::new(
            items
                .into_iter()
                .map(|item| match item {
                    Cell::Null => None,
                    other => Some(other.to_text()),
                })
                .collect::<Vec<Option<String>>>(),
        ),
    }
}

/// The first text (or list item) of `batch` holding a NUL character, which PostgreSQL's text
/// cannot hold, named by column and row (counted from 1 over the result, `before` rows
/// before this batch); COPY's own message names neither.
fn nul_in_text(batch: &RecordBatch, names: &[&str], before: u64) -> Option<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let holds_nul = |texts: &arrow_array::StringArray| -> Option<usize> {
        memchr::memchr(0, texts.value_data())?;
        (0..texts.len()).find(|&row| texts.is_valid(row) && texts.value(row).contains('\0'))
    };
    for (column, array) in batch.columns().iter().enumerate() {
        let row = match array.data_type() {
            arrow_schema::DataType::Utf8 => holds_nul(array.as_string::<i32>()),
            arrow_schema::DataType::List(_) => {
                let lists = array.as_list::<i32>();
                lists
                    .values()
                    .as_string_opt::<i32>()
                    .and_then(holds_nul)
                    .and_then(|_| {
                        (0..lists.len()).find(|&row| {
                            lists.is_valid(row)
                                && lists
                                    .value(row)
                                    .as_string_opt::<i32>()
                                    .and_then(holds_nul)
                                    .is_some()
                        })
                    })
            }
            _ => None,
        };
        if let Some(row) = row {
            let name = crate::error::escape_controls(names.get(column).copied().unwrap_or("?"));
            let cure = match array.data_type() {
                arrow_schema::DataType::Utf8 => {
                    format!("leave such rows out (`filter` with `not contains(`{name}`, '\\0')`)")
                }
                _ => "leave such rows or items out before the sink".to_owned(),
            };
            return Some(format!(
                "the text in column `{name}` of the result's row {} holds a NUL character (U+0000), which PostgreSQL's text cannot hold; {cure}",
                before + row as u64 + 1
            ));
        }
    }
    None
}

/// TLS by rustls, trusting the system's certificates and Mozilla's (bundled, for hosts
/// without a certificate store).
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

impl PostgresSink {
    /// Connects, writes the epoch's rows and records it, in one transaction; a lost
    /// connection is tried again with backoff (the whole epoch).
    fn commit_epoch(&mut self, epoch: u64, batches: &[RecordBatch]) -> Result<()> {
        let settings = self.settings.clone();
        if self.runtime.is_none() {
            self.runtime = Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("runner-postgres")
                    .enable_all()
                    .build()
                    .map_err(|e| settings.error("cannot start its runtime", e))?,
            );
        }
        let url = settings.url()?;
        let started = std::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = {
                let (runtime, client) = (self.runtime.as_ref(), &mut self.client);
                let Some(runtime) = runtime else {
                    return Err(settings.error("no runtime", "internal"));
                };
                // The run may be on an async thread of its own: this sink's runtime is
                // entered from a thread that is not.
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            runtime.block_on(write_epoch(&settings, &url, client, epoch, batches))
                        })
                        .join()
                        .unwrap_or_else(|_| {
                            Err(Failure::Fatal(Error::runtime("the postgres sink panicked")))
                        })
                })
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Connection(why)) => {
                    self.client = None;
                    let give_up = crate::cancel::requested()
                        || (!settings.streaming && started.elapsed() > BATCH_RETRY_FOR);
                    if give_up {
                        return Err(Error::runtime(format!(
                            "postgres table `{}`: {why} (gave up after {:.0} s)",
                            settings.table,
                            started.elapsed().as_secs_f64()
                        )));
                    }
                    tracing::warn!(
                        "postgres table `{}`: {why}; trying epoch {epoch} again in {} ms",
                        settings.table,
                        backoff.as_millis()
                    );
                    let until = std::time::Instant::now() + backoff;
                    while std::time::Instant::now() < until && !crate::cancel::requested() {
                        std::thread::sleep(
                            crate::cancel::POLL.min(until - std::time::Instant::now()),
                        );
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// One attempt at an epoch: connect when needed, then the transaction.
async fn write_epoch(
    settings: &Settings,
    url: &str,
    client: &mut Option<tokio_postgres::Client>,
    epoch: u64,
    batches: &[RecordBatch],
) -> std::result::Result<(), Failure> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Failure::Fatal(settings.error(
                &format!(
                    "the URL in {} cannot be read (postgres://host:port/database?option=value)",
                    settings.url_env
                ),
                crate::error::error_chain(&e),
            ))
        })?;
        let (connected, connection) = config
            .connect(tls())
            .await
            .map_err(|e| settings.classify("cannot connect", e))?;
        tokio::spawn(async move {
            // Ends with the connection; its error shows in the next statement's.
            let _ = connection.await;
        });
        *client = Some(connected);
        prepare_tables(settings, client.as_ref().expect("just connected")).await?;
    }
    let Some(client) = client.as_mut() else {
        return Err(Failure::Connection("no connection".into()));
    };
    let transaction = client
        .transaction()
        .await
        .map_err(|e| settings.classify("cannot start a transaction", e))?;
    let last: Option<(i64, Option<String>)> = transaction
        .query_opt(
            &format!(
                // This stream's row first, whatever the pipeline was called when it was
                // written (a renamed pipeline goes on with its checkpoint); else this name's.
                "SELECT epoch, stream FROM {EPOCHS_TABLE} WHERE target = $2 AND (pipeline = $1 OR stream = $3) ORDER BY COALESCE(stream = $3, false) DESC, epoch DESC LIMIT 1 FOR UPDATE"
            ),
            &[&settings.pipeline, &settings.table, &settings.stream.id()],
        )
        .await
        .map_err(|e| settings.classify("cannot read runner_epochs", e))?
        .map(|row| (row.get(0), row.get(1)));
    let last = last
        .as_ref()
        .map(|(l, s)| ((*l).max(0) as u64, s.as_deref()));
    if let EpochPlan::Skip { last } = database::plan_epoch(epoch, last, &settings.stream) {
        tracing::warn!(
            "postgres table `{}`: epoch {epoch} was written before (runner_epochs holds epoch {last} of this stream, pipeline `{}`): skipped, as an epoch redone after a restart is. If the checkpoint was deleted, delete that row of runner_epochs",
            settings.table,
            settings.pipeline
        );
        return Ok(());
    }
    let table = quote_ident(&settings.table);
    let names: Vec<String> = settings
        .columns
        .iter()
        .map(|(n, _)| quote_ident(n))
        .collect();
    let types: Vec<Type> = settings
        .columns
        .iter()
        .map(|(_, k)| sql_type(*k).1)
        .collect();
    let column_names: Vec<&str> = settings.columns.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(problem) = batches
        .iter()
        .find_map(|batch| database::null_key(batch, &settings.keys, &column_names, false))
    {
        return Err(Failure::Fatal(
            settings.error("cannot write the rows", problem),
        ));
    }
    if settings.mode == DbMode::Replace {
        transaction
            .batch_execute(&format!("DELETE FROM {table}"))
            .await
            .map_err(|e| settings.classify("cannot empty the table", e))?;
    }
    // Upserts go through a temporary table: COPY cannot resolve conflicts itself.
    let order = incoming_order(&settings.columns);
    let copy_into = match settings.mode {
        DbMode::Upsert => {
            // Numbered as sent, so that of rows with one key the last is kept, as SQLite's
            // row-by-row upsert keeps it.
            // The result's columns with the table's types and nothing else: `LIKE` would
            // copy a NOT NULL of a column the result leaves to its default (`updated_at`).
            transaction
                .batch_execute(&format!(
                    "CREATE TEMPORARY TABLE runner_incoming ON COMMIT DROP AS SELECT {} FROM {table} WITH NO DATA;
                     ALTER TABLE runner_incoming ADD COLUMN {order} bigint GENERATED ALWAYS AS IDENTITY",
                    names.join(", ")
                ))
                .await
                .map_err(|e| settings.classify("cannot create a temporary table", e))?;
            "runner_incoming".to_owned()
        }
        DbMode::Replace | DbMode::Append => table.clone(),
    };
    let sink = transaction
        .copy_in(&format!(
            "COPY {copy_into} ({}) FROM STDIN BINARY",
            names.join(", ")
        ))
        .await
        .map_err(|e| settings.classify("cannot start COPY", e))?;
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    let mut rows = 0u64;
    for batch in batches {
        if let Some(problem) = nul_in_text(batch, &column_names, rows) {
            return Err(Failure::Fatal(
                settings.error("cannot write the rows", problem),
            ));
        }
        for row in 0..batch.num_rows() {
            let values: Vec<Box<dyn ToSql + Sync + Send>> = batch
                .columns()
                .iter()
                .zip(&settings.columns)
                .map(|(c, (_, kind))| sql_value(cell(c.as_ref(), row), *kind))
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(|e| settings.classify("cannot send rows", e))?;
            rows += 1;
        }
    }
    writer
        .finish()
        .await
        .map_err(|e| settings.classify("cannot finish COPY", e))?;
    if settings.mode == DbMode::Upsert {
        let conflict = database::upsert_clause(&names, &settings.keys);
        let keys: Vec<&str> = settings.keys.iter().map(|&k| names[k].as_str()).collect();
        transaction
            .batch_execute(&format!(
                "INSERT INTO {table} ({0}) SELECT DISTINCT ON ({1}) {0} FROM runner_incoming ORDER BY {1}, {order} DESC {conflict}",
                names.join(", "),
                keys.join(", ")
            ))
            .await
            .map_err(|e| settings.classify("cannot merge the rows", e))?;
    }
    transaction
        .execute(
            &format!(
                "INSERT INTO {EPOCHS_TABLE} (pipeline, target, epoch, rows, written_at, stream) VALUES ($1, $2, $3, $4, now(), $5)
                 ON CONFLICT (pipeline, target) DO UPDATE SET epoch = excluded.epoch, rows = excluded.rows, written_at = excluded.written_at, stream = excluded.stream"
            ),
            &[
                &settings.pipeline,
                &settings.table,
                &(epoch as i64),
                &(rows as i64),
                &settings.stream.id(),
            ],
        )
        .await
        .map_err(|e| settings.classify("cannot record the epoch", e))?;
    transaction
        .commit()
        .await
        .map_err(|e| settings.classify("cannot commit", e))
}

/// The ledger, and the table when it is missing and may be created; an existing table must
/// have the result's columns.
/// Runs `CREATE TABLE IF NOT EXISTS ...` statements. Two sessions creating one table at the same
/// moment both find it missing, and the second fails on the catalog's unique index (a known
/// PostgreSQL race): the table is there then, so the statements are run once more.
async fn create_if_missing(
    client: &tokio_postgres::Client,
    sql: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    match client.batch_execute(sql).await {
        Err(e)
            if e.code().is_some_and(|code| {
                [
                    SqlState::UNIQUE_VIOLATION,
                    SqlState::DUPLICATE_TABLE,
                    SqlState::DUPLICATE_OBJECT,
                ]
                .contains(code)
            }) =>
        {
            client.batch_execute(sql).await
        }
        done => done,
    }
}

async fn prepare_tables(
    settings: &Settings,
    client: &tokio_postgres::Client,
) -> std::result::Result<(), Failure> {
    create_if_missing(
        client,
        &format!(
            "CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (pipeline TEXT NOT NULL, target TEXT NOT NULL, epoch BIGINT NOT NULL, rows BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL, stream TEXT, PRIMARY KEY (pipeline, target));
             ALTER TABLE {EPOCHS_TABLE} ADD COLUMN IF NOT EXISTS stream TEXT"
        ),
    )
    .await
    .map_err(|e| settings.classify("cannot create runner_epochs", e))?;
    let described: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            &[&settings.table],
        )
        .await
        .map_err(|e| settings.classify("cannot read the table's columns", e))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let existing: Vec<String> = described.iter().map(|(name, _)| name.clone()).collect();
    if existing.is_empty() {
        if !settings.create {
            return Err(Failure::Fatal(settings.error(
                "the table does not exist",
                "create it, or leave `create` at true",
            )));
        }
        let columns: Vec<(String, &str)> = settings
            .columns
            .iter()
            .map(|(name, kind)| (name.clone(), sql_type(*kind).0))
            .collect();
        return create_if_missing(
            client,
            &database::create_table_sql(&settings.table, &columns, &settings.keys),
        )
        .await
        .map_err(|e| settings.classify("cannot create the table", e));
    }
    if let Some(missing) = database::missing_column(&settings.columns, &existing) {
        return Err(Failure::Fatal(
            settings.error("the table exists without a column of the result", missing),
        ));
    }
    if settings.mode == DbMode::Upsert {
        check_upsert_key(settings, client).await?;
    }
    // Binary COPY sends each value in its own type's format: a column of another type would
    // refuse it with a message that names no column.
    for (name, kind) in &settings.columns {
        let Some((_, udt)) = described.iter().find(|(column, _)| column == name) else {
            continue;
        };
        let (sql, _) = sql_type(*kind);
        if !takes(udt, *kind) {
            return Err(Failure::Fatal(settings.error(
                "the table exists with a column of another type",
                format!(
                    "its column `{name}` is {udt}, the result's is {} ({sql} here): change the column (`ALTER TABLE {} ALTER COLUMN {} TYPE {sql}`), drop the table, or name another one",
                    kind.name(),
                    quote_ident(&settings.table),
                    quote_ident(name)
                ),
            )));
        }
    }
    Ok(())
}

/// An existing table upserted into must have a primary key or unique index on exactly the
/// sink's `key` columns (without a predicate or expression): `ON CONFLICT` needs one, and
/// PostgreSQL's own message ("there is no unique or exclusion constraint matching the ON
/// CONFLICT specification") says neither which columns nor how to add it.
async fn check_upsert_key(
    settings: &Settings,
    client: &tokio_postgres::Client,
) -> std::result::Result<(), Failure> {
    let keyed: Vec<Vec<String>> = client
        .query(
            "SELECT array_agg(a.attname::text) FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass(format('%I.%I', current_schema(), $1::text)) \
             AND i.indisunique AND i.indisvalid AND i.indimmediate \
             AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid",
            &[&settings.table],
        )
        .await
        .map_err(|e| settings.classify("cannot read the table's keys", e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let keys: Vec<&str> = settings
        .keys
        .iter()
        .map(|&k| settings.columns[k].0.as_str())
        .collect();
    let same = |columns: &Vec<String>| {
        columns.len() == keys.len() && keys.iter().all(|k| columns.iter().any(|c| c == k))
    };
    if keyed.iter().any(same) {
        return Ok(());
    }
    Err(Failure::Fatal(settings.error(
        "the table exists without a key to upsert on",
        format!(
            "`upsert` replaces rows with the same ({}), but the table has no primary key or unique index on them; add one (CREATE UNIQUE INDEX ON {}({})), or name a new table for runner to create",
            keys.join(", "),
            quote_ident(&settings.table),
            keys.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
        ),
    )))
}

/// Whether a column of PostgreSQL's type `udt` (as `information_schema` names it) takes the
/// values binary COPY sends for `kind`: the same binary format (text's for the character
/// types; `timestamp` reads `timestamptz`'s microseconds as they are, in UTC). An array's
/// element type must be the one sent.
fn takes(udt: &str, kind: ValueType) -> bool {
    match kind {
        ValueType::Text => matches!(udt, "text" | "varchar" | "bpchar" | "citext" | "name"),
        ValueType::Integer => udt == "int8",
        ValueType::Float => udt == "float8",
        ValueType::Bool => udt == "bool",
        ValueType::Timestamp => matches!(udt, "timestamptz" | "timestamp"),
        ValueType::TextList => udt == "_text",
    }
}

impl Sink for PostgresSink {
    /// The URL's variable is set and reads as a URL, before any data is read (connecting
    /// waits for the first commit: a stream goes on while the server is away).
    fn ready(&self) -> Result<()> {
        let url = self.settings.url()?;
        url.parse::<tokio_postgres::Config>()
            .map(|_| ())
            .map_err(|e: tokio_postgres::Error| {
                self.settings.error(
                    &format!(
                        "the URL in {} cannot be read (postgres://host:port/database?option=value)",
                        self.settings.url_env
                    ),
                    crate::error::error_chain(&e),
                )
            })
    }

    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.epoch = Some((epoch, Vec::new()));
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        match self.epoch.as_mut() {
            // Held (shared, not copied) until the epoch is committed, to retry it whole.
            Some((_, batches)) => batches.push(rows.clone()),
            None => return Err(Error::runtime("postgres sink: rows written before `begin`")),
        }
        Ok(Flow::More)
    }

    fn commit(&mut self) -> Result<()> {
        let Some((epoch, batches)) = self.epoch.take() else {
            return Err(Error::runtime("postgres sink: commit before `begin`"));
        };
        self.commit_epoch(epoch, &batches)
    }
}

impl Drop for PostgresSink {
    fn drop(&mut self) {
        self.client = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
