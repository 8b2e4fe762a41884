//! `under8k sweep`: plan a sweep, run its jobs (one by index, all here, on Slurm, or with GNU
//! parallel), and read where it stands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use under8k_train::DataChoice;
use under8k_train::experiments::sweep::{
    self, Busy, JobOptions, JobResult, JobState, Manifest, Recipe,
};
use under8k_train::experiments::{Mode, Outcome};
use under8k_train::recipe;

use crate::data::{self, DataArgs};
use crate::experiments::{SlurmArgs, log, threads_or_all};
use crate::training::stop_flag;

/// `sweep` options.
#[derive(Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: SweepCommand,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Write the manifest (`DIR/sweep.jsonl`) of recipes × seeds; a manifest already there is
    /// never replaced by another.
    Plan(PlanArgs),
    /// Run one job: `--index`, else `$SLURM_ARRAY_TASK_ID`, else `$JOB_COMPLETION_INDEX`. A
    /// complete run is kept, a partial one resumes; a job another process holds is waited for.
    Run(RunArgs),
    /// Run every job on this machine, `--jobs` at a time.
    RunAll(RunAllArgs),
    /// Count jobs done, running, partial, failed and missing; name the failed ones.
    Status {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Write `report.md` and `report.csv`: mean ± sd over seeds per recipe.
    Report {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Print the job indices, one a line (for GNU parallel).
    List {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Write a Slurm job-array script (`DIR/sweep.sbatch`): one run per task; `--submit`
    /// hands it to sbatch.
    Slurm(SlurmCommandArgs),
    /// Write a Kubernetes Indexed Job (`DIR/sweep-job.yaml`): one pod per job, the sweep and the
    /// data on persistent volumes.
    K8s(K8sArgs),
}

#[derive(Args)]
struct K8sArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// A container image with `under8k` on its PATH.
    #[arg(long)]
    image: String,
    /// Pods at once.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// CPUs per pod (each run's threads).
    #[arg(long, default_value_t = 1)]
    cpus: usize,
    /// The persistent volume claim holding the sweep directory (mounted at /sweep).
    #[arg(long, value_name = "CLAIM")]
    sweep_claim: String,
    /// The persistent volume claim holding the data (mounted read-only at /data).
    #[arg(long, value_name = "CLAIM")]
    data_claim: String,
}

#[derive(Args)]
struct PlanArgs {
    /// The sweep directory.
    #[arg(value_name = "DIR")]
    sweep: PathBuf,
    /// A recipe: a config file (full, or one that says `"extends": "attempt3"` and what
    /// differs); named after the file. Repeatable.
    #[arg(long, value_name = "FILE")]
    recipe: Vec<PathBuf>,
    /// A preset as a recipe (named `attemptN`). Repeatable.
    #[arg(long, value_name = "N")]
    attempt: Vec<u8>,
    /// Seeds 1, 2, …, N of every recipe.
    #[arg(long, default_value_t = 1, conflicts_with = "seed_list")]
    seeds: u64,
    /// These seeds instead (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "S,S,…")]
    seed_list: Vec<u64>,
    /// An override for every recipe: `KEY=VALUE` (e.g. `epochs=1`, `train_limit=2000`,
    /// `schedule.max_lr=0.05`); the value is JSON, else a string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// The job's index.
    #[arg(long)]
    index: Option<usize>,
    /// Threads for the run [default: all] (the bits do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
    /// When another process holds the job, say so and exit with status 75 instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Data directory (default: the dataset's usual one).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct RunAllArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads per run [default: all / jobs].
    #[arg(long)]
    threads: Option<usize>,
    /// Data directory (default: the dataset's usual one).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct SlurmCommandArgs {
    /// The sweep directory.
    dir: PathBuf,
    #[command(flatten)]
    slurm: SlurmArgs,
    /// Data directory the nodes read (default: the dataset's usual one).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Submit the script with sbatch.
    #[arg(long)]
    submit: bool,
}

/// `sweep`.
pub fn sweep(args: SweepArgs) -> Result<()> {
    match args.command {
        SweepCommand::Plan(a) => plan(&a),
        SweepCommand::Run(a) => run(&a),
        SweepCommand::RunAll(a) => run_all(&a),
        SweepCommand::Status { dir } => status(&dir),
        SweepCommand::Report { dir } => report(&dir),
        SweepCommand::List { dir } => {
            for j in &Manifest::read(&dir)?.jobs {
                println!("{}", j.index);
            }
            Ok(())
        }
        SweepCommand::Slurm(a) => slurm(&a),
        SweepCommand::K8s(a) => k8s(&a),
    }
}

fn plan(args: &PlanArgs) -> Result<()> {
    let mut recipes = vec![];
    for &n in &args.attempt {
        let name = format!("attempt{n}");
        let config = recipe::preset_with(&name, &args.overrides)?;
        recipes.push(Recipe { name, config });
    }
    for path in &args.recipe {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: a recipe file needs a name", path.display()))?
            .to_string();
        let config = recipe::load(path, &args.overrides)?;
        recipes.push(Recipe { name, config });
    }
    if recipes.is_empty() {
        bail!("no recipes: give --recipe FILE or --attempt N (each repeatable)");
    }
    let seeds: Vec<u64> = match args.seed_list.is_empty() {
        true => (1..=args.seeds).collect(),
        false => args.seed_list.clone(),
    };
    let prepared = data::load(&args.data, None)?;
    let m = sweep::plan(&recipes, &seeds, &prepared)?;
    m.write_new(&args.sweep)?;
    println!(
        "{}: {} jobs ({} recipes × {} seeds), indices 0–{}",
        args.sweep.join(sweep::MANIFEST).display(),
        m.jobs.len(),
        recipes.len(),
        seeds.len(),
        m.jobs.len() - 1
    );
    Ok(())
}

/// The machine's name, for errors that happen on a cluster's node.
fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".into())
}

