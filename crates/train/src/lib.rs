//! Training for under8k: momentum SGD with PyTorch's semantics ([`sgd`]), a run described by one
//! serialisable [`TrainConfig`] (the three attempts are [`TrainConfig::attempt`], the write-up's exact recipes
//! [`TrainConfig::write_up`]), and the loop
//! ([`run::train`]) — deterministic for a seed, checkpointed atomically after every epoch,
//! resumable bit for bit, stoppable at any batch boundary.
//!
#![doc = include_str!("../README.md")]

pub mod adam;
pub mod config;
pub mod data;
pub mod ema;
#[cfg(feature = "experiments")]
pub mod experiments;
pub mod history;
pub mod lr_find;
mod onepass;
mod optim;
mod overlap;
#[cfg(feature = "plots")]
pub mod plots;
pub mod recipe;
pub mod run;
pub mod sgd;

pub use config::{AffineConfig, ConfigError, DataRecord, ErasingConfig, Optimizer, TrainConfig};
pub use data::{DataChoice, Prepared, prepare};
pub use ema::{Ema, EmaConfig, EmaModel};
pub use history::{EpochRecord, History};
pub use optim::OptimizerError;
pub use run::{Observer, Outcome, Start, TrainError, train};
