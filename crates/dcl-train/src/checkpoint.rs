//! Checkpoints: at the end of every epoch, everything a run needs to continue exactly as if it
//! had not stopped, in `RESULTS/checkpoints/task-TTT-epoch-EEE/`; within an epoch (every
//! `--checkpoint-every-steps N` steps, and when a signal stops the run), in
//! `task-TTT-epoch-EEE-step-SSSSSS/` (S: the epoch's steps trained), which also holds
//! `progress-rank-R.json`, each rank's sums over the part of the epoch's pass trained so far:
//!
//! - `model.safetensors`: the weights and buffers under the model's reference `state_dict()`
//!   names (loadable with `safetensors.torch.load_file` and `model.load_state_dict`);
//! - `optimizer.safetensors`: the optimiser's state tensors (momentum, moment estimates, steps);
//! - `buffer-rank-R.bin`: each rank's rehearsal buffer ([`dcl_buffer::RehearsalBuffer::save`]);
//! - `state.json`: where the run stands (task, epoch, step), its record so far, the optimiser's
//!   hyper-parameters, the loss scale, and the rehearsal totals.
//!
//! Every other random choice derives from (seed, task, epoch, step), so no random generator
//! state is saved. A checkpoint is written into a temporary directory, every file fsynced, then
//! renamed into place: a reader sees a whole checkpoint or none. The latest two are kept
//! at epochs' ends (every one with `--save-all-checkpoints`) and the latest within an epoch
//! after them. Writing happens on a background thread, from host copies taken at the step.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Device, Tensor};

use dcl_buffer::RehearsalBuffer;
use dcl_dist::Communicator;

use crate::metrics::RunRecord;
use crate::rehearsal::RehearsalWindow;
use crate::results::io;
use crate::TrainError;

/// The version of the checkpoint layout.
const FORMAT: u32 = 1;
const PREFIX: &str = "task-";
const TEMPORARY: &str = ".tmp-";
/// The agent's state in a checkpoint, when it keeps any.
const AGENT_FILE: &str = "agent.safetensors";

/// Where a run stands: the epoch it completed last, or the steps it trained of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub task: usize,
    pub epoch: usize,
    /// Within the epoch: the steps of its training pass done (all of them when the run stopped
    /// in its evaluation); `None` once the epoch and its evaluation are complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

impl Position {
    /// At the end of `epoch` of `task`, evaluation included.
    pub fn after_epoch(task: usize, epoch: usize) -> Self {
        Position {
            task,
            epoch,
            step: None,
        }
    }

    /// After `steps` steps of the training pass of `epoch` of `task`.
    pub fn within_epoch(task: usize, epoch: usize, steps: usize) -> Self {
        Position {
            task,
            epoch,
            step: Some(steps),
        }
    }

