//! What a training run does, as one serialisable struct; the seed's three attempts are presets.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use under8k_mnist_data::augment::{InvalidAugmentation, RandomAffine, RandomErasing};
use under8k_mnist_data::{Mnist, Split};
use under8k_model::{ArchSpec, Kernels};
use under8k_sched::Schedule;

/// A complete description of a run. Same config + same thread count ⇒ bit-identical run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The network.
    pub arch: ArchSpec,
    /// Epochs to train.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Batch size for evaluation (does not change results).
    pub eval_batch_size: usize,
    /// The one seed all randomness flows from.
    pub seed: u64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Random rotation of training images, ± degrees (none when absent).
    pub rotation_degrees: Option<f32>,
    /// Normalisation mean of `pixel/255`.
    pub mean: f32,
    /// Normalisation std of `pixel/255`.
    pub std: f32,
    /// Use only the first N training images (quick runs, tests).
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    pub test_limit: Option<usize>,
    /// Which implementation runs the net: the fast CPU engine (default) or candle's own ops
    /// (the reference; slow). They agree to float rounding, not bit for bit.
    #[serde(default)]
    pub kernels: Kernels,
    /// The data the run trains on. Absent from `config.json` for canonical MNIST (so configs
    /// written before datasets were recorded keep their meaning and fingerprint).
    #[serde(default, skip_serializing_if = "DataRecord::is_mnist")]
    pub data: DataRecord,
    /// A random affine transform of training images after the rotation (torchvision's
    /// `RandomAffine` without shear), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<AffineConfig>,
    /// Random erasing (cutout) of training images, last, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasing: Option<ErasingConfig>,
    /// Hold the last N training images out as a validation split: the run trains on the rest and
    /// evaluates on them after every epoch instead of on the test set, which it never reads.
    /// Recipes are chosen this way; the chosen one is then trained without it and tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
    /// The optimizer: SGD (the default, with `momentum`; absent from `config.json`, so older
    /// configs keep their meaning and fingerprint) or Adam/AdamW. Both take `weight_decay`.
    #[serde(default, skip_serializing_if = "Optimizer::is_default")]
    pub optimizer: Optimizer,
    /// Label smoothing ε of the training loss (`torch.nn.CrossEntropyLoss(label_smoothing=ε)`;
    /// 0, the default, is plain NLL and is left out of `config.json`). Evaluation's loss is NLL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    /// Weight averaging: an exponential moving average of the weights and BatchNorm statistics
    /// (`AveragedModel` with `get_ema_multi_avg_fn`), and which model the run reports and saves.
    /// Absent (the default) means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<crate::ema::EmaConfig>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Which optimizer a run uses, beyond the learning rate (from the schedule) and the weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// `torch.optim.SGD` with the config's `momentum`.
    Sgd {
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// Dampening of the momentum.
        #[serde(default)]
        dampening: f64,
    },
    /// `torch.optim.Adam` or, decoupled, `AdamW`; one-cycle schedules cycle β₁ as PyTorch does.
    Adam {
        /// β₁ and β₂ (PyTorch's 0.9, 0.999 when absent).
        #[serde(default = "default_betas")]
        betas: (f64, f64),
        /// ε (1e-8 when absent).
        #[serde(default = "default_eps")]
        eps: f64,
        /// Decoupled weight decay (AdamW).
        #[serde(default)]
        decoupled: bool,
        /// AMSGrad.
        #[serde(default)]
        amsgrad: bool,
    },
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}

fn default_eps() -> f64 {
    1e-8
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd {
            nesterov: false,
            dampening: 0.0,
        }
    }
}

impl Optimizer {
    /// Whether this is plain momentum SGD (left out of `config.json`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// [`under8k_mnist_data::augment::RandomAffine`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffineConfig {
    /// Largest turn either way, degrees.
    pub degrees: f32,
    /// Largest shift, as a fraction of the side.
    pub translate: f32,
    /// Scale range.
    pub scale: (f32, f32),
}

/// [`under8k_mnist_data::augment::RandomErasing`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasingConfig {
    /// Probability of erasing an image.
    pub p: f32,
    /// Area range, as fractions of the image.
    pub area: (f32, f32),
    /// Aspect-ratio range.
    pub ratio: (f32, f32),
}

impl AffineConfig {
    /// The augmentation.
    pub fn build(&self) -> Result<RandomAffine, InvalidAugmentation> {
        RandomAffine::new(self.degrees, self.translate, self.scale)
    }
}

impl ErasingConfig {
    /// The augmentation.
    pub fn build(&self) -> Result<RandomErasing, InvalidAugmentation> {
        RandomErasing::new(self.p, self.area, self.ratio)
    }
}

/// Which data a run trains on: the dataset's name and the MD5 of each of its four files'
/// uncompressed content. [`crate::run::train`] refuses data whose MD5s differ, and a resume on
/// other data is refused because the config's fingerprint differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRecord {
    /// `mnist`, `fashion-mnist` or `idx`.
    pub dataset: String,
    /// Train images, train labels, test images, test labels.
    pub md5: [String; 4],
}

