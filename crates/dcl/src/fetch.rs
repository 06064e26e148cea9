//! `dcl data fetch`: fetch a data set with download progress bars.

use anyhow::Result;
use dcl_data::fetch::FetchEvent;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::FetchArgs;

/// Fetches the data set into `<dataset-dir>/<name>/` and reports what happened.
pub fn run(args: FetchArgs) -> Result<()> {
    let dataset = dcl_data::catalog::find(&args.dataset)?;
    let dir = args.dataset_dir.join(dataset.name);
    let mut bar: Option<ProgressBar> = None;
    let fetched = dcl_data::fetch::fetch(dataset, &dir, &mut |event| match event {
        FetchEvent::AlreadyPresent { file } => eprintln!("  {file}: present, checksum verified"),
        FetchEvent::Trying { source } => eprintln!("fetching {} from {source}", dataset.name),
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
    })?;
    eprintln!(
        "{}: {} file(s) fetched, all {} verified in {}",
        dataset.name,
        fetched,
        dataset.files.len(),
        dir.display()
    );
    Ok(())
}
