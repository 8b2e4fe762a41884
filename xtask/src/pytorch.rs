//! `cargo xtask pytorch`: the same recipe trained in PyTorch on this machine
//! (`scripts/torch_reproduce.py`), saved beside our runs so the report can set the two
//! distributions of results side by side. PyTorch is never needed to build, test or reproduce;
//! without this command's files the report simply has no PyTorch section.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use under8k_cli::data::{self, DataArgs};
use under8k_train::experiments::{
    self as ex, Manifest, TorchRun, epoch_lrs, read_torch as read, result_path,
    result_path_research,
};

/// `cargo xtask pytorch` options.
#[derive(clap::Args)]
pub struct Args {
    /// Attempts to train (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [3u8])]
    attempts: Vec<u8>,
    /// Seeds per attempt (1, 2, …, N). PyTorch's seed N is not our seed N: the generators differ.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Report directory (results go to its `pytorch/`; the report is rewritten afterwards).
    #[arg(long, default_value = "docs/report")]
    out: PathBuf,
    /// Which data, as `cargo xtask reproduce`: mnist or fashion-mnist.
    #[command(flatten)]
    data: DataArgs,
    /// PyTorch threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Epochs per run (15 for the report; fewer for a smoke test into another --out).
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    /// Retrain runs whose results exist.
    #[arg(long)]
    force: bool,
    /// The write-up's exact recipes (attempt 3 with its StepLR), as `reproduce --write-up`.
    #[arg(long)]
    write_up: bool,
}

/// Whether `python3` can import torch and torchvision.
pub fn torch_importable() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, torchvision"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `script` with `head`, the result file and `tail` as arguments, under `label`, its epoch
/// lines echoed, into `path` (through a `.partial` file that becomes `path` once `check` accepts
/// it).
fn train_torch(
    label: &str,
    script: &Path,
    head: &[std::ffi::OsString],
    tail: &[String],
    path: &Path,
    check: impl Fn(&Path) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().expect("a result path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = path.with_extension("json.partial");
    let mut child = Command::new("python3")
        .arg(script)
        .args(head)
        .arg(&partial)
        .args(tail)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting python3 {}", script.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        println!("{label}  {}", line?);
    }
    let status = child.wait()?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!("{} failed ({status})", script.display());
    }
    check(&partial)?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("moving the result to {}", path.display()))
}

/// PyTorch runs of a research report's chosen recipe (`<out>/pytorch/seed{s}.json`).
fn research(args: &Args) -> Result<()> {
    if !torch_importable() {
        bail!(
            "python3 cannot import torch and torchvision: `pip install torch torchvision` first (only this command needs them)"
        );
    }
    let script = Path::new("scripts/torch_recipe.py");
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    let choice = under8k_train::DataChoice::Known(under8k_mnist_data::Dataset::Mnist);
    let data_dir = data::data_dir(&args.data, choice)?;
    data::load(&args.data, None)?;
    for seed in 1..=args.seeds {
        let config = ex::chosen_config(&args.out, seed)?;
        let path = result_path_research(&args.out, seed);
        let epochs = config.epochs;
        let complete = |p: &Path| -> Result<()> {
            let run: TorchRun = serde_json::from_slice(&std::fs::read(p)?)
                .with_context(|| format!("{}: not a PyTorch result", p.display()))?;
            anyhow::ensure!(
                run.seed == seed && run.epochs.len() == epochs,
                "{}: not seed {seed}'s {epochs} epochs",
                p.display()
            );
            Ok(())
        };
        if !args.force && complete(&path).is_ok() {
            println!(
                "pytorch seed {seed}: {} exists (skipped; --force retrains)",
                path.display()
            );
            continue;
        }
        let cfg = tempfile::NamedTempFile::new()?;
        std::fs::write(cfg.path(), serde_json::to_vec(&config)?)?;
        println!("pytorch seed {seed}: training ({threads} threads)");
        let script_args: Vec<std::ffi::OsString> = vec![
            data_dir.clone().into(),
            cfg.path().into(),
            seed.to_string().into(),
            threads.to_string().into(),
        ];
        train_torch(
            &format!("pytorch seed {seed}"),
            script,
            &script_args,
            &[],
            &path,
            complete,
        )?;
    }
    ex::write_research(&args.out)?;
    println!("report rewritten: {}", args.out.join("README.md").display());
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    if args.out.join("goal.json").exists() {
        return research(args);
    }
    if args.attempts.iter().any(|a| !(1..=3).contains(a)) || args.seeds == 0 || args.epochs == 0 {
        bail!("attempts are 1, 2 or 3; seeds and epochs at least 1");
    }
    let dataset = args.data.choice_or(None);
    if dataset == under8k_train::DataChoice::Idx {
        bail!(
            "the PyTorch script trains the seed's net on mnist or fashion-mnist, not on --dataset idx"
        );
    }
    let manifest = Manifest::existing(&args.out)?;
    if let Some(why) = manifest
        .as_ref()
        .and_then(|m| m.other_recipe(&args.out, dataset.name(), args.write_up, None))
    {
        // Results of the other recipe could not sit beside its runs.
        bail!(why);
    }
    if let Some(m) = &manifest
        && (m.quick || m.epochs != args.epochs)
    {
        bail!(
            "{} holds {}-epoch runs{} (`{}`); PyTorch runs of {} epochs on the full training set could not sit beside them: give another --out",
            args.out.display(),
            m.epochs,
            if m.quick { " on subsets" } else { "" },
            m.command,
            args.epochs
        );
    }
    let script = Path::new("scripts/torch_reproduce.py");
    if !torch_importable() {
        bail!(
            "python3 cannot import torch and torchvision: `pip install torch torchvision` first (only this command needs them)"
        );
    }
    let threads = args.threads.unwrap_or_else(rayon::current_num_threads);
    let data_dir = data::data_dir(&args.data, dataset)?;
    // Loaded (and verified) here for the configs' data record and normalisation.
    let data = data::load(&args.data, None)?;
    let recipe = ex::Recipe {
        write_up: args.write_up,
        quick: false,
        epochs: Some(args.epochs),
        data: &data,
        arch: None,
    };
    for &attempt in &args.attempts {
        for seed in 1..=args.seeds {
            let config = ex::config(attempt, seed, &recipe)?;
            let lrs = epoch_lrs(&config);
            let path = result_path(&args.out, attempt, seed);
            if !args.force && read(&path, attempt, seed, &lrs).is_ok() {
                println!(
                    "pytorch attempt {attempt} seed {seed}: {} exists (skipped; --force retrains)",
                    path.display()
                );
                continue;
            }
            println!("pytorch attempt {attempt} seed {seed}: training ({threads} threads)");
            // The script's arguments, the result file between the first five and the rest.
            let head: Vec<std::ffi::OsString> = vec![
                data_dir.clone().into(),
                attempt.to_string().into(),
                seed.to_string().into(),
                threads.to_string().into(),
            ];
            let tail = [
                args.epochs.to_string(),
                serde_json::to_string(&config.schedule)?,
                config.mean.to_string(),
                config.std.to_string(),
            ];
            train_torch(
                &format!("pytorch attempt {attempt} seed {seed}"),
                script,
                &head,
                &tail,
                &path,
                |p| Ok(read(p, attempt, seed, &lrs).map(drop)?),
            )?;
        }
    }
    if manifest.is_some() {
        ex::write_report(&args.out)?;
        println!("report rewritten: {}", args.out.join("README.md").display());
    }
    Ok(())
}
