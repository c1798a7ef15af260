//! The ledger of a file that a checkpointed stream appends to: `.NAME.epoch` beside the file
//! holds the last epoch appended and the file's length after it. After a restart, an epoch
//! the stream redoes (its checkpoint was not saved, but its rows reached the file) is skipped,
//! and what an epoch cut off left past the last whole one is cut back, so every epoch is in
//! the file once. The database sinks keep the same ledger in their database.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The last epoch appended and the file's length after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The epoch's id; `None`: the file's length before this stream's first epoch.
    pub epoch: Option<u64>,
    /// The file's length, in bytes, once the epoch's rows were written and synced.
    pub length: u64,
    /// The stream that wrote it (its checkpoint's `stream-id`); missing in ledgers written
    /// before streams had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// What to do with an epoch's rows.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The file holds the epoch already (a redone epoch): its rows are not written again;
    /// the file is cut back to `cut_to` bytes when longer (what a later epoch cut off left).
    Skip {
        /// The length after the last epoch the ledger holds.
        cut_to: u64,
    },
    /// Append the rows, after cutting the file back to `cut_to` bytes when given (the end of
    /// the last epoch the ledger holds).
    Append {
        /// The length to cut the file back to first.
        cut_to: Option<u64>,
    },
}

/// The ledger of `target` when a checkpointed stream of a positioned source appends to it
/// and it is (or will be) a regular file (not `/dev/stdout`, a pipe); `None` otherwise.
pub fn for_appends(ctx: &super::SinkContext, target: &Path) -> Option<EpochLedger> {
    let regular = std::fs::metadata(target).map_or(true, |m| m.is_file());
    (ctx.appending && ctx.checkpointed && regular).then(|| EpochLedger {
        fresh_stream: ctx.fresh_stream,
        stream: ctx.stream_id.clone(),
        ..EpochLedger::beside(target)
    })
}

/// Readies `file` (at `path`) to take epoch `epoch`'s rows at its end: `None` when it holds
/// the epoch already (a redone epoch, whose rows are not added again); else the length its
/// rows start at, once what a cut-off epoch left is cut back: to the ledger's last whole
/// epoch, or, on a run's `first` append without one, by `cut_partial` (a partial last record).
pub fn prepare(
    ledger: Option<&mut EpochLedger>,
    epoch: u64,
    file: &mut std::fs::File,
    path: &Path,
    first: bool,
    cut_partial: impl FnOnce(&mut std::fs::File, &Path) -> std::io::Result<u64>,
) -> std::io::Result<Option<u64>> {
    let length = file.metadata()?.len();
    let Some(ledger) = ledger else {
        return match first {
            true => cut_partial(file, path).map(Some),
            false => Ok(Some(length)),
        };
    };
    let cut_to = match ledger.plan(epoch, length)? {
        Plan::Skip { cut_to } => {
            tracing::warn!(
                "{}: epoch {epoch} is in the file already (its ledger says so): a redone epoch, not added again",
                path.display()
            );
            if cut_to < length {
                file.set_len(cut_to)?;
            }
            return Ok(None);
        }
        Plan::Append { cut_to } => cut_to,
    };
    match cut_to {
        Some(end) if end < length => {
            tracing::warn!(
                "{}: removing {} bytes past the last whole epoch, left by an epoch that was cut off",
                path.display(),
                length - end
            );
            file.set_len(end)?;
            Ok(Some(end))
        }
        Some(_) => Ok(Some(length)),
        None if first => {
            let length = cut_partial(file, path)?;
            ledger.start(length)?;
            Ok(Some(length))
        }
        None => Ok(Some(length)),
    }
}

