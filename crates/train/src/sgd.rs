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
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::onepass::{Value, or_zeros, state, values};

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
    /// `f32` and `f64` parameters are updated in one pass over their values, the others by
    /// candle's ops: the same operations on each value, so the same bits.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (name, p) in &self.params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let buf = self.buffers.get(name);
            let done = match p.dtype() {
                DType::F32 => update::<f32>(&c, p, g, buf)?,
                DType::F64 => update::<f64>(&c, p, g, buf)?,
                _ => None,
            };
            let buf = match done {
                Some(buf) => buf,
                None => update_ops(&c, p, g, buf)?,
            };
            if let Some(buf) = buf {
                self.buffers.insert(name.clone(), buf);
            }
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

/// The update of one parameter `p` from its gradient `g` and momentum buffer `buf` with
/// candle's ops, each rounding once to the parameter's type: the definition that [`update`]
/// computes in one pass. The new buffer, with momentum.
fn update_ops(c: &SgdConfig, p: &Var, g: &Tensor, buf: Option<&Tensor>) -> Result<Option<Tensor>> {
    let mut d = g.detach();
    if c.weight_decay != 0.0 {
        d = (d + (p.as_tensor().detach() * c.weight_decay)?)?;
    }
    let mut kept = None;
    if c.momentum != 0.0 {
        let buf = match buf {
            None => d.copy()?,
            Some(b) => ((b * c.momentum)? + (&d * (1.0 - c.dampening))?)?,
        };
        d = if c.nesterov {
            (d + (&buf * c.momentum)?)?
        } else {
            buf.clone()
        };
        kept = Some(buf);
    }
    p.set(&(p.as_tensor().detach() - (d * c.lr)?)?)?;
    Ok(kept)
}

/// [`update_ops`] in one pass over the values, read where they lie: each of its ops on each
/// value in the same order ([`value`]), so the same bits, without 5 tensors a parameter. `None`
/// where a tensor is not contiguous or has another shape than the parameter (the ops then run,
/// and return their error for a buffer of another shape).
fn update<T: Value>(
    c: &SgdConfig,
    p: &Var,
    g: &Tensor,
    buf: Option<&Tensor>,
) -> Result<Option<Option<Tensor>>> {
    let (n, shape, k) = (p.elem_count(), p.shape(), Numbers::of(c));
    let momentum = c.momentum != 0.0;
    // The new parameter and buffer (computed without momentum too, and then dropped).
    let (mut param, mut kept) = (vec![k.zero; n], vec![k.zero; n]);
    {
        let (Some(gs), Some(ps)) = (values::<T>(g, shape), values::<T>(p.as_tensor(), shape))
        else {
            return Ok(None);
        };
        let Some(bs) = state::<T>(buf.filter(|_| momentum), shape) else {
            return Ok(None);
        };
        let ins = [gs.get(), ps.get(), or_zeros(&bs, gs.get())];
        let outs = [&mut param[..], &mut kept[..]];
        let first = bs.is_none();
        match (c.weight_decay != 0.0, momentum, first, c.nesterov) {
            (false, false, ..) => pass::<T, false, NO_MOMENTUM, false>(&k, ins, outs),
            (true, false, ..) => pass::<T, true, NO_MOMENTUM, false>(&k, ins, outs),
            (false, true, true, false) => pass::<T, false, FIRST, false>(&k, ins, outs),
            (false, true, true, true) => pass::<T, false, FIRST, true>(&k, ins, outs),
            (false, true, false, false) => pass::<T, false, LATER, false>(&k, ins, outs),
            (false, true, false, true) => pass::<T, false, LATER, true>(&k, ins, outs),
            (true, true, true, false) => pass::<T, true, FIRST, false>(&k, ins, outs),
            (true, true, true, true) => pass::<T, true, FIRST, true>(&k, ins, outs),
            (true, true, false, false) => pass::<T, true, LATER, false>(&k, ins, outs),
            (true, true, false, true) => pass::<T, true, LATER, true>(&k, ins, outs),
        }
    }
    let dev = p.device();
    p.set(&Tensor::from_vec(param, shape, dev)?)?;
    let kept = momentum.then(|| Tensor::from_vec(kept, shape, dev));
    Ok(Some(kept.transpose()?))
}

/// [`update`]'s momentum: none, the first step's (the buffer is the gradient), or later.
const NO_MOMENTUM: u8 = 0;
const FIRST: u8 = 1;
const LATER: u8 = 2;

/// The numbers of one step of [`update`], each rounded to `T` as candle rounds an op's number.
struct Numbers<T> {
    zero: T,
    decay: T,
    momentum: T,
    undamped: T,
    lr: T,
}

impl<T: Value> Numbers<T> {
    fn of(c: &SgdConfig) -> Self {
        Numbers {
            zero: T::from_f64(0.0),
            decay: T::from_f64(c.weight_decay),
            momentum: T::from_f64(c.momentum),
            undamped: T::from_f64(1.0 - c.dampening),
            lr: T::from_f64(c.lr),
        }
    }
}

