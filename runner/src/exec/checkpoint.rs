//! Checkpointed stream state, as Spark's `checkpointLocation`: after an epoch's sinks are
//! written, the epoch id, the aggregation's state and the source's position are saved, so a
//! restarted run continues where the last one committed instead of starting from nothing.
//!
//! The directory holds:
//! - `commit.json`: the last committed epoch, the rows taken in so far, the source position
//!   (positioned sources only), the name of the state file and the pipeline's identity;
//! - `state-<epoch>.arrow`: the aggregation's table at that epoch (Arrow IPC file), whose
//!   SHA-256 the commit records: a state file changed after it was written (a flipped bit, an
//!   edit, another run's file) is refused, never read as counts;
//! - `offsets.json`: for positioned sources, where each epoch since the last commit ended,
//!   written before its sinks run (Spark's offset log): a run killed between its sinks and its
//!   commit redoes those epochs over exactly the same input, so a sink sees the same rows for
//!   the same epoch id.
//!
//! Every file is replaced atomically (temporary file, fsync, rename), the state file before the
//! commit that names it, so a run killed at any point leaves the previous complete checkpoint.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::atomic;
use crate::sources::SourcePosition;
use crate::transforms::AggregateState;

/// What a checkpoint must match to be continued: the source and every stage up to and including
/// the aggregation (a change after it, or of the sinks, is fine: it does not change the state).
/// Compared by its hash (`Identity::hash`); the parts say what differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The source's type and columns, and for a positioned source what it reads.
    pub source: String,
    /// The transforms up to and including the aggregation, in pipeline order.
    pub stages: Vec<StageIdentity>,
    /// The output mode (`append`, `update`, `complete`): it decides what the state keeps and
    /// when rows are final, and what the sinks were given. Missing in checkpoints written
    /// before it was recorded (then any mode continues them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_mode: Option<String>,
}

/// What a checkpoint records of one transform, to tell whether it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageIdentity {
    /// The step's label for messages (`transforms.0 (explode)`).
    pub step: String,
    /// The stage's settings as the loader read them.
    pub settings: String,
    /// Its output columns with their types.
    pub output: Vec<String>,
}

/// A positioned source's settings that pace it without changing what it reads: left out of
/// the identity, so they may change between runs.
pub const PACING_SETTINGS: [&str; 3] = ["poll", "max_files_per_trigger", "speed"];

/// `settings` (a source's, as JSON) without `PACING_SETTINGS`.
pub fn without_pacing(settings: &serde_json::Value) -> serde_json::Value {
    let mut settings = settings.clone();
    if let Some(map) = settings.as_object_mut() {
        for key in PACING_SETTINGS {
            map.shift_remove(key);
        }
    }
    settings
}

impl Identity {
    /// The identity with `PACING_SETTINGS` left out of what the source reads (the source is
    /// written `` `type` with columns [...] reading {settings} ``).
    fn without_pacing(&self) -> Identity {
        let source = match self.source.split_once("] reading ") {
            Some((head, settings)) => match serde_json::from_str::<serde_json::Value>(settings) {
                Ok(settings) => format!("{head}] reading {}", without_pacing(&settings)),
                Err(_) => self.source.clone(),
            },
            None => self.source.clone(),
        };
        Identity {
            source,
            stages: self.stages.clone(),
            output_mode: self.output_mode.clone(),
        }
    }

    /// SHA-256 of the identity's canonical JSON: the compatibility rule in one value.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_string(self).expect("an identity serialises");
        crate::data::hex(&sha2::Sha256::digest(json.as_bytes()))
    }
}

/// The file format's version, checked on load. Format 1 (before the plan) identified steps
/// by a debug rendering of their settings, which cannot be compared with today's plan.
const FORMAT: u32 = 2;
const COMMIT: &str = "commit.json";
const OFFSETS: &str = "offsets.json";
const STREAM_ID: &str = "stream-id";

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    format: u32,
    pipeline: String,
    /// The last epoch whose sinks were written and whose state this is.
    epoch: u64,
    /// Rows taken in by every run so far.
    rows_in: u64,
    position: Option<SourcePosition>,
    /// The state file in the directory, when the stream has an aggregation.
    state: Option<String>,
    state_rows: usize,
    /// The state file's SHA-256 (hex). Commits written before it was recorded lack it, and
    /// are refused with their state: nothing else would tell a changed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_sha256: Option<String>,
    written: String,
    /// `identity.hash()`: what a run compares first.
    plan_hash: String,
    identity: Identity,
}

/// Where the source stood at the end of one epoch (an entry of `offsets.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochEnd {
    /// The epoch's id.
    pub epoch: u64,
    /// The source's position after the epoch's last chunk.
    pub end: SourcePosition,
}

/// Where a restarted stream continues.
#[derive(Debug)]
pub struct Resume {
    /// The id of the next epoch.
    pub next_epoch: u64,
    /// Input rows taken in by every run up to the commit.
    pub rows_in: u64,
    /// The source's position at the commit; `None` for a source without positions.
    pub position: Option<SourcePosition>,
    /// The aggregation's table, to restore the state from.
    pub state: Option<RecordBatch>,
    /// Epochs after the commit whose sinks may have run: redo them over the same input.
    pub redo: Vec<EpochEnd>,
}

/// Whether the checkpoint in `dir` holds an epoch: a commit, or an epoch's end recorded before
/// its sinks ran. Without one, no sink has seen an epoch of this stream.
pub fn holds_epochs(dir: &Path) -> bool {
    dir.join(COMMIT).exists() || dir.join(OFFSETS).exists()
}

