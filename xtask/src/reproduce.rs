//! `cargo xtask reproduce`: train every run the report needs that is not there yet, retrain
//! every committed one into a scratch directory and check that it comes out bit-identical
//! (`--skip-existing` keeps them as they are instead), then write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use under8k_mnist_data::fetch::FetchError;
use under8k_mnist_data::{Dataset, Mnist, Normalization};
use under8k_model::checkpoint::write_atomic;
use under8k_train::data::{DataChoice, PrepareError, Prepared, prepare};
use under8k_train::lr_find::{self, RangeCurve, RangeTest};
use under8k_train::run::{self, Observer, RunFiles};
use under8k_train::{EpochRecord, History, TrainConfig};

use crate::runs::{Manifest, cpu_description, lr_find_dir, run_dir, write_up_dir};
use crate::verify::Outcome;
use crate::verify::{Verdict, compare, refuse_differences, verification};

/// The constant rates of the report's short-run sweep, and each run's epochs.
pub const SWEEP_LRS: [f64; 8] = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2];
pub const SWEEP_EPOCHS: usize = 2;

/// The sweep run at `lr`.
pub fn sweep_dir(out: &Path, lr: f64) -> PathBuf {
    lr_find_dir(out).join("sweep").join(format!("lr-{lr}"))
}

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
    /// Retrain every run in place, without comparing with what was there.
    #[arg(long, conflicts_with_all = ["skip_existing", "accept"])]
    force: bool,
    /// Keep complete runs as they are instead of retraining them to verify them (only
    /// regenerate the report and train what is missing).
    #[arg(long)]
    skip_existing: bool,
    /// When a retrained run differs from the committed one, replace the committed one with it
    /// (and say so) instead of failing.
    #[arg(long, conflicts_with = "skip_existing")]
    accept: bool,
    /// An architecture spec (JSON; see docs/ARCH_SPEC.md) for every run instead of the seed's
    /// net (into another --out: a report directory holds one net).
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Leave out what the main report adds beyond the three attempts: the write-up's own attempt
    /// 3, the learning-rate range test and sweep, and attempt 3's confusion matrix and
    /// misclassified digits.
    #[arg(long)]
    no_extras: bool,
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
    /// The net, instead of the seed's.
    pub arch: Option<&'a under8k_model::ArchSpec>,
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
    if let Some(arch) = recipe.arch {
        c.arch = arch.clone();
    }
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

/// Whether the saved history has all of `config`'s epochs (a run of the same config is complete
/// when it also has them).
fn all_epochs(dir: &Path, config: &TrainConfig) -> bool {
    let history = RunFiles {
        dir: dir.to_path_buf(),
    }
    .history_json();
    std::fs::read(history)
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

/// One run the report needs.
pub struct Job {
    pub label: String,
    pub config: TrainConfig,
    pub dir: PathBuf,
}

/// How complete runs are treated.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Verify { accept: bool },
    SkipExisting,
    Force,
}

const RUN_FILES: [&str; 5] = [
    "config.json",
    "history.json",
    "history.csv",
    "model.safetensors",
    "state.safetensors",
];

