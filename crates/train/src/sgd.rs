//! SGD with PyTorch's semantics (`torch.optim.SGD`): for each parameter `p` with gradient `g`,
//!
//! ```text
//! g ← g + weight_decay·p
//! b ← g                          on the first step
//! b ← momentum·b + (1 − dampening)·g   afterwards
//! g ← g + momentum·b  (nesterov)   or   g ← b
//! p ← p − lr·g
//! ```
//!
//! State (the momentum buffers) is keyed by parameter name, so it survives a reordering of the
//! parameters and can be checkpointed by name. Buffers are detached from the graph.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening for momentum.
    pub dampening: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl SgdConfig {
    /// Momentum SGD with PyTorch's defaults for the rest.
    pub fn momentum(lr: f64, momentum: f64) -> Self {
        Self {
            lr,
            momentum,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Checks the values as PyTorch does (and that they are finite).
    pub fn validate(&self) -> std::result::Result<(), SgdError> {
        let finite = [self.lr, self.momentum, self.dampening, self.weight_decay]
            .iter()
            .all(|v| v.is_finite());
        if !finite || self.lr < 0.0 || self.momentum < 0.0 || self.weight_decay < 0.0 {
            return Err(SgdError::Values(*self));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(SgdError::Nesterov);
        }
        Ok(())
    }
}

/// Invalid [`SgdConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SgdError {
    /// A value that is negative or not finite.
    #[error("invalid SGD settings {0:?}: values must be finite and non-negative")]
    Values(SgdConfig),
    /// Nesterov momentum without momentum, or with dampening.
    #[error("invalid SGD settings: nesterov momentum requires a momentum and zero dampening")]
    Nesterov,
}

/// The optimizer.
pub struct Sgd {
    params: Vec<(String, Var)>,
    /// Current settings (the learning rate changes with the schedule).
    pub config: SgdConfig,
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// An optimizer over named parameters; the config is validated first.
    pub fn new(
        params: Vec<(String, Var)>,
        config: SgdConfig,
    ) -> std::result::Result<Self, SgdError> {
        config.validate()?;
        Ok(Self {
            params,
            config,
            buffers: BTreeMap::new(),
        })
    }

    /// One update from `grads`; parameters without a gradient are left alone (as PyTorch does).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (name, p) in &self.params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let mut d = g.detach();
            if c.weight_decay != 0.0 {
                d = (d + (p.as_tensor().detach() * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let buf = match self.buffers.get(name) {
                    None => d.copy()?,
                    Some(b) => ((b * c.momentum)? + (&d * (1.0 - c.dampening))?)?,
                };
                d = if c.nesterov {
                    (d + (&buf * c.momentum)?)?
                } else {
                    buf.clone()
                };
                self.buffers.insert(name.clone(), buf);
            }
            p.set(&(p.as_tensor().detach() - (d * c.lr)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name.
    pub fn buffers(&self) -> &BTreeMap<String, Tensor> {
        &self.buffers
    }

    /// Replaces the momentum buffers (from a checkpoint).
    pub fn set_buffers(&mut self, buffers: BTreeMap<String, Tensor>) {
        self.buffers = buffers;
    }
}

/// Unnamed parameters named `param0`, `param1`, … in the given order (for candle's
/// `Optimizer::new`, which gives no names).
pub(crate) fn numbered(vars: Vec<Var>) -> Vec<(String, Var)> {
    vars.into_iter()
        .enumerate()
        .map(|(i, v)| (format!("param{i}"), v))
        .collect()
}

impl candle_nn::Optimizer for Sgd {
    type Config = SgdConfig;

    /// Unnamed parameters get the names `param0`, `param1`, … in the given order.
    fn new(vars: Vec<Var>, config: SgdConfig) -> Result<Self> {
        Sgd::new(numbered(vars), config).map_err(candle_core::Error::wrap)
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        Sgd::step(self, grads)
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}