/// [`update`] over all values, `ins` = `[g, p, b]` and `outs` = `[p, b]`, one loop for each
/// weight decay, momentum and Nesterov setting, with no branch inside (so the compiler
/// vectorises it: each vector lane the same operations as the scalar code).
fn pass<T: Value, const DECAY: bool, const MOMENTUM: u8, const NESTEROV: bool>(
    k: &Numbers<T>,
    [g, p, b]: [&[T]; 3],
    [po, bo]: [&mut [T]; 2],
) {
    let n = g.len();
    assert!(
        [p.len(), b.len(), po.len(), bo.len()]
            .iter()
            .all(|&l| l == n)
    );
    for i in 0..n {
        (po[i], bo[i]) = value::<T, DECAY, MOMENTUM, NESTEROV>(k, g[i], p[i], b[i]);
    }
}

/// One value of [`update_ops`]: candle's `x·a` with a number `a` is `x·T(a) + T(0)`.
#[inline(always)]
fn value<T: Value, const DECAY: bool, const MOMENTUM: u8, const NESTEROV: bool>(
    k: &Numbers<T>,
    g: T,
    p: T,
    b: T,
) -> (T, T) {
    let zero = k.zero;
    let mut d = g;
    if DECAY {
        d += p * k.decay + zero;
    }
    let b = match MOMENTUM {
        FIRST => d,
        LATER => (b * k.momentum + zero) + (d * k.undamped + zero),
        _ => b,
    };
    if MOMENTUM != NO_MOMENTUM {
        d = if NESTEROV {
            d + (b * k.momentum + zero)
        } else {
            b
        };
    }
    (p - (d * k.lr + zero), b)
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use proptest::prelude::*;

    use super::*;
    use crate::onepass::tests::{Steps, bits, both_ways, cases};

    /// A parameter's values after each of `grads.len()` steps, and its buffer after the last,
    /// as bits: by [`update`] (`one_pass`) or by [`update_ops`].
    impl Steps for SgdConfig {
        fn run<T: Value>(&self, init: &[T], grads: &[Vec<T>], one_pass: bool) -> Vec<Vec<u64>> {
            let dev = Device::Cpu;
            let p = Var::from_vec(init.to_vec(), init.len(), &dev).unwrap();
            let (mut buf, mut out) = (None::<Tensor>, vec![]);
            for g in grads {
                let g = Tensor::from_vec(g.clone(), g.len(), &dev).unwrap();
                let kept = match one_pass {
                    true => update::<T>(self, &p, &g, buf.as_ref())
                        .unwrap()
                        .expect("contiguous"),
                    false => update_ops(self, &p, &g, buf.as_ref()).unwrap(),
                };
                buf = kept.or(buf);
                out.push(bits::<T>(p.as_tensor()));
            }
            out.extend(buf.as_ref().map(bits::<T>));
            out
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The one pass gives the ops' bits, in `f32` and `f64`, with and without weight decay,
        /// momentum (dampened or Nesterov), over several steps: the parameter after each and
        /// the buffer after the last.
        #[test]
        fn one_pass_gives_the_ops_bits(
            case in cases(),
            decay in 0usize..3,
            momentum in prop_oneof![Just(0.0), Just(0.9), 0.5f64..0.99],
            damped in any::<bool>(),
            nesterov in any::<bool>(),
            lr in 1e-4f64..0.5,
        ) {
            let c = SgdConfig {
                weight_decay: [0.0, 5e-4, 0.05][decay],
                dampening: if damped && !nesterov { 0.1 } else { 0.0 },
                nesterov: nesterov && momentum != 0.0,
                ..SgdConfig::momentum(lr, momentum)
            };
            let [one_pass, ops] = both_ways(&c, case);
            prop_assert_eq!(one_pass, ops);
        }
    }

    /// A momentum buffer of another shape than its parameter (a hand-made checkpoint's) is an
    /// error, as candle's ops give it, not a panic; one of the same shape is read.
    #[test]
    fn a_buffer_of_another_shape_is_an_error() {
        let dev = Device::Cpu;
        let p = Var::from_vec(vec![1f32, 2.0, 3.0, 4.0], (2, 2), &dev).unwrap();
        let mut sgd =
            Sgd::new(vec![("w".into(), p.clone())], SgdConfig::momentum(0.5, 0.9)).unwrap();
        // The gradient of the sum: ones.
        let grads = p.as_tensor().sum_all().unwrap().backward().unwrap();
        let buffer = |shape: &[usize]| Tensor::ones(shape, DType::F32, &dev).unwrap();
        sgd.set_buffers(BTreeMap::from([("w".into(), buffer(&[4]))]));
        assert!(sgd.step(&grads).is_err());
        sgd.set_buffers(BTreeMap::from([("w".into(), buffer(&[2, 2]))]));
        sgd.step(&grads).unwrap();
        // By hand, in f32: b = 0.9·1 + 1·1; p − 0.5·b.
        let b = 0.9f32 * 1.0 + 1.0 * 1.0;
        let want: Vec<f32> = [1f32, 2.0, 3.0, 4.0].iter().map(|p| p - 0.5 * b).collect();
        let got = p
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, want);
    }
}
