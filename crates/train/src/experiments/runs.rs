//! What a report is made of, loaded from disk: our runs (`Run`), PyTorch's (`TorchRun`), the
//! manifest that says how they were made (`reproduce.json`), and the statistics over them. A
//! leaf: `reproduce`, `pytorch`, `report` and `plot` use it, and it uses none of them.

use std::path::{Path, PathBuf};

use super::error::{Context, Result};
use crate::refuse as bail;
use crate::{History, TrainConfig};
use serde::{Deserialize, Serialize};

/// What the report needs to know about how the runs were made (`reproduce.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// The CPU of the last command that trained a run of the report (not one that only
    /// verified them).
    pub cpu: String,
    /// Its threads.
    pub threads: usize,
    /// When it trained (UTC `YYYY-MM-DD`; absent in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<String>,
    /// Whether the runs follow the write-up's exact recipes (`--write-up`).
    #[serde(default)]
    pub write_up: bool,
    /// The dataset (absent for MNIST, as in manifests written before datasets were recorded).
    #[serde(default = "mnist_name", skip_serializing_if = "is_mnist_name")]
    pub dataset: String,
    /// Whether the report also has the write-up's own attempt 3 (`runs/write-up-attempt3/`),
    /// the learning-rate range test and sweep (`lr-find/`) and attempt 3's confusion matrix and
    /// misclassified digits (`eval/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extras: bool,
    /// The net's name, when the runs use another than the seed's (`--arch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// When and where every run was last retrained and found bit-identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// Whether the last command kept the extras as committed (neither trained nor verified).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extras_kept: bool,
    /// Then, their last complete verification, if there is one on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras_verified: Option<Verified>,
}

/// A verification: every run of the report retrained and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// The CPU it ran on.
    pub cpu: String,
    /// Threads.
    pub threads: usize,
    /// Runs retrained and found identical.
    pub runs: usize,
    /// Their epochs, all together.
    pub epochs: usize,
    /// Runs (and the range test) the command had: more than `runs` when some were trained
    /// rather than verified.
    #[serde(default)]
    pub total: usize,
    /// The verified ones, when not all were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub of: Vec<String>,
    /// Wall time of the whole command that verified them, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
}

impl Verified {
    /// Whether every result of the command was verified.
    pub fn all(&self) -> bool {
        self.of.is_empty()
    }
}

fn mnist_name() -> String {
    "mnist".into()
}

