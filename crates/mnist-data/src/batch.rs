//! Seeded, reproducible batching: a shuffled order per epoch, optional random rotation, batches
//! of normalised `f32` images and `u32` labels. The last partial batch is kept (PyTorch's
//! `DataLoader` default, `drop_last=False`).
//!
//! All randomness comes from the [`RngCore`] the caller passes for the epoch: first the
//! permutation (Fisher–Yates, from the last position down, one `u64` per position), then per image
//! in batch order its augmentations' draws: the rotation's angle, the affine transform's, the
//! erasing's (each only when configured, so adding one never changes the others' draws). The algorithms are written out here rather than taken from `rand`'s
//! helpers, so a seed gives the same epochs whatever `rand` version is in the lockfile.

use rand_core::RngCore;

use crate::augment::{RandomAffine, RandomErasing, RandomRotation};
use crate::dataset::{DataError, Normalization, Split};

/// How batches are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Samples per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Shuffle the order every epoch.
    pub shuffle: bool,
    /// Random rotation applied to each image, if any.
    pub rotation: Option<RandomRotation>,
    /// Random affine transform applied after the rotation, if any.
    pub affine: Option<RandomAffine>,
    /// Random erasing applied last, if any.
    pub erasing: Option<RandomErasing>,
    /// Pixel normalisation.
    pub normalization: Normalization,
}

impl BatchConfig {
    /// Validating constructor: `batch_size` must be at least 1.
    pub fn new(
        batch_size: usize,
        shuffle: bool,
        rotation: Option<RandomRotation>,
        normalization: Normalization,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::ZeroBatch);
        }
        Ok(Self {
            batch_size,
            shuffle,
            rotation,
            affine: None,
            erasing: None,
            normalization,
        })
    }

    /// The same, with a random affine transform after the rotation.
    pub fn with_affine(self, affine: Option<RandomAffine>) -> Self {
        Self { affine, ..self }
    }

    /// The same, with random erasing last.
    pub fn with_erasing(self, erasing: Option<RandomErasing>) -> Self {
        Self { erasing, ..self }
    }
}

/// A uniform integer in `0..n` from one `u64` (multiply-shift; bias below 2⁻⁴⁰ for n ≤ 2²⁴).
fn below<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// The order in which an epoch visits `n` samples: `0..n`, shuffled with Fisher–Yates if asked.
pub fn epoch_order<R: RngCore + ?Sized>(n: usize, shuffle: bool, rng: &mut R) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        for i in (1..n).rev() {
            order.swap(i, below(rng, i + 1));
        }
    }
    order
}

/// One batch as plain buffers (before it becomes tensors).
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    /// `len × rows × cols` normalised pixels.
    pub pixels: Vec<f32>,
    /// `len` labels.
    pub labels: Vec<u32>,
    /// Which samples of the split, in order.
    pub indices: Vec<usize>,
}

/// The batches of one epoch, as plain buffers ([`RawBatch`]); with the `candle` feature,
/// `EpochBatches::on(device)` makes them tensors.
///
/// ```
/// use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
/// use under8k_mnist_data::batch::{BatchConfig, EpochBatches};
/// use under8k_mnist_data::{Normalization, Split, idx::Images};
///
/// let images = Images { count: 5, rows: 2, cols: 2, pixels: (0..20).collect() };
/// let split = Split::new(images, vec![0, 1, 2, 3, 4])?;
/// let config = BatchConfig::new(2, true, None, Normalization::MNIST)?;
/// let batches: Vec<_> = EpochBatches::new(&split, config, ChaCha8Rng::seed_from_u64(9)).collect();
/// // Three batches (2, 2, 1) visiting every sample once, in a seeded shuffled order.
/// assert_eq!(batches.iter().map(|b| b.labels.len()).collect::<Vec<_>>(), [2, 2, 1]);
/// let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
/// seen.sort();
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// # Ok::<(), under8k_mnist_data::DataError>(())
/// ```
pub struct EpochBatches<'a, R> {
    split: &'a Split,
    config: BatchConfig,
    table: [f32; 256],
    order: Vec<usize>,
    pos: usize,
    rng: R,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
}