pub fn run_job(job: &Job, data: &Prepared, mode: Mode, stop: &AtomicBool) -> Result<Outcome> {
    let lines = || Lines {
        label: job.label.clone(),
    };
    let resumable = resumable(&job.dir, &job.config);
    let done = resumable && all_epochs(&job.dir, &job.config);
    match (mode, done) {
        (Mode::SkipExisting, true) => {
            println!("{}: complete in {} (kept)", job.label, job.dir.display());
            Ok(Outcome::Skipped)
        }
        (Mode::Verify { accept }, true) => {
            println!("{}: retraining to verify {}", job.label, job.dir.display());
            let scratch = tempfile::tempdir().context("a scratch directory")?;
            let outcome = run::train(
                &job.config,
                &data.data,
                scratch.path(),
                run::Start::Fresh,
                &mut lines(),
                stop,
            )?;
            anyhow::ensure!(!outcome.interrupted, "interrupted");
            match compare(&job.dir, scratch.path())? {
                Verdict::Identical { epochs } => {
                    println!(
                        "{}: bit-identical to the committed run ({epochs}/{epochs} epochs, checkpoint equal)",
                        job.label
                    );
                    Ok(Outcome::Identical(epochs))
                }
                Verdict::Differs(why) => {
                    println!("{}: DIFFERS from the committed run: {why}", job.label);
                    if !accept {
                        return Ok(Outcome::Differs);
                    }
                    for f in RUN_FILES {
                        let bytes = std::fs::read(scratch.path().join(f))?;
                        write_atomic(&job.dir.join(f), &bytes)?;
                    }
                    println!("{}: the retrained run replaces it (--accept)", job.label);
                    Ok(Outcome::Accepted)
                }
            }
        }
        _ => {
            let resume = mode != Mode::Force && resumable;
            if !resume && job.dir.exists() {
                std::fs::remove_dir_all(&job.dir)
                    .with_context(|| format!("removing stale run {}", job.dir.display()))?;
            }
            println!(
                "{}: training into {}{}",
                job.label,
                job.dir.display(),
                if resume { " (resuming)" } else { "" }
            );
            let start = match resume {
                true => run::Start::Resume,
                false => run::Start::Fresh,
            };
            let outcome = run::train(&job.config, &data.data, &job.dir, start, &mut lines(), stop)?;
            anyhow::ensure!(!outcome.interrupted, "interrupted");
            Ok(Outcome::Trained)
        }
    }
}

