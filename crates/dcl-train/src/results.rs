//! The results directory of a run, and the state of the run recorded in it.
//!
//! Files are written through a temporary file that is synced, then renamed over the old
//! one (and the directory synced): a reader, or a machine that loses power, sees the old
//! file or the new one, never a torn one. `summary.json` says what state the run is in
//! ([`RunStatus`]) and which run it is ([`RunIdentity`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::TrainError;

/// The files a run writes, `summary.json` last (a reader that sees it sees the others).
pub const RESULT_FILES: [&str; 6] = [
    "config.json",
    "dl_metrics.json",
    "tasks_metrics.json",
    "time_metrics.json",
    "metrics.csv",
    "summary.json",
];
/// The prefix of the temporary files of atomic writes.
const TEMPORARY_PREFIX: &str = ".dcl-";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Training; the figures are those of the tasks completed so far.
    Running,
    /// Every task was trained and evaluated.
    Complete,
    /// Stopped by a signal (or killed): the figures are those of the completed tasks.
    Interrupted,
    /// Stopped by an error, recorded beside the status.
    Failed,
}

/// Which run a results directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub dcl_version: String,
    pub seed: u64,
    /// The first 16 hex digits of the SHA-256 of `config.json`: runs of one configuration
    /// share it.
    pub config_hash: String,
    /// When the run started, UTC, RFC 3339.
    pub started_at: String,
    pub host: String,
    pub pid: u32,
}

impl RunIdentity {
    /// The identity of a run of `config` (its `config.json` text), with `seed`, started now
    /// by this process.
    pub fn new(config: &str, seed: u64) -> Self {
        let digest = Sha256::digest(config.as_bytes());
        RunIdentity {
            dcl_version: crate::DCL_VERSION.to_owned(),
            seed,
            config_hash: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            pid: std::process::id(),
        }
    }
}

/// A run's results directory.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

/// Whether `dir` holds a dcl run's files (and nothing is lost by replacing them).
fn holds_a_run(dir: &Path) -> bool {
    RESULT_FILES.iter().any(|name| dir.join(name).is_file())
}

/// The error of an I/O operation on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}

impl RunDir {
    /// Fails unless a new run can write to `path`: a path that does not exist yet or, with
    /// `overwrite`, an empty directory or one holding an earlier run. Call it before any
    /// long work.
    pub fn check_available(path: &Path, overwrite: bool) -> Result<(), TrainError> {
        let Ok(metadata) = std::fs::metadata(path) else {
            return Ok(());
        };
        if !metadata.is_dir() {
            return Err(TrainError::Config(format!(
                "--results-dir {} exists and is not a directory; choose another --results-dir",
                path.display()
            )));
        }
        if !overwrite {
            return Err(TrainError::RunDirExists { path: path.to_owned() });
        }
        let empty = std::fs::read_dir(path).map_err(io(path))?.next().is_none();
        if !empty && !holds_a_run(path) {
            return Err(TrainError::Config(format!(
                "--results-dir {} holds files that are not a dcl run; --overwrite replaces only an earlier run's \
                 directory: choose another --results-dir",
                path.display()
            )));
        }
        Ok(())
    }