fn is_mnist_name(name: &str) -> bool {
    name == "mnist"
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

    /// Whether the report is on MNIST (the write-up's dataset, with its targets).
    pub fn is_mnist(&self) -> bool {
        is_mnist_name(&self.dataset)
    }

    /// Why runs of another dataset or of the other recipe (`write_up` differs) do not belong in
    /// this report.
    pub fn other_recipe(
        &self,
        out: &Path,
        dataset: &str,
        write_up: bool,
        arch: Option<&str>,
    ) -> Option<String> {
        if self.arch.as_deref() != arch {
            let name = |a: Option<&str>| {
                a.map_or("the seed's net".to_string(), |n| format!("the net `{n}`"))
            };
            return Some(format!(
                "{} holds runs of {} (`{}`), not {}: give another --out",
                out.display(),
                name(self.arch.as_deref()),
                self.command,
                name(arch)
            ));
        }
        if self.dataset != dataset {
            return Some(format!(
                "{} holds runs on {} (`{}`), not {dataset}: give another --out",
                out.display(),
                self.dataset,
                self.command
            ));
        }
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

/// The constant rates of the report's short-run sweep, and each run's epochs.
pub const SWEEP_LRS: [f64; 8] = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2];
/// Epochs of each sweep run.
pub const SWEEP_EPOCHS: usize = 2;

/// The sweep run at `lr`.
pub fn sweep_dir(out: &Path, lr: f64) -> PathBuf {
    lr_find_dir(out).join("sweep").join(format!("lr-{lr}"))
}

/// Run directory of (attempt, seed) under the report directory.
pub fn run_dir(out: &Path, attempt: u8, seed: u64) -> PathBuf {
    out.join("runs")
        .join(format!("attempt{attempt}"))
        .join(format!("seed{seed}"))
}

/// The write-up's own attempt 3 of `seed`, beside the project's attempts.
pub fn write_up_dir(out: &Path, seed: u64) -> PathBuf {
    out.join("runs")
        .join("write-up-attempt3")
        .join(format!("seed{seed}"))
}

/// The range test and the sweep: `<out>/lr-find/`.
pub fn lr_find_dir(out: &Path) -> PathBuf {
    out.join("lr-find")
}

/// The CPU's model name, as `/proc/cpuinfo` gives it.
pub fn cpu_model() -> String {
    cpu_field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn cpu_field(name: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The CPU as precisely as a report needs it: model name, family and model numbers (they tell
/// AMD's Zen generations apart where the name does not) and its widest vector extension.
pub fn cpu_description() -> String {
    let mut s = cpu_model();
    if let (Some(f), Some(m)) = (cpu_field("cpu family"), cpu_field("model")) {
        s += &format!(", family {f} model {m}");
    }
    #[cfg(target_arch = "x86_64")]
    {
        s += if std::arch::is_x86_feature_detected!("avx512f") {
            ", AVX-512"
        } else if std::arch::is_x86_feature_detected!("avx2") {
            ", AVX2"
        } else {
            ", no AVX2"
        };
    }
    s
}

/// One finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its seed.
    pub seed: u64,
    /// Its config.
    pub config: TrainConfig,
    /// Its history.
    pub history: History,
}

/// The engine numerics versions `runs` were trained with, in words: `2`, or `1 and 2`.
pub(crate) fn numerics_of<'a>(runs: impl Iterator<Item = &'a Run>) -> String {
    let mut v: Vec<u32> = runs.map(|r| r.history.numerics).collect();
    v.sort_unstable();
    v.dedup();
    v.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

impl Run {
    /// The best epoch's evaluation accuracy.
    pub fn max_test(&self) -> f64 {
        self.history.max_test_acc().unwrap_or(0.0)
    }
    /// The best epoch's training accuracy.
    pub fn max_train(&self) -> f64 {
        self.history
            .epochs
            .iter()
            .map(|e| e.train_acc)
            .fold(0.0, f64::max)
    }
    /// Test accuracy per epoch.
    pub fn test_acc(&self) -> Vec<f64> {
        self.history.epochs.iter().map(|e| e.test_acc).collect()
    }
    /// The last three epochs' evaluation accuracies.
    pub fn last3(&self) -> Vec<f64> {
        last3(&self.test_acc()).to_vec()
    }
    /// The lowest of the last three epochs' evaluation accuracies.
    pub fn min_last3(&self) -> f64 {
        min_last3(&self.test_acc())
    }
    /// The last epoch's evaluation accuracy.
    pub fn final_acc(&self) -> f64 {
        self.history.epochs.last().map_or(0.0, |e| e.test_acc)
    }
    /// Training and evaluation time, seconds.
    pub fn seconds(&self) -> f64 {
        self.history
            .epochs
            .iter()
            .map(|e| e.train_seconds + e.eval_seconds)
            .sum()
    }
    /// Training throughput over the run.
    pub fn img_per_s(&self) -> f64 {
        let imgs: f64 = self
            .history
            .epochs
            .iter()
            .map(|e| e.train_img_per_s * e.train_seconds)
            .sum();
        let secs: f64 = self.history.epochs.iter().map(|e| e.train_seconds).sum();
        imgs / secs.max(1e-9)
    }
}

pub fn load_run(out: &Path, attempt: u8, seed: u64) -> Result<Run> {
    load_run_in(&run_dir(out, attempt, seed), seed)
}

/// The complete run in `dir`.
pub fn load_run_in(dir: &Path, seed: u64) -> Result<Run> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!(
                "{}: missing; run `cargo xtask reproduce` first",
                dir.join(name).display()
            )
        })
    };
    let config: TrainConfig = serde_json::from_slice(&read("config.json")?)
        .with_context(|| format!("{}", dir.join("config.json").display()))?;
    let history: History = serde_json::from_slice(&read("history.json")?)
        .with_context(|| format!("{}", dir.join("history.json").display()))?;
    crate::refuse_unless!(
        history.epochs.len() == config.epochs,
        "{}: the run is incomplete ({} of {} epochs); run `cargo xtask reproduce`",
        dir.display(),
        history.epochs.len(),
        config.epochs
    );
    Ok(Run {
        seed,
        config,
        history,
    })
}

