//! Data sets published as one archive: CIFAR's tarballs and Tiny-ImageNet's zip.
//!
//! [`fetch_archive`] downloads an archive next to the folder it unpacks to, into a `.partial`
//! file that a later run resumes with an HTTP `Range` request; checks the archive's md5 (a
//! mismatch deletes it); unpacks it into a scratch folder and moves the data set's folder into
//! place, so that a folder in place is always complete; and deletes the archive. An archive
//! already in place (put there by hand, say) is used without downloading when its md5 matches.
//!
//! | `dcl data fetch` | archive (md5) | unpacked to, under `--dataset-dir` |
//! | --- | --- | --- |
//! | `cifar10` | cifar-10-python.tar.gz (`c58f30108f718f92721af3b95e74349a`) | `CIFAR10/cifar-10-batches-py` |
//! | `cifar10-binary` | cifar-10-binary.tar.gz (`c32a1d4ab5d03f1284b67883e8d87530`) | `CIFAR10/cifar-10-batches-bin` |
//! | `cifar100` | cifar-100-python.tar.gz (`eb9058c3a382ffc7106e4002c42a8d85`) | `CIFAR100/cifar-100-python` |
//! | `cifar100-binary` | cifar-100-binary.tar.gz (`03b5dce01913d631647c71ecec9e9cb8`) | `CIFAR100/cifar-100-binary` |
//! | `tinyimagenet` | tiny-imagenet-200.zip (`90528d7ca1a48142e341f4ef8d21d0de`) | `TinyImageNet/tiny-imagenet-200` |
//!
//! The CIFAR md5s are those of the data sets' page and of torchvision's `cifar.py`; Tiny-ImageNet's
//! is the one avalanche and other loaders check (continuum checks none). The ImageNet family
//! cannot be downloaded (licence): [`fetch_dataset`] says where to put it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;

use crate::cifar::{Cifar, CifarFormat};
use crate::fetch::{copy_reporting, file_md5, FetchEvent, CONNECT_TIMEOUT};
use crate::folder::{locate, FileLayout};
use crate::DataError;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    TarGz,
    Zip,
}

/// A downloadable archive of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archive {
    /// The name `dcl data fetch` takes.
    pub name: &'static str,
    /// Where the data set's publisher serves the archive.
    pub url: &'static str,
    /// The md5 of the whole archive.
    pub md5: &'static str,
    pub format: ArchiveFormat,
    /// The folder the archive unpacks to, under `--dataset-dir`; the archive holds its last
    /// component at its top (`cifar-10-batches-py/` for `CIFAR10/cifar-10-batches-py`).
    pub layout: &'static str,
}

/// Every archive `dcl data fetch` knows.
pub const ARCHIVES: &[Archive] = &[
    Archive {
        name: "cifar10",
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5: "c58f30108f718f92721af3b95e74349a",
        format: ArchiveFormat::TarGz,
        layout: Cifar::Cifar10.path(CifarFormat::Python),
    },
    Archive {
        name: "cifar10-binary",
        url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5: "c32a1d4ab5d03f1284b67883e8d87530",
        format: ArchiveFormat::TarGz,
        layout: Cifar::Cifar10.path(CifarFormat::Binary),
    },
    Archive {
        name: "cifar100",
        url: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5: "eb9058c3a382ffc7106e4002c42a8d85",
        format: ArchiveFormat::TarGz,
        layout: Cifar::Cifar100.path(CifarFormat::Python),
    },
    Archive {
        name: "cifar100-binary",
        url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5: "03b5dce01913d631647c71ecec9e9cb8",
        format: ArchiveFormat::TarGz,
        layout: Cifar::Cifar100.path(CifarFormat::Binary),
    },
    Archive {
        name: "tinyimagenet",
        url: "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        md5: "90528d7ca1a48142e341f4ef8d21d0de",
        format: ArchiveFormat::Zip,
        layout: FileLayout::TinyImageNet.path(),
    },
];

