//! `under8k lr-find`: the learning-rate range test, or a short-run sweep of rates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use under8k_model::checkpoint::write_atomic;
use under8k_train::lr_find::{self, RangeEnd, RangeTest, SweepPoint};
use under8k_train::plots;
use under8k_train::run::{self, Start};

use crate::training::{Progress, RunArgs, config_and_data, stop_flag};

#[derive(Args)]
pub(crate) struct LrFindArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The first batch's rate.
    #[arg(long, default_value_t = 1e-5)]
    start: f64,
    /// The last batch's rate.
    #[arg(long, default_value_t = 1.0)]
    end: f64,
    /// Batches, one rate each [default: one epoch].
    #[arg(long)]
    steps: Option<usize>,
    /// Stop when the smoothed loss exceeds this many times its best.
    #[arg(long, default_value_t = 4.0)]
    diverge: f64,
    /// Instead of the range test: one short run per rate (comma-separated), each at that
    /// constant rate, compared by test accuracy (what the seed's write-up did by hand).
    #[arg(long, value_delimiter = ',', value_name = "LR,LR,...")]
    lrs: Vec<f64>,
    /// Epochs of each sweep run.
    #[arg(long, default_value_t = 2, value_name = "N")]
    epochs_per_lr: usize,
    /// Where the curve, plot and (for a sweep) the runs go.
    #[arg(long, default_value = "runs/lr-find")]
    out: PathBuf,
}

pub(crate) fn lr_find(args: LrFindArgs) -> Result<()> {
    if args.out.join("state.safetensors").exists() {
        bail!(
            "{} holds a training run; lr-find writes only into its own directory (pick another --out)",
            args.out.display()
        );
    }
    let (config, data) = config_and_data(&args.run)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    if !args.lrs.is_empty() {
        return sweep(&args, &config, &data);
    }
    let steps = args
        .steps
        .unwrap_or_else(|| config.steps_per_epoch(data.train.len()));
    let mut test = RangeTest::new(args.start, args.end, steps)?;
    test.diverge_factor = args.diverge;
    test.validate()?;
    eprintln!(
        "range test of {}: {steps} batches of {}, rate {:e} → {:e}",
        config.arch.name, config.batch_size, test.start_lr, test.end_lr
    );
    let stop = stop_flag()?;
    let curve = lr_find::range_test(&config, &data, &test, &stop, &mut |p| {
        if (p.step + 1) % 100 == 0 {
            eprintln!(
                "  step {:>5}  lr {:.2e}  smoothed loss {:.4}",
                p.step + 1,
                p.lr,
                p.smoothed
            );
        }
    })?;
    let title = format!("Range test: {}, seed {}", config.arch.name, config.seed);
    write(&args.out, "lr_find.csv", curve.to_csv().as_bytes())?;
    write(
        &args.out,
        "lr_find.png",
        &plots::range_test(&curve, &title)?,
    )?;
    match curve.end {
        RangeEnd::Completed => println!("completed all {steps} steps"),
        RangeEnd::Diverged { step, lr } => println!(
            "stopped at step {} (lr {lr:.3e}): the smoothed loss passed {}× its best",
            step + 1,
            test.diverge_factor
        ),
        RangeEnd::NonFinite { step, lr } => {
            println!(
                "stopped at step {} (lr {lr:.3e}): the loss is not finite",
                step + 1
            )
        }
        RangeEnd::Interrupted => println!("interrupted after {} steps", curve.points.len()),
    }
    let show = |v: Option<f64>| v.map_or("none (too few points)".into(), |v| format!("{v:.3e}"));
    println!(
        "suggested lr (steepest descent): {}",
        show(curve.steepest())
    );
    println!(
        "suggested lr (minimum / 10):     {}",
        show(curve.min_over_ten())
    );
    println!(
        "lowest smoothed loss at lr:      {}",
        show(curve.min_loss_lr())
    );
    println!("curve and plot in {}", args.out.display());
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    Ok(write_atomic(&dir.join(name), bytes)?)
}

fn sweep(
    args: &LrFindArgs,
    config: &under8k_train::TrainConfig,
    data: &under8k_mnist_data::Mnist,
) -> Result<()> {
    let stop = stop_flag()?;
    let mut points = Vec::new();
    for &lr in &args.lrs {
        let c = lr_find::sweep_config(config, lr, args.epochs_per_lr)?;
        let dir = args.out.join("sweep").join(format!("lr-{lr}"));
        eprintln!("lr {lr}: {} epochs into {}", c.epochs, dir.display());
        // A sweep run already there (same config) is continued or kept, not retrained.
        let outcome = run::train(&c, data, &dir, Start::Resume, &mut Progress::new(&c), &stop)?;
        if outcome.interrupted {
            bail!("interrupted; the same command continues the sweep");
        }
        let p = SweepPoint::of(lr, &outcome.history);
        println!(
            "lr {lr}: test accuracy {:.2}% after {} epochs (best {:.2}%)",
            p.last_acc, c.epochs, p.max_acc
        );
        points.push(p);
    }
    let best = points
        .iter()
        .max_by(|a, b| a.last_acc.total_cmp(&b.last_acc))
        .expect("at least one rate");
    let title = format!(
        "Sweep: {}, {} epochs per rate, seed {}",
        config.arch.name, args.epochs_per_lr, config.seed
    );
    write(
        &args.out,
        "sweep.csv",
        lr_find::sweep_csv(&points).as_bytes(),
    )?;
    write(&args.out, "sweep.png", &plots::sweep(&points, &title)?)?;
    println!(
        "best rate by last-epoch test accuracy: {} ({:.2}%); sweep.csv and sweep.png in {}",
        best.lr,
        best.last_acc,
        args.out.display()
    );
    Ok(())
}
