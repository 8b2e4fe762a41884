//! Choosing a learning rate: the range test (Smith 2015, as fastai's `lr_find` and
//! `torch-lr-finder` run it) and the short-run sweep the seed's write-up did by hand.
//!
//! **Range test** ([`range_test`]): a fresh net of the config trains one batch per rate, the
//! rate rising geometrically from `start_lr` to `end_lr` over `steps` batches (the batches, their
//! rotations and dropout masks drawn exactly as the config's training run draws them, epoch after
//! epoch). The loss is smoothed as fastai does (an exponential moving average with `β = 0.98`,
//! bias-corrected), and the test stops when the smoothed loss exceeds `diverge_factor` (4) times
//! the best so far, or the loss is not finite. Two suggestions are read from the curve:
//! - *steepest*: where the smoothed loss falls fastest against `log lr` (torch-lr-finder's rule,
//!   skipping the first 10 and last 5 points);
//! - *min/10*: a tenth of the rate at the lowest smoothed loss (fastai's `lr_min`).
//!
//! **Sweep** ([`sweep_config`]): one short run per rate at a constant rate, everything else the
//! config's; [`crate::run::train`] runs each.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use under8k_mnist_data::Mnist;
use under8k_mnist_data::batch::EpochBatches;
use under8k_sched::Schedule;

use crate::config::{ConfigError, TrainConfig};
use crate::overlap::Overlapped;
use crate::run::{TrainError, batch_config, check_data, fresh, step, stream};

/// fastai's smoothing factor.
const BETA: f64 = 0.98;
/// torch-lr-finder's `skip_start` and `skip_end` for the steepest-descent suggestion.
const SKIP_START: usize = 10;
const SKIP_END: usize = 5;

/// Invalid range-test settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LrFindError {
    /// The rates must be finite, positive and rising.
    #[error("the range test needs 0 < start < end, both finite; got start {start}, end {end}")]
    Range {
        /// Start rate.
        start: f64,
        /// End rate.
        end: f64,
    },
    /// Too few steps to make a curve.
    #[error("the range test needs at least 2 steps, got {0}")]
    Steps(usize),
    /// The divergence factor must exceed 1.
    #[error("the divergence factor must be finite and above 1, got {0}")]
    Factor(f64),
}

/// The range test could not run.
#[derive(Debug, thiserror::Error)]
pub enum RangeTestError {
    /// Its settings are invalid.
    #[error(transparent)]
    Settings(#[from] LrFindError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl From<ConfigError> for RangeTestError {
    fn from(e: ConfigError) -> Self {
        Self::Train(e.into())
    }
}

/// The range test's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RangeTest {
    /// The first batch's rate.
    pub start_lr: f64,
    /// The last batch's rate.
    pub end_lr: f64,
    /// Batches (one rate each).
    pub steps: usize,
    /// Stop when the smoothed loss exceeds this many times the best.
    pub diverge_factor: f64,
}

impl RangeTest {
    /// Checked settings, with fastai's divergence factor of 4.
    pub fn new(start_lr: f64, end_lr: f64, steps: usize) -> Result<Self, LrFindError> {
        let t = Self {
            start_lr,
            end_lr,
            steps,
            diverge_factor: 4.0,
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the settings (public fields may have been changed).
    pub fn validate(&self) -> Result<(), LrFindError> {
        let (start, end) = (self.start_lr, self.end_lr);
        if !(start.is_finite() && end.is_finite() && start > 0.0 && end > start) {
            return Err(LrFindError::Range { start, end });
        }
        if self.steps < 2 {
            return Err(LrFindError::Steps(self.steps));
        }
        if !(self.diverge_factor.is_finite() && self.diverge_factor > 1.0) {
            return Err(LrFindError::Factor(self.diverge_factor));
        }
        Ok(())
    }

    /// The rate of batch `i` (0-based): `start · (end/start)^(i/(steps−1))`, exactly `start`
    /// and `end` at the ends.
    pub fn lr(&self, i: usize) -> f64 {
        if i + 1 >= self.steps {
            return self.end_lr;
        }
        let t = i as f64 / (self.steps - 1) as f64;
        self.start_lr * (self.end_lr / self.start_lr).powf(t)
    }
}

/// One batch of the range test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RangePoint {
    /// 0-based batch.
    pub step: usize,
    /// Its rate.
    pub lr: f64,
    /// Its loss (before the update).
    pub loss: f64,
    /// The smoothed loss up to it.
    pub smoothed: f64,
}

/// Why the range test ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeEnd {
    /// All steps ran.
    Completed,
    /// The smoothed loss exceeded the factor times the best, at this batch (0-based).
    Diverged {
        /// The batch.
        step: usize,
        /// Its rate.
        lr: f64,
    },
    /// The loss was NaN or infinite at this batch (0-based; not in the curve).
    NonFinite {
        /// The batch.
        step: usize,
        /// Its rate.
        lr: f64,
    },
    /// The stop flag was set.
    Interrupted,
}

/// The range test's curve and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeCurve {
    /// The settings.
    pub test: RangeTest,
    /// One point per batch run (the diverging one included).
    pub points: Vec<RangePoint>,
    /// How it ended.
    pub end: RangeEnd,
}