/// The last three values (fewer when there are fewer).
pub fn last3(acc: &[f64]) -> &[f64] {
    &acc[acc.len().saturating_sub(3)..]
}

/// The lowest of the last three values.
pub fn min_last3(acc: &[f64]) -> f64 {
    last3(acc).iter().copied().fold(f64::INFINITY, f64::min)
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

pub fn max(acc: &[f64]) -> f64 {
    acc.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// One PyTorch epoch, as the script writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)] // the script's field names say it
pub struct TorchEpoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

/// One PyTorch run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorchRun {
    /// The attempt (0 for a research recipe).
    pub attempt: u8,
    /// PyTorch's seed (not ours).
    pub seed: u64,
    /// PyTorch's version.
    pub torch: String,
    /// Its threads.
    pub threads: usize,
    /// The learning-rate schedule it followed (the `schedule` of our config), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    /// Its epochs.
    pub epochs: Vec<TorchEpoch>,
}

impl TorchRun {
    /// Test accuracy per epoch.
    pub fn test_acc(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.test_acc).collect()
    }
}

/// `<out>/pytorch/attempt{a}/seed{s}.json`.
pub fn result_path(out: &Path, attempt: u8, seed: u64) -> PathBuf {
    out.join("pytorch")
        .join(format!("attempt{attempt}"))
        .join(format!("seed{seed}.json"))
}

/// `<out>/pytorch/seed{s}.json` of a research report.
pub fn result_path_research(out: &Path, seed: u64) -> PathBuf {
    out.join("pytorch").join(format!("seed{seed}.json"))
}

/// The learning rate of each epoch's first step under `config`'s schedule, as a run on MNIST's
/// or Fashion-MNIST's 60,000 training images records it (the script trains on no other data).
pub fn epoch_lrs(config: &TrainConfig) -> Vec<f64> {
    let steps = config.steps_per_epoch(crate::config::MNIST_TRAIN_IMAGES);
    (0..config.epochs)
        .map(|e| config.schedule.lr(e, e * steps))
        .collect()
}

/// Reads one saved run, checking that it is what its path says, that it is complete and that it
/// followed the learning rates `lrs` (one per epoch: the recipe of our runs).
pub fn read(path: &Path, attempt: u8, seed: u64, lrs: &[f64]) -> Result<TorchRun> {
    let epochs = lrs.len();
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let run: TorchRun = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a PyTorch result", path.display()))?;
    if run.attempt != attempt || run.seed != seed {
        bail!(
            "{}: holds attempt {} seed {}, not attempt {attempt} seed {seed}",
            path.display(),
            run.attempt,
            run.seed
        );
    }
    if run.epochs.len() != epochs || run.epochs.iter().enumerate().any(|(i, e)| e.epoch != i + 1) {
        bail!(
            "{}: has {} epochs, not 1..={epochs} (rerun `cargo xtask pytorch --force`)",
            path.display(),
            run.epochs.len()
        );
    }
    if let Some((e, want)) = run
        .epochs
        .iter()
        .zip(lrs)
        .find(|(e, want)| (e.lr - *want).abs() > 1e-9 * want.abs())
    {
        bail!(
            "{}: epoch {} ran at lr {} where this recipe has {want}: another schedule (rerun `cargo xtask pytorch --force`{})",
            path.display(),
            e.epoch,
            e.lr,
            if attempt == 3 {
                ", with or without --write-up"
            } else {
                ""
            }
        );
    }
    Ok(run)
}

/// The saved PyTorch runs of `attempt` (seeds 1, 2, … while their files exist), each checked to
/// have run the epochs of `config` at its learning rates.
pub fn load_torch(out: &Path, attempt: u8, config: &TrainConfig) -> Result<Vec<TorchRun>> {
    let lrs = epoch_lrs(config);
    let mut runs = vec![];
    for seed in 1.. {
        let path = result_path(out, attempt, seed);
        if !path.exists() {
            break;
        }
        runs.push(read(&path, attempt, seed, &lrs)?);
    }
    Ok(runs)
}