/// The range test of the write-up's attempt 3 (one epoch of batches, rate 10⁻⁵ → 1), checked
/// against the saved curve like a run.
fn range_test_job(out: &Path, base: &TrainConfig, data: &Prepared, mode: Mode) -> Result<Outcome> {
    let path = lr_find_dir(out).join("lr_find.json");
    let label = "lr-find range test";
    if mode == Mode::SkipExisting && path.exists() {
        println!("{label}: kept {}", path.display());
        return Ok(Outcome::Skipped);
    }
    let test = RangeTest::new(1e-5, 1.0, base.steps_per_epoch(data.data.train.len()))?;
    let curve = lr_find::range_test(
        base,
        &data.data,
        &test,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    let saved = std::fs::read_to_string(&path).ok();
    let outcome = match (mode, saved) {
        (Mode::Verify { accept }, Some(text)) => {
            let old = RangeCurve::from_json(&text)
                .with_context(|| format!("{}: not a range test", path.display()))?;
            if old == curve {
                println!(
                    "{label}: bit-identical to the committed curve ({} steps)",
                    curve.points.len()
                );
                return Ok(Outcome::Identical(0));
            }
            let first = old
                .points
                .iter()
                .zip(&curve.points)
                .find(|(a, b)| a != b)
                .map_or_else(
                    || {
                        format!(
                            "{} points committed, {} now",
                            old.points.len(),
                            curve.points.len()
                        )
                    },
                    |(a, b)| format!("step {}: committed loss {}, now {}", a.step, a.loss, b.loss),
                );
            println!("{label}: DIFFERS from the committed curve: {first}");
            if !accept {
                return Ok(Outcome::Differs);
            }
            Outcome::Accepted
        }
        _ => Outcome::Trained,
    };
    std::fs::create_dir_all(lr_find_dir(out))?;
    write_atomic(&path, curve.to_json().as_bytes())?;
    println!(
        "{label}: {} steps into {}",
        curve.points.len(),
        path.display()
    );
    Ok(outcome)
}

/// Attempt 3's confusion matrix and misclassified digits (seed 1), into `<out>/eval/`.
fn eval_pictures(out: &Path, data: &Prepared) -> Result<()> {
    let run = crate::runs::load_run(out, 3, 1)?;
    let net = run::load_net(
        &run.config.arch,
        &run_dir(out, 3, 1).join("model.safetensors"),
    )?;
    let (_, test) = run.config.splits(&data.data)?;
    let norm = Normalization::new(run.config.mean, run.config.std)?;
    let e = run::evaluate(&net, &test, norm, 1000, &candle_core::Device::Cpu)?;
    let p = under8k_train::plots::eval_pictures(&e, &test, 48, "Attempt 3")?;
    let eval = out.join("eval");
    p.save(&eval)?;
    println!(
        "attempt 3 seed 1: confusion matrix and {} misclassified digits in {}",
        e.total - e.correct,
        eval.display()
    );
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    if args.attempts.is_empty() || args.seeds == 0 {
        bail!("nothing to do: give at least one attempt and one seed");
    }
    let dataset = args.dataset.name();
    let arch = args
        .arch
        .as_deref()
        .map(under8k_model::ArchSpec::from_file)
        .transpose()?;
    let arch_name = arch.as_ref().map(|a| a.name.as_str());
    let previous = Manifest::existing(&args.out)?;
    if !args.force
        && let Some(why) = previous
            .as_ref()
            .and_then(|m| m.other_recipe(&args.out, dataset, args.write_up, arch_name))
    {
        bail!("{why} (or --force to retrain them with this recipe)");
    }
    let mode = match (args.force, args.skip_existing) {
        (true, _) => Mode::Force,
        (_, true) => Mode::SkipExisting,
        _ => Mode::Verify {
            accept: args.accept,
        },
    };
    let start = Instant::now();
    let data = load(args.dataset, &data_dir(args.dataset, args.data.as_deref()))?;
    let recipe = Recipe {
        write_up: args.write_up,
        quick: args.quick,
        epochs: args.epochs,
        data: &data,
        arch: arch.as_ref(),
    };
    // Before anything is trained: the net must fit the data.
    run::check_fit(&config(1, 1, &recipe)?.arch, &data.data)?;
    let mnist = args.dataset == DataChoice::Known(Dataset::Mnist);
    let extras = mnist && !args.write_up && !args.no_extras && args.attempts.contains(&3);
    let mut jobs = vec![];
    for &attempt in &args.attempts {
        for seed in 1..=args.seeds {
            jobs.push(Job {
                label: format!("attempt {attempt} seed {seed}"),
                config: config(attempt, seed, &recipe)?,
                dir: run_dir(&args.out, attempt, seed),
            });
        }
    }
    let epochs = jobs[0].config.epochs;
    let write_up = Recipe {
        write_up: true,
        ..recipe
    };
    let base = config(3, 1, &write_up)?;
    if extras {
        for seed in 1..=args.seeds {
            jobs.push(Job {
                label: format!("write-up attempt 3 seed {seed}"),
                config: config(3, seed, &write_up)?,
                dir: write_up_dir(&args.out, seed),
            });
        }
        for lr in SWEEP_LRS {
            jobs.push(Job {
                label: format!("lr-find sweep lr {lr}"),
                config: lr_find::sweep_config(&base, lr, SWEEP_EPOCHS)?,
                dir: sweep_dir(&args.out, lr),
            });
        }
    }
    let stop = AtomicBool::new(false);
    let mut outcomes = vec![];
    for job in &jobs {
        outcomes.push((job.label.clone(), run_job(job, &data, mode, &stop)?));
    }
    if extras {
        let o = range_test_job(&args.out, &base, &data, mode)?;
        outcomes.push(("lr-find range test".into(), o));
        eval_pictures(&args.out, &data)?;
    }
    refuse_differences(&outcomes)?;
    let verified = verification(
        &outcomes,
        previous.and_then(|m| m.verified),
        start.elapsed().as_secs_f64() / 60.0,
    );
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
    if !mnist {
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
    if let Some(a) = &args.arch {
        command += &format!(" --arch {}", a.display());
    }
    if args.no_extras && mnist && !args.write_up {
        command += " --no-extras";
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
        cpu: cpu_description(),
        threads: rayon::current_num_threads(),
        write_up: args.write_up,
        dataset: dataset.to_string(),
        extras,
        verified,
        arch: arch_name.map(str::to_string),
    };
    std::fs::create_dir_all(&args.out)?;
    write_atomic(
        &args.out.join("reproduce.json"),
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
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
