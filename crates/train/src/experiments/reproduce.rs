//! `reproduce`: train every run the report needs that is not there yet, retrain every committed
//! one into a scratch directory and check that it comes out bit-identical (`Mode::SkipExisting`
//! keeps them as they are instead), then write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use under8k_mnist_data::{Dataset, Normalization};
use under8k_model::checkpoint::write_atomic;

use super::Log;
use super::error::{Context, ExperimentError, Result, io};
use super::runs::{
    Manifest, SWEEP_EPOCHS, SWEEP_LRS, cpu_description, lr_find_dir, run_dir, sweep_dir,
    write_up_dir,
};
use super::verify::{Outcome, Verdict, compare, refuse_differences, verification};
use crate::data::{DataChoice, Prepared};
use crate::lr_find::{self, RangeCurve, RangeTest};
use crate::refuse as bail;
use crate::run::{self, Observer, RunFiles};
use crate::{EpochRecord, History, TrainConfig};

/// How a report's runs are made, beyond the attempt and seed.
#[derive(Clone, Copy)]
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

/// Prints one line per finished epoch through the log.
struct Lines<'a> {
    label: &'a str,
    log: Log<'a>,
}

impl Observer for Lines<'_> {
    fn epoch_end(&mut self, r: &EpochRecord) {
        (self.log)(&format!(
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
        ));
    }
}

/// One run a command needs: what to train, and where.
#[derive(Debug, Clone)]
pub struct Job {
    /// How the log names it.
    pub label: String,
    /// What it trains.
    pub config: TrainConfig,
    /// Its run directory.
    pub dir: PathBuf,
}

/// How complete runs are treated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Retrain each complete run into a scratch directory and compare; `accept` replaces a
    /// run that differs instead of failing.
    Verify {
        /// Replace a committed run that differs.
        accept: bool,
    },
    /// Keep complete runs; resume partial ones; train missing ones.
    SkipExisting,
    /// Retrain every run in place.
    Force,
}

const RUN_FILES: [&str; 5] = [
    "config.json",
    "history.json",
    "history.csv",
    "model.safetensors",
    "state.safetensors",
];

/// Where a run directory stands against `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing there (or an empty directory).
    Missing,
    /// The same config, some epochs saved.
    Partial,
    /// The same config, every epoch saved.
    Complete,
    /// Another config's run (its fingerprint differs).
    Other,
}

/// Where the run in `dir` stands against `config`.
pub fn run_state(dir: &Path, config: &TrainConfig) -> RunState {
    let config_file = RunFiles {
        dir: dir.to_path_buf(),
    }
    .config();
    if !config_file.exists() {
        return RunState::Missing;
    }
    match (resumable(dir, config), all_epochs(dir, config)) {
        (false, _) => RunState::Other,
        (true, true) => RunState::Complete,
        (true, false) => RunState::Partial,
    }
}

/// Trains, resumes, keeps or verifies one run as `mode` says, logging what it does.
pub fn run_job(
    job: &Job,
    data: &Prepared,
    mode: Mode,
    stop: &AtomicBool,
    log: Log,
) -> Result<Outcome> {
    let lines = || Lines {
        label: &job.label,
        log,
    };
    let resumable = resumable(&job.dir, &job.config);
    let done = resumable && all_epochs(&job.dir, &job.config);
    match (mode, done) {
        (Mode::SkipExisting, true) => {
            log(&format!(
                "{}: complete in {} (kept)",
                job.label,
                job.dir.display()
            ));
            Ok(Outcome::Skipped)
        }
        (Mode::Verify { accept }, true) => verify_job(job, data, accept, stop, log),
        _ => {
            let resume = mode != Mode::Force && resumable;
            // A run of another config (or an old one, with --force) goes; an empty directory
            // (a sweep's, locked while it trains) stays.
            let files = RunFiles {
                dir: job.dir.clone(),
            };
            if !resume && files.config().exists() {
                std::fs::remove_dir_all(&job.dir)
                    .with_context(|| format!("removing stale run {}", job.dir.display()))?;
            }
            log(&format!(
                "{}: training into {}{}",
                job.label,
                job.dir.display(),
                if resume { " (resuming)" } else { "" }
            ));
            let start = match resume {
                true => run::Start::Resume,
                false => run::Start::Fresh,
            };
            let outcome = run::train(&job.config, &data.data, &job.dir, start, &mut lines(), stop)?;
            crate::refuse_unless!(!outcome.interrupted, "{}: interrupted", job.label);
            Ok(Outcome::Trained)
        }
    }
}

