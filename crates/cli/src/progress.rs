//! Progress bars on stderr (indicatif), hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

use under8k_mnist_data::Dataset;
use under8k_mnist_data::fetch::Progress;

/// A bar per step of a fetch.
#[derive(Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn missing(&mut self, dataset: Dataset, files: &[PathBuf]) {
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect();
        let dir = files[0]
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        eprintln!(
            "{}: {} missing in {dir}: fetching",
            dataset.title(),
            names.join(", ")
        );
    }

    fn begin(&mut self, label: &str, total_bytes: Option<u64>) {
        let bar = match total_bytes {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
            ),
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if bar.is_hidden() {
            eprintln!("{label}");
        }
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn end(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
