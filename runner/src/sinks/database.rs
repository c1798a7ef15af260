//! What the database sinks share: how a result's rows go into a table (`mode`), the checks
//! of the table's name and key against the result's columns, and the `runner_epochs` ledger
//! that makes each epoch's write happen once (Spark's idempotent `foreachBatch` pattern).

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use serde::Deserialize;

use super::SinkContext;

/// The table that records, per pipeline and target table, the last epoch written (in the
/// same transaction as the epoch's rows).
pub const EPOCHS_TABLE: &str = "runner_epochs";

/// How each result goes into the table.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DbMode {
    /// The table holds exactly the latest result: its rows are replaced in one transaction
    /// (readers see the old rows or the new ones).
    #[default]
    Replace,
    /// Rows replace the ones with the same `key` and new keys are added (a stream's `update`
    /// output mode).
    Upsert,
    /// Rows are added (a stream's `append` output mode, or a log of every result).
    Append,
}

/// A SQL identifier in double quotes (a quote inside doubled), as SQLite and PostgreSQL read
/// it: any name is taken literally, none can end the statement.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks `table`, `key` and `mode` against the result the sink will receive; returns the key
/// columns' indices.
pub fn check(
    table: &str,
    key: &[String],
    mode: DbMode,
    ctx: &SinkContext,
) -> Result<Vec<usize>, String> {
    if table.trim().is_empty() {
        return Err("`table` must name a table".into());
    }
    if table.contains('\0') {
        return Err("`table` must not contain a NUL character".into());
    }
    if table.eq_ignore_ascii_case(EPOCHS_TABLE) {
        return Err(format!(
            "table `{table}` is reserved: runner keeps its epochs in `{EPOCHS_TABLE}`"
        ));
    }
    if table.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(format!(
            "table `{table}` is reserved: `sqlite_` names are SQLite's own"
        ));
    }
    let schema: &Schema = ctx.input;
    for field in schema.fields() {
        if crate::data::ValueType::of(field.data_type()).is_none() {
            return Err(format!(
                "column `{}` holds {}, which has no database type here",
                field.name(),
                crate::data::type_label(field.data_type())
            ));
        }
    }
    let keys = key
        .iter()
        .map(|k| crate::data::column_index(schema, k).map_err(|e| format!("key: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, _)) = keys
        .iter()
        .enumerate()
        .find(|(i, k)| keys[..*i].contains(k))
    {
        return Err(format!("key: `{}` is listed twice", key[i]));
    }
    match mode {
        DbMode::Upsert if keys.is_empty() => {
            Err("mode `upsert` needs `key`: the columns that name a row (e.g. `key: [hashtag]`)".into())
        }
        DbMode::Replace if ctx.updating => Err(
            "this stream's `update` output mode hands over only the rows that changed: use `mode: upsert` with `key`, or `output_mode: complete`"
                .into(),
        ),
        _ => Ok(keys),
    }
}

/// `CREATE TABLE IF NOT EXISTS` for `columns` (quoted name, SQL type), with a primary key on
/// the `keys` (indices into `columns`).
pub fn create_table_sql(table: &str, columns: &[(String, &str)], keys: &[usize]) -> String {
    let defined: Vec<String> = columns
        .iter()
        .map(|(name, kind)| format!("{} {kind}", quote_ident(name)))
        .collect();
    let key = match keys.is_empty() {
        true => String::new(),
        false => format!(
            ", PRIMARY KEY ({})",
            keys.iter()
                .map(|&k| quote_ident(&columns[k].0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}{key})",
        quote_ident(table),
        defined.join(", ")
    )
}

/// The `ON CONFLICT` clause of an upsert: the other columns take the new row's values.
pub fn upsert_clause(names: &[String], keys: &[usize]) -> String {
    let key_names: Vec<&str> = keys.iter().map(|&k| names[k].as_str()).collect();
    let updates: Vec<String> = (0..names.len())
        .filter(|i| !keys.contains(i))
        .map(|i| format!("{0} = excluded.{0}", names[i]))
        .collect();
    match updates.is_empty() {
        true => format!("ON CONFLICT ({}) DO NOTHING", key_names.join(", ")),
        false => format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            key_names.join(", "),
            updates.join(", ")
        ),
    }
}

/// What is wrong with a result's key columns (`keys`, named in `names`), if anything: a
/// database key cannot be null (a primary key refuses it, or matches no row on upsert).
/// `nan_is_null`: the database stores NaN as NULL (SQLite), so a NaN key is one too.
pub fn null_key(
    batch: &RecordBatch,
    keys: &[usize],
    names: &[&str],
    nan_is_null: bool,
) -> Option<String> {
    use arrow_array::cast::AsArray;
    let holds_nan = |k: usize| {
        nan_is_null
            && batch
                .column(k)
                .as_primitive_opt::<arrow_array::types::Float64Type>()
                .is_some_and(|floats| floats.iter().flatten().any(f64::is_nan))
    };
    let key = keys
        .iter()
        .find(|&&k| batch.column(k).null_count() > 0 || holds_nan(k))?;
    if holds_nan(*key) {
        return Some(format!(
            "the key column `{}` is NaN in a row, which SQLite stores as NULL, and a database key cannot be null: leave such rows out (`filter: cast({} as text) != 'NaN'`)",
            names[*key],
            names[*key]
        ));
    }
    Some(format!(
        "the key column `{}` is null in a row, and a database key cannot be null: leave such rows out (`filter: {} is not null`) or give them a value (`coalesce`)",
        names[*key],
        names[*key]
    ))
}

/// The first of the result's columns an existing table lacks, as an error's text.
pub fn missing_column(
    wanted: &[(String, crate::data::ValueType)],
    existing: &[String],
) -> Option<String> {
    wanted
        .iter()
        .find(|(name, _)| !existing.contains(name))
        .map(|(missing, _)| {
            format!(
                "`{missing}` (it has {}); drop the table or name another one",
                existing.join(", ")
            )
        })
}

/// What `begin` decides for an epoch of a checkpointed stream, from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochPlan {
    /// Write the epoch: the ledger does not hold it, or the run redoes no epochs.
    Write,
    /// The ledger already holds this epoch (or a later one): a redone epoch after a restart.
    Skip {
        /// The last epoch the ledger holds.
        last: u64,
    },
}

/// The stream a database sink writes for, as its ledger needs it.
#[derive(Debug, Clone, Default)]
pub struct LedgerStream {
    /// A checkpointed stream of a positioned source: it redoes epochs after a restart.
    pub checkpointed: bool,
    /// Its checkpoint held no epoch when the run began.
    pub fresh: bool,
    /// Its id, set before its first epoch.
    pub id: super::StreamId,
}

impl LedgerStream {
    /// From the sink's context.
    pub fn of(ctx: &super::SinkContext) -> LedgerStream {
        LedgerStream {
            checkpointed: ctx.checkpointed,
            fresh: ctx.fresh_stream,
            id: ctx.stream_id.clone(),
        }
    }

    /// The id recorded with each epoch.
    pub fn id(&self) -> Option<&str> {
        self.id.get().map(String::as_str)
    }
}

/// Whether epoch `epoch` is written, given the last one the ledger holds and the stream that
/// wrote it. Only a stream with a checkpoint redoes epochs (other runs number their epochs
/// from 0 each time), and only its own: an earlier stream's ledger (its checkpoint removed to
/// start over) names another id, or, written before ledgers had ids, comes before a stream
/// whose checkpoint held no epoch.
pub fn plan_epoch(
    epoch: u64,
    last: Option<(u64, Option<&str>)>,
    stream: &LedgerStream,
) -> EpochPlan {
    let Some((last, wrote)) = last else {
        return EpochPlan::Write;
    };
    let same_stream = match (wrote, stream.id()) {
        (Some(wrote), Some(now)) => wrote == now,
        (None, _) => !stream.fresh,
        (Some(_), None) => true,
    };
    match stream.checkpointed && same_stream && epoch <= last {
        true => EpochPlan::Skip { last },
        false => EpochPlan::Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        assert_eq!(quote_ident("counts"), "\"counts\"");
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn upserts_update_the_other_columns_and_tables_get_their_key() {
        let names = vec!["\"tag\"".to_owned(), "\"count\"".to_owned()];
        assert_eq!(
            upsert_clause(&names, &[0]),
            "ON CONFLICT (\"tag\") DO UPDATE SET \"count\" = excluded.\"count\""
        );
        assert_eq!(
            upsert_clause(&names[..1], &[0]),
            "ON CONFLICT (\"tag\") DO NOTHING"
        );
        assert_eq!(
            create_table_sql("t", &[("tag".into(), "TEXT"), ("n".into(), "BIGINT")], &[0]),
            "CREATE TABLE IF NOT EXISTS \"t\" (\"tag\" TEXT, \"n\" BIGINT, PRIMARY KEY (\"tag\"))"
        );
    }

    #[test]
    fn only_a_checkpointed_stream_skips_epochs_the_ledger_holds() {
        let stream = |checkpointed: bool, fresh: bool, id: Option<&str>| {
            let ids = crate::sinks::StreamId::default();
            if let Some(id) = id {
                ids.set(id.to_owned()).unwrap();
            }
            LedgerStream {
                checkpointed,
                fresh,
                id: ids,
            }
        };
        let mine = stream(true, false, Some("a"));
        assert_eq!(
            plan_epoch(3, Some((3, Some("a"))), &mine),
            EpochPlan::Skip { last: 3 }
        );
        assert_eq!(
            plan_epoch(2, Some((3, Some("a"))), &mine),
            EpochPlan::Skip { last: 3 }
        );
        assert_eq!(plan_epoch(4, Some((3, Some("a"))), &mine), EpochPlan::Write);
        assert_eq!(plan_epoch(0, None, &mine), EpochPlan::Write);
        let unchecked = stream(false, false, None);
        assert_eq!(plan_epoch(0, Some((3, None)), &unchecked), EpochPlan::Write);
        // An earlier stream's ledger: by its id, or (without one) before a new checkpoint.
        assert_eq!(plan_epoch(0, Some((3, Some("b"))), &mine), EpochPlan::Write);
        assert_eq!(
            plan_epoch(0, Some((3, None)), &mine),
            EpochPlan::Skip { last: 3 }
        );
        let fresh = stream(true, true, Some("c"));
        assert_eq!(plan_epoch(0, Some((3, None)), &fresh), EpochPlan::Write);
    }
}
