//! `under8k train`, `eval` and `predict`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use under8k_mnist_data::Normalization;
use under8k_model::{ArchSpec, Net};
use under8k_sched::Schedule;
use under8k_train::run::{self, BatchStats, Observer};
use under8k_train::{EpochRecord, TrainConfig};

use under8k_train::Prepared;

use crate::data::{self, DataArgs};
use crate::read_gray;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ScheduleKind {
    /// The same rate throughout.
    Constant,
    /// StepLR(1) from --lr whose first step loses 0.1/epochs, decaying geometrically after
    /// (the write-up's attempt 3: from 0.07 over 15 epochs it ends near 0.017).
    #[value(alias = "linear-decrement")]
    GeometricDecay,
    /// OneCycleLR with PyTorch's defaults, max rate = --lr.
    OneCycle,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Run directory [default: runs/attemptN, N the attempt].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the checkpoint in the run directory.
    #[arg(long)]
    resume: bool,
}

/// What a run is: an attempt or config file, with overrides, and its data (shared by `train`
/// and `lr-find`).
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Which attempt (1: lr 0.01; 2: + rotation ±7°; 3: + one-cycle lr up to 0.1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3), default_value_t = 3)]
    attempt: u8,
    /// The write-up's exact recipe for the attempt (for 3: StepLR from 0.07 instead of one-cycle).
    #[arg(long, conflicts_with = "config")]
    write_up: bool,
    /// A config file instead of an attempt: a full one (as a run's config.json), or a few lines
    /// that `extends` a preset (`attempt3`) or another file and give what differs.
    #[arg(long, value_name = "FILE", conflicts_with = "attempt")]
    config: Option<PathBuf>,
    /// Number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// The seed all randomness flows from.
    #[arg(long)]
    seed: Option<u64>,
    /// Initial (or, for one-cycle, maximum) learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate schedule (default: the attempt's).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleKind>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Hold the last N training images out as a validation split, train on the rest and
    /// evaluate on them instead of the test set (recorded in config.json; the test set is never
    /// read). Choose recipes this way, then train the chosen one without it.
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Run the net on candle's own ops (the reference: 31–68× slower, docs/PERFORMANCE.md)
    /// instead of the fast CPU engine.
    #[arg(long)]
    reference_kernels: bool,
    /// An architecture spec (JSON; see docs/ARCH_SPEC.md) instead of the seed's net; the run
    /// records it in its config.json, where `eval` and `predict` find it.
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Set any config field, before the options above: `--set label_smoothing=0.1`,
    /// `--set ema.decay=0.999`, `--set optimizer.kind=adam` (docs/CONFIG.md lists the fields).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    pub(crate) data: DataArgs,
}

/// A config file: a full config, or a recipe that `extends` a preset or another file.
fn read_config(path: &Path) -> Result<TrainConfig> {
    Ok(under8k_train::recipe::load(path, &[])?)
}

/// The config: `file`'s (as read) or the attempt's preset, with the command line's overrides and
/// the data actually loaded recorded in it. A preset takes the data's normalisation.
fn build_config(
    args: &RunArgs,
    file: Option<TrainConfig>,
    loaded: &Prepared,
) -> Result<TrainConfig> {
    let preset = file.is_none();
    let mut c = match file {
        Some(c) => c,
        None if args.write_up => TrainConfig::write_up(args.attempt)?,
        None => TrainConfig::attempt(args.attempt)?,
    };
    if !args.set.is_empty() {
        let mut v = serde_json::to_value(&c)?;
        under8k_train::recipe::apply(&mut v, &args.set)?;
        c = under8k_train::recipe::resolve(v, Path::new("."))?;
    }
    c.data = loaded.record.clone();
    if preset {
        c.mean = loaded.normalization.mean;
        c.std = loaded.normalization.std;
    }
    if let Some(path) = &args.arch {
        c.arch = ArchSpec::from_file(path)?;
    }
    if let Some(e) = args.epochs {
        c.epochs = e;
    }
    if let Some(s) = args.seed {
        c.seed = s;
    }
    if let Some(b) = args.batch_size {
        c.batch_size = b;
    }
    c.train_limit = args.train_limit.or(c.train_limit);
    c.test_limit = args.test_limit.or(c.test_limit);
    c.validation = args.validation.or(c.validation);
    if args.reference_kernels {
        c.kernels = under8k_model::Kernels::Reference;
    }
    let kind = args.schedule.unwrap_or(match c.schedule {
        Schedule::OneCycle { .. } => ScheduleKind::OneCycle,
        Schedule::Step { step_size: 1, .. } => ScheduleKind::GeometricDecay,
        _ => ScheduleKind::Constant,
    });
    if args.lr.is_some() || args.schedule.is_some() {
        let lr = args.lr.unwrap_or_else(|| c.schedule.lr(0, 0));
        c.schedule = match kind {
            ScheduleKind::Constant => Schedule::constant(lr)?,
            ScheduleKind::GeometricDecay => Schedule::geometric_from_decrement(lr, 0.1, c.epochs)?,
            // Its length (total_steps) is set to the run's by `fit_schedule` below.
            ScheduleKind::OneCycle => Schedule::one_cycle(lr, 2)?,
        };
    }
    let resized = args.epochs.is_some()
        || args.batch_size.is_some()
        || args.train_limit.is_some()
        || args.validation.is_some();
    if resized || args.schedule.is_some() || args.lr.is_some() {
        // A one-cycle schedule spans the run; a config file's own total_steps is kept otherwise.
        c.fit_schedule(loaded.data.train.len());
    }
    c.validate()?;
    Ok(c)
}

