//! The data a run trains on, made ready: a known dataset (its missing files fetched, every file
//! verified, nothing that is already there touched) or any directory of IDX files, with the
//! [`DataRecord`] a config keeps and the normalisation a preset takes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use under8k_mnist_data::fetch::{self, FetchError, FetchOptions, Progress};
use under8k_mnist_data::{DataError, Dataset, Mnist, Normalization};

use crate::config::DataRecord;

/// Which data: a dataset known by name, or `idx` (any directory holding the four IDX files,
/// used as it is and never fetched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChoice {
    /// MNIST or Fashion-MNIST: fetched when missing, verified by MD5.
    Known(Dataset),
    /// Any dataset in MNIST's four-file layout ([`Mnist::load_idx`]).
    Idx,
}

impl DataChoice {
    /// Every choice, for help texts.
    pub const ALL: [DataChoice; 3] = [
        DataChoice::Known(Dataset::Mnist),
        DataChoice::Known(Dataset::FashionMnist),
        DataChoice::Idx,
    ];

    /// `mnist`, `fashion-mnist` or `idx`.
    pub fn name(self) -> &'static str {
        match self {
            DataChoice::Known(d) => d.name(),
            DataChoice::Idx => "idx",
        }
    }

    /// The choice a config's record names (`None` for a name not known here).
    pub fn of_record(record: &DataRecord) -> Option<Self> {
        record.dataset.parse().ok()
    }
}

impl fmt::Display for DataChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "idx" => Ok(DataChoice::Idx),
            known => known
                .parse()
                .map(DataChoice::Known)
                .map_err(|_| format!("unknown dataset `{s}`: use mnist, fashion-mnist or idx")),
        }
    }
}

/// Data ready for [`crate::run::train`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The two splits.
    pub data: Mnist,
    /// What a config records of it.
    pub record: DataRecord,
    /// MNIST's standard values; for other data, computed from its training split.
    pub normalization: Normalization,
}

/// [`prepare`] failed; nothing on disk was changed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Fetching failed, or files that are there are not the dataset's.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The files do not load.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The training images have one value only: no normalisation exists.
    #[error("{}: the training images are all one value", dir.display())]
    Constant {
        /// The data directory.
        dir: PathBuf,
    },
}

/// The data `choice` names, from `dir`. For a known dataset only *missing* files are fetched;
/// a file that is there but corrupt or not the dataset's fails with
/// [`FetchError::BadFiles`], the file left as it was.
pub fn prepare(
    choice: DataChoice,
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Prepared, PrepareError> {
    let (data, record, standard) = match choice {
        DataChoice::Known(dataset) => {
            fetch::fetch(&FetchOptions::for_dataset(dataset, dir), progress)?;
            let data = Mnist::load(dir)?;
            (
                data,
                DataRecord::known(dataset),
                dataset.standard_normalization(),
            )
        }
        DataChoice::Idx => {
            let data = Mnist::load_idx(dir)?;
            let record = DataRecord::idx(&data);
            (data, record, None)
        }
    };
    let normalization = match standard {
        Some(n) => n,
        None => Normalization::from_pixels(&data.train.images.pixels).ok_or_else(|| {
            PrepareError::Constant {
                dir: dir.to_path_buf(),
            }
        })?,
    };
    Ok(Prepared {
        data,
        record,
        normalization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in DataChoice::ALL {
            assert_eq!(c.name().parse::<DataChoice>(), Ok(c));
        }
        assert!("emnist".parse::<DataChoice>().is_err());
    }
}