impl<'a, R: RngCore> EpochBatches<'a, R> {
    /// Starts an epoch over `split`: draws the order from `rng` now, the angles as batches are made.
    pub fn new(split: &'a Split, config: BatchConfig, mut rng: R) -> Self {
        let order = epoch_order(split.len(), config.shuffle, &mut rng);
        let per = split.images.rows * split.images.cols;
        Self {
            split,
            config,
            table: config.normalization.table(),
            order,
            pos: 0,
            rng,
            scratch: vec![0; per],
            scratch2: vec![0; per],
        }
    }

    /// Number of batches in the epoch (the last may be partial).
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.config.batch_size)
    }

    /// The next batch as plain buffers, or `None` at the end of the epoch.
    pub fn next_raw(&mut self) -> Option<RawBatch> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.config.batch_size).min(self.order.len());
        let indices = self.order[self.pos..end].to_vec();
        self.pos = end;
        let (rows, cols) = (self.split.images.rows, self.split.images.cols);
        let mut pixels = Vec::with_capacity(indices.len() * rows * cols);
        let mut labels = Vec::with_capacity(indices.len());
        let c = self.config;
        let augmented = c.rotation.is_some() || c.affine.is_some() || c.erasing.is_some();
        for &i in &indices {
            let img = self.split.images.image(i);
            let src = if augmented {
                match &c.rotation {
                    Some(rot) => {
                        rot.apply_into(&mut self.rng, img, rows, cols, &mut self.scratch);
                    }
                    None => self.scratch.copy_from_slice(img),
                }
                if let Some(t) = &c.affine {
                    t.apply_into(&mut self.rng, &self.scratch, rows, cols, &mut self.scratch2);
                    std::mem::swap(&mut self.scratch, &mut self.scratch2);
                }
                if let Some(e) = &c.erasing {
                    e.apply(&mut self.rng, &mut self.scratch, rows, cols);
                }
                &self.scratch[..]
            } else {
                img
            };
            pixels.extend(src.iter().map(|&p| self.table[p as usize]));
            labels.push(self.split.labels[i] as u32);
        }
        Some(RawBatch {
            pixels,
            labels,
            indices,
        })
    }

    /// Gives back the RNG (after the epoch, to continue its stream elsewhere).
    pub fn into_rng(self) -> R {
        self.rng
    }
}

impl<R: RngCore> Iterator for EpochBatches<'_, R> {
    type Item = RawBatch;

    fn next(&mut self) -> Option<RawBatch> {
        self.next_raw()
    }
}

#[cfg(feature = "candle")]
mod tensors {
    use candle_core::{Device, Tensor};
    use rand_core::RngCore;

    use super::EpochBatches;
    use crate::dataset::DataError;

    /// One batch as candle tensors.
    #[derive(Debug, Clone)]
    pub struct Batch {
        /// `B×1×rows×cols` `f32`.
        pub images: Tensor,
        /// `B` `u32`.
        pub labels: Tensor,
    }

    /// The batches of one epoch as tensors on a device; an iterator of
    /// `Result<Batch, DataError>`.
    pub struct TensorBatches<'a, R> {
        batches: EpochBatches<'a, R>,
        device: Device,
    }

    impl<'a, R: RngCore> EpochBatches<'a, R> {
        /// The same batches as tensors on `device`.
        pub fn on(self, device: &Device) -> TensorBatches<'a, R> {
            TensorBatches {
                batches: self,
                device: device.clone(),
            }
        }
    }

    impl<R: RngCore> Iterator for TensorBatches<'_, R> {
        type Item = Result<Batch, DataError>;

        fn next(&mut self) -> Option<Self::Item> {
            let raw = self.batches.next_raw()?;
            let split = self.batches.split;
            let (rows, cols) = (split.images.rows, split.images.cols);
            let n = raw.labels.len();
            let make = || -> Result<Batch, DataError> {
                Ok(Batch {
                    images: Tensor::from_vec(raw.pixels, (n, 1, rows, cols), &self.device)?,
                    labels: Tensor::from_vec(raw.labels, n, &self.device)?,
                })
            };
            Some(make())
        }
    }
}

#[cfg(feature = "candle")]
pub use tensors::{Batch, TensorBatches};