impl DataRecord {
    /// A known dataset: its name and canonical MD5s.
    pub fn known(dataset: under8k_mnist_data::Dataset) -> Self {
        Self {
            dataset: dataset.name().to_string(),
            md5: dataset.md5s().map(str::to_string),
        }
    }

    /// Data loaded from a directory of IDX files (`--dataset idx`): `idx` and its MD5s.
    pub fn idx(data: &under8k_mnist_data::Mnist) -> Self {
        Self {
            dataset: "idx".into(),
            md5: data.md5s(),
        }
    }

    /// Whether this is canonical MNIST.
    pub fn is_mnist(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for DataRecord {
    /// Canonical MNIST.
    fn default() -> Self {
        Self::known(under8k_mnist_data::Dataset::Mnist)
    }
}

/// An invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The architecture is invalid.
    #[error("invalid training config: {0}")]
    Spec(#[from] under8k_model::SpecError),
    /// The schedule is invalid.
    #[error("invalid training config: {0}")]
    Schedule(#[from] under8k_sched::ScheduleError),
    /// The rotation is invalid.
    #[error("invalid training config: {0}")]
    Rotation(#[from] under8k_mnist_data::augment::InvalidRotation),
    /// Label smoothing outside [0, 1).
    #[error("invalid training config: label smoothing {0} is not in [0, 1)")]
    LabelSmoothing(f64),
    /// The weight averaging is invalid.
    #[error("invalid training config: {0}")]
    Ema(#[from] crate::ema::EmaError),
    /// The Adam settings are invalid.
    #[error("invalid training config: {0}")]
    Adam(#[from] crate::adam::AdamError),
    /// An affine or erasing setting is invalid.
    #[error("invalid training config: {0}")]
    Augmentation(#[from] InvalidAugmentation),
    /// The validation split leaves nothing to train on.
    #[error(
        "invalid training config: a validation split of {validation} images leaves nothing of the {train} training images to train on"
    )]
    Validation {
        /// Images held out.
        validation: usize,
        /// Training images.
        train: usize,
    },
    /// Not one of the three attempts.
    #[error("invalid training config: there are attempts 1, 2 and 3, not {0}")]
    NoSuchAttempt(u8),
    /// Zero epochs or a zero batch size.
    #[error("invalid training config: epochs and batch sizes must be at least 1")]
    ZeroSize,
    /// A zero subset limit.
    #[error("invalid training config: subset limits and the validation split must be at least 1")]
    ZeroLimit,
    /// Momentum or weight decay negative or not finite.
    #[error(
        "invalid training config: momentum {momentum} and weight decay {weight_decay} must be finite and non-negative"
    )]
    Optimizer {
        /// The momentum.
        momentum: f64,
        /// The weight decay.
        weight_decay: f64,
    },
    /// A normalisation whose std is not finite and positive, or whose mean is not finite.
    #[error(
        "invalid training config: normalisation mean {mean}, std {std} (std must be finite and > 0)"
    )]
    Normalization {
        /// The mean.
        mean: f32,
        /// The std.
        std: f32,
    },
    /// A one-cycle schedule shorter than the run (PyTorch's `OneCycleLR` raises there too).
    #[error(
        "invalid training config: the one-cycle schedule has {total_steps} steps but the run takes {steps} ({epochs} epochs of {batches} batches): set its total_steps to {steps}"
    )]
    ScheduleTooShort {
        /// The schedule's length.
        total_steps: usize,
        /// The run's optimizer steps.
        steps: usize,
        /// Its epochs.
        epochs: usize,
        /// Its batches per epoch.
        batches: usize,
    },
}

/// Images in MNIST's training split.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;

impl TrainConfig {
    /// The project's attempt 1, 2 or 3 (15 epochs, batch 128, seed 1, SGD momentum 0.9):
    /// 1 — lr 0.01, no augmentation; 2 — plus rotation ±7°; 3 — rotation plus `OneCycleLR` with
    /// max lr 0.1 and PyTorch's defaults (momentum cycled 0.95 → 0.85 → 0.95), stepped per batch.
    ///
    /// Attempts 1 and 2 are the seed write-up's; its attempt 3 (StepLR from 0.07, see
    /// [`TrainConfig::write_up`]) does not hold 99.4 % over the last epochs, here or in PyTorch,
    /// so attempt 3 keeps its idea (tune the learning rate) with a schedule that anneals.
    pub fn attempt(n: u8) -> Result<Self, ConfigError> {
        let mut c = Self::write_up(n)?;
        if n == 3 {
            c.schedule =
                Schedule::one_cycle(0.1, c.epochs * c.steps_per_epoch(MNIST_TRAIN_IMAGES))?;
        }
        Ok(c)
    }

