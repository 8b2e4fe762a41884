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
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::onepass::{Value, or_zeros, state, values};

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
    /// `f32` and `f64` parameters are updated in one pass over their values, the others by
    /// candle's ops: the same operations on each value, so the same bits.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (name, p) in &self.params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let s = self.state.remove(name);
            let step = s.as_ref().map_or(0, |s| s.step) + 1;
            let c = Consts::of(&self.config, step);
            let done = match p.dtype() {
                DType::F32 => update::<f32>(&c, p, g, s.as_ref())?,
                DType::F64 => update::<f64>(&c, p, g, s.as_ref())?,
                _ => None,
            };
            let (m, v, v_max) = match done {
                Some(state) => state,
                None => update_ops(&c, p, g, s)?,
            };
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

/// One step's settings: the config and the bias corrections of step `t`.
struct Consts {
    c: AdamConfig,
    bias1: f64,
    bias2_sqrt: f64,
}

impl Consts {
    fn of(c: &AdamConfig, t: u64) -> Self {
        let (b1, b2) = c.betas;
        Consts {
            c: *c,
            bias1: 1.0 - b1.powi(t as i32),
            bias2_sqrt: (1.0 - b2.powi(t as i32)).sqrt(),
        }
    }
}

/// A parameter's new moments `(m, v, v̂)`.
type State = (Tensor, Tensor, Option<Tensor>);

/// The update of one parameter `p` from its gradient `g` and moments `s` (zeros at the first
/// step) with candle's ops, each rounding once to the parameter's type: the definition that
/// [`update`] computes in one pass.
fn update_ops(c: &Consts, p: &Var, g: &Tensor, s: Option<Moments>) -> Result<State> {
    let (cf, (b1, b2)) = (&c.c, c.c.betas);
    let mut g = g.detach();
    let mut param = p.as_tensor().detach();
    if cf.weight_decay != 0.0 {
        if cf.decoupled {
            param = (param * (1.0 - cf.lr * cf.weight_decay))?;
        } else {
            g = (g + (&param * cf.weight_decay)?)?;
        }
    }
    let s = match s {
        Some(s) => s,
        None => Moments {
            step: 0,
            m: g.zeros_like()?,
            v: g.zeros_like()?,
            v_max: cf.amsgrad.then(|| g.zeros_like()).transpose()?,
        },
    };
    // torch's lerp with a weight below 0.5: m + w·(g − m).
    let m = (&s.m + ((&g - &s.m)? * (1.0 - b1))?)?;
    let v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
    let v_max = s.v_max.map(|vm| vm.maximum(&v)).transpose()?;
    let denom = ((v_max.as_ref().unwrap_or(&v).sqrt()? / c.bias2_sqrt)? + cf.eps)?;
    let update = ((&m / denom)? * (cf.lr / c.bias1))?;
    p.set(&(param - update)?)?;
    Ok((m, v, v_max))
}

