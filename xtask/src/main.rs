//! Repository automation; run as `cargo xtask <task>` (an alias for a release build of this
//! crate, see `.cargo/config.toml`).
//!
//! The experiments are `under8k`'s own commands (`under8k-cli`), run here with this
//! repository's defaults (`docs/report`, and `cargo xtask …` recorded in the reports):
//! - `reproduce`: fetch MNIST, train the three attempts, verify committed runs, write
//!   `docs/report/`;
//! - `report`: rewrite a report from its saved runs alone (no training);
//! - `research`: a research goal's report (`docs/under8k-99.5/`, `docs/under6k/`).
//!
//! The chores:
//! - `pytorch`: the same recipe trained in PyTorch (when python3 can import torch), saved
//!   under the report's `pytorch/` for its side-by-side section;
//! - `tidy`: the crate boundaries (light builds' dependencies and tests, packaging);
//! - `bench`: training and evaluation throughput of the fast engine, the reference path and
//!   (when a Python with torch is importable) PyTorch, side by side.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: printing is its job

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use under8k_cli::experiments::{self as cli, Front};

mod bench;
mod circles;
mod cores;
mod endtoend;
mod peak;
mod pytorch;
mod readme;
mod steal;
mod tidy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "under8k repository automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// `under8k reproduce` into docs/report: train the attempts (15 epochs, seed 1 by default),
    /// verify committed runs bit for bit, write the report.
    Reproduce(cli::ReproduceArgs),
    /// Rewrite a report from the saved runs (byte-identical to what `reproduce` wrote).
    Report {
        /// Report directory.
        #[arg(long, default_value = "docs/report")]
        out: std::path::PathBuf,
    },
    /// Throughput of the fast engine vs the reference path vs PyTorch, side by side.
    Bench(bench::Args),
    /// Train the same recipe in PyTorch (needs python3 with torch) and add it to the report.
    Pytorch(pytorch::Args),
    /// Check the crate boundaries: light builds' dependencies and tests, packaging.
    Tidy(tidy::Args),
    /// `under8k research`: a research goal's report (candidates on a validation split, the
    /// chosen one over N seeds on the test set, committed runs verified).
    Research(cli::ResearchArgs),
}

/// After a report the README quotes was written: its tables again.
fn refresh_readme(out: &Path) -> anyhow::Result<()> {
    if readme::quotes(out) && readme::update()? {
        println!("README.md: results tables rewritten from docs/");
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Reproduce(args) => cli::reproduce(&args, &Front::XTASK).and_then(|()| {
            refresh_readme(
                args.out
                    .as_deref()
                    .unwrap_or(Path::new(Front::XTASK.report)),
            )
        }),
        Task::Report { out } => cli::report_in(&out).and_then(|()| refresh_readme(&out)),
        Task::Bench(args) => bench::run(&args),
        Task::Pytorch(args) => pytorch::run(&args),
        Task::Tidy(args) => tidy::run(&args),
        Task::Research(args) => {
            cli::research(&args, &Front::XTASK).and_then(|()| refresh_readme(&args.out))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", under8k_cli::message(&e));
            ExitCode::FAILURE
        }
    }
}
