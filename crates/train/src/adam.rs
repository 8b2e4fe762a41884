//! Adam and AdamW with PyTorch's semantics (`torch.optim.Adam`/`AdamW`, single-tensor path): for
//! each parameter `p` with gradient `g`, at step `t` (from 1),
//!
//! ```text
//! g ← g + weight_decay·p                  Adam (coupled, L2)
//! p ← p·(1 − lr·weight_decay)             AdamW (decoupled)
//! m ← m + (1 − β₁)·(g − m)                (torch's lerp)
//! v ← β₂·v + (1 − β₂)·g²
//! v̂ ← max(v̂, v) with amsgrad, else v̂ = v
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! State is keyed by parameter name, as [`crate::sgd::Sgd`]'s, and flattens into named tensors
//! for a checkpoint ([`Adam::buffers`]).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁ and β₂.
    pub betas: (f64, f64),
    /// ε, added to the denominator.
    pub eps: f64,
    /// Weight decay: an L2 term in the gradient (Adam), or decoupled (AdamW).
    pub weight_decay: f64,
    /// Decoupled weight decay: AdamW.
    pub decoupled: bool,
    /// The AMSGrad variant.
    pub amsgrad: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam(lr=lr)`.
    pub fn adam(lr: f64) -> Self {
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
        }
    }

    /// `torch.optim.AdamW(lr=lr)`: weight decay 0.01, decoupled.
    pub fn adamw(lr: f64) -> Self {
        Self {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam(lr)
        }
    }

    /// Checks the values as PyTorch does (and that they are finite).
    pub fn validate(&self) -> std::result::Result<(), AdamError> {
        let (b1, b2) = self.betas;
        let ok = [self.lr, b1, b2, self.eps, self.weight_decay]
            .iter()
            .all(|v| v.is_finite())
            && self.lr >= 0.0
            && self.eps >= 0.0
            && self.weight_decay >= 0.0
            && (0.0..1.0).contains(&b1)
            && (0.0..1.0).contains(&b2);
        match ok {
            true => Ok(()),
            false => Err(AdamError(*self)),
        }
    }
}

/// Invalid [`AdamConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid Adam settings {0:?}: lr, eps and weight decay finite and ≥ 0, betas in [0, 1)")]
pub struct AdamError(pub AdamConfig);

/// One parameter's moments.
struct Moments {
    step: u64,
    m: Tensor,
    v: Tensor,
    v_max: Option<Tensor>,
}

/// The optimizer.
pub struct Adam {
    params: Vec<(String, Var)>,
    /// Current settings (the learning rate changes with the schedule; β₁ with one-cycle).
    pub config: AdamConfig,
    state: BTreeMap<String, Moments>,
}

impl Adam {
    /// An optimizer over named parameters; the config is validated first.
    pub fn new(
        params: Vec<(String, Var)>,
        config: AdamConfig,
    ) -> std::result::Result<Self, AdamError> {
        config.validate()?;
        Ok(Self {
            params,
            config,
            state: BTreeMap::new(),
        })
    }

    /// One update from `grads`; parameters without a gradient are left alone (as PyTorch does).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        let (b1, b2) = c.betas;
        for (name, p) in &self.params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let mut g = g.detach();
            let mut param = p.as_tensor().detach();
            if c.weight_decay != 0.0 {
                if c.decoupled {
                    param = (param * (1.0 - c.lr * c.weight_decay))?;
                } else {
                    g = (g + (&param * c.weight_decay)?)?;
                }
            }
            let s = match self.state.remove(name) {
                Some(s) => s,
                None => Moments {
                    step: 0,
                    m: g.zeros_like()?,
                    v: g.zeros_like()?,
                    v_max: c.amsgrad.then(|| g.zeros_like()).transpose()?,
                },
            };
            let step = s.step + 1;
            // torch's lerp with a weight below 0.5: m + w·(g − m).
            let m = (&s.m + ((&g - &s.m)? * (1.0 - b1))?)?;
            let v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let v_max = s.v_max.map(|vm| vm.maximum(&v)).transpose()?;
            let bias1 = 1.0 - b1.powi(step as i32);
            let bias2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
            let denom = ((v_max.as_ref().unwrap_or(&v).sqrt()? / bias2_sqrt)? + c.eps)?;
            let update = ((&m / denom)? * (c.lr / bias1))?;
            p.set(&(param - update)?)?;
            self.state
                .insert(name.clone(), Moments { step, m, v, v_max });
        }
        Ok(())
    }

    /// The state as named tensors (`NAME.exp_avg`, `NAME.exp_avg_sq`, `NAME.max_exp_avg_sq`,
    /// `NAME.step`, as PyTorch's `state_dict` names them), for a checkpoint.
    pub fn buffers(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.state {
            out.insert(format!("{name}.exp_avg"), s.m.clone());
            out.insert(format!("{name}.exp_avg_sq"), s.v.clone());
            if let Some(vm) = &s.v_max {
                out.insert(format!("{name}.max_exp_avg_sq"), vm.clone());
            }
            let step = Tensor::new(s.step as f64, s.m.device())?;
            out.insert(format!("{name}.step"), step);
        }
        Ok(out)
    }

    /// Replaces the state with `buffers` as [`Adam::buffers`] names them (from a checkpoint).
    pub fn set_buffers(&mut self, buffers: &BTreeMap<String, Tensor>) -> Result<()> {
        self.state.clear();
        for (name, _) in &self.params {
            let get = |k: &str| buffers.get(&format!("{name}.{k}")).cloned();
            let (Some(m), Some(v), Some(step)) = (get("exp_avg"), get("exp_avg_sq"), get("step"))
            else {
                continue;
            };
            let step = step.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? as u64;
            let v_max = get("max_exp_avg_sq");
            self.state
                .insert(name.clone(), Moments { step, m, v, v_max });
        }
        Ok(())
    }
}

impl candle_nn::Optimizer for Adam {
    type Config = AdamConfig;

    /// Unnamed parameters get the names `param0`, `param1`, … in the given order.
    fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        Adam::new(crate::sgd::numbered(vars), config).map_err(candle_core::Error::wrap)
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        Adam::step(self, grads)
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}
