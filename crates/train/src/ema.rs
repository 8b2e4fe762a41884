//! Weight averaging with PyTorch's semantics: an exponential moving average of the weights and
//! of the BatchNorm statistics, as
//! `torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
//! use_buffers=True)` keeps it when `update_parameters(model)` follows every optimizer step:
//!
//! ```text
//! first update:  a ← p
//! afterwards:    a ← lerp(a, p, 1 − decay)     (torch.lerp: a + w·(p − a) when |w| < 0.5,
//!                                               else p − (p − a)·(1 − w))
//! ```
//!
//! in `f32`, for every parameter and floating-point buffer. With decay 0 the average is the
//! model itself, bit for bit. BatchNorm's integer `num_batches_tracked` is not averaged here:
//! the averaged model takes the trained model's (it does not change what the model computes).
//!
//! ```
//! use under8k_train::ema::Ema;
//! let mut ema = Ema::new(0.5).unwrap();
//! ema.update([("w", &[2.0f32][..])]);
//! ema.update([("w", &[4.0f32][..])]);
//! assert_eq!(ema.values()["w"], vec![3.0]);
//! ```

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use under8k_model::Net;
use under8k_model::checkpoint;

/// A run's weight averaging (`TrainConfig::ema`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    /// The average's decay, in [0, 1]: `get_ema_multi_avg_fn(decay)`.
    pub decay: f64,
    /// Which model the run evaluates as its accuracy and saves as `model.safetensors`; the
    /// history records both models' accuracies either way.
    #[serde(default)]
    pub model: EmaModel,
}

/// The model a run with weight averaging reports and saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmaModel {
    /// The averaged model.
    #[default]
    Averaged,
    /// The trained model itself.
    Raw,
}

impl EmaConfig {
    /// Averaging with `decay`, reporting and saving the averaged model.
    pub fn new(decay: f64) -> Result<Self, EmaError> {
        let c = Self {
            decay,
            model: EmaModel::Averaged,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks that the decay is in [0, 1].
    pub fn validate(&self) -> Result<(), EmaError> {
        match (0.0..=1.0).contains(&self.decay) {
            true => Ok(()),
            false => Err(EmaError::Decay(self.decay)),
        }
    }
}

/// Invalid averaging settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmaError {
    /// A decay outside [0, 1].
    #[error("invalid weight averaging: decay {0} is not in [0, 1]")]
    Decay(f64),
    /// A tensor's size changed between updates.
    #[error("weight averaging: `{name}` has {got} values, the average {want}")]
    Size {
        /// The tensor.
        name: String,
        /// Its values now.
        got: usize,
        /// The average's.
        want: usize,
    },
}

/// The moving average of named `f32` tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    weight: f32,
    values: BTreeMap<String, Vec<f32>>,
    n_averaged: u64,
}

/// `torch.lerp(start, end, weight)` on floats, branch for branch.
fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

impl Ema {
    /// An empty average of `decay` (the first update copies).
    pub fn new(decay: f64) -> Result<Self, EmaError> {
        EmaConfig::new(decay)?;
        Ok(Self {
            // PyTorch passes `1 - decay` (a double) to lerp on f32 tensors, which rounds it.
            weight: (1.0 - decay) as f32,
            values: BTreeMap::new(),
            n_averaged: 0,
        })
    }

    /// Folds the current values in.
    pub fn update<'a>(&mut self, current: impl IntoIterator<Item = (&'a str, &'a [f32])>) {
        for (name, now) in current {
            match self.values.get_mut(name) {
                Some(avg) if self.n_averaged > 0 && avg.len() == now.len() => {
                    for (a, &p) in avg.iter_mut().zip(now) {
                        *a = lerp(*a, p, self.weight);
                    }
                }
                _ => {
                    self.values.insert(name.to_string(), now.to_vec());
                }
            }
        }
        self.n_averaged += 1;
    }

    /// The averages, by name.
    pub fn values(&self) -> &BTreeMap<String, Vec<f32>> {
        &self.values
    }

    /// Updates so far.
    pub fn n_averaged(&self) -> u64 {
        self.n_averaged
    }

    /// An average restored from saved values (see [`Ema::values`], [`Ema::n_averaged`]).
    pub fn restore(
        decay: f64,
        values: BTreeMap<String, Vec<f32>>,
        n_averaged: u64,
    ) -> Result<Self, EmaError> {
        Ok(Self {
            values,
            n_averaged,
            ..Self::new(decay)?
        })
    }

    /// Folds in `net`'s parameters and BatchNorm statistics.
    pub fn update_from(&mut self, net: &Net) -> candle_core::Result<()> {
        let state = averaged_entries(net)?;
        self.update(state.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        Ok(())
    }

    /// A `state_dict` of the averaged model: the averages in `net`'s shapes, and `net`'s own
    /// `num_batches_tracked`.
    pub fn state_dict(&self, net: &Net) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut state = checkpoint::state_dict(net)?;
        for (name, t) in state.iter_mut() {
            if let Some(avg) = self.values.get(name) {
                *t = Tensor::from_slice(avg, t.dims(), &Device::Cpu)?;
            }
        }
        Ok(state)
    }
}

/// `net`'s floating-point state (parameters, running means and variances), flattened.
fn averaged_entries(net: &Net) -> candle_core::Result<Vec<(String, Vec<f32>)>> {
    checkpoint::state_dict(net)?
        .into_iter()
        .filter(|(_, t)| t.dtype() == DType::F32)
        .map(|(k, t)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lerp_takes_torchs_branches() {
        // Small weight: start + w·(end − start) = 1 + 0.25·2.
        assert_eq!(lerp(1.0, 3.0, 0.25), 1.5);
        // Weight ≥ 0.5: end − (end − start)·(1 − w) = 3 − 2·0.25; weight 1 is `end` exactly.
        assert_eq!(lerp(1.0, 3.0, 0.75), 2.5);
        assert_eq!(lerp(0.1, 0.7, 1.0), 0.7);
    }

    #[test]
    fn decay_outside_zero_one_is_refused() {
        assert_eq!(Ema::new(1.5).unwrap_err(), EmaError::Decay(1.5));
        assert!(Ema::new(f64::NAN).is_err());
        assert!(Ema::new(0.0).is_ok() && Ema::new(1.0).is_ok());
    }

    #[test]
    fn first_update_copies_then_averages() {
        let mut e = Ema::new(0.75).unwrap();
        e.update([("a", &[4.0f32, 8.0][..])]);
        assert_eq!(e.values()["a"], vec![4.0, 8.0]);
        // 4 + 0.25·(0 − 4) = 3; 8 + 0.25·(16 − 8) = 10.
        e.update([("a", &[0.0f32, 16.0][..])]);
        assert_eq!(
            (e.values()["a"].clone(), e.n_averaged()),
            (vec![3.0, 10.0], 2)
        );
    }
}