    fn dir_name(self) -> String {
        let epoch = format!("{PREFIX}{:03}-epoch-{:03}", self.task, self.epoch);
        match self.step {
            Some(step) => format!("{epoch}-step-{step:06}"),
            None => epoch,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(PREFIX)?;
        let (task, rest) = rest.split_once("-epoch-")?;
        let (epoch, step) = match rest.split_once("-step-") {
            Some((epoch, step)) => (epoch, Some(step.parse().ok()?)),
            None => (rest, None),
        };
        Some(Position {
            task: task.parse().ok()?,
            epoch: epoch.parse().ok()?,
            step,
        })
    }

    /// The order of the run: an epoch's steps, then its end.
    fn key(self) -> (usize, usize, usize) {
        (self.task, self.epoch, self.step.unwrap_or(usize::MAX))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Which steps of a training pass end with a checkpoint: every `--checkpoint-every-steps N`
/// steps of the run, and the step a stopped run ends at. The training thread and the loader's
/// collate function (which copies the rehearsal buffer after offering that step's batch)
/// share it.
#[derive(Debug)]
pub struct CheckpointSteps {
    every: Option<usize>,
    /// Steps of the run before this pass.
    before: usize,
    /// The step (of the pass) a stopped run ends at; `usize::MAX`: none.
    stop: AtomicUsize,
}

impl Default for CheckpointSteps {
    /// No checkpoint within the pass.
    fn default() -> Self {
        CheckpointSteps::new(None, 0)
    }
}

impl CheckpointSteps {
    /// The checkpoints of a pass that starts after `before` steps of the run.
    pub fn new(every: Option<usize>, before: usize) -> Self {
        CheckpointSteps {
            every,
            before,
            stop: AtomicUsize::new(usize::MAX),
        }
    }

    /// Whether step `step` (of the pass, from 0) ends with a checkpoint.
    pub fn at(&self, step: usize) -> bool {
        self.every.is_some_and(|n| (self.before + step + 1) % n == 0) || self.stop_step() == Some(step)
    }

    /// Ends the pass with a checkpoint after step `step`. The loader's collate function must
    /// not have offered that step's batch yet.
    pub fn stop_at(&self, step: usize) {
        self.stop.store(step, Ordering::SeqCst);
    }

    /// The step the pass stops at, once asked to.
    pub fn stop_step(&self) -> Option<usize> {
        match self.stop.load(Ordering::SeqCst) {
            usize::MAX => None,
            step => Some(step),
        }
    }
}

/// One rank's sums over the part of a training pass done at a checkpoint within an epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PassProgress {
    /// Samples trained on (fresh and representatives).
    pub samples: usize,
    /// The task's own samples.
    pub fresh_samples: usize,
    pub loss_sum: f64,
    pub top1_hits: i64,
    /// Training time so far.
    pub seconds: f64,
    /// This rank's rehearsal over the steps done.
    pub rehearsal: Option<RehearsalWindow>,
    /// Whether the agent has consolidated the task already (a stop in the evaluation after a
    /// task's last pass).
    #[serde(default)]
    pub task_ended: bool,
}

/// The small part of a checkpoint, `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub dcl_version: String,
    pub world_size: usize,
    pub position: Position,
    pub record: RunRecord,
    pub optimizer: Value,
    /// The loss scale and its growth tracker (`--amp fp16`).
    pub loss_scale: Option<(f64, i64)>,
    /// The rehearsal totals of the run so far.
    pub rehearsal: Option<RehearsalWindow>,
}

/// A checkpoint in host memory.
pub struct Snapshot {
    pub state: State,
    pub weights: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
    /// The agent's state (the same on every rank).
    pub agent: Vec<(String, Tensor)>,
    /// This rank's buffer.
    pub buffer: Option<RehearsalBuffer<u8>>,
    /// This rank's part of the epoch's pass, within an epoch.
    pub progress: Option<PassProgress>,
}

/// Host copies of `tensors` (contiguous, on the CPU), to write while training goes on.
pub fn host_copies(tensors: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, TrainError> {
    tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.f_to_device(Device::Cpu)?.f_contiguous()?.f_detach_copy()?)))
        .collect()
}

/// Writes the checkpoints of one rank of a run.
///
/// Each rank writes its part into the checkpoint's temporary directory in the background
/// (rank 0: all but the other ranks' buffers). Once every rank's part is written, rank 0
/// renames the directory into place: at once in a world of one, else when the ranks next
/// meet ([`Checkpointer::finish`], at the next checkpoint or the end of the run).
pub struct Checkpointer {
    root: PathBuf,
    rank: usize,
    world_size: usize,
    keep_all: bool,
    writing: Option<(Position, JoinHandle<Result<(), TrainError>>)>,
}

impl Checkpointer {
    /// Checkpoints under `results_dir/checkpoints` for rank `rank` of `world_size`; with
    /// `keep_all`, none is ever removed.
    pub fn new(results_dir: &Path, rank: usize, world_size: usize, keep_all: bool) -> Self {
        Checkpointer {
            root: results_dir.join("checkpoints"),
            rank,
            world_size,
            keep_all,
            writing: None,
        }
    }

    /// Starts writing `snapshot` in the background once the previous checkpoint is complete (a
    /// collective call).
    pub fn save(&mut self, snapshot: Snapshot, world: &dyn Communicator) -> Result<(), TrainError> {
        self.finish(world)?;
        let (root, rank, keep_all) = (self.root.clone(), self.rank, self.keep_all);
        let alone = self.world_size == 1;
        let position = snapshot.state.position;
        let writer = std::thread::Builder::new()
            .name("dcl-checkpoint".into())
            .spawn(move || {
                write_part(&root, rank, &snapshot)?;
                if alone {
                    commit(&root, position, keep_all)?;
                }
                Ok(())
            })
            .map_err(io(&self.root))?;
        self.writing = Some((position, writer));
        Ok(())
    }

    /// Completes the checkpoint being written, if any (a collective call): waits for every
    /// rank's part, then rank 0 renames it into place. Fails on every rank when one failed.
    pub fn finish(&mut self, world: &dyn Communicator) -> Result<(), TrainError> {
        let Some((position, writer)) = self.writing.take() else {
            return Ok(());
        };
        let written = writer.join().expect("the checkpoint writer panicked");
        if self.world_size == 1 {
            return written;
        }
        let mut failures = [f64::from(u8::from(written.is_err()))];
        world.all_reduce_sum_f64(&mut failures);
        written?;
        if failures[0] > 0.0 {
            return Err(TrainError::Config(format!(
                "another rank could not write its part of checkpoint {}",
                position.dir_name()
            )));
        }
        if self.rank == 0 {
            commit(&self.root, position, self.keep_all)?;
        }
        world.barrier();
        Ok(())
    }
}