/// A stream's checkpoint directory.
pub struct Checkpoint {
    dir: PathBuf,
    every: u64,
    pipeline: String,
    identity: Identity,
    /// Epoch ends recorded since the last commit.
    pending: Vec<EpochEnd>,
    /// The state file of the last commit, removed once a newer one is committed.
    last_state: Option<String>,
    /// The directory's lock, held while this run uses it (`lock`).
    lock: Option<std::fs::File>,
}

impl Checkpoint {
    /// A checkpoint in `dir` saving after every `every` epochs; reads and writes nothing yet.
    pub fn new(dir: PathBuf, every: NonZeroU64, pipeline: &str, identity: Identity) -> Self {
        Checkpoint {
            dir,
            every: every.get(),
            pipeline: pipeline.to_owned(),
            identity,
            pending: Vec::new(),
            last_state: None,
            lock: None,
        }
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit in `text` (read from `path`), checked: its format, and that it belongs to
    /// this pipeline.
    fn read_commit(&self, path: &Path, text: &str) -> Result<Commit> {
        let damaged = |what: String| {
            Error::runtime(format!(
                "the checkpoint {} is damaged ({what}); move the directory away to start over",
                path.display()
            ))
        };
        let format = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| damaged(e.to_string()))?["format"]
            .as_u64();
        if format != Some(FORMAT.into()) {
            let why = match format {
                Some(1) => " (written before runner identified pipelines by their plan: its state cannot be matched to this pipeline's steps)".to_owned(),
                _ => String::new(),
            };
            return Err(Error::invalid(format!(
                "the checkpoint {} has format {}, this runner reads format {FORMAT}{why}; move the directory away to start over",
                path.display(),
                format.map_or_else(|| "none".to_owned(), |f| f.to_string()),
            )));
        }
        let commit: Commit = serde_json::from_str(text).map_err(|e| damaged(e.to_string()))?;
        // Settings that pace the source (how often it looks for files, how many an epoch
        // takes, a tape's speed) may change between runs; checkpoints written before they were
        // left out of the identity still name them.
        let (saved, mut now) = (
            commit.identity.without_pacing(),
            self.identity.without_pacing(),
        );
        if saved.output_mode.is_none() {
            now.output_mode = None;
        }
        let difference = if commit.plan_hash == self.identity.hash() || saved == now {
            None
        } else {
            Some(
                describe_difference(&saved, &now)
                    .unwrap_or_else(|| "its plan hash differs".to_owned()),
            )
        };
        if let Some(difference) = difference {
            return Err(Error::invalid(format!(
                "the checkpoint in {} belongs to a different pipeline (`{}`): {difference}. Its state cannot continue under this one; point `checkpoint.dir` at another directory, or remove {} to start over",
                self.dir.display(),
                commit.pipeline,
                self.dir.display()
            )));
        }
        Ok(commit)
    }