/// Retrains a complete run into a scratch directory and compares it with the committed one.
fn verify_job(
    job: &Job,
    data: &Prepared,
    accept: bool,
    stop: &AtomicBool,
    log: Log,
) -> Result<Outcome> {
    log(&format!(
        "{}: retraining to verify {}",
        job.label,
        job.dir.display()
    ));
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let mut lines = Lines {
        label: &job.label,
        log,
    };
    let outcome = run::train(
        &job.config,
        &data.data,
        scratch.path(),
        run::Start::Fresh,
        &mut lines,
        stop,
    )?;
    crate::refuse_unless!(!outcome.interrupted, "{}: interrupted", job.label);
    match compare(&job.dir, scratch.path())? {
        Verdict::Identical { epochs } => {
            log(&format!(
                "{}: bit-identical to the committed run ({epochs}/{epochs} epochs, checkpoint equal)",
                job.label
            ));
            Ok(Outcome::Identical(epochs))
        }
        verdict @ (Verdict::Differs(_) | Verdict::Numerics { .. }) => {
            log(&match verdict {
                Verdict::Numerics {
                    committed,
                    retrained,
                    figures,
                } => format!(
                    "{}: DIFFERS: the committed run was trained with numerics version {committed}, this engine computes version {retrained}; the bits are not compared, the figures are: {figures}",
                    job.label
                ),
                Verdict::Differs(why) => {
                    format!("{}: DIFFERS from the committed run: {why}", job.label)
                }
                Verdict::Identical { .. } => unreachable!("matched above"),
            });
            if !accept {
                return Ok(Outcome::Differs);
            }
            for f in RUN_FILES {
                let from = scratch.path().join(f);
                let bytes = std::fs::read(&from).map_err(io(from))?;
                write_atomic(&job.dir.join(f), &bytes)?;
            }
            log(&format!(
                "{}: the retrained run replaces it (--accept)",
                job.label
            ));
            Ok(Outcome::Accepted)
        }
    }
}

/// The range test of the write-up's attempt 3 (one epoch of batches, rate 10⁻⁵ → 1), checked
/// against the saved curve like a run.
fn range_test_job(
    out: &Path,
    base: &TrainConfig,
    data: &Prepared,
    mode: Mode,
    log: Log,
) -> Result<Outcome> {
    let path = lr_find_dir(out).join("lr_find.json");
    let label = "lr-find range test";
    if mode == Mode::SkipExisting && path.exists() {
        log(&format!("{label}: kept {}", path.display()));
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
                log(&format!(
                    "{label}: bit-identical to the committed curve ({} steps)",
                    curve.points.len()
                ));
                return Ok(Outcome::Identical(0));
            }
            log(&format!(
                "{label}: DIFFERS from the committed curve: {}",
                curve_difference(&old, &curve)
            ));
            if !accept {
                return Ok(Outcome::Differs);
            }
            Outcome::Accepted
        }
        _ => Outcome::Trained,
    };
    let dir = lr_find_dir(out);
    std::fs::create_dir_all(&dir).map_err(io(dir))?;
    write_atomic(&path, curve.to_json().as_bytes())?;
    log(&format!(
        "{label}: {} steps into {}",
        curve.points.len(),
        path.display()
    ));
    Ok(outcome)
}

/// The first point where two range tests differ, in words.
fn curve_difference(old: &RangeCurve, new: &RangeCurve) -> String {
    if old.points.len() != new.points.len() {
        return format!(
            "{} points committed, {} now",
            old.points.len(),
            new.points.len()
        );
    }
    old.points
        .iter()
        .zip(&new.points)
        .find(|(a, b)| a != b)
        .map_or_else(
            || "the curves' ends differ".to_string(),
            |(a, b)| format!("step {}: committed loss {}, now {}", a.step, a.loss, b.loss),
        )
}

