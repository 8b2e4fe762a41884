//! Small convnets from one description.
//!
//! An [`ArchSpec`] (plain data: input shape and named blocks of layers, readable from JSON) is
//! the single source of truth: [`Summary`] computes per-layer shapes, parameters and receptive
//! fields from it, [`Net`] builds the candle network from it, and [`checkpoint`] derives the
//! PyTorch `state_dict` names, shapes and dtypes from it. The seed's 7,684-parameter net is
//! [`ArchSpec::seed`].
//!
//! [`Net`] runs on the fast CPU [`engine`] by default (the whole layer stack as one candle custom
//! op with hand-written kernels) or, with [`Kernels::Reference`], on candle's own ops. Every
//! gradient of both paths is finite-difference-tested; max and average pooling on the reference
//! path are custom ops ([`pool`]) because candle 0.11.1's own backward passes for them are wrong.
//! Randomness (init, dropout masks) comes only from RNGs the caller passes in.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
//! use under8k_model::{ArchSpec, Net, Summary};
//!
//! let spec = ArchSpec::seed();
//! let summary = Summary::of(&spec)?;
//! assert_eq!(summary.totals.total_params, 7_684);
//! assert_eq!(summary.receptive_fields(), [3, 5, 7, 8, 8, 12, 16, 20, 28, 28]);
//!
//! let net = Net::new(&spec, &mut ChaCha8Rng::seed_from_u64(1), ChaCha8Rng::seed_from_u64(2), DType::F32, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
//! let log_probs = net.forward_t(&x, false)?; // eval mode: running BatchNorm stats, no dropout
//! assert_eq!(log_probs.dims(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod engine;
pub mod net;
pub mod pool;
pub mod spec;
pub mod summary;

pub use net::{Kernels, ModelError, Net};
pub use spec::{ArchSpec, Block, Layer, SpecError};
pub use summary::Summary;
