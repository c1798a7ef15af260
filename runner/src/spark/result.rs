//! The result of a plan run on Spark, read as a batch source: the local steps and sinks after
//! it run on it exactly as on any input. Spark's Arrow IPC batches are the morsels; each is
//! decoded with runner's own Arrow and checked against the columns the local plan expects
//! (names, types, nulls) — a server's answer is foreign data. At most `max_rows` rows are
//! taken: a result that would exhaust this machine's memory fails instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use runner_spark_connect_proto as pb;

use super::connect::{Execution, Remote, Session};
use crate::error::{Error, Result};
use crate::sources::{BatchSource, Morsel, Morsels, Position};

/// A plan's result on Spark, read as a batch source: each Arrow batch the server sends is a morsel.
pub struct SparkResult {
    relation: pb::Relation,
    remote: Remote,
    schema: SchemaRef,
    max_rows: u64,
    /// Rows decoded so far (checked against `max_rows` too: the batches' own row counts are
    /// the server's word).
    rows: AtomicU64,
    origin: Arc<str>,
}

impl SparkResult {
    /// The result of `relation` on `remote`, expected to have the columns `schema`; more than
    /// `max_rows` rows fail the run. Nothing is sent until it is opened.
    pub fn new(relation: pb::Relation, remote: Remote, schema: SchemaRef, max_rows: u64) -> Self {
        let origin: Arc<str> = Arc::from(format!("the result from Spark Connect at {remote}"));
        SparkResult {
            relation,
            remote,
            schema,
            max_rows,
            rows: AtomicU64::new(0),
            origin,
        }
    }

    fn too_many(&self) -> Error {
        Error::runtime(format!(
            "the result from Spark has more than {} rows (engine.max_collect_rows): aggregate or filter more on Spark, or raise the limit",
            self.max_rows
        ))
    }
}

/// The batches of an execution, as morsels in the order Spark sent them.
struct Batches<'a> {
    source: &'a SparkResult,
    execution: Option<Execution>,
    announced_rows: u64,
    index: u64,
}

impl Iterator for Batches<'_> {
    type Item = Result<Morsel>;

    fn next(&mut self) -> Option<Result<Morsel>> {
        use pb::execute_plan_response::ResponseType;
        loop {
            let execution = self.execution.as_mut()?;
            let response = match execution.next_response() {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.execution = None;
                    return None;
                }
                Err(error) => {
                    self.execution = None;
                    return Some(Err(error));
                }
            };
            match response.response_type {
                Some(ResponseType::ArrowBatch(batch)) => {
                    self.announced_rows = self
                        .announced_rows
                        .saturating_add(u64::try_from(batch.row_count).unwrap_or(0));
                    if self.announced_rows > self.source.max_rows {
                        self.execution = None;
                        return Some(Err(self.source.too_many()));
                    }
                    let morsel = Morsel {
                        bytes: batch.data.to_vec(),
                        origin: self.source.origin.clone(),
                        position: Position::Offset(self.index),
                    };
                    self.index += 1;
                    return Some(Ok(morsel));
                }
                Some(ResponseType::ResultComplete(_)) => {
                    self.execution = None;
                    return None;
                }
                // Schema, metrics, progress: nothing the result needs.
                _ => continue,
            }
        }
    }
}

impl SparkResult {
    /// Every batch of one morsel ([`BatchSource::decode_each`] hands them on).
    fn batches(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        let bad = |e: &dyn std::fmt::Display| {
            let said = e.to_string();
            if said.contains("Invalid UTF8") {
                // Spark's text reader passes a file's bytes on as they are.
                return Error::runtime(format!(
                    "{}: Spark's result holds text that is not UTF-8 (runner's reader would repair it: run with --engine local, or repair the input)",
                    self.origin
                ));
            }
            Error::runtime(format!(
                "{}: an Arrow batch that cannot be read: {said}",
                self.origin
            ))
        };
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(morsel.bytes), None)
                .map_err(|e| bad(&e))?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            let rows = self
                .rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed)
                + batch.num_rows() as u64;
            if rows > self.max_rows {
                return Err(self.too_many());
            }
            batches.push(
                conform(batch, &self.schema)
                    .map_err(|e| Error::runtime(format!("{}: {e}", self.origin)))?,
            );
        }
        Ok(batches)
    }
}

impl BatchSource for SparkResult {
    fn decode_each(
        &self,
        morsel: Morsel,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.batches(morsel)?.into_iter().try_for_each(emit)
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&self) -> Result<Morsels<'_>> {
        self.rows.store(0, Ordering::Relaxed);
        let session = Session::connect(&self.remote)?;
        let execution = session.execute(pb::plan::OpType::Root(self.relation.clone()))?;
        Ok(Morsels::Sequential(Box::new(Batches {
            source: self,
            execution: Some(execution),
            announced_rows: 0,
            index: 0,
        })))
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Every row of `relation` run in `session`, as one batch of `schema`'s columns; at most
/// `max_rows` rows (a stream's result, read once per epoch).
pub fn collect(
    session: &Session,
    relation: &pb::Relation,
    schema: &SchemaRef,
    max_rows: u64,
) -> Result<RecordBatch> {
    let source = SparkResult::new(
        relation.clone(),
        session.remote().clone(),
        schema.clone(),
        max_rows,
    );
    let batches = Batches {
        source: &source,
        execution: Some(session.execute(pb::plan::OpType::Root(relation.clone()))?),
        announced_rows: 0,
        index: 0,
    };
    let mut decoded = Vec::new();
    for morsel in batches {
        decoded.extend(source.decode(morsel?)?);
    }
    arrow_select::concat::concat_batches(schema, &decoded)
        .map_err(|e| Error::runtime(format!("{}: {e}", source.origin)))
}

/// `batch` as the columns `schema` names: the same names in the same order, each cast to the
/// type the local plan expects (Spark's string may come as a large string, its timestamps
/// in the session's time zone), nulls only where the column may hold them.
pub fn conform(batch: RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let got: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let want: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if got != want {
        return Err(format!(
            "its columns are [{}], not the expected [{}]",
            got.join(", "),
            want.join(", ")
        ));
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(schema.fields()) {
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            arrow_cast::cast(column, field.data_type()).map_err(|e| {
                format!(
                    "column `{}` holds {}, which does not convert to {}: {e}",
                    field.name(),
                    crate::data::type_label(column.data_type()),
                    crate::data::type_label(field.data_type())
                )
            })?
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!("column `{}` holds nulls", field.name()));
        }
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int32Array, LargeStringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn expected() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, false),
        ]))
    }

    fn spark_batch(names: [&str; 2], counts: Vec<Option<i32>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(names[0], DataType::LargeUtf8, true),
            Field::new(names[1], DataType::Int32, true),
        ]));
        let words = LargeStringArray::from(vec!["a"; counts.len()]);
        RecordBatch::try_new(
            schema,
            vec![Arc::new(words), Arc::new(Int32Array::from(counts))],
        )
        .unwrap()
    }

    #[test]
    fn results_are_cast_to_the_local_columns() {
        let batch = conform(spark_batch(["word", "count"], vec![Some(3)]), &expected()).unwrap();
        assert_eq!(batch.schema(), expected());
    }

    #[test]
    fn results_that_do_not_fit_are_refused() {
        let error =
            conform(spark_batch(["count", "word"], vec![Some(3)]), &expected()).unwrap_err();
        assert!(error.contains("[count, word]"), "{error}");
        let error = conform(spark_batch(["word", "count"], vec![None]), &expected()).unwrap_err();
        assert!(error.contains("holds nulls"), "{error}");
    }
}
