//! `reproduce`, `research`, `report` and `verify`: the options and the printing around
//! `under8k_train::experiments`. `cargo xtask` runs the same functions with this repository's
//! defaults (its [`Front`]), so both binaries spell every option the same.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use under8k_train::DataChoice;
use under8k_train::experiments::sweep::slurm::SlurmOptions;
use under8k_train::experiments::{self as ex, Mode, Verdict};

use crate::data::{self, DataArgs};
use crate::training::stop_flag;

/// How a front end spells its commands and where its reports go by default.
pub struct Front {
    /// The program and command as the reports record them, before the subcommand's name.
    pub program: &'static str,
    /// `reproduce`'s default `--out`.
    pub report: &'static str,
}

impl Front {
    /// The installed command.
    pub const UNDER8K: Front = Front {
        program: "under8k",
        report: "report",
    };
    /// `cargo xtask` in this repository.
    pub const XTASK: Front = Front {
        program: "cargo xtask",
        report: "docs/report",
    };
}

/// Prints a progress line.
pub fn log(line: &str) {
    println!("{line}");
}

/// `--force`, `--skip-existing` and `--accept`: how complete runs are treated.
#[derive(Args, Clone, Copy)]
pub struct ModeArgs {
    /// Retrain every run in place, without comparing with what was there.
    #[arg(long, conflicts_with_all = ["skip_existing", "accept"])]
    pub force: bool,
    /// Keep complete runs as they are instead of retraining them to verify them (only
    /// regenerate the report and train what is missing).
    #[arg(long)]
    pub skip_existing: bool,
    /// When a retrained run differs from the committed one, replace the committed one with it
    /// (and say so) instead of failing.
    #[arg(long, conflicts_with = "skip_existing")]
    pub accept: bool,
}

impl ModeArgs {
    /// The mode these flags name.
    pub fn mode(&self) -> Mode {
        match (self.force, self.skip_existing) {
            (true, _) => Mode::Force,
            (_, true) => Mode::SkipExisting,
            _ => Mode::Verify {
                accept: self.accept,
            },
        }
    }
}

/// `reproduce` options.
#[derive(Args)]
pub struct ReproduceArgs {
    /// Attempts to train (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3])]
    pub attempts: Vec<u8>,
    /// Seeds per attempt (1, 2, …, N); with N > 1 the report adds mean ± sd.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Epochs per run [default: 15; 2 with --quick].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Report directory (runs are kept under its `runs/`) [default: `report`; `docs/report`
    /// for `cargo xtask`].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Smoke test: 2,048 training and 1,000 test images, 2 epochs.
    #[arg(long)]
    pub quick: bool,
    /// How complete runs are treated.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// An architecture spec (JSON; see docs/ARCH_SPEC.md) for every run instead of the seed's
    /// net (into another --out: a report directory holds one net).
    #[arg(long, value_name = "FILE")]
    pub arch: Option<PathBuf>,
    /// Leave out what the main report adds beyond the three attempts: the write-up's own attempt
    /// 3, the learning-rate range test and sweep, and attempt 3's confusion matrix and
    /// misclassified digits. By default a report that has them keeps them as committed.
    #[arg(long, conflicts_with = "extras")]
    pub no_extras: bool,
    /// Train (or verify, like the attempts) those extras too: 9 more runs, 31 epochs and the
    /// range test (the command says how long before it starts).
    #[arg(long)]
    pub extras: bool,
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// Train the write-up's exact recipes (attempt 3 with its StepLR from 0.07) instead of the
    /// project's attempts (attempt 3 with one-cycle). Use another --out.
    #[arg(long)]
    pub write_up: bool,
}

/// The `--data` option to record, when it is not the default directory.
fn data_option(args: &DataArgs, choice: DataChoice) -> Option<PathBuf> {
    args.dir
        .clone()
        .filter(|d| *d != Path::new("data").join(choice.name()))
}