/// Attempt 3's confusion matrix and misclassified digits (seed 1), into `<out>/eval/`.
fn eval_pictures(out: &Path, data: &Prepared, log: Log) -> Result<()> {
    let run = super::runs::load_run(out, 3, 1)?;
    let net = run::load_net(
        &run.config.arch,
        &run_dir(out, 3, 1).join("model.safetensors"),
    )?;
    let (_, test) = run.config.splits(&data.data)?;
    let norm = Normalization::new(run.config.mean, run.config.std)
        .map_err(|e| ExperimentError::Refused(e.to_string()))?;
    let e = run::evaluate(&net, &test, norm, 1000, &candle_core::Device::Cpu)?;
    let p = crate::plots::eval_pictures(&e, &test, 48, "Attempt 3")?;
    let eval = out.join("eval");
    p.save(&eval)?;
    log(&format!(
        "attempt 3 seed 1: confusion matrix and {} misclassified digits in {}",
        e.total - e.correct,
        eval.display()
    ));
    Ok(())
}

/// What `reproduce` does: which runs, how complete ones are treated, and where the report goes.
#[derive(Debug, Clone)]
pub struct Reproduce {
    /// Attempts to train (1, 2, 3).
    pub attempts: Vec<u8>,
    /// Seeds per attempt (1, …, N).
    pub seeds: u64,
    /// Epochs per run, instead of the attempt's (or the smoke test's).
    pub epochs: Option<usize>,
    /// The report directory.
    pub out: PathBuf,
    /// A smoke test: 2 epochs on 2,048 training and 1,000 test images.
    pub quick: bool,
    /// How complete runs are treated.
    pub mode: Mode,
    /// Another net than the seed's: the spec, and the file it came from (for the command line).
    pub arch: Option<(under8k_model::ArchSpec, PathBuf)>,
    /// What the main report adds beyond the attempts: left out, kept as committed, or run.
    pub extras: Extras,
    /// The write-up's exact recipes instead of the project's attempts.
    pub write_up: bool,
    /// How the command that regenerates the report is spelled, without options: `cargo xtask
    /// reproduce` in this repository, `under8k reproduce` elsewhere.
    pub program: String,
    /// The `--out` the program uses by default (left off the recorded command).
    pub default_out: PathBuf,
    /// The `--data` option as the user gave it, when it is not the default directory.
    pub data_option: Option<PathBuf>,
}

impl Reproduce {
    /// Checks the options that do not need the data.
    pub fn validate(&self) -> Result<()> {
        crate::refuse_unless!(
            !self.attempts.is_empty() && self.seeds > 0,
            "nothing to do: give at least one attempt and one seed"
        );
        for &a in &self.attempts {
            TrainConfig::attempt(a)?;
        }
        Ok(())
    }

    /// The command that regenerates the report, as the report records it.
    pub fn command(&self, choice: DataChoice) -> String {
        let mut command = self.program.clone();
        let attempts = self.sorted_attempts();
        if attempts != [1, 2, 3] {
            let list: Vec<String> = attempts.iter().map(u8::to_string).collect();
            command += &format!(" --attempts {}", list.join(","));
        }
        if self.seeds != 1 {
            command += &format!(" --seeds {}", self.seeds);
        }
        if self.quick {
            command += " --quick";
        }
        let mnist = choice == DataChoice::Known(Dataset::Mnist);
        if !mnist {
            command += &format!(" --dataset {}", choice.name());
        }
        if let Some(d) = &self.data_option {
            command += &format!(" --data {}", d.display());
        }
        if self.write_up {
            command += " --write-up";
        }
        if let Some(e) = self.epochs {
            command += &format!(" --epochs {e}");
        }
        if let Some((_, a)) = &self.arch {
            command += &format!(" --arch {}", a.display());
        }
        if mnist && !self.write_up {
            command += match self.extras {
                Extras::Leave => " --no-extras",
                Extras::Keep => "",
                Extras::Run => " --extras",
            };
        }
        if self.out != self.default_out {
            command += &format!(" --out {}", self.out.display());
        }
        command
    }

