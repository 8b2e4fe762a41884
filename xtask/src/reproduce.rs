//! `cargo xtask reproduce`: train every (attempt, seed) run that is not already complete, then
//! write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use under8k_mnist_data::Mnist;
use under8k_mnist_data::fetch::{self, FetchOptions};
use under8k_train::run::{self, Observer, RunFiles};
use under8k_train::{EpochRecord, History, TrainConfig};

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
    /// MNIST directory (fetched there if missing).
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    /// Train the write-up's exact recipes (attempt 3 with its StepLR from 0.07) instead of the
    /// project's attempts (attempt 3 with one-cycle). Use another --out.
    #[arg(long)]
    write_up: bool,
}

/// What the report needs to know about how the runs were made (`reproduce.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The command that regenerates the report.
    pub command: String,
    /// Attempts trained.
    pub attempts: Vec<u8>,
    /// Seeds per attempt.
    pub seeds: u64,
    /// Epochs per run.
    pub epochs: usize,
    /// Quick (subset) mode.
    pub quick: bool,
    /// CPU model.
    pub cpu: String,
    /// Threads used.
    pub threads: usize,
    /// Whether the runs follow the write-up's exact recipes (`--write-up`).
    #[serde(default)]
    pub write_up: bool,
}

impl Manifest {
    /// The manifest of the report in `out`, if there is one (`None` only when the file does not
    /// exist; any other failure to read or parse it is an error naming the file).
    pub fn existing(out: &Path) -> Result<Option<Self>> {
        let path = out.join("reproduce.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{}: not a reproduce manifest", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
        }
    }

    /// Why runs of the other recipe (`write_up` differs) do not belong in this report.
    pub fn other_recipe(&self, out: &Path, write_up: bool) -> Option<String> {
        (self.write_up != write_up).then(|| {
            format!(
                "{} holds runs of {} (`{}`): {} --write-up, or give another --out",
                out.display(),
                if self.write_up {
                    "the write-up's exact recipes"
                } else {
                    "the project's attempts"
                },
                self.command,
                if self.write_up { "add" } else { "drop" }
            )
        })
    }
}

/// Run directory of (attempt, seed) under the report directory.
pub fn run_dir(out: &Path, attempt: u8, seed: u64) -> PathBuf {
    out.join("runs")
        .join(format!("attempt{attempt}"))
        .join(format!("seed{seed}"))
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The config of (attempt, seed): the project's attempt or, with `write_up`, the write-up's
/// recipe; `quick` shrinks it to a smoke test; `epochs` overrides its length.
pub fn config(
    attempt: u8,
    seed: u64,
    write_up: bool,
    quick: bool,
    epochs: Option<usize>,
) -> Result<TrainConfig> {
    let mut c = if write_up {
        TrainConfig::write_up(attempt)?
    } else {
        TrainConfig::attempt(attempt)?
    };
    c.seed = seed;
    if quick {
        c.epochs = 2;
        c.train_limit = Some(2048);
        c.test_limit = Some(1000);
    }
    if let Some(e) = epochs {
        c.epochs = e;
    }
    c.fit_schedule();
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
    if !args.force
        && let Some(why) =
            Manifest::existing(&args.out)?.and_then(|m| m.other_recipe(&args.out, args.write_up))
    {
        bail!("{why} (or --force to retrain them with this recipe)");
    }
    let start = Instant::now();
    let mnist = load(&args.data)?;
    let stop = AtomicBool::new(false);
    let mut epochs = 0;
    for &attempt in &args.attempts {
        for seed in 1..=args.seeds {
            let config = config(attempt, seed, args.write_up, args.quick, args.epochs)?;
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
            run::train(&config, &mnist, &dir, resume, &mut Lines { label }, &stop)?;
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

pub fn load(data: &Path) -> Result<Mnist> {
    fetch::fetch(&FetchOptions::new(data), &mut ())
        .with_context(|| format!("fetching MNIST into {}", data.display()))?;
    Ok(Mnist::load(data)?)
}
