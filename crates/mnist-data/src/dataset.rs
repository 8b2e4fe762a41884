//! The MNIST dataset in memory (`u8` pixels and labels) and its conversion to candle tensors.

use std::path::{Path, PathBuf};

#[cfg(feature = "candle")]
use candle_core::{Device, Tensor};

use crate::idx::{self, IdxError, Images};

/// Height and width of an MNIST image.
pub const SIDE: usize = 28;
/// Pixels per MNIST image.
pub const PIXELS: usize = SIDE * SIDE;

/// The canonical file names, in the order train images, train labels, test images, test labels.
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Loading or converting the dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An IDX file is missing, unreadable or invalid.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// A file is not in the data directory (neither raw nor `.gz`).
    #[error("{}: missing (nor {}.gz)", path.display(), path.display())]
    Missing {
        /// The expected path of the raw file.
        path: PathBuf,
    },
    /// Images and labels disagree on the number of samples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// The label file.
        labels_path: PathBuf,
        /// Images in it.
        images: usize,
        /// Labels in it.
        labels: usize,
    },
    /// Images are not 28×28.
    #[error("{}: images are {rows}x{cols}, MNIST needs {SIDE}x{SIDE}", path.display())]
    NotMnistSize {
        /// The image file.
        path: PathBuf,
        /// Height found.
        rows: usize,
        /// Width found.
        cols: usize,
    },
    /// Training and test images differ in size.
    #[error(
        "{} holds {}x{} images but {} holds {}x{}: train and test images must be the same size",
        train_path.display(), train.0, train.1, test_path.display(), test.0, test.1
    )]
    SizeMismatch {
        /// The training image file.
        train_path: PathBuf,
        /// The test image file.
        test_path: PathBuf,
        /// Training images' (rows, cols).
        train: (usize, usize),
        /// Test images' (rows, cols).
        test: (usize, usize),
    },
    /// A test label names a class the training labels do not reach.
    #[error(
        "{}: label {label} at index {index} is not below the class count {classes} of the training labels",
        path.display()
    )]
    UnknownClass {
        /// The test label file.
        path: PathBuf,
        /// Position of the label.
        index: usize,
        /// Its value.
        label: u8,
        /// Classes in the training labels (largest label + 1).
        classes: usize,
    },
    /// A batch size of 0.
    #[error("batch size must be at least 1")]
    ZeroBatch,
    /// Inconsistent in-memory data (lengths that do not match).
    #[error("invalid split: {0}")]
    InvalidSplit(String),
    /// A normalisation with a non-positive or non-finite standard deviation, or a non-finite mean.
    #[error("invalid normalisation: mean {mean}, std {std} (std must be finite and > 0)")]
    InvalidNormalization {
        /// The mean given.
        mean: f32,
        /// The std given.
        std: f32,
    },
    /// A tensor operation failed.
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Per-pixel normalisation `(pixel/255 − mean) / std`, as torchvision's `ToTensor` + `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean of `pixel / 255` over the training set.
    pub mean: f32,
    /// Standard deviation of `pixel / 255` over the training set.
    pub std: f32,
}

impl Normalization {
    /// The values everybody uses for MNIST (and the seed): mean 0.1307, std 0.3081.
    pub const MNIST: Self = Self {
        mean: 0.1307,
        std: 0.3081,
    };

    /// Validating constructor.
    pub fn new(mean: f32, std: f32) -> Result<Self, DataError> {
        if mean.is_finite() && std.is_finite() && std > 0.0 {
            Ok(Self { mean, std })
        } else {
            Err(DataError::InvalidNormalization { mean, std })
        }
    }

    /// Mean and (population) standard deviation of `pixel / 255` over `pixels`, computed in `f64`
    /// from a histogram (exact sums). For the MNIST training set: 0.1307, 0.3081 (4 d.p.).
    /// Returns `None` for an empty slice or constant pixels (std 0).
    pub fn from_pixels(pixels: &[u8]) -> Option<Self> {
        let mut hist = [0u64; 256];
        for &p in pixels {
            hist[p as usize] += 1;
        }
        let n = pixels.len() as f64;
        let sum: f64 = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| v as f64 * c as f64)
            .sum();
        let mean = sum / n / 255.0;
        let var: f64 = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / n;
        Self::new(mean as f32, var.sqrt() as f32).ok()
    }

    /// The lookup table `byte → normalised f32`, so normalising is one load per pixel.
    pub fn table(&self) -> [f32; 256] {
        std::array::from_fn(|v| (v as f32 / 255.0 - self.mean) / self.std)
    }
}