/// Holds `file` (a regular file a run appends to, opened at `path`) for the rest of the run:
/// the handle returned keeps an OS lock on it, which another run appending to the same file
/// is refused (exit 3): two runs adding rows to one file would cut each other's epochs back.
/// Pipes and terminals (`/dev/stdout`) are shared by nature and not held.
pub fn hold_for_appends(
    file: &std::fs::File,
    path: &Path,
) -> crate::error::Result<Option<std::fs::File>> {
    let output = |source| crate::error::Error::Output {
        path: path.to_path_buf(),
        source,
    };
    if !file.metadata().map_err(output)?.is_file() {
        return Ok(None);
    }
    let held = file.try_clone().map_err(output)?;
    match held.try_lock() {
        Ok(()) => Ok(Some(held)),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::error::Error::Locked(format!(
            "another run is appending to {}: two runs adding rows to one file would cut each other's rows; write to another file, or stop the other run",
            crate::error::escape_path(path)
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(output(source)),
    }
}

/// The ledger of one appended file.
pub struct EpochLedger {
    path: PathBuf,
    /// The stream's checkpoint held no epoch when the run began: a ledger without a stream id
    /// (written before ledgers had one) is an earlier stream's.
    fresh_stream: bool,
    /// This stream's id (set before its first epoch): a ledger naming another is an earlier
    /// stream's, whose epoch ids this one's do not continue.
    stream: super::StreamId,
    /// The ledger's entry, once read.
    last: Option<Option<Entry>>,
}

impl EpochLedger {
    /// The ledger of `file`, kept beside it.
    pub fn beside(file: &Path) -> EpochLedger {
        let name = file
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        EpochLedger {
            path: file.with_file_name(format!(".{name}.epoch")),
            fresh_stream: false,
            stream: Default::default(),
            last: None,
        }
    }

    fn entry(&mut self) -> std::io::Result<Option<Entry>> {
        if let Some(last) = &self.last {
            return Ok(last.clone());
        }
        let entry = match std::fs::read(&self.path) {
            Ok(bytes) => Some(serde_json::from_slice::<Entry>(&bytes).map_err(|e| {
                std::io::Error::other(format!(
                    "its ledger {} is damaged ({e}); remove it to append without checking for redone epochs",
                    self.path.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.last = Some(entry.clone());
        Ok(entry)
    }

    /// What to do with epoch `epoch`'s rows, the file being `length` bytes long now.
    pub fn plan(&mut self, epoch: u64, length: u64) -> std::io::Result<Plan> {
        if self.earlier_stream() {
            // A new stream (a checkpoint removed to start over): its epochs go after the rows
            // there, none skipped; the ledger starts again with it.
            tracing::warn!(
                "{}: its ledger is of an earlier stream (this stream's checkpoint is another): this stream's epochs are added after the rows there",
                self.path.display()
            );
            self.last = Some(None);
        }
        match self.entry()? {
            None => Ok(Plan::Append { cut_to: None }),
            Some(last) if length < last.length => Err(std::io::Error::other(format!(
                "it is {length} bytes long but its ledger {} says {} bytes: it was changed outside this stream; move it away (and the ledger) to start a new file",
                self.path.display(),
                last.length,
            ))),
            Some(last) if last.epoch.is_some_and(|done| epoch <= done) => Ok(Plan::Skip {
                cut_to: last.length,
            }),
            Some(last) => Ok(Plan::Append {
                cut_to: Some(last.length),
            }),
        }
    }

    /// Whether the ledger there was written by an earlier stream (checked once, before the
    /// run's first epoch is planned; a damaged ledger is said so by `plan`).
    fn earlier_stream(&mut self) -> bool {
        if self.last.is_some() || !self.path.exists() {
            return false;
        }
        let Ok(Some(entry)) = self.entry() else {
            return false;
        };
        match (&entry.stream, self.stream.get()) {
            (Some(wrote), Some(now)) => wrote != now,
            (None, _) => self.fresh_stream,
            (Some(_), None) => false,
        }
    }

    /// Records that epoch `epoch` was appended and synced, leaving the file `length` bytes long.
    pub fn record(&mut self, epoch: u64, length: u64) -> std::io::Result<()> {
        self.write(Entry {
            epoch: Some(epoch),
            length,
            stream: self.stream.get().cloned(),
        })
    }

    /// Records the file's length before this stream's first epoch (a file without a ledger),
    /// so that a first epoch cut off is cut back too.
    pub fn start(&mut self, length: u64) -> std::io::Result<()> {
        self.write(Entry {
            epoch: None,
            length,
            stream: self.stream.get().cloned(),
        })
    }

    fn write(&mut self, entry: Entry) -> std::io::Result<()> {
        let text = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        // Named as every temporary output file is, so a killed run's leftover is removed.
        let temp = crate::io::atomic::temp_beside(&self.path)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut temp = temp;
        std::io::Write::write_all(&mut temp, &text)?;
        crate::io::atomic::persist(temp, &self.path)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.last = Some(Some(entry));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redone_epochs_are_skipped_and_a_cut_off_one_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.csv");
        let mut ledger = EpochLedger::beside(&file);
        assert_eq!(ledger.plan(0, 0).unwrap(), Plan::Append { cut_to: None });
        ledger.start(4).unwrap();
        // Killed in epoch 0: cut back to where the stream began.
        let mut first = EpochLedger::beside(&file);
        assert_eq!(first.plan(0, 9).unwrap(), Plan::Append { cut_to: Some(4) });
        ledger.record(0, 10).unwrap();
        ledger.record(1, 25).unwrap();
        assert!(dir.path().join(".out.csv.epoch").exists());
        // A restart reads the ledger again.
        let mut again = EpochLedger::beside(&file);
        assert_eq!(again.plan(0, 25).unwrap(), Plan::Skip { cut_to: 25 });
        assert_eq!(again.plan(1, 31).unwrap(), Plan::Skip { cut_to: 25 });
        assert_eq!(
            again.plan(2, 31).unwrap(),
            Plan::Append { cut_to: Some(25) }
        );
        let shorter = again.plan(2, 20).unwrap_err().to_string();
        assert!(shorter.contains("changed outside this stream"), "{shorter}");
        std::fs::write(dir.path().join(".out.csv.epoch"), b"{\"epoch\":").unwrap();
        let damaged = EpochLedger::beside(&file)
            .plan(3, 40)
            .unwrap_err()
            .to_string();
        assert!(damaged.contains("is damaged"), "{damaged}");
    }

    /// A ledger of `file` for the stream `id`, fresh or not.
    fn of_stream(file: &Path, id: &str, fresh: bool) -> EpochLedger {
        let stream = super::super::StreamId::default();
        stream.set(id.to_owned()).unwrap();
        EpochLedger {
            fresh_stream: fresh,
            stream,
            ..EpochLedger::beside(file)
        }
    }

    #[test]
    fn an_earlier_streams_ledger_is_told_by_its_id_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.csv");
        let mut first = of_stream(&file, "a", true);
        first.start(0).unwrap();
        first.record(5, 50).unwrap();
        // The same stream after a restart: epochs up to 5 are redone, skipped.
        assert_eq!(
            of_stream(&file, "a", false).plan(3, 50).unwrap(),
            Plan::Skip { cut_to: 50 }
        );
        // Another stream (its checkpoint new, or killed before its first commit, so no longer
        // fresh): its epoch 0 goes after the rows there, and the ledger becomes its own.
        for fresh in [true, false] {
            let mut other = of_stream(&file, "b", fresh);
            assert_eq!(other.plan(0, 50).unwrap(), Plan::Append { cut_to: None });
        }
        let mut other = of_stream(&file, "b", false);
        other.plan(0, 50).unwrap();
        other.start(50).unwrap();
        other.record(0, 60).unwrap();
        assert_eq!(
            of_stream(&file, "b", false).plan(0, 60).unwrap(),
            Plan::Skip { cut_to: 60 }
        );
        // A ledger written before ledgers had ids: an earlier stream's only for a new stream.
        std::fs::write(
            dir.path().join(".out.csv.epoch"),
            br#"{"epoch":2,"length":60}"#,
        )
        .unwrap();
        assert_eq!(
            of_stream(&file, "c", false).plan(1, 60).unwrap(),
            Plan::Skip { cut_to: 60 }
        );
        assert_eq!(
            of_stream(&file, "c", true).plan(1, 60).unwrap(),
            Plan::Append { cut_to: None }
        );
    }
}