    /// Creates the directory of a new run at `path` (and its parents). With `overwrite`, an
    /// earlier run's files there are removed first, so that the two runs never mix.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self, TrainError> {
        Self::check_available(path, overwrite)?;
        std::fs::create_dir_all(path).map_err(io(path))?;
        for entry in std::fs::read_dir(path).map_err(io(path))? {
            let entry = entry.map_err(io(path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if RESULT_FILES.contains(&name.as_ref()) || name.starts_with(TEMPORARY_PREFIX) {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(RunDir { path: path.to_owned() })
    }

    /// Creates a new directory at `base` or, when that exists, at `base-2`, `base-3`, …:
    /// default names, which runs started in the same second would share.
    pub fn create_unique(base: &Path) -> Result<Self, TrainError> {
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        for n in 1.. {
            let path = if n == 1 {
                base.to_owned()
            } else {
                PathBuf::from(format!("{}-{n}", base.display()))
            };
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        unreachable!("an unbounded range ends only by returning")
    }

    /// The process of the run in this directory when it is still going on this host (its
    /// summary says `running` and its process lives), so that no second process takes it over.
    pub fn live_process(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.path.join("summary.json")).ok()?;
        let summary: Value = serde_json::from_str(&text).ok()?;
        let run: RunIdentity = serde_json::from_value(summary.get("run")?.clone()).ok()?;
        let here = RunIdentity::new("", 0).host;
        // A process that has exited but is not reaped yet (a zombie) is not going.
        let alive = std::fs::read_to_string(format!("/proc/{}/stat", run.pid))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')));
        (summary.get("status")? == "running" && run.host == here && alive && run.pid != std::process::id())
            .then_some(run.pid)
    }

    /// The directory of an existing run.
    pub fn open(path: &Path) -> Self {
        RunDir { path: path.to_owned() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` as pretty JSON to `name` in the directory.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<(), TrainError> {
        let mut text = serde_json::to_string_pretty(value).expect("results are serialisable");
        text.push('\n');
        self.write(name, text.as_bytes())
    }

    /// Writes `bytes` to `name` in the directory, atomically and durably.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrainError> {
        let dest = self.path.join(name);
        let mut file = tempfile::Builder::new()
            .prefix(TEMPORARY_PREFIX)
            .tempfile_in(&self.path)
            .map_err(io(&dest))?;
        file.write_all(bytes).map_err(io(&dest))?;
        file.as_file().sync_all().map_err(io(&dest))?;
        file.persist(&dest).map_err(|e| io(&dest)(e.error))?;
        // The rename itself is durable once the directory is.
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))
    }

    /// Marks a run that is still `running` as `status`, with `error`, leaving its figures as
    /// they are (for a process that outlived the run's); returns whether it did.
    pub fn settle(&self, status: RunStatus, error: &str) -> Result<bool, TrainError> {
        let path = self.path.join("summary.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(false);
        };
        let Ok(mut summary) = serde_json::from_str::<Value>(&text) else {
            return Ok(false);
        };
        if summary["status"] != serde_json::json!(RunStatus::Running) {
            return Ok(false);
        }
        summary["status"] = serde_json::json!(status);
        summary["error"] = Value::String(error.to_owned());
        self.write_json("summary.json", &summary)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn refuses_an_existing_directory_unless_told_to_overwrite_and_then_leaves_no_mix() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        let dir = RunDir::create(&run, false).unwrap();
        dir.write_json("summary.json", &serde_json::json!({"a": 1})).unwrap();
        dir.write("metrics.csv", b"old").unwrap();
        let message = RunDir::create(&run, false).unwrap_err().to_string();
        assert!(message.contains("already exists"), "{message}");
        assert!(message.contains("--overwrite"), "{message}");
        assert!(run.join("summary.json").exists(), "earlier results were touched");
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        let again = RunDir::create(&run, true).unwrap();
        assert_eq!(
            names(&run),
            vec!["notes.txt"],
            "the earlier run's files are gone, the user's stay"
        );
        again.write_json("summary.json", &serde_json::json!({"a": 2})).unwrap();
        let text = std::fs::read_to_string(run.join("summary.json")).unwrap();
        assert!(text.contains("\"a\": 2"));
        assert_eq!(
            names(&run),
            vec!["notes.txt", "summary.json"],
            "no temporary file is left"
        );
    }

    #[test]
    fn overwrite_never_replaces_a_file_or_a_directory_of_other_things() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        for overwrite in [false, true] {
            let message = RunDir::create(&file, overwrite).unwrap_err().to_string();
            assert!(message.contains("exists and is not a directory"), "{message}");
            assert!(!message.contains("--overwrite"), "{message}");
        }
        let other = root.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("thesis.tex"), "x").unwrap();
        let message = RunDir::create(&other, true).unwrap_err().to_string();
        assert!(message.contains("holds files that are not a dcl run"), "{message}");
        assert!(other.join("thesis.tex").exists());
        assert!(RunDir::create(&root.path().join("empty-or-new"), true).is_ok());
    }

    #[test]
    fn default_names_get_a_suffix_instead_of_colliding() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("results/20260101-000000-mlp-mnist");
        let paths: Vec<PathBuf> = (0..3)
            .map(|_| RunDir::create_unique(&base).unwrap().path().to_owned())
            .collect();
        assert_eq!(paths[0], base);
        assert_eq!(paths[1], PathBuf::from(format!("{}-2", base.display())));
        assert_eq!(paths[2], PathBuf::from(format!("{}-3", base.display())));
    }

    #[test]
    fn settling_changes_only_a_running_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = RunDir::create(&root.path().join("run"), false).unwrap();
        assert!(!dir.settle(RunStatus::Interrupted, "killed").unwrap(), "no summary yet");
        dir.write_json(
            "summary.json",
            &serde_json::json!({"status": "running", "accuracy_matrix": [[90.0]]}),
        )
        .unwrap();
        assert!(dir.settle(RunStatus::Interrupted, "killed").unwrap());
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["status"], "interrupted");
        assert_eq!(summary["error"], "killed");
        assert_eq!(summary["accuracy_matrix"][0][0], 90.0);
        assert!(
            !dir.settle(RunStatus::Failed, "again").unwrap(),
            "only a running run is settled"
        );
    }

    #[test]
    fn identities_hash_the_configuration() {
        let a = RunIdentity::new("{\"seed\": 1}", 1);
        assert_eq!(a.config_hash.len(), 16);
        assert_eq!(a.config_hash, RunIdentity::new("{\"seed\": 1}", 1).config_hash);
        assert_ne!(a.config_hash, RunIdentity::new("{\"seed\": 2}", 2).config_hash);
        assert_eq!(a.pid, std::process::id());
    }
}