/// The sweep's data, from `--data` or the dataset's usual directory; a directory that is not
/// there is named with the node.
fn sweep_data(m: &Manifest, dir: Option<&Path>) -> Result<under8k_train::Prepared> {
    let choice = DataChoice::of_record(&m.header.data).with_context(|| {
        format!(
            "the sweep trains on `{}`, unknown here",
            m.header.data.dataset
        )
    })?;
    let args = DataArgs {
        dataset: Some(choice),
        dir: dir.map(Path::to_path_buf),
    };
    let path = data::data_dir(&args, choice)?;
    if !path.is_dir() {
        bail!(
            "on node {}: the data directory {} does not exist",
            node(),
            path.display()
        );
    }
    data::load(&args, None)
}

/// The job index: `--index`, else the array's.
fn job_index(index: Option<usize>) -> Result<usize> {
    if let Some(i) = index {
        return Ok(i);
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .with_context(|| format!("${var} is `{v}`, not a job index"));
        }
    }
    bail!("which job? give --index I (under Slurm or Kubernetes the array's index is used)")
}

fn run(args: &RunArgs) -> Result<()> {
    let m = Manifest::read(&args.dir)?;
    let index = job_index(args.index)?;
    m.job(index)?;
    let data = sweep_data(&m, args.data.as_deref())?;
    let stop = stop_flag()?;
    let opts = JobOptions {
        mode: Mode::SkipExisting,
        busy: if args.no_wait { Busy::Skip } else { Busy::Wait },
        threads: threads_or_all(args.threads),
    };
    match sweep::run_index(&args.dir, &m, index, &data, opts, &stop, &|l| log(l))? {
        JobResult::Done(_) => Ok(()),
        JobResult::Busy => std::process::exit(75),
        JobResult::Interrupted => bail!(
            "job {index}: interrupted; its last complete epoch is saved and running it again resumes"
        ),
    }
}