/// Progress: a bar per epoch on a terminal, one line per epoch otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    /// What the evaluation split is called: `test`, or `val` for a validation split.
    eval: &'static str,
}

impl Progress {
    pub(crate) fn new(config: &TrainConfig) -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            eval: if config.validation.is_some() {
                "val"
            } else {
                "test"
            },
        }
    }
}

impl Observer for Progress {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if self.terminal {
            let bar = ProgressBar::new(batches as u64).with_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch(&mut self, s: &BatchStats) {
        if let Some(b) = &self.bar {
            b.set_position(s.batch as u64);
            b.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                s.loss, s.running_acc, s.img_per_s
            ));
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let both = match (r.raw_test_acc, r.ema_test_acc) {
            (Some(raw), Some(avg)) => format!(" [raw {raw:.2}%, averaged {avg:.2}%]"),
            _ => String::new(),
        };
        eprintln!(
            "epoch {:>2}  lr {:.6}  train loss {:.4} acc {:.2}%  {} loss {:.4} acc {:.2}% ({}/{}){both}  {:.1}s  {:.0} img/s",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            self.eval,
            r.test_loss,
            r.test_acc,
            r.test_correct,
            r.test_total,
            r.train_seconds + r.eval_seconds,
            r.train_img_per_s
        );
    }
}

/// The run's config and the data it trains on, checked against each other before anything is
/// written.
pub(crate) fn config_and_data(args: &RunArgs) -> Result<(TrainConfig, under8k_mnist_data::Mnist)> {
    let file = args.config.as_deref().map(read_config).transpose()?;
    if let Some(path) = &args.arch {
        // A spec that does not parse is refused before any data is fetched.
        ArchSpec::from_file(path)?;
    }
    let loaded = data::load(&args.data, file.as_ref().map(|c| &c.data))?;
    let config = build_config(args, file, &loaded)?;
    // Before anything is written: the net must fit the data, and the splits must exist.
    run::check_data(&config, &loaded.data)?;
    config.check_splits(&loaded.data)?;
    Ok((config, loaded.data))
}

/// A flag Ctrl-C sets (the loops stop at the next batch); a second Ctrl-C quits at once.
pub(crate) fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping at the next batch (again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

pub(crate) fn train(args: TrainArgs) -> Result<()> {
    let (config, mnist) = config_and_data(&args.run)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/attempt{}", args.run.attempt)));
    let stop = stop_flag()?;
    eprintln!(
        "training {} for {} epochs into {}",
        config.arch.name,
        config.epochs,
        out.display()
    );
    let mut progress = Progress::new(&config);
    let start = match args.resume {
        true => run::Start::Resume,
        false => run::Start::Fresh,
    };
    let outcome = run::train(&config, &mnist, &out, start, &mut progress, &stop)?;
    if outcome.interrupted {
        eprintln!(
            "stopped after {} completed epochs; `--resume` with the same options continues from there",
            outcome.history.epochs.len()
        );
        std::process::exit(130);
    }
    let h = &outcome.history;
    println!(
        "max {} accuracy {:.2}% over {} epochs; files in {}",
        if config.validation.is_some() {
            "validation"
        } else {
            "test"
        },
        h.max_test_acc().unwrap_or(0.0),
        h.epochs.len(),
        out.display()
    );
    Ok(())
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// A model checkpoint (`model.safetensors` of a run, or a PyTorch `state_dict` file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The architecture [default: the run's, from the config.json beside the checkpoint, else
    /// the seed's].
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Also write confusion.png, misclassified.png and misclassified.csv into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// How many misclassified images misclassified.png shows (the first, in test-set order;
    /// misclassified.csv lists them all).
    #[arg(long, value_name = "N", default_value_t = 48, requires = "out",
          value_parser = clap::value_parser!(u16).range(1..=400))]
    show: u16,
    #[command(flatten)]
    data: DataArgs,
}

