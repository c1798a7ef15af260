//! `file` with `format: parquet`: Parquet files read with the `parquet` crate's Arrow reader.
//! A morsel is one row group (its bytes stay empty: the worker that decodes it reads the row
//! group itself), so row groups are read in parallel and in bounded memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::file::{first_file, FileSourceConfig};
use super::records::{ColumnSpec, OnError};
use super::{BatchSource, BuiltSource, Morsel, Morsels, Position};
use crate::data::{ValueType, BATCH_ROWS};
use crate::error::{Error, Result};

pub(super) fn build(config: &FileSourceConfig, path: PathBuf) -> Result<BuiltSource, String> {
    if config.fetch.is_some() {
        return Err("`fetch` is for text files; download the Parquet file first".into());
    }
    let columns: Vec<ColumnSpec> = match &config.columns {
        Some(columns) => columns
            .iter()
            .map(|(n, t)| ColumnSpec::parse(n, t))
            .collect::<Result<_, _>>()?,
        None => {
            let first = first_file(&path).ok_or_else(|| {
                format!(
                    "cannot read the schema of {}: no such Parquet file (list the fields in `columns:`)",
                    path.display()
                )
            })?;
            let file_schema = file_schema(&first)?;
            let normalized = crate::data::normalized_schema(&file_schema).map_err(|e| {
                format!(
                    "{}: {e}; list the fields to read in `columns:`",
                    first.display()
                )
            })?;
            normalized
                .fields()
                .iter()
                .map(|f| ColumnSpec {
                    name: f.name().clone(),
                    value_type: ValueType::of(f.data_type()).expect("normalized"),
                    required: false,
                })
                .collect()
        }
    };
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.value_type.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    Ok(BuiltSource::Batch(Box::new(ParquetSource {
        path,
        columns,
        schema,
        on_error: config.on_error,
        bad: AtomicU64::new(0),
    })))
}

fn file_schema(path: &Path) -> Result<SchemaRef, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{}: not a readable Parquet file: {e}", path.display()))?;
    Ok(builder.schema().clone())
}

/// The `file` source for `format: parquet`: one morsel per row group, decoded by the worker that
/// takes it.
pub struct ParquetSource {
    path: PathBuf,
    columns: Vec<ColumnSpec>,
    schema: SchemaRef,
    on_error: OnError,
    bad: AtomicU64,
}

impl ParquetSource {
    fn files(&self) -> Result<Vec<PathBuf>> {
        let pattern = self.path.to_string_lossy();
        let mut files: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            glob::glob(&pattern)
                .map_err(|e| Error::runtime(format!("bad glob pattern `{pattern}`: {e}")))?
                .filter_map(|e| e.ok())
                .filter(|p| p.is_file())
                .collect()
        } else if self.path.is_dir() {
            std::fs::read_dir(&self.path)
                .map_err(|source| Error::Input {
                    path: self.path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        } else {
            vec![self.path.clone()]
        };
        files.sort();
        if files.is_empty() {
            return Err(Error::runtime(format!("no Parquet files at `{pattern}`")));
        }
        Ok(files)
    }

    fn reader(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
        let file = std::fs::File::open(path).map_err(|source| Error::Input {
            path: path.to_path_buf(),
            source,
        })?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            Error::runtime(format!(
                "{}: not a readable Parquet file: {e}",
                path.display()
            ))
        })
    }
}

impl BatchSource for ParquetSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn check_inputs(&self) -> std::result::Result<Option<String>, String> {
        self.files().map(|_| None).map_err(|e| e.to_string())
    }

    fn open(&self) -> Result<Morsels<'_>> {
        let mut groups: Vec<(Arc<str>, u64)> = Vec::new();
        for path in self.files()? {
            let count = self.reader(&path)?.metadata().num_row_groups();
            let origin: Arc<str> = path.display().to_string().into();
            groups.extend((0..count as u64).map(|g| (origin.clone(), g)));
        }
        Ok(Morsels::Indexed {
            count: groups.len(),
            read: Box::new(move |i| {
                let (origin, group) = &groups[i];
                Ok(Morsel {
                    bytes: Vec::new(),
                    origin: origin.clone(),
                    position: Position::Offset(*group),
                })
            }),
        })
    }

    fn decode(&self, morsel: Morsel) -> Result<Vec<RecordBatch>> {
        let Position::Offset(group) = morsel.position else {
            return Err(Error::runtime("a Parquet morsel names its row group"));
        };
        let path = Path::new(&*morsel.origin);
        let builder = self.reader(path)?;
        let file_schema = builder.schema().clone();
        let mut leaves = Vec::new();
        for spec in &self.columns {
            let index = file_schema.index_of(&spec.name).map_err(|_| {
                Error::runtime(format!(
                    "{}: no column `{}` (columns: {})",
                    morsel.origin,
                    spec.name,
                    file_schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            leaves.push(index);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), leaves.iter().copied());
        let reader = builder
            .with_row_groups(vec![group as usize])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::runtime(format!("{}: {e}", morsel.origin)))?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| {
                Error::runtime(format!("{}: row group {group}: {e}", morsel.origin))
            })?;
            let mut columns = Vec::with_capacity(self.columns.len());
            for (spec, field) in self.columns.iter().zip(self.schema.fields()) {
                let column = batch.column_by_name(&spec.name).ok_or_else(|| {
                    Error::runtime(format!("{}: no column `{}`", morsel.origin, spec.name))
                })?;
                let column = if column.data_type() == field.data_type() {
                    column.clone()
                } else {
                    arrow_cast::cast(column, field.data_type()).map_err(|e| {
                        Error::runtime(format!(
                            "{}: column `{}` ({}) cannot be read as {}: {e}",
                            morsel.origin,
                            spec.name,
                            column.data_type(),
                            spec.value_type.name()
                        ))
                    })?
                };
                columns.push(column);
            }
            let batch = RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| Error::runtime(e.to_string()))?;
            // Rows lacking a required field follow `on_error`.
            let missing: Vec<usize> = self
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| c.required && batch.column(*i).null_count() > 0)
                .map(|(i, _)| i)
                .collect();
            if missing.is_empty() {
                batches.push(batch);
                continue;
            }
            let keep: arrow_array::BooleanArray = (0..batch.num_rows())
                .map(|r| Some(missing.iter().all(|&c| batch.column(c).is_valid(r))))
                .collect();
            let dropped = keep.false_count();
            if self.on_error == OnError::Fail {
                return Err(Error::runtime(format!(
                    "{}: row group {group}: {dropped} row(s) lack the required field `{}` (write `{}?` in `columns:` to read it as null, or `on_error: skip`)",
                    morsel.origin,
                    self.columns[missing[0]].name,
                    self.columns[missing[0]].value_type.name()
                )));
            }
            self.bad.fetch_add(dropped as u64, Ordering::Relaxed);
            batches.push(
                arrow_select::filter::filter_record_batch(&batch, &keep)
                    .map_err(|e| Error::runtime(e.to_string()))?,
            );
        }
        Ok(batches)
    }

    fn warnings(&self) -> Vec<String> {
        let bad = self.bad.load(Ordering::Relaxed);
        if bad > 0 {
            vec![format!(
                "{bad} Parquet row(s) lacked a required field and were skipped"
            )]
        } else {
            Vec::new()
        }
    }

    fn counters(&self) -> super::SourceCounters {
        super::SourceCounters {
            malformed_events: self.bad.load(Ordering::Relaxed),
            ..Default::default()
        }
    }

    fn input_bytes(&self) -> Option<u64> {
        None
    }
}
