//! Learning-rate schedules, computed with PyTorch's own arithmetic so the sequences match
//! `torch.optim.lr_scheduler` to the last bit.
//!
//! A [`Schedule`] is a validated, serialisable description; a [`Scheduler`] walks it, with a
//! serialisable [`SchedulerState`] (epoch and step counters) so a resumed run continues the same
//! sequence. Epoch-based schedules change the learning rate at epoch boundaries (PyTorch calls
//! `scheduler.step()` once per epoch); [`Schedule::OneCycle`] changes it every optimizer step.
//!
//! PyTorch updates epoch schedules multiplicatively (its "chainable" form: at each boundary the
//! current rate is multiplied by the factor), which differs from `lr0·γ^k` in the last bits; this
//! crate does the same.
//!
#![doc = include_str!("../README.md")]

use serde::{Deserialize, Serialize};

/// An invalid schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A learning rate that is not finite and positive.
    #[error("invalid schedule: learning rate {0} must be finite and > 0")]
    LearningRate(f64),
    /// A factor that is not finite and positive.
    #[error("invalid schedule: gamma {0} must be finite and > 0")]
    Gamma(f64),
    /// `StepLR` with a step size of 0.
    #[error("invalid schedule: step_size must be at least 1")]
    StepSize,
    /// A decrement over 0 epochs, or one that is not finite.
    #[error(
        "invalid schedule: a decrement of {decrement} over {epochs} epochs: epochs must be at least 1 and the decrement finite"
    )]
    Decrement {
        /// The total decrement.
        decrement: f64,
        /// The epochs.
        epochs: usize,
    },
    /// Milestones that are empty or not sorted.
    #[error("invalid schedule: milestones {0:?} must be non-empty and sorted")]
    Milestones(Vec<usize>),
    /// A one-cycle schedule of fewer than 2 steps.
    #[error("invalid schedule: one-cycle needs at least 2 steps, not {0}")]
    TooShort(usize),
}

/// A learning-rate schedule.
///
/// ```
/// use under8k_sched::Schedule;
///
/// // StepLR(step_size=2, gamma=0.5): the rate halves every second epoch.
/// let s = Schedule::step(0.1, 2, 0.5)?;
/// let lrs: Vec<f64> = (0..5).map(|epoch| s.lr(epoch, 0)).collect();
/// assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]);
/// // A schedule is data: it round-trips through the JSON of a run's config.
/// assert_eq!(serde_json::from_str::<Schedule>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
/// # Ok::<(), under8k_sched::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same rate throughout.
    Constant {
        /// Learning rate.
        lr: f64,
    },
    /// `StepLR`: multiply by `gamma` every `step_size` epochs.
    Step {
        /// Initial learning rate.
        lr: f64,
        /// Epochs between decays.
        step_size: usize,
        /// Factor.
        gamma: f64,
    },
    /// `MultiStepLR`: multiply by `gamma` at each milestone epoch (a repeated milestone multiplies
    /// by `gamma` once per repetition).
    MultiStep {
        /// Initial learning rate.
        lr: f64,
        /// Epochs at which to decay, non-decreasing.
        milestones: Vec<usize>,
        /// Factor.
        gamma: f64,
    },
    /// `ExponentialLR`: multiply by `gamma` every epoch.
    Exponential {
        /// Initial learning rate.
        lr: f64,
        /// Factor.
        gamma: f64,
    },
    /// `OneCycleLR` with PyTorch's defaults (cosine annealing, two phases), stepped per batch.
    OneCycle {
        /// Peak learning rate.
        max_lr: f64,
        /// Total optimizer steps (epochs × batches per epoch).
        total_steps: usize,
        /// Fraction of the steps spent rising (0.3).
        pct_start: f64,
        /// `initial_lr = max_lr / div_factor` (25).
        div_factor: f64,
        /// `min_lr = initial_lr / final_div_factor` (1e4).
        final_div_factor: f64,
        /// Momentum cycles inversely between these (0.85, 0.95), as `cycle_momentum=True` does.
        momentum: Option<(f64, f64)>,
    },
}

fn check_lr(lr: f64) -> Result<(), ScheduleError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(ScheduleError::LearningRate(lr))
    }
}

fn check_gamma(gamma: f64) -> Result<(), ScheduleError> {
    if gamma.is_finite() && gamma > 0.0 {
        Ok(())
    } else {
        Err(ScheduleError::Gamma(gamma))
    }
}

impl Schedule {
    /// Constant rate.
    pub fn constant(lr: f64) -> Result<Self, ScheduleError> {
        check_lr(lr)?;
        Ok(Self::Constant { lr })
    }

    /// `StepLR(step_size, gamma)`.
    pub fn step(lr: f64, step_size: usize, gamma: f64) -> Result<Self, ScheduleError> {
        check_lr(lr)?;
        check_gamma(gamma)?;
        if step_size == 0 {
            return Err(ScheduleError::StepSize);
        }
        Ok(Self::Step {
            lr,
            step_size,
            gamma,
        })
    }