/// Writes this rank's part of `snapshot` into the checkpoint's temporary directory.
fn write_part(root: &Path, rank: usize, snapshot: &Snapshot) -> Result<(), TrainError> {
    let temporary = root.join(format!("{TEMPORARY}{}", snapshot.state.position.dir_name()));
    std::fs::create_dir_all(&temporary).map_err(io(&temporary))?;
    if let Some(buffer) = &snapshot.buffer {
        write_file(&temporary.join(format!("buffer-rank-{rank}.bin")), |file| {
            buffer.save(file)
        })?;
    }
    if let Some(progress) = &snapshot.progress {
        let text = json_text(progress);
        write_file(&temporary.join(progress_file(rank)), |file| file.write_all(&text))?;
    }
    if rank != 0 {
        return Ok(());
    }
    let model = temporary.join("model.safetensors");
    Tensor::write_safetensors(&snapshot.weights, &model)?;
    sync(&model)?;
    let optimizer = temporary.join("optimizer.safetensors");
    Tensor::write_safetensors(&snapshot.optimizer, &optimizer)?;
    sync(&optimizer)?;
    if !snapshot.agent.is_empty() {
        let agent = temporary.join(AGENT_FILE);
        Tensor::write_safetensors(&snapshot.agent, &agent)?;
        sync(&agent)?;
    }
    let state = json_text(&snapshot.state);
    write_file(&temporary.join("state.json"), |file| file.write_all(&state))
}

/// `value` as pretty JSON text, ending with a newline.
fn json_text(value: &impl Serialize) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("checkpoint state is serialisable");
    text.push(b'\n');
    text
}

/// The name of rank `rank`'s part of the pass in a checkpoint within an epoch.
fn progress_file(rank: usize) -> String {
    format!("progress-rank-{rank}.json")
}

/// Renames the complete checkpoint at `position` into place and removes the ones it makes
/// unneeded ([`prune`]).
fn commit(root: &Path, position: Position, keep_all: bool) -> Result<(), TrainError> {
    let temporary = root.join(format!("{TEMPORARY}{}", position.dir_name()));
    let final_dir = root.join(position.dir_name());
    sync(&temporary)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&temporary, &final_dir).map_err(io(&final_dir))?;
    sync(root)?;
    prune(root, keep_all)
}

/// Creates `path` with what `contents` writes, then syncs it to disk.
fn write_file(
    path: &Path,
    contents: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io(path))?);
    contents(&mut file).map_err(io(path))?;
    let file = file.into_inner().map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))
}

/// Flushes a file or a directory (its entries) to disk.
fn sync(path: &Path) -> Result<(), TrainError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

/// The committed checkpoints under `root`, oldest first.
fn committed(root: &Path) -> Vec<(Position, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(Position, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((Position::parse(e.file_name().to_str()?)?, e.path())))
        .collect();
    found.sort();
    found
}