/// `reproduce`.
pub fn reproduce(args: &ReproduceArgs, front: &Front) -> Result<()> {
    let choice = args.data.choice_or(None);
    let arch = args
        .arch
        .as_ref()
        .map(|p| anyhow::Ok((under8k_model::ArchSpec::from_file(p)?, p.clone())))
        .transpose()?;
    let opts = ex::Reproduce {
        attempts: args.attempts.clone(),
        seeds: args.seeds,
        epochs: args.epochs,
        out: args.out.clone().unwrap_or_else(|| front.report.into()),
        quick: args.quick,
        mode: args.mode.mode(),
        arch,
        extras: match (args.no_extras, args.extras) {
            (true, _) => ex::Extras::Leave,
            (_, true) => ex::Extras::Run,
            _ => ex::Extras::Keep,
        },
        write_up: args.write_up,
        program: format!("{} reproduce", front.program),
        default_out: front.report.into(),
        data_option: data_option(&args.data, choice),
    };
    opts.validate()?;
    let data = data::load(&args.data, None)?;
    ex::reproduce(&opts, choice, &data, &|l| log(l))?;
    Ok(())
}

/// `--threads`: rayon threads per run (the bits do not depend on it).
pub fn threads_or_all(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(rayon::current_num_threads).max(1)
}

/// `research` options.
#[derive(Args)]
pub struct ResearchArgs {
    /// The report directory: it holds `goal.json` and `candidates/*.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Seeds of the chosen recipe (1, 2, …, N).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Validation seeds per candidate (its own and the ones after it); candidates are judged
    /// by the mean of their seeds' lowest of the last three epochs.
    #[arg(long, default_value_t = 1)]
    pub candidate_seeds: u64,
    /// How complete runs are treated.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Keep the search's complete runs as they are (and so its choice), and treat only the
    /// final runs as --accept, --force or the default verification say: after a change of the
    /// engine's numerics, re-accept the finals without retraining the whole search.
    #[arg(long)]
    pub keep_search: bool,
    /// Runs at once on this machine.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Threads per run [default: all].
    #[arg(long)]
    pub threads: Option<usize>,
    /// The data.
    #[command(flatten)]
    pub data: DataArgs,
    /// Where the Slurm arrays run (with --slurm-submit).
    #[command(flatten)]
    pub slurm: SlurmArgs,
    /// Run each stage as a Slurm job array (with the options above) and chain the next step
    /// to it (`afterok`); wait to find the report written. A task that fails leaves the next
    /// step pending: `under8k sweep status OUT/search` (or `OUT/runs`) names it, and the same
    /// command submits what is missing again.
    #[arg(long)]
    pub slurm_submit: bool,
}

/// `research`.
pub fn research(args: &ResearchArgs, front: &Front) -> Result<()> {
    if args.data.dataset.is_some_and(|d| d.name() != "mnist") {
        bail!("research goals are MNIST's: --dataset mnist only");
    }
    let data = data::load(&args.data, None)?;
    let threads = threads_or_all(args.threads);
    let slurm = match args.slurm_submit {
        false => None,
        true => {
            let dir = data::data_dir(&args.data, args.data.choice_or(None))?;
            let options = args.slurm.options(&dir)?;
            let out = std::path::absolute(&args.out)?;
            let mut next = vec![
                "research".into(),
                "--out".into(),
                out.display().to_string(),
                "--seeds".into(),
                args.seeds.to_string(),
                "--candidate-seeds".into(),
                args.candidate_seeds.to_string(),
                "--skip-existing".into(),
                "--slurm-submit".into(),
                "--data".into(),
                options.data.display().to_string(),
                "--cpus-per-task".into(),
                options.cpus_per_task.to_string(),
            ];
            next.extend(args.slurm.extra());
            Some(ex::SlurmStages { options, next })
        }
    };
    let opts = ex::Research {
        out: args.out.clone(),
        seeds: args.seeds,
        candidate_seeds: args.candidate_seeds,
        mode: match slurm {
            Some(_) => Mode::SkipExisting,
            None => args.mode.mode(),
        },
        search_mode: match (&slurm, args.keep_search) {
            (None, false) => args.mode.mode(),
            _ => Mode::SkipExisting,
        },
        jobs: args.jobs,
        threads: match &slurm {
            Some(s) => s.options.cpus_per_task,
            None => threads,
        },
        program: format!("{} research", front.program),
        slurm,
    };
    let stop = stop_flag()?;
    ex::research(&opts, &data, &stop, &|l| log(l))?;
    Ok(())
}

