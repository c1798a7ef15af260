//! `sqlite`: the result into a table of an SQLite database file (SQLite itself is compiled
//! into runner: nothing to install). Each result is written in one transaction that also
//! records the epoch in `runner_epochs`, so a reader sees the old table or the new one, and
//! an epoch a checkpointed stream redoes after a restart is recognised and skipped. Rows go
//! through one prepared statement, many rows per transaction.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use rusqlite::types::Value;
use serde::Deserialize;

use super::database::{self, quote_ident, DbMode, EpochPlan, EPOCHS_TABLE};
use super::{BuildSink, Flow, Sink, SinkContext};
use crate::data::{cell, Cell, ValueType};
use crate::error::{Error, Result};

/// SQLite is compiled in: nothing to install. The table is created from the result's
/// columns when missing (primary key on `key`); an existing one must have them. Each result is
/// written in one transaction that also records its epoch in the `runner_epochs` table, so a
/// checkpointed stream's redone epoch is skipped: every epoch is written once. `replace`: the
/// table holds the latest result; `upsert`: rows replace those with the same key (a stream in
/// `update` mode); `append`: rows are added. Types and guarantees: [Results into a
/// database](../../databases.md).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// The database file, relative to the pipeline file; created (with its directory) when
    /// missing.
    #[serde(deserialize_with = "crate::settings::env::path")]
    pub path: PathBuf,
    /// The table; created from the result's columns when missing (with a primary key on
    /// `key`).
    #[serde(deserialize_with = "crate::settings::env::string")]
    pub table: String,
    /// The columns that name a row: the table's primary key, and what `upsert` matches on.
    #[serde(default)]
    pub key: Vec<String>,
    /// `replace` (default): the table holds the latest result; `upsert`: rows replace the
    /// ones with the same key; `append`: rows are added.
    #[serde(default)]
    pub mode: DbMode,
}