impl RangeCurve {
    /// The rate where the smoothed loss falls fastest against `log lr` (central differences;
    /// the first 10 and last 5 points skipped, as torch-lr-finder does). `None` for a curve too
    /// short for that.
    pub fn steepest(&self) -> Option<f64> {
        let p = &self.points;
        if p.len() < SKIP_START + SKIP_END + 3 {
            return None;
        }
        let slope = |i: usize| {
            (p[i + 1].smoothed - p[i - 1].smoothed) / (p[i + 1].lr.ln() - p[i - 1].lr.ln())
        };
        let range = SKIP_START.max(1)..p.len() - SKIP_END.max(1);
        range
            .min_by(|&a, &b| slope(a).total_cmp(&slope(b)))
            .map(|i| p[i].lr)
    }

    /// The rate at the lowest smoothed loss.
    pub fn min_loss_lr(&self) -> Option<f64> {
        self.points
            .iter()
            .min_by(|a, b| a.smoothed.total_cmp(&b.smoothed))
            .map(|p| p.lr)
    }

    /// fastai's `lr_min`: a tenth of [`min_loss_lr`](Self::min_loss_lr).
    pub fn min_over_ten(&self) -> Option<f64> {
        self.min_loss_lr().map(|lr| lr / 10.0)
    }

    /// The curve with its settings and end as JSON (what [`RangeCurve::from_json`] reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a curve always serialises")
    }

    /// A curve saved by [`RangeCurve::to_json`].
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The curve as CSV: `step,lr,loss,smoothed_loss`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("step,lr,loss,smoothed_loss\n");
        for p in &self.points {
            s += &format!("{},{},{},{}\n", p.step, p.lr, p.loss, p.smoothed);
        }
        s
    }
}

/// Runs the range test for `config` (its net, seed, batch size, momentum, weight decay,
/// augmentation and data; not its schedule or epochs) on `data`. `progress` sees every point.
pub fn range_test(
    config: &TrainConfig,
    data: &Mnist,
    test: &RangeTest,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&RangePoint),
) -> Result<RangeCurve, RangeTestError> {
    config.validate()?;
    test.validate()?;
    check_data(config, data)?;
    let device = Device::Cpu;
    let (split, _) = config.splits(data)?;
    let batch_cfg = batch_config(config)?;
    let (net, mut opt) = fresh(config, &device)?;
    let (mut points, mut avg, mut best) = (Vec::with_capacity(test.steps), 0.0f64, f64::INFINITY);
    let (mut i, mut epoch) = (0, 0u64);
    let end = 'test: loop {
        net.set_dropout_rng(stream(config.seed, 1, epoch));
        // Each next batch is made beside the step (`Overlapped`): the same batches in order.
        let mut batches = Overlapped::new(
            EpochBatches::new(&split, batch_cfg, stream(config.seed, 2, epoch)).on(&device),
        );
        while let Some(batch) = batches.next() {
            if i == test.steps {
                break 'test RangeEnd::Completed;
            }
            if stop.load(Ordering::Relaxed) {
                break 'test RangeEnd::Interrupted;
            }
            let lr = test.lr(i);
            opt.set_lr(lr);
            let batch = batch.map_err(TrainError::from)?;
            let loss = batches
                .beside(|| step(&net, &mut opt, &batch, config.label_smoothing))?
                .loss;
            if !loss.is_finite() {
                break 'test RangeEnd::NonFinite { step: i, lr };
            }
            avg = BETA * avg + (1.0 - BETA) * loss;
            let smoothed = avg / (1.0 - BETA.powi(i as i32 + 1));
            let point = RangePoint {
                step: i,
                lr,
                loss,
                smoothed,
            };
            points.push(point);
            progress(&point);
            best = best.min(smoothed);
            if smoothed > test.diverge_factor * best {
                break 'test RangeEnd::Diverged { step: i, lr };
            }
            i += 1;
        }
        epoch += 1;
    };
    Ok(RangeCurve {
        test: *test,
        points,
        end,
    })
}

/// One rate of a sweep: its run's test accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The constant rate.
    pub lr: f64,
    /// Test accuracy after the last epoch (%).
    pub last_acc: f64,
    /// The best epoch's test accuracy (%).
    pub max_acc: f64,
}

impl SweepPoint {
    /// The point of a run at rate `lr` that measured `history`.
    pub fn of(lr: f64, history: &crate::History) -> Self {
        Self {
            lr,
            last_acc: history.epochs.last().map_or(0.0, |e| e.test_acc),
            max_acc: history.max_test_acc().unwrap_or(0.0),
        }
    }
}

/// The sweep as CSV: `lr,last_test_acc,max_test_acc`.
pub fn sweep_csv(points: &[SweepPoint]) -> String {
    let mut s = String::from("lr,last_test_acc,max_test_acc\n");
    for p in points {
        s += &format!("{},{},{}\n", p.lr, p.last_acc, p.max_acc);
    }
    s
}

/// The config of one sweep run: `config` at the constant rate `lr` for `epochs` epochs.
pub fn sweep_config(
    config: &TrainConfig,
    lr: f64,
    epochs: usize,
) -> Result<TrainConfig, ConfigError> {
    let mut c = config.clone();
    c.schedule = Schedule::constant(lr).map_err(ConfigError::from)?;
    c.epochs = epochs;
    c.validate()?;
    Ok(c)
}