/// [`update_ops`] in one pass over the values, read where they lie: each of its ops on each
/// value in the same order ([`value`]), so the same bits, without 14 tensors a parameter (the
/// step took 130 µs a batch of the seed net's 22 parameters, about 1 % of its training step).
/// `None` where a tensor is not contiguous or has another shape than the parameter (the ops
/// then run, and return their error for a moment of another shape).
fn update<T: Value>(c: &Consts, p: &Var, g: &Tensor, s: Option<&Moments>) -> Result<Option<State>> {
    let n = p.elem_count();
    let k = Numbers::of(c);
    // AMSGrad's v̂ where the moments hold one, or from the first step with AMSGrad: as in
    // [`update_ops`], moments from a checkpoint keep their kind whatever the setting now.
    let ams = s.map_or(c.c.amsgrad, |s| s.v_max.is_some());
    // The new parameter, m, v and v̂ (computed without AMSGrad too, and then dropped).
    let mut outs: [Vec<T>; 4] = std::array::from_fn(|_| vec![k.zero; n]);
    {
        let shape = p.shape();
        let (Some(gs), Some(ps)) = (values::<T>(g, shape), values::<T>(p.as_tensor(), shape))
        else {
            return Ok(None);
        };
        // The moments at steps after the first (zeros before).
        let (Some(ms), Some(vs), Some(vms)) = (
            state::<T>(s.map(|s| &s.m), shape),
            state::<T>(s.map(|s| &s.v), shape),
            state::<T>(s.and_then(|s| s.v_max.as_ref()), shape),
        ) else {
            return Ok(None);
        };
        let zeros = vec![k.zero; n];
        let ins = [
            gs.get(),
            ps.get(),
            or_zeros(&ms, &zeros),
            or_zeros(&vs, &zeros),
            or_zeros(&vms, &zeros),
        ];
        let [o0, o1, o2, o3] = &mut outs;
        let outs = [&mut o0[..], &mut o1[..], &mut o2[..], &mut o3[..]];
        let cf = &c.c;
        match (cf.weight_decay != 0.0, cf.decoupled, ams) {
            (false, _, false) => pass::<T, NO_DECAY, false>(&k, ins, outs),
            (false, _, true) => pass::<T, NO_DECAY, true>(&k, ins, outs),
            (true, false, false) => pass::<T, COUPLED, false>(&k, ins, outs),
            (true, false, true) => pass::<T, COUPLED, true>(&k, ins, outs),
            (true, true, false) => pass::<T, DECOUPLED, false>(&k, ins, outs),
            (true, true, true) => pass::<T, DECOUPLED, true>(&k, ins, outs),
        }
    }
    let (shape, dev) = (p.shape(), p.device());
    let [param, m, v, v_max] = outs.map(|o| Tensor::from_vec(o, shape, dev));
    p.set(&param?)?;
    let v_max = ams.then_some(v_max).transpose()?;
    Ok(Some((m?, v?, v_max)))
}

/// [`update`]'s weight decay: none, in the gradient (Adam) or decoupled (AdamW).
const NO_DECAY: u8 = 0;
const COUPLED: u8 = 1;
const DECOUPLED: u8 = 2;

/// The numbers of one step of [`update`], each rounded to `T` as candle rounds an op's number.
#[derive(Clone, Copy)]
struct Numbers<T> {
    zero: T,
    one: T,
    keep: T,
    decay: T,
    b1: T,
    b2: T,
    one_b2: T,
    bias2: T,
    eps: T,
    lr: T,
}

impl<T: Value> Numbers<T> {
    fn of(c: &Consts) -> Self {
        let (cf, (b1, b2)) = (&c.c, c.c.betas);
        let k = |v: f64| T::from_f64(v);
        Numbers {
            zero: k(0.0),
            one: k(1.0),
            keep: k(1.0 - cf.lr * cf.weight_decay),
            decay: k(cf.weight_decay),
            b1: k(1.0 - b1),
            b2: k(b2),
            one_b2: k(1.0 - b2),
            bias2: k(1.0 / c.bias2_sqrt),
            eps: k(cf.eps),
            lr: k(cf.lr / c.bias1),
        }
    }
}

/// [`update`] over all values, `ins` = `[g, p, m, v, v̂]` and `outs` = `[p, m, v, v̂]`, one
/// loop for each weight decay and AMSGrad, with no branch inside (so the compiler vectorises
/// it: each vector lane the same operations as the scalar code).
fn pass<T: Value, const DECAY: u8, const AMS: bool>(
    k: &Numbers<T>,
    ins: [&[T]; 5],
    outs: [&mut [T]; 4],
) {
    let n = ins[0].len();
    assert!(ins.iter().all(|a| a.len() == n) && outs.iter().all(|a| a.len() == n));
    let [g, p, m, v, vm] = ins;
    let [po, mo, vo, vmo] = outs;
    for i in 0..n {
        (po[i], mo[i], vo[i], vmo[i]) = value::<T, DECAY, AMS>(k, g[i], p[i], m[i], v[i], vm[i]);
    }
}

