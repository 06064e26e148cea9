//! The results directory of a run.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::TrainError;

/// A run's results directory. Files are replaced atomically, so a reader never sees a
/// half-written one and a crash never leaves one truncated.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Fails if `path` exists and `overwrite` is false: a run never silently replaces
    /// another's results. Call it before any long work.
    pub fn check_available(path: &Path, overwrite: bool) -> Result<(), TrainError> {
        if path.exists() && !overwrite {
            return Err(TrainError::RunDirExists { path: path.to_owned() });
        }
        Ok(())
    }

    /// Creates the directory (and its parents) after [`RunDir::check_available`].
    pub fn create(path: &Path, overwrite: bool) -> Result<Self, TrainError> {
        Self::check_available(path, overwrite)?;
        std::fs::create_dir_all(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(RunDir { path: path.to_owned() })
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

    /// Writes `bytes` to `name` in the directory, through a temporary file and a rename.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrainError> {
        let dest = self.path.join(name);
        let partial = self.path.join(format!(".{name}.partial"));
        let io = |source| TrainError::Io {
            path: dest.clone(),
            source,
        };
        std::fs::write(&partial, bytes).map_err(io)?;
        std::fs::rename(&partial, &dest).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_an_existing_directory_unless_told_to_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        let dir = RunDir::create(&run, false).unwrap();
        dir.write_json("summary.json", &serde_json::json!({"a": 1})).unwrap();
        let message = RunDir::create(&run, false).unwrap_err().to_string();
        assert!(message.contains("already exists"), "{message}");
        assert!(message.contains("--overwrite"), "{message}");
        assert!(run.join("summary.json").exists(), "earlier results were touched");
        let again = RunDir::create(&run, true).unwrap();
        again.write_json("summary.json", &serde_json::json!({"a": 2})).unwrap();
        let text = std::fs::read_to_string(run.join("summary.json")).unwrap();
        assert!(text.contains("\"a\": 2"));
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 1, "no partial file is left");
    }
}