    /// The seed write-up's attempt 1, 2 or 3 exactly as published: the same as
    /// [`TrainConfig::attempt`] for 1 and 2; for 3, rotation plus StepLR(1) from 0.07 with
    /// gamma = (0.07 − 0.1/15)/0.07.
    pub fn write_up(n: u8) -> Result<Self, ConfigError> {
        let (schedule, rotation) = match n {
            1 => (Schedule::constant(0.01)?, None),
            2 => (Schedule::constant(0.01)?, Some(7.0)),
            3 => (
                Schedule::geometric_from_decrement(0.07, 0.1, 15)?,
                Some(7.0),
            ),
            _ => return Err(ConfigError::NoSuchAttempt(n)),
        };
        Ok(Self {
            arch: ArchSpec::seed(),
            epochs: 15,
            batch_size: 128,
            eval_batch_size: 1000,
            seed: 1,
            schedule,
            momentum: 0.9,
            weight_decay: 0.0,
            rotation_degrees: rotation,
            mean: under8k_mnist_data::Normalization::MNIST.mean,
            std: under8k_mnist_data::Normalization::MNIST.std,
            train_limit: None,
            test_limit: None,
            kernels: Kernels::Fast,
            data: DataRecord::default(),
            affine: None,
            erasing: None,
            validation: None,
            optimizer: Optimizer::default(),
            label_smoothing: 0.0,
            ema: None,
        })
    }

    /// Optimizer steps per epoch on a training split of `train_images` images (or its first
    /// `train_limit`): the one rule, which [`crate::run::train`] follows too.
    pub fn steps_per_epoch(&self, train_images: usize) -> usize {
        let train_images = train_images.saturating_sub(self.validation.unwrap_or(0));
        self.train_limit
            .map_or(train_images, |n| n.min(train_images))
            .div_ceil(self.batch_size.max(1))
    }

    /// The images the run trains on and those it evaluates on: the training split less the
    /// validation split (if any), then its first `train_limit`; the validation split, else the
    /// test split's first `test_limit`. A split that is a whole one of `data` is borrowed, not
    /// copied (MNIST's training images are 47 MB).
    pub fn splits<'a>(
        &self,
        data: &'a Mnist,
    ) -> Result<(Cow<'a, Split>, Cow<'a, Split>), ConfigError> {
        self.check_splits(data)?;
        let n = data.train.len();
        let (train, eval) = match self.validation {
            Some(v) => (
                Cow::Owned(data.train.range(0, n - v)),
                Cow::Owned(data.train.range(n - v, n)),
            ),
            None => (
                Cow::Borrowed(&data.train),
                self.test_limit
                    .map_or(Cow::Borrowed(&data.test), |l| Cow::Owned(data.test.head(l))),
            ),
        };
        let train = match self.train_limit {
            Some(l) => Cow::Owned(train.head(l)),
            None => train,
        };
        Ok((train, eval))
    }

    /// Whether [`splits`](Self::splits) can be made of `data`, without making them.
    pub fn check_splits(&self, data: &Mnist) -> Result<(), ConfigError> {
        let n = data.train.len();
        match self.validation {
            Some(v) if v >= n => Err(ConfigError::Validation {
                validation: v,
                train: n,
            }),
            _ => Ok(()),
        }
    }

    /// Stretches a per-step schedule (one-cycle) over the whole run on a training split of
    /// `train_images` images, as PyTorch's `OneCycleLR(epochs=…, steps_per_epoch=…)` does. Call
    /// it after changing `epochs`, `batch_size` or `train_limit`, or the data; per-epoch
    /// schedules need nothing.
    pub fn fit_schedule(&mut self, train_images: usize) {
        let steps = self.epochs * self.steps_per_epoch(train_images);
        if let Schedule::OneCycle { total_steps, .. } = &mut self.schedule {
            *total_steps = steps.max(2);
        }
    }

    /// Checks everything a run needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.arch.resolve()?;
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(ConfigError::ZeroSize);
        }
        if !(self.momentum.is_finite()
            && self.momentum >= 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay >= 0.0)
        {
            return Err(ConfigError::Optimizer {
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            });
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(ConfigError::LabelSmoothing(self.label_smoothing));
        }
        if let Some(ema) = &self.ema {
            ema.validate()?;
        }
        if let Optimizer::Adam {
            betas,
            eps,
            decoupled,
            amsgrad,
        } = self.optimizer
        {
            crate::adam::AdamConfig {
                lr: 0.0,
                betas,
                eps,
                weight_decay: self.weight_decay,
                decoupled,
                amsgrad,
            }
            .validate()?;
        }
        if let Some(d) = self.rotation_degrees {
            under8k_mnist_data::augment::RandomRotation::new(d)?;
        }
        if under8k_mnist_data::Normalization::new(self.mean, self.std).is_err() {
            return Err(ConfigError::Normalization {
                mean: self.mean,
                std: self.std,
            });
        }
        if let Some(a) = &self.affine {
            a.build()?;
        }
        if let Some(e) = &self.erasing {
            e.build()?;
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) || self.validation == Some(0) {
            return Err(ConfigError::ZeroLimit);
        }
        Ok(())
    }

    /// A stable 64-bit fingerprint of the config (FNV-1a over its JSON), to tell whether saved
    /// results belong to it.
    pub fn fingerprint(&self) -> u64 {
        let json = serde_json::to_vec(self).expect("a config always serialises");
        json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }
}