/// The config of the run a checkpoint belongs to: `config.json` beside it, when that is one.
fn run_config(checkpoint: &Path) -> Option<TrainConfig> {
    let path = checkpoint.parent()?.join("config.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The checkpoint's net: `--arch`, else its run's, else the seed's.
fn load_net(
    checkpoint_path: &Path,
    arch: Option<&PathBuf>,
    run: Option<&TrainConfig>,
) -> Result<Net> {
    let spec = match (arch, run) {
        (Some(p), _) => ArchSpec::from_file(p)?,
        (None, Some(c)) => c.arch.clone(),
        (None, None) => ArchSpec::seed(),
    };
    Ok(run::load_net(&spec, checkpoint_path)?)
}

pub(crate) fn eval(args: EvalArgs) -> Result<()> {
    let run_cfg = run_config(&args.checkpoint);
    let net = load_net(&args.checkpoint, args.arch.as_ref(), run_cfg.as_ref())?;
    let loaded = data::load(&args.data, run_cfg.as_ref().map(|c| &c.data))?;
    run::check_fit(net.spec(), &loaded.data)?;
    let norm = match &run_cfg {
        Some(c) => {
            if c.data.md5 != loaded.record.md5 {
                eprintln!(
                    "note: the checkpoint was trained on {}, evaluated here on {} (other files)",
                    c.data.dataset, loaded.record.dataset
                );
            }
            Normalization::new(c.mean, c.std)?
        }
        None => loaded.normalization,
    };
    let e = run::evaluate(&net, &loaded.data.test, norm, 1000, &Device::Cpu)?;
    if let Some(dir) = &args.out {
        let name = run_cfg
            .as_ref()
            .map_or("checkpoint", |c| c.arch.name.as_str());
        let p = under8k_train::plots::eval_pictures(&e, &loaded.data.test, args.show.into(), name)?;
        p.save(dir)?;
        eprintln!(
            "wrote confusion.png, misclassified.png ({} images) and misclassified.csv ({} errors) in {}",
            p.tiles,
            e.total - e.correct,
            dir.display()
        );
    }
    println!(
        "test loss {:.4}, accuracy {:.2}% ({}/{})",
        e.loss,
        e.accuracy(),
        e.correct,
        e.total
    );
    println!("\nper class:");
    for (d, row) in e.confusion.iter().enumerate() {
        let n: usize = row.iter().sum();
        println!(
            "  {d}: {:.2}% ({}/{n})",
            100.0 * row[d] as f64 / n.max(1) as f64,
            row[d]
        );
    }
    println!("\nconfusion matrix (rows: true digit, columns: predicted):");
    println!(
        "      {}",
        (0..e.confusion.len())
            .map(|d| format!("{d:>5}"))
            .collect::<String>()
    );
    for (d, row) in e.confusion.iter().enumerate() {
        println!(
            "  {d}:  {}",
            row.iter().map(|v| format!("{v:>5}")).collect::<String>()
        );
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct PredictArgs {
    /// A model checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The architecture [default: the run's, from the config.json beside the checkpoint, else
    /// the seed's].
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Images (PNG or JPEG, any size or colour).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// For a checkpoint without its run's config.json: the data it was trained on, whose
    /// normalisation to use (MNIST's constants otherwise; for other data it is computed from
    /// the training split, which is loaded for that).
    #[command(flatten)]
    data: DataArgs,
}

/// An image as MNIST expects it: grayscale, resized to `rows × cols` (triangle filter), light
/// digit on a dark background — images whose mean brightness is above one half are inverted
/// first.
pub(crate) fn to_mnist_pixels(path: &Path, rows: usize, cols: usize) -> Result<Vec<u8>> {
    let img = read_gray(path)?;
    let small = image::imageops::resize(
        &img,
        cols as u32,
        rows as u32,
        image::imageops::FilterType::Triangle,
    );
    let mut px = small.into_raw();
    let mean = px.iter().map(|&p| p as f64).sum::<f64>() / px.len() as f64;
    if mean > 127.5 {
        px.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(px)
}

pub(crate) fn predict(args: PredictArgs) -> Result<()> {
    let run_cfg = run_config(&args.checkpoint);
    let net = load_net(&args.checkpoint, args.arch.as_ref(), run_cfg.as_ref())?;
    let [c, rows, cols] = net.spec().input;
    if c != 1 {
        bail!("predict needs a net with one input channel; this one takes {c}");
    }
    // The run's normalisation (computed from its training data for other datasets than MNIST).
    let norm = match (&run_cfg, args.data.dataset) {
        (Some(cfg), _) => Normalization::new(cfg.mean, cfg.std)?,
        (None, Some(_)) => data::load(&args.data, None)?.normalization,
        (None, None) => Normalization::MNIST,
    };
    let table = norm.table();
    for path in &args.images {
        let px: Vec<f32> = to_mnist_pixels(path, rows, cols)?
            .iter()
            .map(|&p| table[p as usize])
            .collect();
        let x = Tensor::from_vec(px, (1, 1, rows, cols), &Device::Cpu)?;
        let probs: Vec<f32> = net.infer(&x)?.exp()?.flatten_all()?.to_vec1()?;
        let (digit, p) =
            probs.iter().enumerate().fold(
                (0, 0.0f32),
                |best, (d, &p)| if p > best.1 { (d, p) } else { best },
            );
        let all: Vec<String> = probs
            .iter()
            .enumerate()
            .map(|(d, p)| format!("{d}:{p:.3}"))
            .collect();
        println!(
            "{}: {digit} ({:.1}%)  [{}]",
            path.display(),
            100.0 * p,
            all.join(" ")
        );
    }
    Ok(())
}
