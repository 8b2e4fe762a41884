//! `cargo xtask reproduce`: train every (attempt, seed) run that is not already complete, then
//! write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use under8k_mnist_data::fetch::FetchError;
use under8k_mnist_data::{Dataset, Mnist};
use under8k_train::data::{DataChoice, PrepareError, Prepared, prepare};
use under8k_train::run::{self, Observer, RunFiles};
use under8k_train::{EpochRecord, History, TrainConfig};

use crate::runs::{Manifest, cpu_model, run_dir};

/// The `--dataset` parser: the three names, listed in `--help`.
pub fn dataset_parser() -> impl clap::builder::TypedValueParser<Value = DataChoice> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(DataChoice::ALL.map(DataChoice::name))
        .map(|s| s.parse::<DataChoice>().expect("one of the possible values"))
}

/// `--data`, else `data/<dataset>`.
pub fn data_dir(choice: DataChoice, data: Option<&Path>) -> PathBuf {
    data.map_or_else(|| Path::new("data").join(choice.name()), Path::to_path_buf)
}

/// `cargo xtask reproduce` options.
#[derive(clap::Args)]
pub struct Args {
    /// Attempts to train (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3])]
    attempts: Vec<u8>,
    /// Seeds per attempt (1, 2, …, N); with N > 1 the report adds mean ± sd.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Epochs per run [default: 15; 2 with --quick].
    #[arg(long)]
    epochs: Option<usize>,
    /// Report directory (runs are kept under its `runs/`).
    #[arg(long, default_value = "docs/report")]
    out: PathBuf,
    /// Smoke test: 2,048 training and 1,000 test images, 2 epochs.
    #[arg(long)]
    quick: bool,
    /// Retrain runs even when their saved history is complete.
    #[arg(long)]
    force: bool,
    /// Which data: mnist, fashion-mnist (both fetched when missing, verified by MD5) or idx
    /// (any directory of the four IDX files, used as it is).
    #[arg(long, value_name = "NAME", value_parser = dataset_parser(), default_value = "mnist")]
    dataset: DataChoice,
    /// Data directory (default: `data/<dataset>`); only missing files are fetched into it.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Train the write-up's exact recipes (attempt 3 with its StepLR from 0.07) instead of the
    /// project's attempts (attempt 3 with one-cycle). Use another --out.
    #[arg(long)]
    write_up: bool,
}

/// How a report's runs are made, beyond the attempt and seed.
pub struct Recipe<'a> {
    /// The write-up's exact recipes instead of the project's attempts.
    pub write_up: bool,
    /// A smoke test: 2 epochs on 2,048 training and 1,000 test images.
    pub quick: bool,
    /// Epochs per run, instead of the attempt's (or the smoke test's).
    pub epochs: Option<usize>,
    /// The data the runs train on.
    pub data: &'a Prepared,
}

/// The config of (attempt, seed) under `recipe`: the project's attempt or the write-up's recipe,
/// on the recipe's data (whose normalisation it takes).
pub fn config(attempt: u8, seed: u64, recipe: &Recipe) -> Result<TrainConfig> {
    let mut c = if recipe.write_up {
        TrainConfig::write_up(attempt)?
    } else {
        TrainConfig::attempt(attempt)?
    };
    c.seed = seed;
    c.data = recipe.data.record.clone();
    c.mean = recipe.data.normalization.mean;
    c.std = recipe.data.normalization.std;
    if recipe.quick {
        c.epochs = 2;
        c.train_limit = Some(2048);
        c.test_limit = Some(1000);
    }
    if let Some(e) = recipe.epochs {
        c.epochs = e;
    }
    c.fit_schedule(recipe.data.data.train.len());
    c.validate()?;
    Ok(c)
}

/// Resumable only when the saved config is the same.
fn resumable(dir: &Path, config: &TrainConfig) -> bool {
    let files = RunFiles {
        dir: dir.to_path_buf(),
    };
    std::fs::read(files.config())
        .ok()
        .and_then(|b| serde_json::from_slice::<TrainConfig>(&b).ok())
        .is_some_and(|c| c.fingerprint() == config.fingerprint())
}

/// Complete when it is resumable (same config) and the history has all its epochs.
fn complete(dir: &Path, config: &TrainConfig) -> bool {
    let history = RunFiles {
        dir: dir.to_path_buf(),
    }
    .history_json();
    resumable(dir, config)
        && std::fs::read(history)
            .ok()
            .and_then(|b| serde_json::from_slice::<History>(&b).ok())
            .is_some_and(|h| h.epochs.len() == config.epochs)
}