    /// What a run would do with the directory, for `runner plan` (reads, changes nothing).
    pub fn outlook(&self) -> String {
        if let Err(e) = self.existing_stream_id() {
            return format!("a run would stop: {e}");
        }
        let path = self.dir.join(COMMIT);
        match std::fs::read_to_string(&path) {
            Ok(text) => match self
                .read_commit(&path, &text)
                .and_then(|commit| self.verified(&commit))
            {
                Ok((_, next_epoch, redo)) if redo.is_empty() => {
                    format!("a run resumes from it (next epoch {next_epoch})")
                }
                Ok((_, next_epoch, redo)) => format!(
                    "a run resumes from it (next epoch {next_epoch}), first redoing the {} epoch(s) it recorded after its commit",
                    redo.len()
                ),
                Err(e) => format!("a run would stop: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match holds_epochs(&self.dir) {
                true => match self
                    .recorded_ends(0)
                    .and_then(|redo| self.check_no_lost_commit(&redo))
                {
                    Ok(()) => "no commit yet; a run redoes the epochs it recorded".to_owned(),
                    Err(e) => format!("a run would stop: {e}"),
                },
                false => "none saved yet".to_owned(),
            },
            Err(e) => format!("a run would stop: cannot read {}: {e}", path.display()),
        }
    }

    /// What `commit` names, checked without changing anything: its state (read and its
    /// digest compared), the next epoch, and the epochs recorded after it to redo.
    fn verified(&self, commit: &Commit) -> Result<(Option<RecordBatch>, u64, Vec<EpochEnd>)> {
        let damaged = |what: String| {
            Error::runtime(format!(
                "the checkpoint in {} is damaged ({what}); move the directory away to start over",
                self.dir.display()
            ))
        };
        let state = match &commit.state {
            Some(name) => {
                // Only a state file this directory holds, as runner names them: a path
                // elsewhere would be read, and removed after the next commit.
                if !is_state_name(name) {
                    return Err(damaged(format!(
                        "its state `{}` is not a state file of the directory (`state-N.arrow`)",
                        crate::error::escape_controls(name)
                    )));
                }
                let path = self.dir.join(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if !meta.is_file() => {
                        return Err(damaged(format!("{name} is not a plain file")))
                    }
                    _ => {}
                }
                // The digest is what tells a state changed by hand or by a flipped bit.
                let Some(sha256) = commit.state_sha256.as_deref() else {
                    return Err(damaged(format!(
                        "it records no SHA-256 of {name} to check it by: written by a runner from before 2026-12-07, which did not always record it, or edited"
                    )));
                };
                let table = read_table(&path, Some(sha256)).map_err(damaged)?;
                if table.num_rows() != commit.state_rows {
                    return Err(damaged(format!(
                        "{name} holds {} rows, the commit says {}",
                        table.num_rows(),
                        commit.state_rows
                    )));
                }
                Some(table)
            }
            None => None,
        };
        let next_epoch = commit.epoch.checked_add(1).ok_or_else(|| {
            damaged(format!(
                "its epoch {} is the last one there is",
                commit.epoch
            ))
        })?;
        if let Some(position) = &commit.position {
            position.check().map_err(damaged)?;
        }
        let redo = self.recorded_ends(next_epoch)?;
        Ok((state, next_epoch, redo))
    }

    /// Reads the last complete checkpoint, if there is one, and checks that it belongs to this
    /// pipeline.
    pub fn load(&mut self) -> Result<Option<Resume>> {
        let path = self.dir.join(COMMIT);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Killed before its first commit: epochs whose sinks may have run are redone
                // from the start of the source.
                let redo = self.recorded_ends(0)?;
                self.check_no_lost_commit(&redo)?;
                if redo.is_empty() {
                    return Ok(None);
                }
                self.pending = redo.clone();
                return Ok(Some(Resume {
                    next_epoch: 0,
                    rows_in: 0,
                    position: None,
                    state: None,
                    redo,
                }));
            }
            Err(e) => {
                // Random bytes, a folder in its place: damage, said as other damage is.
                let why = match e.kind() {
                    std::io::ErrorKind::InvalidData => "it is not UTF-8 text".to_owned(),
                    std::io::ErrorKind::IsADirectory => "it is a folder".to_owned(),
                    _ => {
                        return Err(Error::runtime(format!(
                            "cannot read the checkpoint {}: {e}",
                            path.display()
                        )))
                    }
                };
                return Err(Error::runtime(format!(
                    "the checkpoint {} is damaged ({why}); move the directory away to start over",
                    path.display()
                )));
            }
        };
        let commit = self.read_commit(&path, &text)?;
        let (state, next_epoch, redo) = self.verified(&commit)?;
        self.last_state = commit.state.clone();
        self.remove_other_states(commit.state.as_deref());
        self.pending = redo.clone();
        Ok(Some(Resume {
            next_epoch,
            rows_in: commit.rows_in,
            position: commit.position,
            state,
            redo,
        }))
    }

    /// Removes the state files the commit does not name: a run killed between writing a
    /// state and its commit, or between the commit and removing the older state, left one.
    fn remove_other_states(&self, kept: Option<&str>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_state_name(&name) && Some(name.as_str()) != kept {
                tracing::debug!("removing {name}, a state no commit names");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Takes the directory's lock (`.lock` in it, an OS file lock released when the process
    /// ends): two streams on one checkpoint, from two pipeline files, would redo, cut and
    /// overwrite each other's epochs. A second one is refused (exit 3), as a second run of one
    /// pipeline is, after waiting up to `wait` (`--wait`) for the other to finish.
    pub fn lock(&mut self, wait: Option<std::time::Duration>) -> Result<String> {
        use std::os::unix::fs::OpenOptionsExt;
        atomic::make_dirs(&self.dir).map_err(|source| Error::Output {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                // O_NOFOLLOW's answer: a lock taken through a link would lock another file.
                Some(libc::ELOOP) => Error::runtime(format!(
                    "cannot lock the checkpoint: {} is a symbolic link, which runner does not follow there; remove it",
                    path.display()
                )),
                _ => Error::Output {
                    path: path.clone(),
                    source,
                },
            })?;
        match crate::lock::take_waiting(&file, wait) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked(format!(
                    "another stream uses the checkpoint {} ({}): two streams on one checkpoint would overwrite each other's epochs; give this one its own `checkpoint: {{dir: ...}}`. {}",
                    self.dir.display(),
                    crate::lock::holder(&mut file),
                    crate::lock::wait_advice(wait)
                )));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Output { path, source })
            }
        }
        crate::lock::note_holder(&mut file);
        self.lock = Some(file);
        self.stream_id()
    }

    /// The stream's id (`stream-id` in the directory): made when a stream first uses the
    /// directory, before its first epoch; the sinks' ledgers record it, so that a ledger of an
    /// earlier stream (its checkpoint removed to start over) is told from this one's.
    fn stream_id(&self) -> Result<String> {
        match self.existing_stream_id()? {
            Some(id) => Ok(id),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                atomic::write(&self.dir.join(STREAM_ID), id.as_bytes())?;
                Ok(id)
            }
        }
    }

    /// The stream's id as the directory holds it; `None` where a new stream makes one (no id
    /// and no epochs). Reads, changes nothing.
    fn existing_stream_id(&self) -> Result<Option<String>> {
        let path = self.dir.join(STREAM_ID);
        // What `uuid`'s simple form writes: 32 lowercase hexadecimal digits.
        let well_formed =
            |id: &str| id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let damaged = || {
            Error::runtime(format!(
                "the checkpoint file {} is damaged (not a stream id); move the directory away to start over",
                path.display()
            ))
        };
        match std::fs::read_to_string(&path) {
            Ok(id) if well_formed(id.trim_end()) => Ok(Some(id.trim_end().to_owned())),
            Ok(_) => Err(damaged()),
            // A new id for a stream that wrote epochs would make its own append ledgers look
            // like an earlier stream's: its redone epochs would be written twice.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && holds_epochs(&self.dir) => {
                Err(Error::runtime(format!(
                    "the checkpoint {} holds epochs but its file {STREAM_ID} is gone: without it the stream's sinks cannot tell its epochs from an earlier stream's; put it back, or move the directory away to start over",
                    self.dir.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData || path.is_dir() => {
                Err(damaged())
            }
            Err(source) => Err(Error::Input { path, source }),
        }
    }

    /// Without `commit.json`, the directory may only hold what a run killed before its first
    /// commit leaves: epoch ends from epoch 0, and the state file of that first commit (at an
    /// epoch before `every`), which is removed. Anything later means a commit existed and was
    /// lost: starting over from epoch 0 would silently recount, so it is refused.
    fn check_no_lost_commit(&self, recorded: &[EpochEnd]) -> Result<()> {
        let lost = |what: String| {
            Error::runtime(format!(
                "the checkpoint in {} has no {COMMIT} but {what}, so a commit was lost; move the directory away to start over",
                self.dir.display()
            ))
        };
        if let Some(first) = recorded.first().filter(|e| e.epoch > 0) {
            return Err(lost(format!("{OFFSETS} starts at epoch {}", first.epoch)));
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(epoch) = name
                .strip_prefix("state-")
                .and_then(|rest| rest.strip_suffix(".arrow"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if epoch >= self.every {
                return Err(lost(format!("it holds {name}")));
            }
            tracing::warn!(
                "removing {name} from {}: the state of a first commit that did not complete",
                self.dir.display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// The epoch ends recorded from epoch `from` on (earlier ones are covered by the commit).
    fn recorded_ends(&self, from: u64) -> Result<Vec<EpochEnd>> {
        let offsets = self.dir.join(OFFSETS);
        match std::fs::read_to_string(&offsets) {
            Ok(text) => {
                let damaged = |e: String| {
                    Error::runtime(format!(
                        "the checkpoint file {} is damaged ({e}); move the directory away to start over",
                        offsets.display()
                    ))
                };
                let ends = serde_json::from_str::<Vec<EpochEnd>>(&text)
                    .map_err(|e| damaged(e.to_string()))?;
                for end in &ends {
                    end.end
                        .check()
                        .map_err(|e| damaged(format!("epoch {}: {e}", end.epoch)))?;
                }
                Ok(ends.into_iter().filter(|e| e.epoch >= from).collect())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(Error::Input {
                path: offsets,
                source,
            }),
        }
    }

    /// Records where `epoch` ended, before its sinks run (positioned sources).
    pub fn record_end(&mut self, end: EpochEnd) -> Result<()> {
        self.pending.retain(|e| e.epoch < end.epoch);
        self.pending.push(end);
        let json = serde_json::to_vec(&self.pending).expect("epoch ends serialise");
        atomic::write(&self.dir.join(OFFSETS), &json)
    }

    /// Whether `epoch` should be committed (every `every` epochs).
    pub fn due(&self, epoch: u64) -> bool {
        (epoch + 1).is_multiple_of(self.every)
    }

    /// Saves the state after `epoch` (its sinks written): state file, then the commit naming
    /// it, then the older state file and the epoch ends it covers go.
    pub fn commit(
        &mut self,
        epoch: u64,
        rows_in: u64,
        position: Option<SourcePosition>,
        state: Option<&dyn AggregateState>,
    ) -> Result<()> {
        let (state_file, state_rows, state_sha256) = match state {
            Some(state) => {
                let table = state.snapshot()?;
                let name = format!("state-{epoch}.arrow");
                let sha256 = write_table(&self.dir.join(&name), &table)?;
                (Some(name), table.num_rows(), Some(sha256))
            }
            None => (None, 0, None),
        };
        let commit = Commit {
            format: FORMAT,
            pipeline: self.pipeline.clone(),
            epoch,
            rows_in,
            position,
            state: state_file.clone(),
            state_rows,
            state_sha256,
            written: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            plan_hash: self.identity.hash(),
            identity: self.identity.clone(),
        };
        let json = serde_json::to_vec_pretty(&commit).expect("a commit serialises");
        atomic::write(&self.dir.join(COMMIT), &json)?;
        self.pending.retain(|e| e.epoch > epoch);
        if self.pending.is_empty() {
            let _ = std::fs::remove_file(self.dir.join(OFFSETS));
        }
        if let Some(old) = std::mem::replace(&mut self.last_state, state_file.clone()) {
            if Some(&old) != state_file.as_ref() {
                let _ = std::fs::remove_file(self.dir.join(old));
            }
        }
        Ok(())
    }
}

/// The first difference between a checkpoint's identity and the pipeline's, in words.
fn describe_difference(saved: &Identity, now: &Identity) -> Option<String> {
    if saved.output_mode != now.output_mode {
        return Some(format!(
            "its output mode was {}, this one's is {}",
            saved.output_mode.as_deref().unwrap_or("?"),
            now.output_mode.as_deref().unwrap_or("?")
        ));
    }
    if saved.source != now.source {
        return Some(format!(
            "its source was {}, this one's is {}",
            saved.source, now.source
        ));
    }
    for index in 0..saved.stages.len().max(now.stages.len()) {
        match (saved.stages.get(index), now.stages.get(index)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) if a.settings != b.settings => {
                return Some(format!(
                    "{} was `{}`, it is now `{}`",
                    a.step, a.settings, b.settings
                ))
            }
            (Some(a), Some(b)) => {
                return Some(format!(
                    "{} gave columns [{}], it now gives [{}]",
                    a.step,
                    a.output.join(", "),
                    b.output.join(", ")
                ))
            }
            (Some(a), None) => {
                return Some(format!(
                    "it had {} `{}`, this one has no such step",
                    a.step, a.settings
                ))
            }
            (None, Some(b)) => {
                return Some(format!(
                    "this one has {} `{}`, it had no such step",
                    b.step, b.settings
                ))
            }
            (None, None) => {}
        }
    }
    None
}

/// Writes `table` as an Arrow IPC file; returns the SHA-256 of its bytes (hex).
fn write_table(path: &Path, table: &RecordBatch) -> Result<String> {
    use sha2::Digest;
    let mut temp = atomic::temp_beside(path)?;
    let fail = |e: arrow_schema::ArrowError| Error::Output {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut hashed = Hashed {
        inner: temp.as_file_mut(),
        sha256: sha2::Sha256::new(),
    };
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(&mut hashed, &table.schema()).map_err(fail)?;
    writer.write(table).map_err(fail)?;
    writer.finish().map_err(fail)?;
    drop(writer);
    let sha256 = crate::data::hex(&hashed.sha256.finalize());
    atomic::persist(temp, path)?;
    Ok(sha256)
}

/// A writer that hashes what goes through it.
struct Hashed<W> {
    inner: W,
    sha256: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let written = self.inner.write(buf)?;
        self.sha256.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `name` is a state file's name as runner writes them (`state-7.arrow`).
fn is_state_name(name: &str) -> bool {
    name.strip_prefix("state-")
        .and_then(|rest| rest.strip_suffix(".arrow"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads a state file, first checked against the SHA-256 its commit recorded. Arrow's reader
/// trusts the file's own offsets and can panic on a damaged one (a file made to match the
/// digest, or read without one by a test): a panic is damage too.
fn read_table(path: &Path, sha256: Option<&str>) -> Result<RecordBatch, String> {
    use sha2::Digest;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let open = || std::fs::File::open(path).map_err(|e| format!("{name}: {e}"));
    if let Some(expected) = sha256 {
        let mut hashed = Hashed {
            inner: std::io::sink(),
            sha256: sha2::Sha256::new(),
        };
        std::io::copy(&mut open()?, &mut hashed).map_err(|e| format!("{name}: {e}"))?;
        if !crate::data::hex(&hashed.sha256.finalize()).eq_ignore_ascii_case(expected) {
            return Err(format!(
                "{name} is not the file its commit recorded: its SHA-256 differs"
            ));
        }
    }
    let file = open()?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = arrow_ipc::reader::FileReader::try_new(file, None)?;
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
        Ok::<_, arrow_schema::ArrowError>(crate::data::concat(&schema, &batches))
    }));
    match read {
        Ok(table) => table.map_err(|e| format!("{name}: {e}")),
        Err(payload) => Err(format!(
            "{name} cannot be read: {}",
            crate::error::panic_text(payload.as_ref())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(lowercase: bool) -> Identity {
        let mut stages = vec![StageIdentity {
            step: "transforms.0 (explode)".into(),
            settings: "Explode { column: \"tags\" }".into(),
            output: vec!["hashtag: text".into()],
        }];
        if lowercase {
            stages.push(StageIdentity {
                step: "transforms.1 (lowercase)".into(),
                settings: "Lowercase { column: \"hashtag\" }".into(),
                output: vec!["hashtag: text".into()],
            });
        }
        Identity {
            source: "replay tapes/a.jsonl (text)".into(),
            stages,
            output_mode: Some("complete".into()),
        }
    }

    fn counts(words: &[(&str, i64)]) -> RecordBatch {
        let (w, c): (Vec<&str>, Vec<i64>) = words.iter().copied().unzip();
        crate::data::word_counts(&w, &c)
    }

    struct Fixed(RecordBatch);

    impl AggregateState for Fixed {
        fn update(&mut self, _: &RecordBatch) -> Result<()> {
            Ok(())
        }
        fn merge(&mut self, _: Box<dyn AggregateState>) -> Result<()> {
            Ok(())
        }
        fn result(&self) -> Result<RecordBatch> {
            Ok(self.0.clone())
        }
        fn rows(&self) -> usize {
            self.0.num_rows()
        }
        fn restore(&mut self, table: &RecordBatch) -> Result<()> {
            self.0 = table.clone();
            Ok(())
        }
        fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
            self
        }
    }

    fn position(offset: u64) -> SourcePosition {
        SourcePosition::at(offset, offset as f64 / 10.0)
    }

    #[test]
    fn commits_round_trip_and_replace_the_previous_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        assert!(checkpoint.load().unwrap().is_none());
        let first = Fixed(counts(&[("a", 2), ("b", 1)]));
        checkpoint
            .record_end(EpochEnd {
                epoch: 0,
                end: position(100),
            })
            .unwrap();
        checkpoint
            .commit(0, 3, Some(position(100)), Some(&first))
            .unwrap();
        let second = Fixed(counts(&[("a", 5), ("b", 1), ("c", 1)]));
        checkpoint
            .commit(1, 7, Some(position(250)), Some(&second))
            .unwrap();
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["commit.json", "state-1.arrow"]);

        let mut again = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        let resume = again.load().unwrap().unwrap();
        assert_eq!(resume.next_epoch, 2);
        assert_eq!(resume.rows_in, 7);
        assert_eq!(resume.position, Some(position(250)));
        assert_eq!(resume.state.unwrap(), second.0);
        assert!(resume.redo.is_empty());
    }

    #[test]
    fn epoch_ends_after_the_commit_are_redone() {
        let dir = tempfile::tempdir().unwrap();
        let every_three = NonZeroU64::new(3).unwrap();
        let mut checkpoint = Checkpoint::new(dir.path().into(), every_three, "p", identity(false));
        let state = Fixed(counts(&[("a", 1)]));
        for epoch in 0..5 {
            let end = EpochEnd {
                epoch,
                end: position(10 * (epoch + 1)),
            };
            checkpoint.record_end(end.clone()).unwrap();
            if checkpoint.due(epoch) {
                checkpoint
                    .commit(epoch, epoch, Some(end.end), Some(&state))
                    .unwrap();
            }
        }
        // Killed after epoch 4's sinks: epochs 3 and 4 ran after the commit of epoch 2.
        let mut again = Checkpoint::new(dir.path().into(), every_three, "p", identity(false));
        let resume = again.load().unwrap().unwrap();
        assert_eq!(resume.next_epoch, 3);
        assert_eq!(resume.position, Some(position(30)));
        assert_eq!(
            resume.redo,
            [
                EpochEnd {
                    epoch: 3,
                    end: position(40)
                },
                EpochEnd {
                    epoch: 4,
                    end: position(50)
                }
            ]
        );
    }

    #[test]
    fn epochs_recorded_before_the_first_commit_are_redone_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let every_three = NonZeroU64::new(3).unwrap();
        let mut checkpoint = Checkpoint::new(dir.path().into(), every_three, "p", identity(false));
        let end = EpochEnd {
            epoch: 0,
            end: position(10),
        };
        checkpoint.record_end(end.clone()).unwrap();
        // Killed after epoch 0's sinks, before any commit.
        let resume = Checkpoint::new(dir.path().into(), every_three, "p", identity(false))
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(resume.next_epoch, 0);
        assert_eq!(resume.position, None);
        assert_eq!(resume.redo, [end]);
    }

    #[test]
    fn a_checkpoint_of_another_pipeline_is_refused_with_the_difference() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "tags", identity(true));
        checkpoint.commit(0, 1, None, None).unwrap();
        let mut other =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "tags", identity(false));
        let error = other.load().unwrap_err().to_string();
        assert!(
            error.contains("belongs to a different pipeline (`tags`)"),
            "{error}"
        );
        assert!(
            error.contains("it had transforms.1 (lowercase) `Lowercase { column: \"hashtag\" }`, this one has no such step"),
            "{error}"
        );
        assert!(error.contains("remove"), "{error}");

        let mut renamed = identity(true);
        renamed.stages[1].output = vec!["tag: text".into()];
        renamed.stages[1].settings = "Lowercase { column: \"tag\" }".into();
        let error = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "tags", renamed)
            .load()
            .unwrap_err()
            .to_string();
        assert!(error.contains("transforms.1 (lowercase) was `Lowercase { column: \"hashtag\" }`, it is now `Lowercase { column: \"tag\" }`"), "{error}");
    }

    #[test]
    fn a_checkpoint_of_the_format_before_the_plan_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "tags", identity(true));
        checkpoint.commit(0, 1, None, None).unwrap();
        let commit = dir.path().join(COMMIT);
        let mut old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&commit).unwrap()).unwrap();
        old["format"] = 1.into();
        old.as_object_mut().unwrap().remove("plan_hash");
        std::fs::write(&commit, old.to_string()).unwrap();
        let error = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "tags", identity(true))
            .load()
            .unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let error = error.to_string();
        assert!(error.contains("has format 1, this runner reads format 2 (written before runner identified pipelines by their plan"), "{error}");
        // The hash is what is compared: the same identity gives the same hash.
        assert_eq!(identity(true).hash(), identity(true).hash());
        assert_ne!(identity(true).hash(), identity(false).hash());
    }

    #[test]
    fn a_lost_commit_is_refused_not_restarted_from_epoch_zero() {
        let dir = tempfile::tempdir().unwrap();
        let state = Fixed(counts(&[("a", 1)]));
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        checkpoint.commit(0, 1, None, Some(&state)).unwrap();
        checkpoint.commit(1, 2, None, Some(&state)).unwrap();
        std::fs::remove_file(dir.path().join("commit.json")).unwrap();
        let error = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true))
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("has no commit.json but it holds state-1.arrow, so a commit was lost"),
            "{error}"
        );

        // Offsets recorded after a commit, the commit gone.
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(false));
        checkpoint.commit(4, 1, Some(position(40)), None).unwrap();
        checkpoint
            .record_end(EpochEnd {
                epoch: 5,
                end: position(50),
            })
            .unwrap();
        std::fs::remove_file(dir.path().join("commit.json")).unwrap();
        let error = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(false))
            .load()
            .unwrap_err()
            .to_string();
        assert!(error.contains("offsets.json starts at epoch 5"), "{error}");
    }

    #[test]
    fn states_a_killed_run_left_beside_the_commit_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        let state = Fixed(counts(&[("a", 1)]));
        checkpoint.commit(4, 1, None, Some(&state)).unwrap();
        // Killed after an older state's commit was replaced, and after a newer state was
        // written without its commit.
        std::fs::write(dir.path().join("state-3.arrow"), b"older").unwrap();
        std::fs::write(dir.path().join("state-5.arrow"), b"newer").unwrap();
        let resume = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true))
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(resume.next_epoch, 5);
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        files.sort();
        assert_eq!(files, ["commit.json", "state-4.arrow"]);
    }

    #[test]
    fn the_state_of_an_unfinished_first_commit_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let every_three = NonZeroU64::new(3).unwrap();
        std::fs::write(dir.path().join("state-2.arrow"), b"half written").unwrap();
        let resume = Checkpoint::new(dir.path().into(), every_three, "p", identity(true))
            .load()
            .unwrap();
        assert!(resume.is_none());
        assert!(!dir.path().join("state-2.arrow").exists());
    }

    #[test]
    fn pacing_settings_are_left_out_of_an_identity_written_before() {
        let old = Identity {
            source: "`file` with columns [line: text] reading {\"max_files_per_trigger\":1,\"path\":\"in\",\"poll\":\"1s\",\"type\":\"file\"}".into(),
            stages: Vec::new(),
            output_mode: None,
        };
        assert_eq!(
            old.without_pacing().source,
            "`file` with columns [line: text] reading {\"path\":\"in\",\"type\":\"file\"}"
        );
    }

    #[test]
    fn a_checkpoint_written_before_output_modes_were_recorded_is_continued() {
        let dir = tempfile::tempdir().unwrap();
        let mut old_identity = identity(true);
        old_identity.output_mode = None;
        let mut old = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", old_identity);
        old.commit(0, 1, None, None).unwrap();
        let mut now = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        assert_eq!(now.load().unwrap().unwrap().next_epoch, 1);
        // Recorded, it must match.
        let mut other = identity(true);
        other.output_mode = Some("update".into());
        let error = Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", other);
        now.commit(1, 2, None, None).unwrap();
        let mut error = error;
        let message = error.load().unwrap_err().to_string();
        assert!(
            message.contains("its output mode was complete, this one's is update"),
            "{message}"
        );
    }

    #[test]
    fn the_outlook_says_what_a_run_would_do_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let at = |lowercase| {
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(lowercase))
        };
        assert_eq!(at(true).outlook(), "none saved yet");
        // A stream's id is made (by its lock) before its first epoch.
        at(true).lock(None).unwrap();
        at(true).commit(4, 1, None, None).unwrap();
        assert_eq!(at(true).outlook(), "a run resumes from it (next epoch 5)");
        // Epochs recorded after the commit are redone first; a damaged record stops the run.
        let mut recording = at(true);
        for epoch in [5, 6] {
            recording
                .record_end(EpochEnd {
                    epoch,
                    end: crate::sources::SourcePosition::at(epoch * 10, 0.0),
                })
                .unwrap();
        }
        assert_eq!(
            at(true).outlook(),
            "a run resumes from it (next epoch 5), first redoing the 2 epoch(s) it recorded after its commit"
        );
        let offsets = std::fs::read(dir.path().join(OFFSETS)).unwrap();
        std::fs::write(dir.path().join(OFFSETS), "garbage").unwrap();
        let stops = at(true).outlook();
        assert!(
            stops.starts_with("a run would stop: ") && stops.contains("damaged"),
            "{stops}"
        );
        std::fs::write(dir.path().join(OFFSETS), offsets).unwrap();
        let refused = at(false).outlook();
        assert!(
            refused.starts_with("a run would stop: the checkpoint in"),
            "{refused}"
        );
        assert!(
            refused.contains("belongs to a different pipeline"),
            "{refused}"
        );
        std::fs::write(dir.path().join(COMMIT), "{").unwrap();
        let damaged = at(true).outlook();
        assert!(damaged.contains("is damaged"), "{damaged}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(COMMIT)).unwrap(),
            "{"
        );
    }

    #[test]
    fn a_second_stream_on_one_checkpoint_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("ck");
        let mut first = Checkpoint::new(at.clone(), NonZeroU64::MIN, "p", identity(true));
        first.lock(None).unwrap();
        let mut second = Checkpoint::new(at.clone(), NonZeroU64::MIN, "q", identity(true));
        let error = second.lock(None).unwrap_err();
        assert_eq!(error.exit_code(), 3);
        let message = error.to_string();
        assert!(
            message.contains("another stream uses the checkpoint"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("Use --wait 5m"), "{message}");
        let waited = second
            .lock(Some(std::time::Duration::from_millis(30)))
            .unwrap_err()
            .to_string();
        assert!(
            waited.contains("It was still running after waiting 30ms (--wait)"),
            "{waited}"
        );
        let held = std::thread::spawn(move || {
            drop(first);
        });
        second
            .lock(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        held.join().unwrap();
    }

    #[test]
    fn a_stream_id_is_kept_and_a_changed_or_lost_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let mut checkpoint =
                Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
            checkpoint.lock(None).map(|id| (id, checkpoint))
        };
        let (id, mut first) = open().unwrap();
        assert_eq!(id.len(), 32, "{id}");
        first.commit(0, 1, None, None).unwrap();
        drop(first);
        assert_eq!(open().unwrap().0, id);
        let path = dir.path().join(STREAM_ID);
        for garbage in ["", "x", "\u{1b}[31m", &"a".repeat(64), &id.to_uppercase()] {
            std::fs::write(&path, garbage).unwrap();
            let error = open().err().unwrap().to_string();
            assert!(error.contains("is damaged (not a stream id)"), "{error}");
        }
        std::fs::remove_file(&path).unwrap();
        let error = open().err().unwrap().to_string();
        assert!(
            error.contains("holds epochs but its file stream-id is gone"),
            "{error}"
        );
        // `runner plan` says so before a run does.
        let outlook =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true)).outlook();
        assert!(
            outlook.starts_with("a run would stop: ") && outlook.contains("stream-id is gone"),
            "{outlook}"
        );
        std::fs::create_dir(&path).unwrap();
        let error = open().err().unwrap().to_string();
        assert!(error.contains("is damaged (not a stream id)"), "{error}");
        std::fs::remove_dir(&path).unwrap();
        // A directory without epochs is a new stream's: its id is made.
        let fresh = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(fresh.path().into(), NonZeroU64::MIN, "p", identity(true));
        assert_ne!(checkpoint.lock(None).unwrap(), id);
    }

    #[test]
    fn the_last_epoch_and_a_time_off_the_tape_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(false));
        checkpoint.commit(u64::MAX, 1, None, None).unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(error.contains("the last one there is"), "{error}");
        let bad_time = SourcePosition::at(10, -1e300);
        checkpoint.commit(3, 1, Some(bad_time), None).unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(error.contains("not a time on the tape"), "{error}");
    }

    #[test]
    fn a_state_file_changed_after_its_commit_is_refused_not_read_as_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        checkpoint
            .commit(
                0,
                3,
                None,
                Some(&Fixed(counts(&[("a", 123_456_789), ("b", 1)]))),
            )
            .unwrap();
        // The count 123,456,789 made 1,000,000: still a well-formed Arrow file.
        let path = dir.path().join("state-0.arrow");
        let mut bytes = std::fs::read(&path).unwrap();
        let count = 123_456_789i64.to_le_bytes();
        let at = bytes.windows(8).position(|w| w == count).unwrap();
        bytes[at..at + 8].copy_from_slice(&1_000_000i64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_table(&path, None).unwrap().num_rows(), 2);
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error
                .contains("state-0.arrow is not the file its commit recorded: its SHA-256 differs"),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_state_file_is_an_error_wherever_it_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        let words: Vec<(String, i64)> = (0..40).map(|i| (format!("word{i}"), i)).collect();
        let words: Vec<(&str, i64)> = words.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        checkpoint
            .commit(0, 40, None, Some(&Fixed(counts(&words))))
            .unwrap();
        // As a commit written before the hashes were (or a hand took the hash out).
        let commit_path = dir.path().join(COMMIT);
        let mut commit: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&commit_path).unwrap()).unwrap();
        commit.as_object_mut().unwrap().remove("state_sha256");
        std::fs::write(&commit_path, commit.to_string()).unwrap();
        let path = dir.path().join("state-0.arrow");
        let good = std::fs::read(&path).unwrap();
        let mut unreadable = 0;
        // Without a digest the commit is refused as it is.
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error.contains("is damaged (it records no SHA-256 of state-0.arrow"),
            "{error}"
        );
        for at in (0..good.len() - 4).step_by(3) {
            let mut bytes = good.clone();
            bytes[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
            std::fs::write(&path, &bytes).unwrap();
            // Never a panic: read (the bytes were padding or data), or refused.
            if let Err(error) = read_table(&path, None) {
                assert!(error.starts_with("state-0.arrow"), "{error}");
                unreadable += usize::from(error.contains("cannot be read"));
            }
        }
        // Arrow's reader panicked on some (an offset past the buffer's end): caught as damage.
        assert!(unreadable > 0);
    }

    #[test]
    fn damaged_files_are_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        let state = Fixed(counts(&[("a", 1)]));
        checkpoint.commit(0, 1, None, Some(&state)).unwrap();
        std::fs::write(dir.path().join("state-0.arrow"), b"not arrow").unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "checkpoint in {} is damaged (state-0.arrow is not the file its commit recorded",
                dir.path().display()
            )),
            "{error}"
        );
        std::fs::write(dir.path().join("commit.json"), b"{\"format\": 1").unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(error.contains("commit.json is damaged"), "{error}");
        // Random bytes, or a folder where the commit belongs.
        std::fs::write(dir.path().join("commit.json"), [0xff, 0xfe, 0x00, 0x81]).unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error
                .contains("commit.json is damaged (it is not UTF-8 text); move the directory away"),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("commit.json")).unwrap();
        std::fs::create_dir(dir.path().join("commit.json")).unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error.contains("commit.json is damaged (it is a folder)"),
            "{error}"
        );
    }

    #[test]
    fn a_state_that_is_no_plain_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoint =
            Checkpoint::new(dir.path().into(), NonZeroU64::MIN, "p", identity(true));
        checkpoint
            .commit(0, 1, None, Some(&Fixed(counts(&[("a", 1)]))))
            .unwrap();
        // Hashing an endless device would never end.
        let state = dir.path().join("state-0.arrow");
        std::fs::remove_file(&state).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &state).unwrap();
        let error = checkpoint.load().unwrap_err().to_string();
        assert!(
            error.contains("is damaged (state-0.arrow is not a plain file)"),
            "{error}"
        );
        assert!(is_state_name("state-12.arrow"));
        for name in [
            "state-.arrow",
            "state-1.arrow/..",
            "../state-1.arrow",
            "state-+1.arrow",
        ] {
            assert!(!is_state_name(name), "{name}");
        }
    }
}
