//! Training for under8k: momentum SGD with PyTorch's semantics ([`sgd`]), a run described by one
//! serialisable [`TrainConfig`] (the three attempts are [`TrainConfig::attempt`], the write-up's exact recipes
//! [`TrainConfig::write_up`]), and the loop
//! ([`run::train`]) — deterministic for a seed, checkpointed atomically after every epoch,
//! resumable bit for bit, stoppable at any batch boundary.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use under8k_mnist_data::Mnist;
//! use under8k_train::{Start, TrainConfig, run};
//!
//! let mnist = Mnist::load("data/mnist".as_ref())?;
//! let mut config = TrainConfig::attempt(3)?;
//! config.epochs = 1;
//! config.fit_schedule(60_000); // attempt 3's one-cycle schedule now spans one epoch of MNIST
//! let outcome = run::train(&config, &mnist, "runs/demo".as_ref(), Start::Fresh, &mut (), &AtomicBool::new(false))?;
//! println!("test accuracy {:.2} %", outcome.history.epochs[0].test_acc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod data;
pub mod history;
pub mod run;
pub mod sgd;

pub use config::{ConfigError, DataRecord, TrainConfig};
pub use data::{DataChoice, Prepared, prepare};
pub use history::{EpochRecord, History};
pub use run::{Observer, Outcome, Start, TrainError, train};