struct Lines {
    label: String,
}

impl Observer for Lines {
    fn epoch_end(&mut self, r: &EpochRecord) {
        println!(
            "{}  epoch {:>2}  lr {:.6}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.1}s  {:.0} img/s",
            self.label,
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            r.test_loss,
            r.test_acc,
            r.train_seconds,
            r.train_img_per_s
        );
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.attempts.is_empty() || args.seeds == 0 {
        bail!("nothing to do: give at least one attempt and one seed");
    }
    let dataset = args.dataset.name();
    if !args.force
        && let Some(why) = Manifest::existing(&args.out)?
            .and_then(|m| m.other_recipe(&args.out, dataset, args.write_up))
    {
        bail!("{why} (or --force to retrain them with this recipe)");
    }
    let start = Instant::now();
    let data = load(args.dataset, &data_dir(args.dataset, args.data.as_deref()))?;
    let recipe = Recipe {
        write_up: args.write_up,
        quick: args.quick,
        epochs: args.epochs,
        data: &data,
    };
    let stop = AtomicBool::new(false);
    let mut epochs = 0;
    for &attempt in &args.attempts {
        for seed in 1..=args.seeds {
            let config = config(attempt, seed, &recipe)?;
            epochs = config.epochs;
            let dir = run_dir(&args.out, attempt, seed);
            let label = format!("attempt {attempt} seed {seed}");
            if !args.force && complete(&dir, &config) {
                println!(
                    "{label}: complete in {} (skipped; --force retrains)",
                    dir.display()
                );
                continue;
            }
            let resume = !args.force && resumable(&dir, &config);
            if !resume && dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing stale run {}", dir.display()))?;
            }
            println!(
                "{label}: training into {}{}",
                dir.display(),
                if resume { " (resuming)" } else { "" }
            );
            run::train(
                &config,
                &data.data,
                &dir,
                if resume {
                    run::Start::Resume
                } else {
                    run::Start::Fresh
                },
                &mut Lines { label },
                &stop,
            )?;
        }
    }
    let mut attempts = args.attempts.clone();
    attempts.sort_unstable();
    attempts.dedup();
    let mut command = String::from("cargo xtask reproduce");
    if attempts != [1, 2, 3] {
        let list: Vec<String> = attempts.iter().map(u8::to_string).collect();
        command += &format!(" --attempts {}", list.join(","));
    }
    if args.seeds != 1 {
        command += &format!(" --seeds {}", args.seeds);
    }
    if args.quick {
        command += " --quick";
    }
    if args.dataset != DataChoice::Known(Dataset::Mnist) {
        command += &format!(" --dataset {dataset}");
    }
    if let Some(d) = args
        .data
        .as_ref()
        .filter(|d| **d != data_dir(args.dataset, None))
    {
        command += &format!(" --data {}", d.display());
    }
    if args.write_up {
        command += " --write-up";
    }
    if let Some(e) = args.epochs {
        command += &format!(" --epochs {e}");
    }
    if args.out != Path::new("docs/report") {
        command += &format!(" --out {}", args.out.display());
    }
    let manifest = Manifest {
        command,
        attempts,
        seeds: args.seeds,
        epochs,
        quick: args.quick,
        cpu: cpu_model(),
        threads: rayon::current_num_threads(),
        write_up: args.write_up,
        dataset: dataset.to_string(),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("reproduce.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    crate::report::write(&args.out)?;
    println!(
        "report written to {} ({:.1} min here)",
        args.out.join("README.md").display(),
        start.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// MNIST in `dir` (its missing files fetched), for the commands that need MNIST alone.
pub fn load_mnist(dir: &Path) -> Result<Mnist> {
    Ok(load(DataChoice::Known(Dataset::Mnist), dir)?.data)
}

/// The data `choice` names, from `dir`: a known dataset's missing files are fetched first; a
/// file that is there but not the dataset's stops it, unchanged, with the ways out.
pub fn load(choice: DataChoice, dir: &Path) -> Result<Prepared> {
    prepare(choice, dir, &mut ()).map_err(|e| match e {
        PrepareError::Fetch(e @ FetchError::BadFiles { dataset, .. }) => anyhow::anyhow!(
            "{e}\nNothing was changed. Either `cargo run --release -p under8k-cli -- fetch --repair --dataset {} --dir {}` moves each bad file aside (NAME.bad) and fetches the real ones, or `--dataset idx` uses the files as they are.",
            dataset.name(),
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("--dataset {choice} in {}", dir.display())),
    })
}