/// `report` options.
#[derive(Args)]
pub struct ReportArgs {
    /// The report (or sweep) directory [default: `report`; `docs/report` for `cargo xtask`].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `report`: whichever kind of report the directory holds, rewritten from its saved runs.
pub fn report(args: &ReportArgs) -> Result<()> {
    report_in(&args.out.clone().unwrap_or_else(|| "report".into()))
}

/// Rewrites the report in `out`.
pub fn report_in(out: &Path) -> Result<()> {
    if out.join("research.json").exists() {
        ex::write_research(out)?;
    } else if out.join(ex::sweep::MANIFEST).exists() {
        let m = ex::sweep::Manifest::read(out)?;
        ex::sweep::write_report(out, &m)?;
        println!("{}", out.join("report.md").display());
        return Ok(());
    } else if out.join("reproduce.json").exists() {
        ex::write_report(out)?;
    } else {
        bail!(
            "{}: no report here (no reproduce.json, research.json or sweep.jsonl)",
            out.display()
        );
    }
    println!("{}", out.join("README.md").display());
    Ok(())
}

/// `verify` options.
#[derive(Args)]
pub struct VerifyArgs {
    /// The first run directory (the committed one).
    pub run_a: PathBuf,
    /// The second (the retrained one).
    pub run_b: PathBuf,
}

/// `verify`: exit status 1 when the runs differ.
pub fn verify(args: &VerifyArgs) -> Result<()> {
    for d in [&args.run_a, &args.run_b] {
        if !d.join("history.json").exists() {
            bail!("{}: not a run directory (no history.json)", d.display());
        }
    }
    match ex::compare(&args.run_a, &args.run_b).context("comparing the runs")? {
        Verdict::Identical { epochs } => {
            println!("bit-identical: {epochs}/{epochs} epochs, every batch, checkpoint equal");
            Ok(())
        }
        Verdict::Differs(why) => bail!("the runs differ: {why}"),
        Verdict::Numerics {
            committed,
            retrained,
            figures,
        } => bail!(
            "the runs were trained with the engine's numerics versions {committed} and {retrained}: their bits are not comparable; figures side by side: {figures}"
        ),
    }
}

/// Where a Slurm array runs (shared by `sweep slurm` and `research --slurm-submit`).
#[derive(Args, Clone)]
pub struct SlurmArgs {
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task (Slurm's format, e.g. 0:30:00).
    #[arg(long)]
    pub time: Option<String>,
    /// At most K tasks at once.
    #[arg(long, value_name = "K")]
    pub max_running: Option<usize>,
    /// CPUs per task (each run's threads).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// The under8k binary the nodes run [default: this one].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

impl SlurmArgs {
    /// The options, with absolute paths (the nodes run elsewhere).
    pub fn options(&self, data: &Path) -> Result<SlurmOptions> {
        let binary = match &self.binary {
            Some(b) => std::path::absolute(b)?,
            None => std::env::current_exe().context("where this binary is")?,
        };
        Ok(SlurmOptions {
            partition: self.partition.clone(),
            time: self.time.clone(),
            max_running: self.max_running,
            cpus_per_task: self.cpus_per_task.max(1),
            binary,
            data: std::path::absolute(data)?,
        })
    }

    /// The options other than `--cpus-per-task` as arguments, for a command run again on a node.
    pub fn extra(&self) -> Vec<String> {
        let mut v = vec![];
        let mut push = |k: &str, val: Option<String>| {
            if let Some(val) = val {
                v.push(k.to_string());
                v.push(val);
            }
        };
        push("--partition", self.partition.clone());
        push("--time", self.time.clone());
        push("--max-running", self.max_running.map(|k| k.to_string()));
        push(
            "--binary",
            self.binary
                .as_ref()
                .and_then(|b| std::path::absolute(b).ok())
                .map(|b| b.display().to_string()),
        );
        v
    }
}