impl BuildSink for SqliteSinkConfig {
    fn output_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn build(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` must name a database file".into());
        }
        let keys = database::check(&self.table, &self.key, self.mode, ctx)?;
        let columns: Vec<(String, ValueType)> = ctx
            .input
            .fields()
            .iter()
            .filter_map(|f| Some((f.name().clone(), ValueType::of(f.data_type())?)))
            .collect();
        // SQLite's names ignore ASCII case: `A` and `a` would be one column.
        for (i, (name, _)) in columns.iter().enumerate() {
            if let Some((other, _)) = columns[..i]
                .iter()
                .find(|(other, _)| other.eq_ignore_ascii_case(name))
            {
                return Err(format!(
                    "columns `{other}` and `{name}` differ only in case, which SQLite does not tell apart: rename one (`rename:`)"
                ));
            }
        }
        Ok(Box::new(SqliteSink {
            path: crate::settings::resolve_against(ctx.base_dir, &self.path),
            table: self.table.clone(),
            columns,
            keys,
            mode: self.mode,
            pipeline: ctx.pipeline.to_owned(),
            // A new stream's epoch ids start at 0 again: none is a redone one.
            stream: database::LedgerStream::of(ctx),
            connection: None,
            epoch: None,
        }))
    }
}

/// The `sqlite` sink at run time: opens the database on first use and writes each result in one
/// transaction.
pub struct SqliteSink {
    path: PathBuf,
    table: String,
    columns: Vec<(String, ValueType)>,
    keys: Vec<usize>,
    mode: DbMode,
    pipeline: String,
    /// The stream whose epochs the ledger records.
    stream: database::LedgerStream,
    connection: Option<rusqlite::Connection>,
    /// The epoch being written (`None` between epochs or when it is skipped), with its rows.
    epoch: Option<(u64, u64)>,
}

/// A column's type in SQLite: timestamps as RFC 3339 text (SQLite's date functions read it),
/// lists as JSON text, booleans as 0 and 1.
fn sql_type(kind: ValueType) -> &'static str {
    match kind {
        ValueType::Integer | ValueType::Bool => "INTEGER",
        ValueType::Float => "REAL",
        ValueType::Text | ValueType::Timestamp | ValueType::TextList => "TEXT",
    }
}

/// A cell as an SQLite value.
fn sql_value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) => Value::Text(s.to_owned()),
        Cell::Int(i) => Value::Integer(i),
        Cell::Float(f) if f.is_nan() => Value::Null,
        Cell::Float(f) => Value::Real(f),
        Cell::Bool(b) => Value::Integer(i64::from(b)),
        Cell::Timestamp(_) => Value::Text(cell.to_text()),
        Cell::List(_) => Value::Text(cell.to_json().to_string()),
    }
}

impl SqliteSink {
    fn error(&self, doing: &str, e: impl std::fmt::Display) -> Error {
        Error::runtime(format!(
            "sqlite {} (table `{}`): {doing}: {e}",
            self.path.display(),
            self.table
        ))
    }

    /// Why SQLite may have failed where its message does not say: it creates the database
    /// and, beside it, its `-wal` and `-shm` files, so the folder must be writable.
    fn folder_hint(&self) -> String {
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        match tempfile::NamedTempFile::new_in(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
                " (the folder {} cannot be written: SQLite creates the database and its -wal and -shm files there)",
                crate::error::escape_path(dir)
            ),
            _ => String::new(),
        }
    }

    /// Opens the database on first use: the file and its folder are created, the ledger and
    /// the table too when missing; an existing table must have the result's columns.
    fn open(&mut self) -> Result<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::io::atomic::make_dirs(dir).map_err(|e| Error::Output {
                path: self.path.clone(),
                source: e,
            })?;
        }
        let connection = rusqlite::Connection::open(&self.path)
            .map_err(|e| self.error("cannot open", format!("{e}{}", self.folder_hint())))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| self.error("cannot set a busy timeout", e))?;
        // Readers are never blocked by a write in progress, and see whole transactions.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| {
                self.error(
                    "cannot use write-ahead logging",
                    format!("{e}{}", self.folder_hint()),
                )
            })?;
        let columns: Vec<(String, &str)> = self
            .columns
            .iter()
            .map(|(name, kind)| (name.clone(), sql_type(*kind)))
            .collect();
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (pipeline TEXT NOT NULL, target TEXT NOT NULL, epoch INTEGER NOT NULL, rows INTEGER NOT NULL, written_at TEXT NOT NULL, stream TEXT, PRIMARY KEY (pipeline, target));
                 {};",
                database::create_table_sql(&self.table, &columns, &self.keys)
            ))
            .map_err(|e| self.error("cannot create the tables", e))?;
        // A ledger from before epochs recorded their stream gets the column.
        let has_stream: bool = connection
            .query_row(
                &format!("SELECT count(*) FROM pragma_table_info('{EPOCHS_TABLE}') WHERE name = 'stream'"),
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.error("cannot read runner_epochs", e))?;
        if !has_stream {
            connection
                .execute_batch(&format!(
                    "ALTER TABLE {EPOCHS_TABLE} ADD COLUMN stream TEXT"
                ))
                .map_err(|e| self.error("cannot add the stream column to runner_epochs", e))?;
        }
        let existing: Vec<String> = {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info({})",
                    sql_text(&self.table)
                ))
                .map_err(|e| self.error("cannot read the table's columns", e))?;
            let names = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(|e| self.error("cannot read the table's columns", e))?;
            names.filter_map(std::result::Result::ok).collect()
        };
        if let Some((missing, _)) = self
            .columns
            .iter()
            // SQLite's names ignore ASCII case.
            .find(|(name, _)| !existing.iter().any(|e| e.eq_ignore_ascii_case(name)))
        {
            return Err(self.error(
                "the table exists without a column of the result",
                format!(
                    "`{missing}` (it has {}); drop the table or name another one",
                    existing.join(", ")
                ),
            ));
        }
        if self.mode == DbMode::Upsert {
            self.check_upsert_key(&connection)?;
        }
        self.connection = Some(connection);
        Ok(())
    }

    /// An existing table an upsert goes to must have the key as its primary key or a unique
    /// index: SQLite's own error names neither the key nor the fix.
    fn check_upsert_key(&self, connection: &rusqlite::Connection) -> Result<()> {
        let keys: Vec<&str> = self
            .keys
            .iter()
            .map(|&k| self.columns[k].0.as_str())
            .collect();
        let names = |sql: String| -> rusqlite::Result<Vec<String>> {
            let mut statement = connection.prepare(&sql)?;
            let names = statement.query_map([], |row| row.get::<_, String>(0))?;
            names.collect()
        };
        let table = sql_text(&self.table);
        let read = (|| -> rusqlite::Result<Vec<Vec<String>>> {
            let mut keyed = vec![names(format!(
                "SELECT name FROM pragma_table_info({table}) WHERE pk > 0"
            ))?];
            for index in names(format!(
                "SELECT name FROM pragma_index_list({table}) WHERE \"unique\" = 1"
            ))? {
                keyed.push(names(format!(
                    "SELECT name FROM pragma_index_info({})",
                    sql_text(&index)
                ))?);
            }
            Ok(keyed)
        })()
        .map_err(|e| self.error("cannot read the table's keys", e))?;
        let same = |columns: &Vec<String>| {
            columns.len() == keys.len()
                && keys
                    .iter()
                    .all(|k| columns.iter().any(|c| c.eq_ignore_ascii_case(k)))
        };
        if read.iter().any(same) {
            return Ok(());
        }
        Err(self.error(
            "the table exists without a key to upsert on",
            format!(
                "`upsert` replaces rows with the same ({}), but the table has no primary key or unique index on them; add one (CREATE UNIQUE INDEX ... ON {}({})), or name a new table for runner to create",
                keys.join(", "),
                quote_ident(&self.table),
                keys.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    /// Rolls back a transaction left open by an epoch that failed.
    fn abandon(&mut self) {
        if self.epoch.take().is_some() {
            if let Some(connection) = &self.connection {
                let _ = connection.execute_batch("ROLLBACK");
            }
        }
    }
}

/// Text as an SQL string literal (for `pragma_table_info`, which takes no parameter there).
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Sink for SqliteSink {
    fn begin(&mut self, epoch: u64) -> Result<()> {
        self.abandon();
        self.open()?;
        let Some(connection) = &self.connection else {
            return Err(Error::runtime("sqlite sink: no connection"));
        };
        connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.error("cannot start a transaction", e))?;
        let last: Option<(i64, Option<String>)> = connection
            .query_row(
                // This stream's row first, whatever the pipeline was called when it was
                // written (a renamed pipeline goes on with its checkpoint); else this name's.
                &format!(
                    "SELECT epoch, stream FROM {EPOCHS_TABLE} WHERE target = ?2 AND (pipeline = ?1 OR stream = ?3) ORDER BY coalesce(stream = ?3, 0) DESC, epoch DESC LIMIT 1"
                ),
                rusqlite::params![&self.pipeline, &self.table, self.stream.id()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(|e| self.error("cannot read runner_epochs", e))?;
        let last = last
            .as_ref()
            .map(|(l, s)| ((*l).max(0) as u64, s.as_deref()));
        match database::plan_epoch(epoch, last, &self.stream) {
            EpochPlan::Skip { last } => {
                let _ = connection.execute_batch("ROLLBACK");
                tracing::warn!(
                    "{} table `{}`: epoch {epoch} was written before (runner_epochs holds epoch {last} of this stream, pipeline `{}`): skipped, as an epoch redone after a restart is. If the checkpoint was deleted, delete that row of runner_epochs",
                    self.path.display(),
                    self.table,
                    self.pipeline
                );
                return Ok(());
            }
            EpochPlan::Write => {}
        }
        if self.mode == DbMode::Replace {
            if let Err(e) =
                connection.execute_batch(&format!("DELETE FROM {}", quote_ident(&self.table)))
            {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(self.error("cannot empty the table", e));
            }
        }
        self.epoch = Some((epoch, 0));
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<Flow> {
        let Some((epoch, written)) = self.epoch else {
            // A skipped epoch: nothing of it is written.
            return Ok(Flow::Enough);
        };
        let Some(connection) = &self.connection else {
            return Err(Error::runtime("sqlite sink: rows written before `begin`"));
        };
        let names: Vec<String> = self.columns.iter().map(|(n, _)| quote_ident(n)).collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let conflict = match self.mode {
            DbMode::Upsert => format!(" {}", database::upsert_clause(&names, &self.keys)),
            DbMode::Replace | DbMode::Append => String::new(),
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){conflict}",
            quote_ident(&self.table),
            names.join(", "),
            placeholders.join(", ")
        );
        let names_written: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(problem) = database::null_key(rows, &self.keys, &names_written, true) {
            let error = self.error("cannot insert rows", problem);
            self.abandon();
            return Err(error);
        }
        let inserted = (|| -> rusqlite::Result<()> {
            let mut statement = connection.prepare_cached(&sql)?;
            let mut values: Vec<Value> = Vec::with_capacity(names.len());
            for row in 0..rows.num_rows() {
                values.clear();
                values.extend(
                    rows.columns()
                        .iter()
                        .map(|c| sql_value(cell(c.as_ref(), row))),
                );
                statement.execute(rusqlite::params_from_iter(values.iter()))?;
            }
            Ok(())
        })();
        if let Err(e) = inserted {
            let error = self.error("cannot insert rows", e);
            self.abandon();
            return Err(error);
        }
        self.epoch = Some((epoch, written + rows.num_rows() as u64));
        Ok(Flow::More)
    }

    fn commit(&mut self) -> Result<()> {
        let Some((epoch, rows)) = self.epoch.take() else {
            return Ok(());
        };
        let Some(connection) = &self.connection else {
            return Err(Error::runtime("sqlite sink: commit before `begin`"));
        };
        let recorded = connection
            .execute(
                &format!(
                    "INSERT INTO {EPOCHS_TABLE} (pipeline, target, epoch, rows, written_at, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (pipeline, target) DO UPDATE SET epoch = excluded.epoch, rows = excluded.rows, written_at = excluded.written_at, stream = excluded.stream"
                ),
                rusqlite::params![
                    self.pipeline,
                    self.table,
                    epoch as i64,
                    rows as i64,
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                    self.stream.id()
                ],
            )
            .and_then(|_| connection.execute_batch("COMMIT"));
        if let Err(e) = recorded {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(self.error("cannot commit", e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::word_counts;

    fn sink(dir: &Path, yaml: &str, streaming: bool, checkpointed: bool) -> Box<dyn Sink> {
        of_stream(dir, yaml, streaming, checkpointed, None)
    }

    fn of_stream(
        dir: &Path,
        yaml: &str,
        streaming: bool,
        checkpointed: bool,
        stream: Option<(&str, bool)>,
    ) -> Box<dyn Sink> {
        of_pipeline("p", dir, yaml, streaming, checkpointed, stream)
    }

    /// A sink of pipeline `pipeline`'s checkpointed stream `id` (its checkpoint new when
    /// `fresh`).
    fn of_pipeline(
        pipeline: &str,
        dir: &Path,
        yaml: &str,
        streaming: bool,
        checkpointed: bool,
        stream: Option<(&str, bool)>,
    ) -> Box<dyn Sink> {
        let config: SqliteSinkConfig = serde_saphyr::from_str(yaml).unwrap();
        let schema = word_counts(&["a"], &[1]).schema();
        let stream_id = crate::sinks::StreamId::default();
        if let Some((id, _)) = stream {
            stream_id.set(id.to_owned()).unwrap();
        }
        config
            .build(&SinkContext {
                input: &schema,
                base_dir: dir,
                streaming,
                appending: false,
                updating: false,
                checkpointed,
                fresh_stream: stream.is_some_and(|(_, fresh)| fresh),
                stream_id,
                pipeline,
            })
            .unwrap()
    }

    fn table(path: &Path, sql: &str) -> Vec<(String, i64)> {
        let connection = rusqlite::Connection::open(path).unwrap();
        let mut statement = connection.prepare(sql).unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn an_upsert_into_a_table_without_its_key_says_which_key_to_add() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let connection = rusqlite::Connection::open(&db).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE plain (word TEXT, count INTEGER);
                 CREATE TABLE indexed (word TEXT, count INTEGER);
                 CREATE UNIQUE INDEX by_word ON indexed (WORD);
                 CREATE TABLE keyed (word TEXT PRIMARY KEY, count INTEGER);",
            )
            .unwrap();
        drop(connection);
        let upsert = |table: &str| {
            let mut sink = sink(
                dir.path(),
                &format!("{{path: k.db, table: {table}, key: [word], mode: upsert}}"),
                false,
                false,
            );
            crate::sinks::write_result(sink.as_mut(), &word_counts(&["a"], &[1]), 0)
        };
        let error = upsert("plain").unwrap_err().to_string();
        assert!(
            error.contains("the table exists without a key to upsert on")
                && error.contains("CREATE UNIQUE INDEX ... ON \"plain\"(\"word\")"),
            "{error}"
        );
        upsert("indexed").unwrap();
        upsert("keyed").unwrap();
    }

    #[test]
    fn replace_upsert_and_append_each_do_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("out/counts.db");
        for (mode, expected) in [
            ("replace", vec![("b".to_owned(), 5), ("c".to_owned(), 1)]),
            (
                "upsert",
                vec![
                    ("a".to_owned(), 1),
                    ("b".to_owned(), 5),
                    ("c".to_owned(), 1),
                ],
            ),
            (
                "append",
                vec![
                    ("a".to_owned(), 1),
                    ("b".to_owned(), 2),
                    ("b".to_owned(), 5),
                    ("c".to_owned(), 1),
                ],
            ),
        ] {
            let mut sink = sink(
                dir.path(),
                &match mode {
                    // A key is the table's primary key: appended rows may repeat a word.
                    "append" => "{path: out/counts.db, table: append, mode: append}".to_owned(),
                    _ => {
                        format!("{{path: out/counts.db, table: {mode}, key: [word], mode: {mode}}}")
                    }
                },
                true,
                false,
            );
            for (epoch, rows) in [
                word_counts(&["a", "b"], &[1, 2]),
                word_counts(&["b", "c"], &[5, 1]),
            ]
            .iter()
            .enumerate()
            {
                crate::sinks::write_result(sink.as_mut(), rows, epoch as u64).unwrap();
            }
            let rows = table(
                &db,
                &format!("SELECT word, count FROM \"{mode}\" ORDER BY word, count"),
            );
            assert_eq!(rows, expected, "{mode}");
        }
        let ledger = table(
            &db,
            "SELECT target, epoch FROM runner_epochs ORDER BY target",
        );
        assert_eq!(
            ledger,
            [
                ("append".to_owned(), 1),
                ("replace".to_owned(), 1),
                ("upsert".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn a_checkpointed_stream_skips_an_epoch_the_ledger_holds() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "{path: c.db, table: t, mode: append}";
        let mut first = sink(dir.path(), yaml, true, true);
        crate::sinks::write_result(first.as_mut(), &word_counts(&["a"], &[1]), 0).unwrap();
        drop(first);
        // A restarted run redoes epoch 0, then goes on with epoch 1.
        let mut again = sink(dir.path(), yaml, true, true);
        crate::sinks::write_result(again.as_mut(), &word_counts(&["a"], &[1]), 0).unwrap();
        crate::sinks::write_result(again.as_mut(), &word_counts(&["b"], &[1]), 1).unwrap();
        let rows = table(
            &dir.path().join("c.db"),
            "SELECT word, count FROM t ORDER BY word",
        );
        assert_eq!(rows, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    }

    #[test]
    fn an_earlier_streams_epochs_are_not_taken_for_redone_ones() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "{path: s.db, table: t, mode: append}";
        // A ledger from before epochs recorded their stream: no `stream` column.
        let db = dir.path().join("s.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE runner_epochs (pipeline TEXT NOT NULL, target TEXT NOT NULL, epoch INTEGER NOT NULL, rows INTEGER NOT NULL, written_at TEXT NOT NULL, PRIMARY KEY (pipeline, target));
                 INSERT INTO runner_epochs VALUES ('p', 't', 5, 1, 'then');",
            )
            .unwrap();
        // The same stream restarted (its checkpoint holds epochs): epoch 2 is a redone one.
        let mut same = of_stream(dir.path(), yaml, true, true, Some(("a", false)));
        crate::sinks::write_result(same.as_mut(), &word_counts(&["old"], &[1]), 2).unwrap();
        drop(same);
        // A new stream (a new checkpoint): its epoch 0 is written, and the ledger names it.
        let mut new = of_stream(dir.path(), yaml, true, true, Some(("b", true)));
        crate::sinks::write_result(new.as_mut(), &word_counts(&["b0"], &[1]), 0).unwrap();
        drop(new);
        // Another new stream, killed before its first commit (no longer fresh): told by id.
        let mut third = of_stream(dir.path(), yaml, true, true, Some(("c", false)));
        crate::sinks::write_result(third.as_mut(), &word_counts(&["c0"], &[1]), 0).unwrap();
        // Its own epoch 0, redone: skipped.
        crate::sinks::write_result(third.as_mut(), &word_counts(&["c0"], &[1]), 0).unwrap();
        let rows = table(&db, "SELECT word, count FROM t ORDER BY word");
        assert_eq!(rows, [("b0".to_owned(), 1), ("c0".to_owned(), 1)]);
    }

    #[test]
    fn a_renamed_pipeline_s_stream_skips_the_epochs_it_wrote_under_its_old_name() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "{path: r.db, table: t, mode: append}";
        let mut first = of_pipeline("old", dir.path(), yaml, true, true, Some(("s", true)));
        for epoch in 0..3 {
            let rows = word_counts(&[&format!("e{epoch}")], &[1]);
            crate::sinks::write_result(first.as_mut(), &rows, epoch).unwrap();
        }
        drop(first);
        // Renamed, restarted from a checkpoint that saved epoch 0: epochs 1 and 2 are redone.
        let mut renamed = of_pipeline("new", dir.path(), yaml, true, true, Some(("s", false)));
        for epoch in 1..4 {
            let rows = word_counts(&[&format!("e{epoch}")], &[1]);
            crate::sinks::write_result(renamed.as_mut(), &rows, epoch).unwrap();
        }
        drop(renamed);
        // And again, with both names in the ledger: epoch 3 was written under the new one.
        let mut again = of_pipeline("new", dir.path(), yaml, true, true, Some(("s", false)));
        crate::sinks::write_result(again.as_mut(), &word_counts(&["e3"], &[1]), 3).unwrap();
        let db = dir.path().join("r.db");
        let rows = table(&db, "SELECT word, count FROM t ORDER BY word");
        let words: Vec<&str> = rows.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["e0", "e1", "e2", "e3"]);
    }

    #[test]
    fn a_failed_epoch_leaves_the_table_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink(
            dir.path(),
            "{path: f.db, table: t, key: [word]}",
            false,
            false,
        );
        crate::sinks::write_result(sink.as_mut(), &word_counts(&["a"], &[1]), 0).unwrap();
        // The same key twice breaks the primary key: the whole result is rolled back.
        let twice = word_counts(&["b", "b"], &[1, 2]);
        assert!(crate::sinks::write_result(sink.as_mut(), &twice, 0).is_err());
        let rows = table(&dir.path().join("f.db"), "SELECT word, count FROM t");
        assert_eq!(rows, [("a".to_owned(), 1)]);
    }

    #[test]
    fn a_table_without_the_results_columns_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (other TEXT)")
            .unwrap();
        let mut sink = sink(dir.path(), "{path: x.db, table: t}", false, false);
        let error = sink.begin(0).unwrap_err().to_string();
        assert!(error.contains("without a column of the result"), "{error}");
        assert!(error.contains("`word`"), "{error}");
    }
}
