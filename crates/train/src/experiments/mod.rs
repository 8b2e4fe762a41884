//! Experiments over many runs (feature `experiments`): reproducing the report's attempts and
//! verifying committed runs bit for bit ([`reproduce()`], [`compare`]), a research goal's search
//! ([`research()`]), the reports written from saved runs alone ([`write_report`]), and sweeps of
//! independent runs that any engine can run, one job per index ([`sweep`]).
//!
//! Nothing here prints: progress goes to a [`Log`], a function of one line.
//!
//! ```no_run
//! use under8k_train::experiments::{Mode, Reproduce, reproduce};
//! use under8k_train::{DataChoice, prepare};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let choice = DataChoice::Known(under8k_mnist_data::Dataset::Mnist);
//! let data = prepare(choice, std::path::Path::new("data/mnist"), &mut ())?;
//! let opts = Reproduce {
//!     attempts: vec![1, 2, 3],
//!     seeds: 1,
//!     epochs: None,
//!     out: "report".into(),
//!     quick: true,
//!     mode: Mode::Verify { accept: false },
//!     arch: None,
//!     extras: under8k_train::experiments::Extras::Leave,
//!     write_up: false,
//!     program: "under8k reproduce".into(),
//!     default_out: "report".into(),
//!     data_option: None,
//! };
//! reproduce(&opts, choice, &data, &|line| eprintln!("{line}"))?;
//! # Ok(())
//! # }
//! ```

pub mod anchors;
mod error;
mod extras;
mod plot;
pub mod readme;
mod report;
mod reproduce;
mod research;
mod runs;
pub mod sweep;
mod verify;

pub use error::{Context, ExperimentError, Result};
pub use report::write as write_report;
pub use reproduce::{
    Extras, Job, Mode, Recipe, Reproduce, RunState, config, reproduce, run_job, run_state,
};
pub use research::{
    Goal, Progress, Research, Rule, SlurmStages, Standing, choose, chosen_config, research,
    standing, write as write_research,
};
pub use runs::{
    Manifest, Run, TorchRun, Verified, cpu_description, epoch_lrs, last3, load_run_in, mean_sd,
    min_last3, read as read_torch, result_path, result_path_research,
};
pub use verify::{Outcome, Verdict, compare, today};

/// Where progress lines go (a binary prints them; a test may collect them).
pub type Log<'a> = &'a (dyn Fn(&str) + Sync);
