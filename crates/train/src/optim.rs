//! The optimizer a run's config names, behind one face for the loop: SGD or Adam.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::adam::{Adam, AdamConfig};
use crate::config::{Optimizer, TrainConfig};
use crate::sgd::{Sgd, SgdConfig};

/// SGD or Adam, as the config says.
pub(crate) enum Opt {
    Sgd(Sgd),
    Adam(Adam),
}

/// The config could not make its optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    /// Invalid SGD settings.
    #[error(transparent)]
    Sgd(#[from] crate::sgd::SgdError),
    /// Invalid Adam settings.
    #[error(transparent)]
    Adam(#[from] crate::adam::AdamError),
}

impl Opt {
    /// The config's optimizer over `params` (the learning rate comes from the schedule).
    pub(crate) fn new(
        c: &TrainConfig,
        params: Vec<(String, Var)>,
    ) -> std::result::Result<Self, OptimizerError> {
        Ok(match c.optimizer {
            Optimizer::Sgd {
                nesterov,
                dampening,
            } => Opt::Sgd(Sgd::new(
                params,
                SgdConfig {
                    weight_decay: c.weight_decay,
                    nesterov,
                    dampening,
                    ..SgdConfig::momentum(0.0, c.momentum)
                },
            )?),
            Optimizer::Adam {
                betas,
                eps,
                decoupled,
                amsgrad,
            } => Opt::Adam(Adam::new(
                params,
                AdamConfig {
                    lr: 0.0,
                    betas,
                    eps,
                    weight_decay: c.weight_decay,
                    decoupled,
                    amsgrad,
                },
            )?),
        })
    }

    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        match self {
            Opt::Sgd(o) => o.step(grads),
            Opt::Adam(o) => o.step(grads),
        }
    }

    pub(crate) fn set_lr(&mut self, lr: f64) {
        match self {
            Opt::Sgd(o) => o.config.lr = lr,
            Opt::Adam(o) => o.config.lr = lr,
        }
    }

    /// A one-cycle schedule's momentum: SGD's momentum, or Adam's β₁ (as PyTorch's OneCycleLR
    /// cycles it).
    pub(crate) fn set_momentum(&mut self, m: f64) {
        match self {
            Opt::Sgd(o) => o.config.momentum = m,
            Opt::Adam(o) => o.config.betas.0 = m,
        }
    }

    pub(crate) fn buffers(&self) -> Result<BTreeMap<String, Tensor>> {
        match self {
            Opt::Sgd(o) => Ok(o.buffers().clone()),
            Opt::Adam(o) => o.buffers(),
        }
    }

    pub(crate) fn set_buffers(&mut self, buffers: BTreeMap<String, Tensor>) -> Result<()> {
        match self {
            Opt::Sgd(o) => {
                o.set_buffers(buffers);
                Ok(())
            }
            Opt::Adam(o) => o.set_buffers(&buffers),
        }
    }
}