    fn sorted_attempts(&self) -> Vec<u8> {
        let mut attempts = self.attempts.clone();
        attempts.sort_unstable();
        attempts.dedup();
        attempts
    }

    /// The attempts' runs, every seed of each.
    fn attempt_jobs(&self, recipe: &Recipe) -> Result<Vec<Job>> {
        let mut jobs = vec![];
        for &attempt in &self.attempts {
            for seed in 1..=self.seeds {
                jobs.push(Job {
                    label: format!("attempt {attempt} seed {seed}"),
                    config: config(attempt, seed, recipe)?,
                    dir: run_dir(&self.out, attempt, seed),
                });
            }
        }
        Ok(jobs)
    }

    /// The extras' runs: the write-up's attempt 3 of every seed, and the sweep's rates.
    fn extra_jobs(&self, recipe: &Recipe) -> Result<Vec<Job>> {
        let write_up = Recipe {
            write_up: true,
            ..*recipe
        };
        let mut jobs = vec![];
        for seed in 1..=self.seeds {
            jobs.push(Job {
                label: format!("write-up attempt 3 seed {seed}"),
                config: config(3, seed, &write_up)?,
                dir: write_up_dir(&self.out, seed),
            });
        }
        let base = config(3, 1, &write_up)?;
        for lr in SWEEP_LRS {
            jobs.push(Job {
                label: format!("lr-find sweep lr {lr}"),
                config: lr_find::sweep_config(&base, lr, SWEEP_EPOCHS)?,
                dir: sweep_dir(&self.out, lr),
            });
        }
        Ok(jobs)
    }
}

/// Whether the report's runs beyond the attempts (the write-up's own attempt 3, the range test
/// and the sweep, attempt 3's evaluation pictures) are in it, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extras {
    /// Left out (`--no-extras`).
    Leave,
    /// Kept as committed when the report has them, neither trained nor verified (the default:
    /// the three attempts are the job).
    Keep,
    /// Trained, or verified like the attempts (`--extras`).
    Run,
}

/// The recorded training and evaluation time of the runs already in `jobs`' directories, in
/// minutes, and their epochs (for telling up front how long verifying them takes).
fn recorded_minutes(jobs: &[Job]) -> (f64, usize) {
    jobs.iter()
        .filter_map(|j| super::runs::load_run_in(&j.dir, j.config.seed).ok())
        .fold((0.0, 0), |(m, e), r| {
            (m + r.seconds() / 60.0, e + r.history.epochs.len())
        })
}

/// Says up front what the command will do and, where committed runs tell, how long it takes.
fn announce(jobs: &[Job], extra_jobs: &[Job], extras: Extras, mode: Mode, log: Log) {
    let epochs: usize = jobs.iter().map(|j| j.config.epochs).sum();
    let (minutes, known) = recorded_minutes(jobs);
    let verb = match mode {
        Mode::Verify { .. } => "training or verifying",
        Mode::SkipExisting => "training what is missing of",
        Mode::Force => "retraining",
    };
    let mut line = format!("{verb} {} runs ({epochs} epochs)", jobs.len());
    if known == epochs && minutes > 0.0 {
        line += &format!(": about {minutes:.0} min at the speed the committed runs recorded");
    }
    log(&line);
    if extras == Extras::Keep && !extra_jobs.is_empty() {
        let (m, e) = recorded_minutes(extra_jobs);
        log(&format!(
            "the extras (the write-up's attempt 3, the learning-rate sweep and range test: {} runs, {e} epochs, about {m:.0} min more) are kept as committed; --extras verifies them too",
            extra_jobs.len()
        ));
    }
}