fn run_all(args: &RunAllArgs) -> Result<()> {
    let m = Manifest::read(&args.dir)?;
    let data = sweep_data(&m, args.data.as_deref())?;
    let stop = stop_flag()?;
    let jobs = args.jobs.max(1);
    let opts = JobOptions {
        mode: Mode::SkipExisting,
        busy: Busy::Skip,
        threads: args
            .threads
            .unwrap_or_else(|| (rayon::current_num_threads() / jobs).max(1)),
    };
    let start = std::time::Instant::now();
    let sum = sweep::run_all(&args.dir, &m, &data, jobs, opts, &stop, &|l| log(l));
    let trained = sum
        .done
        .iter()
        .filter(|(_, o)| *o != Outcome::Skipped)
        .count();
    println!(
        "{} of {} jobs done ({trained} run now, {} kept) in {:.1} s, {jobs} at a time with {} threads each",
        sum.done.len(),
        m.jobs.len(),
        sum.done.len() - trained,
        start.elapsed().as_secs_f64(),
        opts.threads
    );
    if !sum.busy.is_empty() {
        println!("busy in another process: jobs {:?}", sum.busy);
    }
    if !sum.failed.is_empty() || !sum.interrupted.is_empty() {
        let failed: Vec<usize> = sum.failed.iter().map(|(i, _)| *i).collect();
        bail!(
            "failed: jobs {failed:?}; interrupted: {:?} (`under8k sweep status {}` names them; running again resumes)",
            sum.interrupted,
            args.dir.display()
        );
    }
    Ok(())
}

fn status(dir: &Path) -> Result<()> {
    let m = Manifest::read(dir)?;
    let states = sweep::states(dir, &m);
    let c = sweep::Counts::of(&states);
    println!(
        "{} jobs: {} done, {} running, {} partial, {} failed, {} missing",
        m.jobs.len(),
        c.done,
        c.running,
        c.partial,
        c.failed.len(),
        c.missing
    );
    for (i, why) in &c.failed {
        println!("failed: job {i} ({}): {why}", m.jobs[*i].label());
    }
    for (i, s) in states.iter().enumerate() {
        if matches!(s, JobState::Partial | JobState::Running) {
            println!("{:?}: job {i} ({})", s, m.jobs[i].label());
        }
    }
    Ok(())
}

fn report(dir: &Path) -> Result<()> {
    let m = Manifest::read(dir)?;
    let rows = sweep::write_report(dir, &m)?;
    print!("{}", sweep::markdown(&rows));
    println!(
        "written to {} and {}",
        dir.join("report.md").display(),
        dir.join("report.csv").display()
    );
    Ok(())
}

fn slurm(args: &SlurmCommandArgs) -> Result<()> {
    let m = Manifest::read(&args.dir)?;
    let choice = DataChoice::of_record(&m.header.data)
        .with_context(|| format!("the sweep trains on `{}`", m.header.data.dataset))?;
    let data_dir = data::data_dir(
        &DataArgs {
            dataset: Some(choice),
            dir: args.data.clone(),
        },
        choice,
    )?;
    let options = args.slurm.options(&data_dir)?;
    let dir = std::path::absolute(&args.dir)?;
    let script = dir.join("sweep.sbatch");
    sweep::slurm::write_script(
        &script,
        &sweep::slurm::array_script(&dir, m.jobs.len(), &options)?,
    )?;
    println!("{}", script.display());
    if args.submit {
        let id = sweep::slurm::submit(&script, None)?;
        println!("submitted job array {id} ({} tasks)", m.jobs.len());
    }
    Ok(())
}

fn k8s(args: &K8sArgs) -> Result<()> {
    let m = Manifest::read(&args.dir)?;
    let yaml = sweep::k8s::indexed_job(
        "under8k-sweep",
        m.jobs.len(),
        &sweep::k8s::K8sOptions {
            image: args.image.clone(),
            parallelism: args.parallelism,
            cpus: args.cpus,
            sweep_claim: args.sweep_claim.clone(),
            data_claim: args.data_claim.clone(),
        },
    );
    let path = args.dir.join("sweep-job.yaml");
    sweep::slurm::write_generated(&path, &yaml)?;
    println!("{}", path.display());
    Ok(())
}