    /// The seed's variant: `StepLR(step_size=1)` with `gamma = (lr − total_decrement/epochs) / lr`,
    /// so the first step lowers the rate by `total_decrement/epochs` and later ones by the same
    /// *proportion*: the decay is geometric, not linear (the write-up meant "lose 0.1 over the
    /// epochs", but from 0.07 over 15 epochs the rate ends near 0.017, not below 0). For lr 0.07:
    /// 0.07, 0.0633…, 0.0573…, 0.0518….
    pub fn geometric_from_decrement(
        lr: f64,
        total_decrement: f64,
        epochs: usize,
    ) -> Result<Self, ScheduleError> {
        check_lr(lr)?;
        if epochs == 0 || !total_decrement.is_finite() {
            return Err(ScheduleError::Decrement {
                decrement: total_decrement,
                epochs,
            });
        }
        let gamma = (lr - total_decrement / epochs as f64) / lr;
        Self::step(lr, 1, gamma)
    }

    /// `MultiStepLR(milestones, gamma)`; milestones must be non-empty and non-decreasing.
    pub fn multi_step(lr: f64, milestones: Vec<usize>, gamma: f64) -> Result<Self, ScheduleError> {
        check_lr(lr)?;
        check_gamma(gamma)?;
        if milestones.is_empty() || milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(ScheduleError::Milestones(milestones));
        }
        Ok(Self::MultiStep {
            lr,
            milestones,
            gamma,
        })
    }

    /// `ExponentialLR(gamma)`.
    pub fn exponential(lr: f64, gamma: f64) -> Result<Self, ScheduleError> {
        check_lr(lr)?;
        check_gamma(gamma)?;
        Ok(Self::Exponential { lr, gamma })
    }

    /// `OneCycleLR(max_lr, total_steps)` with PyTorch's defaults.
    pub fn one_cycle(max_lr: f64, total_steps: usize) -> Result<Self, ScheduleError> {
        check_lr(max_lr)?;
        if total_steps < 2 {
            return Err(ScheduleError::TooShort(total_steps));
        }
        Ok(Self::OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            momentum: Some((0.85, 0.95)),
        })
    }

    /// Whether the rate changes per optimizer step (else per epoch).
    pub fn per_step(&self) -> bool {
        matches!(self, Self::OneCycle { .. })
    }

    /// Learning rate after `epoch` epochs and `step` optimizer steps in all.
    pub fn lr(&self, epoch: usize, step: usize) -> f64 {
        match self {
            Self::Constant { lr } => *lr,
            Self::Step {
                lr,
                step_size,
                gamma,
            } => (1..=epoch)
                .filter(|e| e % step_size == 0)
                .fold(*lr, |acc, _| acc * gamma),
            Self::MultiStep {
                lr,
                milestones,
                gamma,
            } => (1..=epoch).fold(*lr, |acc, e| {
                match milestones.iter().filter(|&&m| m == e).count() {
                    0 => acc,
                    c => acc * gamma.powi(c as i32),
                }
            }),
            Self::Exponential { lr, gamma } => (0..epoch).fold(*lr, |acc, _| acc * gamma),
            Self::OneCycle {
                max_lr,
                div_factor,
                final_div_factor,
                ..
            } => {
                let initial = max_lr / div_factor;
                self.one_cycle_anneal(
                    step,
                    (initial, *max_lr),
                    (*max_lr, initial / final_div_factor),
                )
            }
        }
    }

    /// Momentum at `step`, for schedules that cycle it (one-cycle); `None` otherwise.
    pub fn momentum(&self, step: usize) -> Option<f64> {
        match self {
            Self::OneCycle {
                momentum: Some((base, max)),
                ..
            } => Some(self.one_cycle_anneal(step, (*max, *base), (*base, *max))),
            _ => None,
        }
    }

    /// PyTorch's `OneCycleLR.get_lr` for two phases with cosine annealing.
    fn one_cycle_anneal(&self, step: usize, phase1: (f64, f64), phase2: (f64, f64)) -> f64 {
        let Self::OneCycle {
            total_steps,
            pct_start,
            ..
        } = self
        else {
            unreachable!()
        };
        let end1 = pct_start * *total_steps as f64 - 1.0;
        let end2 = *total_steps as f64 - 1.0;
        let cos = |start: f64, end: f64, pct: f64| {
            end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
        };
        let s = step as f64;
        if s <= end1 {
            cos(phase1.0, phase1.1, s / end1)
        } else {
            cos(phase2.0, phase2.1, (s - end1) / (end2 - end1))
        }
    }
}

/// Where a [`Scheduler`] is: completed epochs and optimizer steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
}

/// Walks a [`Schedule`]: call [`Scheduler::end_step`] after each optimizer step and
/// [`Scheduler::end_epoch`] after each epoch; [`Scheduler::lr`] is the rate for the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduler {
    /// The schedule.
    pub schedule: Schedule,
    /// The counters.
    pub state: SchedulerState,
}

impl Scheduler {
    /// At the start.
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            state: SchedulerState::default(),
        }
    }

    /// Resumes from saved counters.
    pub fn resume(schedule: Schedule, state: SchedulerState) -> Self {
        Self { schedule, state }
    }

    /// The learning rate for the next optimizer step.
    pub fn lr(&self) -> f64 {
        self.schedule.lr(self.state.epoch, self.state.step)
    }

    /// The momentum for the next step, if the schedule sets it.
    pub fn momentum(&self) -> Option<f64> {
        self.schedule.momentum(self.state.step)
    }

    /// One optimizer step is done.
    pub fn end_step(&mut self) {
        self.state.step += 1;
    }

    /// One epoch is done.
    pub fn end_epoch(&mut self) {
        self.state.epoch += 1;
    }
}