/// Trains (or verifies, or keeps) every run the report needs on `data`, then writes the
/// manifest and the report. Fails, replacing nothing, when a verified run differs (unless
/// [`Mode::Verify`]'s `accept`).
pub fn reproduce(opts: &Reproduce, choice: DataChoice, data: &Prepared, log: Log) -> Result<()> {
    opts.validate()?;
    let dataset = choice.name();
    let arch = opts.arch.as_ref().map(|(a, _)| a);
    let arch_name = arch.map(|a| a.name.as_str());
    let previous = Manifest::existing(&opts.out)?;
    if opts.mode != Mode::Force
        && let Some(why) = previous
            .as_ref()
            .and_then(|m| m.other_recipe(&opts.out, dataset, opts.write_up, arch_name))
    {
        bail!("{why} (or --force to retrain them with this recipe)");
    }
    let start = Instant::now();
    let recipe = Recipe {
        write_up: opts.write_up,
        quick: opts.quick,
        epochs: opts.epochs,
        data,
        arch,
    };
    // Before anything is trained: the net must fit the data.
    run::check_fit(&config(1, 1, &recipe)?.arch, &data.data)?;
    let mnist = choice == DataChoice::Known(Dataset::Mnist);
    let can_have_extras = mnist && !opts.write_up && opts.attempts.contains(&3);
    let had_extras = previous.as_ref().is_some_and(|m| m.extras);
    let extras = match opts.extras {
        Extras::Leave => false,
        Extras::Keep => can_have_extras && had_extras,
        Extras::Run => can_have_extras,
    };
    let jobs = opts.attempt_jobs(&recipe)?;
    let extra_jobs = match can_have_extras {
        true => opts.extra_jobs(&recipe)?,
        false => vec![],
    };
    let run_extras = extras && opts.extras == Extras::Run;
    announce(
        &jobs,
        if extras { &extra_jobs } else { &[] },
        opts.extras,
        opts.mode,
        log,
    );
    let epochs = jobs[0].config.epochs;
    let stop = AtomicBool::new(false);
    let mut outcomes = vec![];
    for job in jobs.iter().chain(extra_jobs.iter().filter(|_| run_extras)) {
        outcomes.push((
            job.label.clone(),
            run_job(job, data, opts.mode, &stop, log)?,
        ));
    }
    if run_extras {
        let base = config(
            3,
            1,
            &Recipe {
                write_up: true,
                ..recipe
            },
        )?;
        let o = range_test_job(&opts.out, &base, data, opts.mode, log)?;
        outcomes.push(("lr-find range test".into(), o));
        eval_pictures(&opts.out, data, log)?;
    }
    refuse_differences(&outcomes)?;
    let manifest = Manifest {
        command: opts.command(choice),
        attempts: opts.sorted_attempts(),
        seeds: opts.seeds,
        epochs,
        quick: opts.quick,
        write_up: opts.write_up,
        dataset: dataset.to_string(),
        extras,
        arch: arch_name.map(str::to_string),
        ..facts(previous, &outcomes, extras && !run_extras, start)
    };
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    write_atomic(
        &opts.out.join("reproduce.json"),
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
    )?;
    super::report::write(&opts.out)?;
    log(&format!(
        "report written to {} ({:.1} min here)",
        opts.out.join("README.md").display(),
        start.elapsed().as_secs_f64() / 60.0
    ));
    Ok(())
}

/// Where and when the runs were trained and verified, as two facts: the training machine and
/// date stay what they were unless this command trained a run; the verification is this
/// command's when it retrained any. With the extras kept, their last verification is kept
/// beside it.
fn facts(
    previous: Option<Manifest>,
    outcomes: &[(String, Outcome)],
    extras_kept: bool,
    start: Instant,
) -> Manifest {
    let trained = outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Trained | Outcome::Accepted));
    let (cpu, threads, date) = match previous.as_ref().filter(|_| !trained) {
        Some(p) => (p.cpu.clone(), p.threads, p.trained.clone()),
        None => (
            cpu_description(),
            rayon::current_num_threads(),
            Some(super::verify::today()),
        ),
    };
    let extras_verified = match (&previous, extras_kept) {
        (Some(p), true) => p.extras_verified.clone().or_else(|| {
            p.verified
                .clone()
                .filter(|v| p.extras && v.all() && v.total > outcomes.len())
        }),
        _ => None,
    };
    let verified = verification(
        outcomes,
        previous.as_ref().and_then(|m| m.verified.clone()),
        start.elapsed().as_secs_f64() / 60.0,
    );
    Manifest {
        cpu,
        threads,
        trained: date,
        verified,
        extras_kept,
        extras_verified,
        ..previous.unwrap_or_default()
    }
}