/// Removes the checkpoints that are no longer needed: of those at epochs' ends, all but the
/// latest two (none with `keep_all`); of those within an epoch, all but the latest, and that
/// one too once an epoch's end follows it.
fn prune(root: &Path, keep_all: bool) -> Result<(), TrainError> {
    let all = committed(root);
    let latest = all.last().map(|(p, _)| *p);
    let epoch_ends = all.iter().filter(|(p, _)| p.step.is_none()).count();
    let mut ends_seen = 0;
    for (position, dir) in &all {
        let needed = match position.step {
            Some(_) => Some(*position) == latest,
            None => {
                ends_seen += 1;
                keep_all || epoch_ends - ends_seen < 2
            }
        };
        if !needed {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
    }
    Ok(())
}

/// Removes the unfinished checkpoints under `root` (of a run killed while writing one).
pub fn remove_unfinished(root: &Path) -> Result<(), TrainError> {
    let root = root.join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(TEMPORARY) {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// A checkpoint read back for rank `rank`.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: State,
    pub weights: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
    /// The agent's state (empty when it keeps none).
    pub agent: Vec<(String, Tensor)>,
    /// This rank's buffer file, opened, when the checkpoint has one.
    pub buffer: Option<File>,
    /// This rank's part of the epoch's pass, for a checkpoint within an epoch.
    pub progress: Option<PassProgress>,
}

/// The latest checkpoint of the run in `results_dir`, for rank `rank` of `world_size`;
/// `None` when the run wrote none yet.
pub fn latest(results_dir: &Path, rank: usize, world_size: usize) -> Result<Option<Loaded>, TrainError> {
    let Some((_, dir)) = committed(&results_dir.join("checkpoints")).pop() else {
        return Ok(None);
    };
    let bad = |what: String| TrainError::Config(format!("checkpoint {}: {what}", dir.display()));
    let text = std::fs::read_to_string(dir.join("state.json")).map_err(io(&dir.join("state.json")))?;
    let state: State = serde_json::from_str(&text).map_err(|e| bad(format!("state.json: {e}")))?;
    if state.format != FORMAT {
        return Err(bad(format!("format {} (this dcl reads {FORMAT})", state.format)));
    }
    if state.world_size != world_size {
        return Err(bad(format!(
            "written by {} worker(s); resume it with as many (mpirun -np {}), not {world_size}",
            state.world_size, state.world_size
        )));
    }
    let read = |name: &str| Tensor::read_safetensors(dir.join(name)).map_err(|e| bad(format!("{name}: {e}")));
    let buffer_path = dir.join(format!("buffer-rank-{rank}.bin"));
    let buffer = match File::open(&buffer_path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&buffer_path)(e)),
    };
    let progress = match state.position.step {
        Some(_) => {
            let path = dir.join(progress_file(rank));
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            Some(serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", progress_file(rank))))?)
        }
        None => None,
    };
    let agent = match dir.join(AGENT_FILE).exists() {
        true => read(AGENT_FILE)?,
        false => Vec::new(),
    };
    Ok(Some(Loaded {
        agent,
        progress,
        weights: read("model.safetensors")?,
        optimizer: read("optimizer.safetensors")?,
        buffer,
        state,
        dir,
    }))
}

/// A new state for `position`.
pub fn state_at(position: Position, world_size: usize, record: RunRecord) -> State {
    State {
        format: FORMAT,
        dcl_version: crate::DCL_VERSION.to_owned(),
        world_size,
        position,
        record,
        optimizer: Value::Null,
        loss_scale: None,
        rehearsal: None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A complete checkpoint of a tiny run at task 1, epoch 0, in a fresh results directory.
    fn written() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot {
            state: state_at(Position::after_epoch(1, 0), 1, RunRecord::default()),
            weights: vec![("fc.weight".to_owned(), Tensor::from_slice(&[1.0f32, 2.0]))],
            optimizer: vec![(
                "fc.weight.momentum_buffer".to_owned(),
                Tensor::from_slice(&[0.5f32, 0.25]),
            )],
            agent: Vec::new(),
            buffer: None,
            progress: None,
        };
        let mut checkpointer = Checkpointer::new(dir.path(), 0, 1, false);
        checkpointer.save(snapshot, &dcl_dist::SingleProcess).unwrap();
        checkpointer.finish(&dcl_dist::SingleProcess).unwrap();
        dir
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_only_the_latest_two_stay() {
        let dir = written();
        let loaded = latest(dir.path(), 0, 1).unwrap().expect("a checkpoint");
        assert_eq!(loaded.state.position, Position::after_epoch(1, 0));
        assert_eq!(loaded.weights[0].0, "fc.weight");
        assert_eq!(Vec::<f32>::try_from(&loaded.optimizer[0].1).unwrap(), vec![0.5, 0.25]);
        assert!(loaded.buffer.is_none());
        let mut checkpointer = Checkpointer::new(dir.path(), 0, 1, false);
        for epoch in 1..4 {
            let snapshot = Snapshot {
                state: state_at(Position::after_epoch(1, epoch), 1, RunRecord::default()),
                weights: Vec::new(),
                optimizer: Vec::new(),
                agent: Vec::new(),
                buffer: None,
                progress: None,
            };
            checkpointer.save(snapshot, &dcl_dist::SingleProcess).unwrap();
        }
        checkpointer.finish(&dcl_dist::SingleProcess).unwrap();
        let kept: Vec<Position> = committed(&dir.path().join("checkpoints"))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(kept, vec![Position::after_epoch(1, 2), Position::after_epoch(1, 3)]);
        assert!(latest(dir.path(), 0, 2)
            .err()
            .unwrap()
            .to_string()
            .contains("written by 1 worker(s)"));
    }

    /// Writes an empty checkpoint at each of `positions`, in order, and returns the names kept.
    fn kept_after(positions: &[Position], keep_all: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpointer = Checkpointer::new(dir.path(), 0, 1, keep_all);
        for &position in positions {
            let snapshot = Snapshot {
                state: state_at(position, 1, RunRecord::default()),
                weights: Vec::new(),
                optimizer: Vec::new(),
                agent: Vec::new(),
                buffer: None,
                progress: position.step.map(|_| PassProgress::default()),
            };
            checkpointer.save(snapshot, &dcl_dist::SingleProcess).unwrap();
        }
        checkpointer.finish(&dcl_dist::SingleProcess).unwrap();
        committed(&dir.path().join("checkpoints"))
            .into_iter()
            .map(|(p, _)| p.dir_name())
            .collect()
    }

    #[test]
    fn checkpoints_within_an_epoch_come_before_its_end_and_go_once_an_epoch_ends_after_them() {
        let (end, within) = (Position::after_epoch, Position::within_epoch);
        assert!(within(0, 1, 5) < within(0, 1, 6));
        assert!(within(0, 1, 6) < end(0, 1), "the end of an epoch follows its steps");
        assert!(end(0, 0) < within(0, 1, 0));
        assert_eq!(
            Position::parse("task-002-epoch-001-step-000040"),
            Some(within(2, 1, 40))
        );
        assert_eq!(Position::parse("task-002-epoch-001"), Some(end(2, 1)));
        assert_eq!(Position::parse("task-002-epoch-001-step-x"), None);

        let run = [
            end(0, 0),
            within(0, 1, 3),
            within(0, 1, 6),
            end(0, 1),
            end(1, 0),
            within(1, 1, 3),
        ];
        assert_eq!(
            kept_after(&run[..3], false),
            ["task-000-epoch-000", "task-000-epoch-001-step-000006"]
        );
        assert_eq!(
            kept_after(&run[..4], false),
            ["task-000-epoch-000", "task-000-epoch-001"]
        );
        assert_eq!(
            kept_after(&run, false),
            [
                "task-000-epoch-001",
                "task-001-epoch-000",
                "task-001-epoch-001-step-000003"
            ]
        );
        assert_eq!(
            kept_after(&run, true),
            [
                "task-000-epoch-000",
                "task-000-epoch-001",
                "task-001-epoch-000",
                "task-001-epoch-001-step-000003"
            ]
        );
    }

    #[test]
    fn a_checkpoint_within_an_epoch_reads_back_each_ranks_progress_and_the_agents_state() {
        let dir = tempfile::tempdir().unwrap();
        let progress = PassProgress {
            samples: 96,
            fresh_samples: 64,
            loss_sum: 12.5,
            top1_hits: 40,
            seconds: 1.5,
            rehearsal: None,
            task_ended: false,
        };
        let snapshot = Snapshot {
            state: state_at(Position::within_epoch(0, 0, 2), 1, RunRecord::default()),
            weights: Vec::new(),
            optimizer: Vec::new(),
            agent: vec![("si.omega.0".to_owned(), Tensor::from_slice(&[0.5f32]))],
            buffer: None,
            progress: Some(progress.clone()),
        };
        let mut checkpointer = Checkpointer::new(dir.path(), 0, 1, false);
        checkpointer.save(snapshot, &dcl_dist::SingleProcess).unwrap();
        checkpointer.finish(&dcl_dist::SingleProcess).unwrap();
        let loaded = latest(dir.path(), 0, 1).unwrap().unwrap();
        assert_eq!(loaded.state.position, Position::within_epoch(0, 0, 2));
        assert_eq!(loaded.progress, Some(progress));
        assert_eq!(loaded.agent[0].0, "si.omega.0");
        std::fs::remove_file(
            dir.path()
                .join("checkpoints/task-000-epoch-000-step-000002/progress-rank-0.json"),
        )
        .unwrap();
        let error = latest(dir.path(), 0, 1)
            .err()
            .expect("a missing progress file is refused");
        assert!(error.to_string().contains("progress-rank-0.json"), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Damaged files of a checkpoint read or fail with one line, never a panic.
        #[test]
        fn damaged_checkpoints_fail_with_one_line(
            file in prop::sample::select(vec!["state.json", "model.safetensors", "optimizer.safetensors"]),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            keep in 0.0..=1.0f64,
        ) {
            let dir = written();
            let path = dir.path().join("checkpoints/task-001-epoch-000").join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate((keep * bytes.len() as f64).ceil() as usize);
            std::fs::write(&path, bytes).unwrap();
            if let Err(error) = latest(dir.path(), 0, 1) {
                let text = error.to_string();
                prop_assert!(!text.contains('\n'), "{text}");
            }
        }
    }
}
