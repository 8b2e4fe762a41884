//! Repository automation; run as `cargo xtask <task>` (an alias for a release build of this
//! crate, see `.cargo/config.toml`).
//!
//! - `reproduce`: fetch MNIST, train the three attempts (`--write-up`: the write-up's exact
//!   recipes), write `docs/report/`;
//! - `report`: rewrite `docs/report/` from the saved histories alone (no training);
//! - `pytorch`: the same recipe trained in PyTorch (when python3 can import torch), saved
//!   under `docs/report/pytorch/` for the report's side-by-side section;
//! - `research`: a research goal's report (`docs/under8k-99.5/`, `docs/under6k/`): candidates
//!   chosen on a validation split, the chosen one over N seeds on the test set;
//! - `tidy`: the crate boundaries (light builds' dependencies and tests, packaging);
//! - `bench`: training and evaluation throughput of the fast engine, the reference path and
//!   (when a Python with torch is importable) PyTorch, side by side.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: printing is its job

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod extras;
mod peak;
mod plot;
mod pytorch;
mod report;
mod reproduce;
mod research;
mod runs;
mod tidy;
mod verify;

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
    /// Train the attempts (15 epochs, seed 1 by default) and write the report.
    Reproduce(reproduce::Args),
    /// Rewrite the report from the saved histories (byte-identical to what `reproduce` wrote).
    Report {
        /// Report directory.
        #[arg(long, default_value = "docs/report")]
        out: PathBuf,
    },
    /// Throughput of the fast engine vs the reference path vs PyTorch, side by side.
    Bench(bench::Args),
    /// Train the same recipe in PyTorch (needs python3 with torch) and add it to the report.
    Pytorch(pytorch::Args),
    /// Check the crate boundaries: light builds' dependencies and tests, packaging.
    Tidy(tidy::Args),
    /// A research goal's report: train its candidate recipes on a validation split, choose, train
    /// the chosen one with N seeds and test it (retraining committed runs to verify them).
    Research(research::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Reproduce(args) => reproduce::run(&args),
        Task::Report { out } => report::write(&out),
        Task::Bench(args) => bench::run(&args),
        Task::Pytorch(args) => pytorch::run(&args),
        Task::Tidy(args) => tidy::run(&args),
        Task::Research(args) => research::run(&args),
    }
}
