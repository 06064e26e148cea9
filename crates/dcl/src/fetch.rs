//! `dcl data fetch`: fetch a data set with download progress bars.

use anyhow::Result;
use dcl_data::catalog::Storage;
use dcl_data::fetch::FetchEvent;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::FetchArgs;

/// Fetches the data set (or one of the archives of `dcl_data::archive`, such as
/// `cifar10-binary`) under the data-set directory and reports what happened.
pub fn run(args: FetchArgs) -> Result<()> {
    let storage = dcl_data::catalog::find(&args.dataset).map(|d| d.storage);
    let mut bar: Option<ProgressBar> = None;
    let mut report = |event: FetchEvent| match event {
        FetchEvent::AlreadyPresent { file } => eprintln!("  {file}: present, checksum verified"),
        FetchEvent::Trying { source } => eprintln!("fetching {} from {source}", args.dataset),
        FetchEvent::DownloadStarted { file, total } => {
            let b = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            b.set_style(
                ProgressStyle::with_template(
                    "  {msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(file.to_owned());
            bar = Some(b);
        }
        FetchEvent::Downloaded { bytes } => {
            if let Some(b) = &bar {
                b.inc(bytes)
            }
        }
        FetchEvent::DownloadFinished => {
            if let Some(b) = bar.take() {
                b.finish_and_clear()
            }
        }
        FetchEvent::Stored { file } => eprintln!("  {file}: stored, checksum verified"),
        FetchEvent::SourceFailed { source, reason } => eprintln!("  {source} failed: {reason}"),
    };
    match storage {
        Ok(Storage::Idx(idx)) => {
            let dir = args.dataset_dir.join(&args.dataset);
            let fetched = dcl_data::fetch::fetch(&args.dataset, &idx, &dir, &mut report)?;
            eprintln!(
                "{}: {fetched} file(s) fetched, all {} verified in {}",
                args.dataset,
                idx.files.len(),
                dir.display()
            );
        }
        // CIFAR, Tiny-ImageNet and the archives of their other formats: one archive each;
        // ImageNet says where to put it.
        _ => {
            let dir = dcl_data::archive::fetch_dataset(&args.dataset, &args.dataset_dir, &mut report)?;
            eprintln!("{}: ready in {}", args.dataset, dir.display());
        }
    }
    Ok(())
}