/// Images and their labels (one split of the dataset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The images.
    pub images: Images,
    /// One label (0–9) per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Validating constructor: one label per image, labels below 10, pixel buffer of the right size.
    pub fn new(images: Images, labels: Vec<u8>) -> Result<Self, DataError> {
        Self::with_classes(images, labels, idx::NUM_CLASSES as usize)
    }

    /// [`Split::new`] for `classes` classes: every label must be below it.
    pub fn with_classes(
        images: Images,
        labels: Vec<u8>,
        classes: usize,
    ) -> Result<Self, DataError> {
        if images.pixels.len() != images.count * images.rows * images.cols {
            return Err(DataError::InvalidSplit(format!(
                "{} pixels for {} images of {}x{}",
                images.pixels.len(),
                images.count,
                images.rows,
                images.cols
            )));
        }
        if images.count != labels.len() {
            return Err(DataError::InvalidSplit(format!(
                "{} images but {} labels",
                images.count,
                labels.len()
            )));
        }
        if let Some(l) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(DataError::InvalidSplit(format!(
                "label {l} is not below the class count {classes}"
            )));
        }
        Ok(Self { images, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` samples (all of them if `n >= len`), for quick runs and tests.
    pub fn head(&self, n: usize) -> Split {
        self.range(0, n)
    }

    /// Samples `start..end` (clamped to the split), e.g. a validation split held out of the
    /// training split's end.
    pub fn range(&self, start: usize, end: usize) -> Split {
        let end = end.min(self.len());
        let start = start.min(end);
        let per = self.images.rows * self.images.cols;
        Split {
            images: Images {
                count: end - start,
                rows: self.images.rows,
                cols: self.images.cols,
                pixels: self.images.pixels[start * per..end * per].to_vec(),
            },
            labels: self.labels[start..end].to_vec(),
        }
    }

    /// Number of classes the labels reach: the largest label + 1 (0 when empty).
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&l| l as usize + 1)
    }

    /// Samples per class (index = label), for at least ten classes.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes().max(10)];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// All images as an `f32` tensor `N×1×rows×cols`, normalised.
    #[cfg(feature = "candle")]
    pub fn images_tensor(&self, norm: Normalization, device: &Device) -> Result<Tensor, DataError> {
        let table = norm.table();
        let data: Vec<f32> = self
            .images
            .pixels
            .iter()
            .map(|&p| table[p as usize])
            .collect();
        Ok(Tensor::from_vec(
            data,
            (self.len(), 1, self.images.rows, self.images.cols),
            device,
        )?)
    }

    /// All labels as a `u32` tensor of length `N`.
    #[cfg(feature = "candle")]
    pub fn labels_tensor(&self, device: &Device) -> Result<Tensor, DataError> {
        let data: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        Ok(Tensor::from_vec(data, self.len(), device)?)
    }
}

/// MNIST: 60,000 training and 10,000 test images of 28×28, with labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

impl Mnist {
    /// Loads the four files from `dir`, raw or gzip, under their canonical names (each may carry a
    /// `.gz` suffix). Validates every file, that counts match and that images are 28×28.
    /// It does not check MD5s: [`crate::fetch::check_dir`] does.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let [tri, trl, tei, tel] = FILE_NAMES.map(|name| dir.join(name));
        let train = load_split(&tri, &trl, true)?;
        let test = load_split(&tei, &tel, true)?;
        Ok(Self { train, test })
    }

    /// Loads any dataset in MNIST's four-file layout (KMNIST, EMNIST-digits, your own): images
    /// of any size, the same for train and test; labels of any value, the class count being the
    /// largest training label + 1, which every test label must be below; counts that agree.
    pub fn load_idx(dir: &Path) -> Result<Self, DataError> {
        let [tri, trl, tei, tel] = FILE_NAMES.map(|name| dir.join(name));
        let train = load_split(&tri, &trl, false)?;
        let test = load_split(&tei, &tel, false)?;
        let size = |s: &Split| (s.images.rows, s.images.cols);
        if size(&train) != size(&test) {
            return Err(DataError::SizeMismatch {
                train_path: existing_variant(&tri).unwrap_or(tri),
                test_path: existing_variant(&tei).unwrap_or(tei),
                train: size(&train),
                test: size(&test),
            });
        }
        let classes = train.classes();
        if let Some((index, &label)) = test
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(DataError::UnknownClass {
                path: existing_variant(&tel).unwrap_or(tel),
                index,
                label,
                classes,
            });
        }
        Ok(Self { train, test })
    }

    /// Number of classes: the largest training label + 1.
    pub fn classes(&self) -> usize {
        self.train.classes()
    }

    /// MD5 (hex) of each of the four files' uncompressed content, in [`FILE_NAMES`] order,
    /// computed from the data in memory (IDX encoding is exact both ways).
    #[cfg(feature = "fetch")]
    pub fn md5s(&self) -> [String; 4] {
        [
            idx::images_md5(&self.train.images),
            idx::labels_md5(&self.train.labels),
            idx::images_md5(&self.test.images),
            idx::labels_md5(&self.test.labels),
        ]
    }
}

/// The path of `raw` if it exists, else of `raw.gz` if that exists.
pub fn existing_variant(raw: &Path) -> Option<PathBuf> {
    if raw.is_file() {
        return Some(raw.to_path_buf());
    }
    let mut gz = raw.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    gz.is_file().then_some(gz)
}

/// One split's two files; `digits`: MNIST's 28×28 images and labels below 10.
fn load_split(images_raw: &Path, labels_raw: &Path, digits: bool) -> Result<Split, DataError> {
    let find = |p: &Path| {
        existing_variant(p).ok_or_else(|| DataError::Missing {
            path: p.to_path_buf(),
        })
    };
    let (ip, lp) = (find(images_raw)?, find(labels_raw)?);
    let images = idx::read_images(&ip)?;
    if digits && (images.rows != SIDE || images.cols != SIDE) {
        return Err(DataError::NotMnistSize {
            path: ip,
            rows: images.rows,
            cols: images.cols,
        });
    }
    let labels = if digits {
        idx::read_labels(&lp)?
    } else {
        idx::read_labels_any(&lp)?
    };
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: ip,
            labels_path: lp,
            images: images.count,
            labels: labels.len(),
        });
    }
    Split::with_classes(images, labels, 256)
}

#[cfg(feature = "candle-datasets")]
mod interop {
    //! Conversion to and from `candle_datasets::vision::Dataset` (images `N×784` `f32` in
    //! `[0, 1]`, labels `u8`, as `candle_datasets::vision::mnist` loads them).
    use super::*;
    use candle_core::DType;
    use candle_datasets::vision::Dataset as CandleDataset;

    fn to_pair(split: &Split, device: &Device) -> Result<(Tensor, Tensor), DataError> {
        let px: Vec<f32> = split
            .images
            .pixels
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        let images = Tensor::from_vec(px, (split.len(), PIXELS), device)?;
        let labels = Tensor::from_vec(split.labels.clone(), split.len(), device)?;
        Ok((images, labels))
    }

    fn from_pair(images: &Tensor, labels: &Tensor) -> Result<Split, DataError> {
        let images = images.flatten_from(1)?.to_dtype(DType::F32)?;
        let (count, per) = images.dims2()?;
        if per != PIXELS {
            return Err(DataError::InvalidSplit(format!(
                "{per} values per image, expected {PIXELS}"
            )));
        }
        let mut pixels = Vec::with_capacity(count * per);
        for v in images.flatten_all()?.to_vec1::<f32>()? {
            let b = (v * 255.0).round();
            if !(0.0..=255.0).contains(&b) {
                return Err(DataError::InvalidSplit(format!(
                    "pixel value {v} is outside [0, 1]"
                )));
            }
            pixels.push(b as u8);
        }
        let labels: Vec<u8> = labels
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|l| u8::try_from(l).unwrap_or(u8::MAX))
            .collect();
        Split::new(
            Images {
                count,
                rows: SIDE,
                cols: SIDE,
                pixels,
            },
            labels,
        )
    }

    impl Mnist {
        /// Converts to candle-datasets' representation.
        pub fn to_candle_dataset(&self, device: &Device) -> Result<CandleDataset, DataError> {
            let (train_images, train_labels) = to_pair(&self.train, device)?;
            let (test_images, test_labels) = to_pair(&self.test, device)?;
            Ok(CandleDataset {
                train_images,
                train_labels,
                test_images,
                test_labels,
                labels: 10,
            })
        }

        /// Converts from candle-datasets' representation (pixels rounded back to bytes).
        pub fn from_candle_dataset(ds: &CandleDataset) -> Result<Self, DataError> {
            Ok(Self {
                train: from_pair(&ds.train_images, &ds.train_labels)?,
                test: from_pair(&ds.test_images, &ds.test_labels)?,
            })
        }
    }
}
