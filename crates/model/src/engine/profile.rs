//! Where the engine's time goes: per-step forward and backward seconds, when asked for.

use std::time::Instant;

use super::plan::{Engine, Step};

/// Time spent per engine step, forward and backward, in seconds, with the step's name.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// What the step does (`conv 1→10 3x3`, `bn+dropout+relu`, …).
    pub name: String,
    /// Seconds in forward passes.
    pub forward: f64,
    /// Seconds in backward passes.
    pub backward: f64,
    /// Floating-point operations per image in forward (a multiply-add counts 2): convolutions
    /// only, 0 for the other steps.
    pub forward_flops: f64,
    /// The same for backward: the weight gradient, plus the input gradient except for a first
    /// convolution (a training pass needs none there).
    pub backward_flops: f64,
}

impl Engine {
    /// Starts (or, with `false`, stops) accumulating per-step times.
    pub fn set_profiling(&self, on: bool) {
        *self.profile.lock().expect("profile lock") =
            on.then(|| vec![(0.0, 0.0); self.steps.len()]);
    }

    /// The per-step times accumulated since profiling started.
    pub fn profile(&self) -> Vec<StepTime> {
        let p = self.profile.lock().expect("profile lock");
        match &*p {
            Some(v) => v
                .iter()
                .zip(&self.names)
                .zip(&self.steps)
                .enumerate()
                .map(|(i, ((&(f, b), n), step))| {
                    let macs = match step {
                        Step::Conv(c) => (c.co * c.ci * c.off.len() * c.oh * c.ow) as f64,
                        _ => 0.0,
                    };
                    StepTime {
                        name: n.clone(),
                        forward: f,
                        backward: b,
                        forward_flops: 2.0 * macs,
                        backward_flops: if i == 0 { 2.0 } else { 4.0 } * macs,
                    }
                })
                .collect(),
            None => vec![],
        }
    }

    pub(super) fn timed<R>(&self, step: usize, backward: bool, f: impl FnOnce() -> R) -> R {
        let on = self.profile.lock().expect("profile lock").is_some();
        if !on {
            return f();
        }
        let t = Instant::now();
        let r = f();
        let dt = t.elapsed().as_secs_f64();
        if let Some(p) = self.profile.lock().expect("profile lock").as_mut() {
            if backward {
                p[step].1 += dt;
            } else {
                p[step].0 += dt;
            }
        }
        r
    }
}
