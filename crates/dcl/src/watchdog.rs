//! The watchdog of a run's results: a small process that outlives the run's process and,
//! if that one dies without saying how its run ended (`kill -9`, the out-of-memory killer,
//! a lost node), marks the run `interrupted` in `summary.json`. A run that ends by itself
//! (complete, failed, or stopped by a signal it caught) has already said so, and the
//! watchdog leaves it alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use dcl_train::{RunDir, RunStatus};

/// How often the watchdog checks that the run's process lives.
const POLL: Duration = Duration::from_millis(200);

/// The message of a run whose process died without a word.
pub const KILLED: &str = "the process ended without finishing the run (killed: kill -9, out of memory, a lost node or \
                          another rank's failure); the figures are those of the completed tasks";

/// Starts the watchdog of the run whose results are in `dir` (best effort: a run without one
/// still runs).
pub fn spawn(dir: &Path) {
    let Ok(exe) = std::env::current_exe() else { return };
    let _ = Command::new(exe)
        .arg("watch")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// The watchdog itself (`dcl watch DIR`, started by [`spawn`]): waits for its parent to end,
/// then settles a run left `running`.
pub fn run(dir: PathBuf) -> Result<()> {
    crate::signals::ignore_stopping_signals();
    let parent = std::os::unix::process::parent_id();
    // The parent is gone when this process is handed to another one (init or a subreaper).
    while std::os::unix::process::parent_id() == parent {
        std::thread::sleep(POLL);
    }
    RunDir::open(&dir).settle(RunStatus::Interrupted, KILLED)?;
    Ok(())
}
