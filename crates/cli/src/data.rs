//! `--dataset` and `--data`: where the data is, what it must be, and loading it without ever
//! touching a file the user put there (only missing files are fetched; bad ones stop the
//! command with their problem named and the ways out).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use under8k_mnist_data::Dataset;
use under8k_mnist_data::fetch::FetchError;
use under8k_train::DataRecord;
use under8k_train::data::{DataChoice, PrepareError, Prepared, prepare};

use crate::progress;

/// The `--dataset` parser: the three names, listed in `--help`.
pub fn dataset_parser() -> impl clap::builder::TypedValueParser<Value = DataChoice> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(DataChoice::ALL.map(DataChoice::name))
        .map(|s| s.parse::<DataChoice>().expect("one of the possible values"))
}

/// `--dataset` and `--data`, shared by every command that reads data.
#[derive(Args)]
pub struct DataArgs {
    /// Which data: mnist and fashion-mnist are fetched when missing and verified by MD5; idx is
    /// any directory of the four IDX files (raw or .gz), used as it is [default: mnist, or what
    /// the run's config.json names].
    #[arg(long, value_name = "NAME", value_parser = dataset_parser())]
    pub dataset: Option<DataChoice>,
    /// Data directory (default: `data/<dataset>` in the workspace, or for mnist
    /// `$UNDER8K_DATA`); only missing files are fetched into it.
    #[arg(long = "data", alias = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DataArgs {
    /// The dataset asked for, else `fallback`'s, else MNIST.
    pub fn choice_or(&self, fallback: Option<&DataRecord>) -> DataChoice {
        self.dataset
            .or_else(|| fallback.and_then(DataChoice::of_record))
            .unwrap_or(DataChoice::Known(Dataset::Mnist))
    }
}

/// `--data`, else (for MNIST) `$UNDER8K_DATA`, else `data/<dataset>` under the enclosing Cargo
/// workspace (or the current directory when there is none).
pub fn data_dir(args: &DataArgs, choice: DataChoice) -> Result<PathBuf> {
    if let Some(d) = &args.dir {
        return Ok(d.clone());
    }
    if choice == DataChoice::Known(Dataset::Mnist)
        && let Some(d) = std::env::var_os("UNDER8K_DATA")
    {
        return Ok(d.into());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = cwd
        .ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .unwrap_or(&cwd);
    Ok(root.join("data").join(choice.name()))
}

/// What to tell the user about bad files: the two ways out.
pub fn ways_out(dataset: Dataset, dir: &Path) -> String {
    format!(
        "Nothing was changed. Either:\n  - `under8k fetch --repair --dataset {name} --data {d}` \
         moves each bad file aside (NAME.bad) and fetches {title}'s, or\n  - `--dataset idx --data {d}` \
         uses the files as they are.",
        name = dataset.name(),
        d = dir.display(),
        title = dataset.title()
    )
}

/// An error, with the ways out when it is about bad files.
pub fn explain(e: FetchError) -> anyhow::Error {
    match &e {
        FetchError::BadFiles { dir, dataset, .. } => {
            let hint = ways_out(*dataset, dir);
            anyhow::anyhow!("{e}\n{hint}")
        }
        _ => e.into(),
    }
}

/// The data `args` name (or `fallback`'s dataset), ready to train or evaluate on.
pub fn load(args: &DataArgs, fallback: Option<&DataRecord>) -> Result<Prepared> {
    let choice = args.choice_or(fallback);
    let dir = data_dir(args, choice)?;
    // `Bars` says which files are missing before they are fetched.
    prepare(choice, &dir, &mut progress::Bars::default()).map_err(|e| match e {
        PrepareError::Fetch(e) => explain(e),
        e => anyhow::Error::new(e).context(format!("--dataset {choice} --data {}", dir.display())),
    })
}