/// A read that waits longer than this for the server counts as a stall and fails the
/// download (which a later run resumes); the whole download has no time limit.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Archive {
    /// The archive's file name, the last segment of its URL.
    pub fn file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }

    /// The folder the archive holds at its top.
    fn top(&self) -> &'static str {
        self.layout.rsplit('/').next().unwrap_or(self.layout)
    }
}

/// `dcl data fetch NAME`: fetches the archive named `name` (see [`ARCHIVES`]) and returns the
/// folder of the data set. For the ImageNet family, which cannot be downloaded, returns the
/// folder when it is in place and otherwise the error that says where to put it.
pub fn fetch_dataset(
    name: &str,
    dataset_dir: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, DataError> {
    if let Some(archive) = ARCHIVES.iter().find(|a| a.name == name) {
        return fetch_archive(archive, dataset_dir, on_event);
    }
    match FileLayout::from_name(name) {
        Some(layout) => match locate(dataset_dir, &[layout.path()]) {
            Some((_, dir)) => {
                on_event(FetchEvent::AlreadyPresent { file: layout.path() });
                Ok(dir)
            }
            None => Err(layout.missing("data directory", dataset_dir.join(layout.path()))),
        },
        None => {
            let names = ARCHIVES.iter().map(|a| a.name);
            let manual = FileLayout::ALL
                .into_iter()
                .filter(|l| !l.fetchable())
                .map(FileLayout::name);
            Err(DataError::UnknownDataset {
                name: name.to_owned(),
                valid: names.chain(manual).collect::<Vec<_>>().join(", "),
            })
        }
    }
}

/// Makes sure the folder of `archive` is in place under `dataset_dir`, downloading, checking
/// and unpacking the archive if it is not; returns the folder.
pub fn fetch_archive(
    archive: &Archive,
    dataset_dir: &Path,
    on_event: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, DataError> {
    // Wherever the readers would find the folder (see `locate`), it is not fetched again.
    if let Some((_, dir)) = locate(dataset_dir, &[archive.layout]) {
        on_event(FetchEvent::AlreadyPresent { file: archive.layout });
        return Ok(dir);
    }
    let target = dataset_dir.join(archive.layout);
    let parent = target.parent().unwrap_or(dataset_dir);
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let file = parent.join(archive.file_name());
    if file.exists() {
        if file_md5(&file)? == archive.md5 {
            on_event(FetchEvent::AlreadyPresent {
                file: archive.file_name(),
            });
        } else {
            std::fs::remove_file(&file).map_err(|e| DataError::io(&file, e))?;
            on_event(FetchEvent::SourceFailed {
                source: format!("existing {}", file.display()),
                reason: "checksum mismatch; deleted, fetching it again".to_owned(),
            });
        }
    }
    if !file.exists() {
        download(archive, &file, on_event)?;
    }
    unpack(archive, &file, parent)?;
    std::fs::remove_file(&file).map_err(|e| DataError::io(&file, e))?;
    on_event(FetchEvent::Stored { file: archive.layout });
    Ok(target)
}

/// Downloads `archive` to `file` through `<file>.partial`, resuming what an earlier run left
/// there, and keeps it only if its md5 matches. A failed transfer keeps the partial file.
fn download(archive: &Archive, file: &Path, on_event: &mut dyn FnMut(FetchEvent)) -> Result<(), DataError> {
    let partial = file.with_file_name(format!("{}.partial", archive.file_name()));
    let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    on_event(FetchEvent::Trying {
        source: match have {
            0 => archive.url.to_owned(),
            n => format!("{} (resuming after {n} bytes)", archive.url),
        },
    });
    let failed = |reason: String| DataError::corrupt(archive.url, reason);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .into();
    // Compressed archives must arrive as they are, not decoded by the client.
    let mut request = agent.get(archive.url).header("Accept-Encoding", "identity");
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    match request.call() {
        // What an earlier run left is the whole archive: the checksum decides.
        Err(ureq::Error::StatusCode(416)) if have > 0 => {}
        Err(e) => return Err(failed(e.to_string())),
        Ok(response) => {
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
            let resumed_at = match header("content-range") {
                Some(range) if response.status() == 206 => {
                    Some(content_range_start(range).ok_or_else(|| failed(format!("bad Content-Range '{range}'")))?)
                }
                _ => None,
            };
            if resumed_at.is_some_and(|start| start != have) {
                let _ = std::fs::remove_file(&partial);
                return Err(failed(format!(
                    "the server resumed elsewhere than after {have} bytes; retry"
                )));
            }
            let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
            let offset = resumed_at.unwrap_or(0);
            on_event(FetchEvent::DownloadStarted {
                file: archive.file_name(),
                total: length.map(|l| l + offset),
            });
            if offset > 0 {
                on_event(FetchEvent::Downloaded { bytes: offset });
            }
            // A server that ignores the range sends everything again: start over.
            let mut out = OpenOptions::new()
                .create(true)
                .write(true)
                .append(resumed_at.is_some())
                .truncate(resumed_at.is_none())
                .open(&partial)
                .map_err(|e| DataError::io(&partial, e))?;
            let copied = copy_reporting(&mut response.into_body().into_reader(), &mut out, on_event);
            on_event(FetchEvent::DownloadFinished);
            copied.map_err(|e| failed(format!("{e}; what arrived is kept in {} to resume", partial.display())))?;
            out.sync_all().map_err(|e| DataError::io(&partial, e))?;
        }
    }
    let actual = file_md5(&partial)?;
    if actual != archive.md5 {
        std::fs::remove_file(&partial).map_err(|e| DataError::io(&partial, e))?;
        return Err(DataError::Checksum {
            path: file.to_owned(),
            actual,
            expected: archive.md5.to_owned(),
        });
    }
    std::fs::rename(&partial, file).map_err(|e| DataError::io(file, e))?;
    on_event(FetchEvent::Stored {
        file: archive.file_name(),
    });
    Ok(())
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(value: &str) -> Option<u64> {
    value.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Unpacks `file` into a scratch folder of `parent`, then moves the archive's top folder to
/// `parent`; the scratch folder is removed whatever happens.
fn unpack(archive: &Archive, file: &Path, parent: &Path) -> Result<(), DataError> {
    let scratch = parent.join(format!(".{}.unpacking", archive.top()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| DataError::io(&scratch, e))?;
    let result = (|| {
        let reader = File::open(file).map_err(|e| DataError::io(file, e))?;
        let cannot = |e: &dyn std::fmt::Display| DataError::corrupt(file, format!("cannot unpack: {e}"));
        match archive.format {
            ArchiveFormat::TarGz => tar::Archive::new(GzDecoder::new(reader))
                .unpack(&scratch)
                .map_err(|e| cannot(&e)),
            ArchiveFormat::Zip => zip::ZipArchive::new(reader)
                .and_then(|mut zip| zip.extract(&scratch))
                .map_err(|e| cannot(&e)),
        }?;
        let unpacked = scratch.join(archive.top());
        if !unpacked.is_dir() {
            return Err(DataError::corrupt(file, format!("holds no folder {}/", archive.top())));
        }
        let target = parent.join(archive.top());
        std::fs::rename(&unpacked, &target).map_err(|e| DataError::io(&target, e))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Cursor, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Instant;

    use flate2::{write::GzEncoder, Compression};
    use md5::{Digest, Md5};

    /// How the test server answers one connection.
    #[derive(Debug, Clone, Copy)]
    struct Reply {
        /// Whether a `Range` request gets a 206 with the rest (or a 416 past the end).
        ranges: bool,
        /// Close the connection after this many bytes of the body.
        cut_after: Option<usize>,
    }

    const WHOLE: Reply = Reply {
        ranges: true,
        cut_after: None,
    };

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// Bytes that do not compress.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// A tar.gz of `(path, content)` entries.
    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn md5_hex(bytes: &[u8]) -> &'static str {
        leak(format!("{:x}", Md5::digest(bytes)))
    }

    fn archive(url: &str, body: &[u8], format: ArchiveFormat, layout: &'static str) -> Archive {
        Archive {
            name: "test",
            url: leak(url.to_owned()),
            md5: md5_hex(body),
            format,
            layout,
        }
    }

    /// Waits up to 10 s for a connection, so that a test never hangs on a missing one.
    fn accept(listener: &TcpListener) -> Option<TcpStream> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((stream, _)) = listener.accept() {
                stream.set_nonblocking(false).ok()?;
                return Some(stream);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Serves `body` at `http://127.0.0.1:PORT/<name>` to one connection per reply, in order;
    /// the handle yields the `Range` header of each request.
    fn serve(name: &str, body: Vec<u8>, replies: Vec<Reply>) -> (String, JoinHandle<Vec<Option<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/files/{name}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for reply in replies {
                let Some(mut stream) = accept(&listener) else { break };
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut range = None;
                let mut request = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if request.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().trim().strip_prefix("range: bytes=") {
                        range = Some(value.trim_end_matches('-').to_owned());
                    }
                }
                let start = range
                    .as_deref()
                    .and_then(|r| r.parse::<usize>().ok())
                    .filter(|_| reply.ranges);
                let (head, payload) = match start {
                    Some(start) if start >= body.len() => {
                        ("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n".to_owned(), &body[..0])
                    }
                    Some(start) => (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n",
                            body.len() - 1,
                            body.len(),
                            body.len() - start
                        ),
                        &body[start..],
                    ),
                    None => (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len()), &body[..]),
                };
                let sent = reply.cut_after.unwrap_or(payload.len()).min(payload.len());
                let _ = write!(stream, "{head}Connection: close\r\n\r\n");
                let _ = stream.write_all(&payload[..sent]);
                ranges.push(range);
            }
            ranges
        });
        (url, handle)
    }

    /// Runs `fetch_archive`, returning its result and the bytes its events reported downloaded.
    fn fetch(archive: &Archive, dir: &Path) -> (Result<PathBuf, DataError>, u64, Option<u64>) {
        let (mut downloaded, mut total) = (0, None);
        let result = fetch_archive(archive, dir, &mut |event| match event {
            FetchEvent::DownloadStarted { total: t, .. } => total = t,
            FetchEvent::Downloaded { bytes } => downloaded += bytes,
            _ => {}
        });
        (result, downloaded, total)
    }

    fn cifar_like() -> (Vec<u8>, Vec<u8>) {
        let batch = noise(40_000);
        let body = tar_gz(&[
            ("cifar-10-batches-py/data_batch_1", &batch),
            ("cifar-10-batches-py/batches.meta", b"meta"),
        ]);
        (batch, body)
    }

    const LAYOUT: &str = "CIFAR10/cifar-10-batches-py";

    #[test]
    fn an_interrupted_download_resumes_and_unpacks_into_the_layout() {
        let (batch, body) = cifar_like();
        let cut = Reply {
            ranges: true,
            cut_after: Some(10_000),
        };
        let (url, server) = serve("cifar-10-python.tar.gz", body.clone(), vec![cut, WHOLE]);
        let archive = archive(&url, &body, ArchiveFormat::TarGz, LAYOUT);
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("CIFAR10/cifar-10-python.tar.gz.partial");
        let (result, _, _) = fetch(&archive, dir.path());
        let message = result.unwrap_err().to_string();
        assert!(message.contains(&format!("kept in {}", partial.display())), "{message}");
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), 10_000);
        assert!(!dir.path().join(LAYOUT).exists());
        let (result, downloaded, total) = fetch(&archive, dir.path());
        assert_eq!(result.unwrap(), dir.path().join(LAYOUT));
        assert_eq!((downloaded, total), (body.len() as u64, Some(body.len() as u64)));
        assert_eq!(server.join().unwrap(), [None, Some("10000".to_owned())]);
        assert_eq!(
            std::fs::read(dir.path().join(LAYOUT).join("data_batch_1")).unwrap(),
            batch
        );
        // Only the unpacked folder is left.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("CIFAR10"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["cifar-10-batches-py"]);
    }

    #[test]
    fn a_server_that_ignores_ranges_gets_the_download_restarted() {
        let (batch, body) = cifar_like();
        let ignores = Reply {
            ranges: false,
            cut_after: None,
        };
        let (url, server) = serve("cifar-10-python.tar.gz", body.clone(), vec![ignores]);
        let archive = archive(&url, &body, ArchiveFormat::TarGz, LAYOUT);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("CIFAR10")).unwrap();
        std::fs::write(dir.path().join("CIFAR10/cifar-10-python.tar.gz.partial"), noise(5000)).unwrap();
        fetch(&archive, dir.path()).0.unwrap();
        assert_eq!(server.join().unwrap(), [Some("5000".to_owned())]);
        assert_eq!(
            std::fs::read(dir.path().join(LAYOUT).join("data_batch_1")).unwrap(),
            batch
        );
    }

    #[test]
    fn a_complete_partial_file_is_checked_not_downloaded_again() {
        let (_, body) = cifar_like();
        let (url, server) = serve("cifar-10-python.tar.gz", body.clone(), vec![WHOLE]);
        let archive = archive(&url, &body, ArchiveFormat::TarGz, LAYOUT);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("CIFAR10")).unwrap();
        std::fs::write(dir.path().join("CIFAR10/cifar-10-python.tar.gz.partial"), &body).unwrap();
        fetch(&archive, dir.path()).0.unwrap();
        assert_eq!(server.join().unwrap(), [Some(body.len().to_string())]);
        assert!(dir.path().join(LAYOUT).join("batches.meta").is_file());
    }

    #[test]
    fn a_corrupt_download_is_deleted() {
        let (_, body) = cifar_like();
        let (url, _server) = serve("cifar-10-python.tar.gz", body.clone(), vec![WHOLE]);
        let mut archive = archive(&url, &body, ArchiveFormat::TarGz, LAYOUT);
        archive.md5 = "00000000000000000000000000000000";
        let dir = tempfile::tempdir().unwrap();
        let message = fetch(&archive, dir.path()).0.unwrap_err().to_string();
        let file = dir.path().join("CIFAR10/cifar-10-python.tar.gz");
        assert!(
            message.starts_with(&format!(
                "{}: checksum mismatch (md5 {}",
                file.display(),
                md5_hex(&body)
            )),
            "{message}"
        );
        assert_eq!(std::fs::read_dir(dir.path().join("CIFAR10")).unwrap().count(), 0);
    }

    #[test]
    fn an_archive_in_place_is_used_and_a_folder_in_place_kept() {
        let (batch, body) = cifar_like();
        // Nothing listens there: the network is not needed.
        let archive = archive(
            "http://127.0.0.1:9/cifar-10-python.tar.gz",
            &body,
            ArchiveFormat::TarGz,
            LAYOUT,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("CIFAR10")).unwrap();
        std::fs::write(dir.path().join("CIFAR10/cifar-10-python.tar.gz"), &body).unwrap();
        fetch(&archive, dir.path()).0.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(LAYOUT).join("data_batch_1")).unwrap(),
            batch
        );
        let mut present = Vec::new();
        fetch_archive(&archive, dir.path(), &mut |event| {
            if let FetchEvent::AlreadyPresent { file } = event {
                present.push(file.to_owned())
            }
        })
        .unwrap();
        assert_eq!(present, [LAYOUT]);
    }

    #[test]
    fn an_archive_without_its_folder_is_refused() {
        let body = tar_gz(&[("elsewhere/data_batch_1", b"x")]);
        let archive = archive(
            "http://127.0.0.1:9/cifar-10-python.tar.gz",
            &body,
            ArchiveFormat::TarGz,
            LAYOUT,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("CIFAR10")).unwrap();
        let file = dir.path().join("CIFAR10/cifar-10-python.tar.gz");
        std::fs::write(&file, &body).unwrap();
        let message = fetch(&archive, dir.path()).0.unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}: holds no folder cifar-10-batches-py/", file.display())
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("CIFAR10"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["cifar-10-python.tar.gz"]);
    }

    #[test]
    fn tiny_imagenets_zip_unpacks_into_the_layout_the_reader_lists() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (path, content) in [
            ("tiny-imagenet-200/wnids.txt", &b"n01443537\n"[..]),
            (
                "tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG",
                &noise(3000),
            ),
            ("tiny-imagenet-200/val/images/val_0.JPEG", &noise(3000)),
            (
                "tiny-imagenet-200/val/val_annotations.txt",
                b"val_0.JPEG\tn01443537\t0\t0\t63\t63\n",
            ),
        ] {
            zip.start_file(path, options).unwrap();
            zip.write_all(content).unwrap();
        }
        let body = zip.finish().unwrap().into_inner();
        let (url, _server) = serve("tiny-imagenet-200.zip", body.clone(), vec![WHOLE]);
        let archive = archive(&url, &body, ArchiveFormat::Zip, FileLayout::TinyImageNet.path());
        let dir = tempfile::tempdir().unwrap();
        fetch(&archive, dir.path()).0.unwrap();
        let splits = FileLayout::TinyImageNet.read(dir.path()).unwrap();
        assert_eq!(splits.train.classes, ["n01443537"]);
        assert_eq!(splits.train.labels, [0]);
        assert_eq!(std::fs::read(&splits.test.files[0]).unwrap(), noise(3000));
    }

    #[test]
    fn imagenet_says_where_to_put_it_and_unknown_names_list_the_valid_ones() {
        let dir = tempfile::tempdir().unwrap();
        let message = fetch_dataset("imagenet_blurred", dir.path(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "ImageNet (face-blurred) data directory not found at {}; ImageNet (face-blurred) cannot be downloaded",
                dir.path().join("ImageNet_blurred").display()
            )),
            "{message}"
        );
        std::fs::create_dir(dir.path().join("ImageNet_blurred")).unwrap();
        let found = fetch_dataset("imagenet_blurred", dir.path(), &mut |_| {}).unwrap();
        assert_eq!(found, dir.path().join("ImageNet_blurred"));
        let message = fetch_dataset("cifar1000", dir.path(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "unknown dataset 'cifar1000'; valid datasets: cifar10, cifar10-binary, cifar100, cifar100-binary, \
             tinyimagenet, imagenet, imagenet_blurred, imagenet100, imagenet100small"
        );
    }

    #[test]
    fn the_archives_unpack_where_the_readers_look() {
        let files: Vec<_> = ARCHIVES.iter().map(|a| (a.name, a.file_name(), a.layout)).collect();
        assert_eq!(
            files,
            [
                ("cifar10", "cifar-10-python.tar.gz", "CIFAR10/cifar-10-batches-py"),
                (
                    "cifar10-binary",
                    "cifar-10-binary.tar.gz",
                    "CIFAR10/cifar-10-batches-bin"
                ),
                ("cifar100", "cifar-100-python.tar.gz", "CIFAR100/cifar-100-python"),
                (
                    "cifar100-binary",
                    "cifar-100-binary.tar.gz",
                    "CIFAR100/cifar-100-binary"
                ),
                (
                    "tinyimagenet",
                    "tiny-imagenet-200.zip",
                    "TinyImageNet/tiny-imagenet-200"
                ),
            ]
        );
    }
}