/// One value of [`update_ops`]: candle's `x·a` and `x + a` with a number `a` are `x·T(a) +
/// T(b)` (`b` 0 or `a`, `x` times 1), its maximum keeps the first unless it is less.
#[inline(always)]
fn value<T: Value, const DECAY: u8, const AMS: bool>(
    k: &Numbers<T>,
    mut g: T,
    mut p: T,
    m: T,
    v: T,
    vm: T,
) -> (T, T, T, T) {
    let zero = k.zero;
    match DECAY {
        DECOUPLED => p = p * k.keep + zero,
        COUPLED => g += p * k.decay + zero,
        _ => {}
    }
    let m = m + ((g - m) * k.b1 + zero);
    let v = (v * k.b2 + zero) + ((g * g) * k.one_b2 + zero);
    let vm = if vm < v { v } else { vm };
    let vhat = if AMS { vm } else { v };
    let denom = (vhat.sqrt() * k.bias2 + zero) * k.one + k.eps;
    (p - ((m / denom) * k.lr + zero), m, v, vm)
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

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use proptest::prelude::*;

    use super::*;
    use crate::onepass::tests::{Steps, bits, both_ways, cases};

    /// A parameter's values after each of `grads.len()` steps, and its moments after the last,
    /// as bits: by [`update`] (`one_pass`) or by [`update_ops`]. With `switch`, the first step
    /// runs with the other AMSGrad setting (moments with or without v̂, as a checkpoint of such
    /// a run holds them, then the setting changed).
    struct Run {
        c: AdamConfig,
        switch: bool,
    }

    impl Steps for Run {
        fn run<T: Value>(&self, init: &[T], grads: &[Vec<T>], one_pass: bool) -> Vec<Vec<u64>> {
            let (c, switch) = (self.c, self.switch);
            let dev = Device::Cpu;
            let p = Var::from_vec(init.to_vec(), init.len(), &dev).unwrap();
            let (mut s, mut out) = (None::<Moments>, vec![]);
            for (t, g) in grads.iter().enumerate() {
                let g = Tensor::from_vec(g.clone(), g.len(), &dev).unwrap();
                let first = AdamConfig {
                    amsgrad: c.amsgrad != switch,
                    ..c
                };
                let consts = Consts::of(if t == 0 { &first } else { &c }, t as u64 + 1);
                let (m, v, v_max) = match one_pass {
                    true => update::<T>(&consts, &p, &g, s.as_ref())
                        .unwrap()
                        .expect("contiguous"),
                    false => update_ops(&consts, &p, &g, s.take()).unwrap(),
                };
                out.push(bits::<T>(p.as_tensor()));
                s = Some(Moments {
                    step: t as u64 + 1,
                    m,
                    v,
                    v_max,
                });
            }
            let s = s.expect("a step");
            out.extend([bits::<T>(&s.m), bits::<T>(&s.v)]);
            out.extend(s.v_max.as_ref().map(bits::<T>));
            out
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The one pass gives the ops' bits, in `f32` and `f64`, with and without (coupled or
        /// decoupled) weight decay and AMSGrad (or its setting changed after the first step),
        /// over several steps: the parameter after each and the moments after the last.
        #[test]
        fn one_pass_gives_the_ops_bits(
            case in cases(),
            decay in 0usize..3,
            amsgrad in any::<bool>(),
            switch in any::<bool>(),
            lr in 1e-4f64..0.1,
        ) {
            let c = AdamConfig {
                weight_decay: [0.0, 5e-4, 0.05][decay],
                decoupled: decay == 2,
                amsgrad,
                ..AdamConfig::adam(lr)
            };
            let [one_pass, ops] = both_ways(&Run { c, switch }, case);
            prop_assert_eq!(one_pass, ops);
        }
    }

    /// A moment of another shape than its parameter (a hand-made checkpoint's) is an error, as
    /// candle's ops give it, not a panic (nor read as if it fitted, with as many values).
    #[test]
    fn a_moment_of_another_shape_is_an_error() {
        let dev = Device::Cpu;
        for shape in [&[3][..], &[4], &[2, 2]] {
            let p = Var::from_vec(vec![1f32, 2.0, 3.0, 4.0], (2, 2), &dev).unwrap();
            let mut adam = Adam::new(vec![("w".into(), p.clone())], AdamConfig::adam(0.1)).unwrap();
            let ones = Tensor::ones(shape, DType::F32, &dev).unwrap();
            let buffers = [("exp_avg", &ones), ("exp_avg_sq", &ones)]
                .map(|(k, t)| (format!("w.{k}"), t.clone()))
                .into_iter()
                .chain([("w.step".into(), Tensor::new(1f64, &dev).unwrap())])
                .collect();
            adam.set_buffers(&buffers).unwrap();
            // The gradient of the sum: ones.
            let grads = p.as_tensor().sum_all().unwrap().backward().unwrap();
            assert_eq!(
                adam.step(&grads).is_ok(),
                shape == [2, 2],
                "moments of shape {shape:?}"
            );
        }
    }
}
