//! The fast CPU path: the whole layer stack of a spec as one candle custom op.
//!
//! candle's autograd accumulates every node's gradient as `zeros_like + add`, a full pass over
//! memory per activation, and its CPU convolution backward is a naive loop. This engine runs the
//! spec's layers with hand-written kernels ([`conv`], [`act`], [`misc`]) inside one
//! [`CustomOp2`] of `(input, all parameters flattened)`, keeping the activations it needs for
//! backward to itself. To candle it is one differentiable op: `loss.backward()` reaches every
//! parameter [`Var`](candle_core::Var) through the `cat` that flattened them.
//!
//! - Convolutions (stride 1, any padding, with or without bias) use the wide-plane kernels of
//!   [`conv`]; the first layer's input gradient is skipped unless the input tracks a gradient.
//! - BatchNorm → Dropout → ReLU runs fused ([`act`]), with counter-based dropout masks
//!   recomputed rather than stored.
//! - Images are processed in parallel (rayon); every reduction over the batch (BatchNorm
//!   statistics, weight gradients) sums per-image partials in image order, so results are the
//!   same for any thread count.
//!
//! [`Net`](crate::Net) compares this path against its reference path (candle's own ops) in
//! tests, and finite-difference tests check its gradients in `f64`.

/// Defines `fn $name<T: Real>(…)` whose body is compiled twice: as is, and with AVX2 + FMA
/// enabled, the latter chosen at run time when the CPU has them. `Real::mul_add` is a single
/// `vfmadd` there and a (slow but identical) library call otherwise: both round once, so the
/// two versions give the same bits.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<T: Real>($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name<T: Real>($($arg: $ty),*) {
            $(#[$m])*
            #[inline(always)]
            fn imp<T: Real>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                $(#[$m])*
                #[target_feature(enable = "avx2,fma")]
                fn fast<T: Real>($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: `fast` only needs AVX2 and FMA, which the CPU was just found to have.
                    #[allow(unsafe_code)]
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

pub mod act;
pub mod conv;
pub mod misc;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Error, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::net::BN_EPS;
use crate::spec::{Layer, ResolvedLayer};

/// The float types the kernels run on (`f32` for training, `f64` for gradient checks).
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// `self·a + b`, rounded once.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// From `f64` (rounded).
    fn from_f64(v: f64) -> Self;
    /// To `f64`.
    fn to_f64(self) -> f64;
    /// `eˣ`.
    fn exp(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// NaN test.
    fn is_nan(self) -> bool;
    /// The engine's buffer pool for this type.
    #[doc(hidden)]
    fn pool(e: &Engine) -> &BufferPool<Self>;
}

/// Activation buffers kept between passes: every pass needs the same sizes again, and reusing
/// them saves zero-filling fresh memory (and the page faults behind it) on every batch.
#[doc(hidden)]
#[derive(Default)]
pub struct BufferPool<T>(Mutex<Vec<Vec<T>>>);

impl<T: Real> BufferPool<T> {
    /// A buffer of `n` values whose contents are unspecified (stale values from an earlier
    /// pass, or zeros): callers overwrite every element before reading any.
    fn take(&self, n: usize) -> Vec<T> {
        let mut pool = self.0.lock().expect("pool lock");
        let pick = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut v = match pick {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(n),
        };
        v.resize(n, T::ZERO);
        v.truncate(n);
        v
    }

    /// Returns buffers for reuse (at most a few dozen are kept).
    fn give(&self, bufs: impl IntoIterator<Item = Vec<T>>) {
        let mut pool = self.0.lock().expect("pool lock");
        pool.extend(bufs);
        if pool.len() > 64 {
            pool.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
            pool.truncate(64);
        }
    }
}

macro_rules! real {
    ($t:ty, $pool:ident) => {
        impl Real for $t {
            fn pool(e: &Engine) -> &BufferPool<Self> {
                &e.$pool
            }
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
real!(f32, pool32);
real!(f64, pool64);

#[derive(Debug, Clone)]
struct ConvStep {
    ci: usize,
    co: usize,
    pad: usize,
    h: usize,
    w: usize,
    hp: usize,
    wp: usize,
    oh: usize,
    ow: usize,
    weight: usize,
    bias: Option<usize>,
    /// Tap offsets `kh·wp + kw`.
    off: Vec<usize>,
    /// Wide forward length: `oh·wp` rounded up to a chunk.
    lw: usize,
    /// Wide input-gradient length: `hp·wp` rounded up to a chunk.
    lq: usize,
    /// Zero rows/columns in front of the output gradient: `(k−1)·wp + k−1`.
    front: usize,
}

#[derive(Debug, Clone)]
struct ActStep {
    c: usize,
    hw: usize,
    /// `(gamma offset, beta offset, BatchNorm index)`.
    bn: Option<(usize, usize, usize)>,
    /// `(p, dropout index)`.
    dropout: Option<(f32, usize)>,
    relu: bool,
    /// Layers fused into this step (for per-layer timing names).
    layers: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Conv(ConvStep),
    Act(ActStep),
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
    AvgPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
    Gap {
        hw: usize,
    },
    LogSoftmax,
}

/// Time spent per engine step, forward and backward, in seconds, with the step's name.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// What the step does (`conv 1→10 3x3`, `bn+dropout+relu`, …).
    pub name: String,
    /// Seconds in forward passes.
    pub forward: f64,
    /// Seconds in backward passes.
    pub backward: f64,
}

/// A compiled layer stack.
pub struct Engine {
    steps: Vec<Step>,
    names: Vec<String>,
    /// Per-image element count of each activation (`sizes[0]`: the input).
    sizes: Vec<usize>,
    /// Per-image output dims (`[classes]` after a log-softmax, else `[c, h, w]`).
    out_dims: Vec<usize>,
    n_params: usize,
    profile: Mutex<Option<Vec<(f64, f64)>>>,
    pool32: BufferPool<f32>,
    pool64: BufferPool<f64>,
}

/// Why a spec cannot run on the engine (it then runs on the reference path only).
pub fn unsupported(layers: &[ResolvedLayer]) -> Option<String> {
    for l in layers {
        if let Layer::Conv { stride, .. } = l.layer
            && stride != 1
        {
            return Some(format!(
                "{}: stride {stride} (the fast path does stride 1)",
                l.prefix()
            ));
        }
    }
    None
}

impl Engine {
    /// Compiles resolved layers; parameters are expected flattened in `named_params` order.
    pub fn new(layers: &[ResolvedLayer]) -> Option<Self> {
        if unsupported(layers).is_some() {
            return None;
        }
        let mut steps = Vec::new();
        let mut names = Vec::new();
        let mut sizes = vec![layers.first()?.input.c * layers[0].input.h * layers[0].input.w];
        let mut offset = 0;
        let (mut n_bn, mut n_drop) = (0, 0);
        let mut i = 0;
        let mut out_dims = vec![];
        while i < layers.len() {
            let l = &layers[i];
            let (c, h, w) = (l.input.c, l.input.h, l.input.w);
            let o = &l.output;
            let step = match l.layer {
                Layer::Conv {
                    out_channels: co,
                    kernel: k,
                    padding: pad,
                    bias,
                    ..
                } => {
                    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
                    let weight = offset;
                    offset += co * c * k * k;
                    let bias = bias.then(|| {
                        offset += co;
                        offset - co
                    });
                    names.push(format!("conv {c}→{co} {k}x{k}"));
                    let round = |v: usize| v.div_ceil(conv::CHUNK) * conv::CHUNK;
                    Step::Conv(ConvStep {
                        ci: c,
                        co,
                        pad,
                        h,
                        w,
                        hp,
                        wp,
                        oh: o.h,
                        ow: o.w,
                        weight,
                        bias,
                        off: (0..k * k).map(|t| (t / k) * wp + t % k).collect(),
                        lw: round(o.h * wp),
                        lq: round(hp * wp),
                        front: (k - 1) * wp + k - 1,
                    })
                }
                Layer::BatchNorm { .. } | Layer::Dropout { .. } | Layer::Relu => {
                    let mut a = ActStep {
                        c,
                        hw: h * w,
                        bn: None,
                        dropout: None,
                        relu: false,
                        layers: 0,
                    };
                    let mut parts = vec![];
                    if let Layer::BatchNorm { .. } = l.layer {
                        a.bn = Some((offset, offset + c, n_bn));
                        offset += 2 * c;
                        n_bn += 1;
                        a.layers = 1;
                        parts.push("bn");
                    }
                    while let Some(next) = layers.get(i + a.layers) {
                        match next.layer {
                            Layer::Dropout { p } if a.dropout.is_none() => {
                                a.dropout = Some((p, n_drop));
                                n_drop += 1;
                                parts.push("dropout");
                            }
                            Layer::Relu if !a.relu => {
                                a.relu = true;
                                parts.push("relu");
                            }
                            _ => break,
                        }
                        a.layers += 1;
                    }
                    names.push(parts.join("+"));
                    i += a.layers - 1;
                    Step::Act(a)
                }
                Layer::MaxPool { kernel, .. } => {
                    names.push(format!("max pool {kernel}x{kernel}"));
                    Step::MaxPool { c, h, w, k: kernel }
                }
                Layer::AvgPool { kernel, .. } => {
                    names.push(format!("avg pool {kernel}x{kernel}"));
                    Step::AvgPool { c, h, w, k: kernel }
                }
                Layer::GlobalAvgPool => {
                    names.push("global avg pool".into());
                    Step::Gap { hw: h * w }
                }
                Layer::LogSoftmax => {
                    names.push("log-softmax".into());
                    Step::LogSoftmax
                }
            };
            let last = &layers[i];
            let od = &last.output;
            sizes.push(od.c * od.h * od.w);
            out_dims = match last.layer {
                Layer::LogSoftmax => vec![od.c * od.h * od.w],
                _ => vec![od.c, od.h, od.w],
            };
            steps.push(step);
            i += 1;
        }
        Some(Self {
            steps,
            names,
            sizes,
            out_dims,
            n_params: offset,
            profile: Mutex::new(None),
            pool32: BufferPool::default(),
            pool64: BufferPool::default(),
        })
    }

    /// Number of parameters the flattened parameter vector must hold.
    pub fn num_params(&self) -> usize {
        self.n_params
    }

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
                .map(|(&(f, b), n)| StepTime {
                    name: n.clone(),
                    forward: f,
                    backward: b,
                })
                .collect(),
            None => vec![],
        }
    }

    fn timed<R>(&self, step: usize, backward: bool, f: impl FnOnce() -> R) -> R {
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

/// What one forward pass keeps for its backward.
struct Saved<T: Real> {
    engine: Arc<Engine>,
    acts: Vec<Vec<T>>,
    args: Vec<Vec<u32>>,
    /// Per act step with BatchNorm: the mean and `1/√(var+ε)` used.
    norm: Vec<(Vec<T>, Vec<T>)>,
}

impl<T: Real> Drop for Saved<T> {
    fn drop(&mut self) {
        T::pool(&self.engine).give(self.acts.drain(..));
    }
}

enum AnySaved {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// Batch statistics of one BatchNorm layer in a training forward: mean, biased variance and
/// the number of values they summarise.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Per-channel mean.
    pub mean: Vec<f64>,
    /// Per-channel biased variance.
    pub var: Vec<f64>,
    /// Values per channel (`batch·h·w`).
    pub count: usize,
}

/// One forward (and, through candle's autograd, backward) pass of an [`Engine`].
pub struct Pass {
    engine: Arc<Engine>,
    train: bool,
    /// One mask key per dropout layer (training only).
    keys: Vec<u64>,
    /// Per BatchNorm layer: running mean and variance (used in eval mode).
    running: Vec<(Vec<f64>, Vec<f64>)>,
    save: bool,
    input_grad: bool,
    saved: Mutex<Option<AnySaved>>,
    stats: Arc<Mutex<Vec<BatchStats>>>,
}

impl Pass {
    /// A pass: `keys` for the dropout layers, `running` statistics (read in eval mode only, so
    /// a training pass may leave them empty); `save` keeps
    /// what backward needs, `input_grad` also computes the input's gradient.
    pub fn new(
        engine: Arc<Engine>,
        train: bool,
        keys: Vec<u64>,
        running: Vec<(Vec<f64>, Vec<f64>)>,
        save: bool,
        input_grad: bool,
    ) -> Self {
        Self {
            engine,
            train,
            keys,
            running,
            save,
            input_grad,
            saved: Mutex::new(None),
            stats: Arc::new(Mutex::new(vec![])),
        }
    }

    /// Where the forward pass leaves the BatchNorm batch statistics (training mode), in layer
    /// order (the pass itself moves into candle's graph).
    pub fn batch_stats(&self) -> Arc<Mutex<Vec<BatchStats>>> {
        self.stats.clone()
    }

    fn forward<T: Real>(&self, x: &[T], params: &[T], n: usize) -> (Vec<T>, Option<Saved<T>>) {
        let e = &*self.engine;
        let pool = T::pool(e);
        let mut first = pool.take(x.len());
        first.copy_from_slice(x);
        let mut acts: Vec<Vec<T>> = vec![first];
        let mut args = vec![];
        let mut norm = vec![];
        let mut stats = vec![];
        for (si, step) in e.steps.iter().enumerate() {
            let (isz, osz) = (e.sizes[si], e.sizes[si + 1]);
            let xin = acts.last().expect("input");
            let mut out = pool.take(n * osz);
            e.timed(si, false, || match step {
                Step::Conv(cs) => conv_forward(cs, xin, params, &mut out, isz, osz),
                Step::Act(a) => {
                    let (mean, invstd) = self.act_forward(a, xin, params, &mut out, n, &mut stats);
                    if a.bn.is_some() {
                        norm.push((mean, invstd));
                    }
                }
                Step::MaxPool { c, h, w, k } => {
                    let mut arg = vec![0u32; n * osz];
                    out.par_chunks_mut(osz)
                        .zip(arg.par_chunks_mut(osz))
                        .zip(xin.par_chunks(isz))
                        .for_each(|((o, a), xi)| misc::max_pool(xi, o, a, *c, *h, *w, *k));
                    args.push(arg);
                }
                Step::AvgPool { c, h, w, k } => out
                    .par_chunks_mut(osz)
                    .zip(xin.par_chunks(isz))
                    .for_each(|(o, xi)| misc::avg_pool(xi, o, *c, *h, *w, *k)),
                Step::Gap { hw } => out
                    .par_chunks_mut(osz)
                    .zip(xin.par_chunks(isz))
                    .for_each(|(o, xi)| misc::gap(xi, o, *hw)),
                Step::LogSoftmax => out
                    .chunks_mut(osz)
                    .zip(xin.chunks(isz))
                    .for_each(|(o, xi)| misc::log_softmax(xi, o)),
            });
            if !self.save {
                pool.give(acts.drain(..));
            }
            acts.push(out);
        }
        *self.stats.lock().expect("stats lock") = stats;
        let out = acts.last().expect("output").clone();
        let saved = match self.save {
            true => Some(Saved {
                engine: self.engine.clone(),
                acts,
                args,
                norm,
            }),
            false => {
                pool.give(acts);
                None
            }
        };
        (out, saved)
    }

    /// Returns the mean and inverse std used (BatchNorm steps; empty otherwise).
    fn act_forward<T: Real>(
        &self,
        a: &ActStep,
        xin: &[T],
        params: &[T],
        out: &mut [T],
        n: usize,
        stats: &mut Vec<BatchStats>,
    ) -> (Vec<T>, Vec<T>) {
        let (c, hw) = (a.c, a.hw);
        let sz = c * hw;
        let (mut mean, mut invstd) = (vec![T::ZERO; c], vec![T::ONE; c]);
        let (mut sa, mut sb) = (vec![T::ONE; c], vec![T::ZERO; c]);
        if let Some((g, b, bi)) = a.bn {
            let (m64, v64) = if self.train {
                let parts: Vec<Vec<(f64, f64)>> = xin
                    .par_chunks(sz)
                    .map(|xi| {
                        let mut s = vec![(0.0, 0.0); c];
                        act::plane_sums(xi, c, hw, &mut s);
                        s
                    })
                    .collect();
                let count = n * hw;
                let (mut m, mut v) = (vec![0.0; c], vec![0.0; c]);
                for ch in 0..c {
                    let (s1, s2) = parts
                        .iter()
                        .fold((0.0, 0.0), |(a1, a2), p| (a1 + p[ch].0, a2 + p[ch].1));
                    m[ch] = s1 / count as f64;
                    v[ch] = (s2 / count as f64 - m[ch] * m[ch]).max(0.0);
                }
                stats.push(BatchStats {
                    mean: m.clone(),
                    var: v.clone(),
                    count,
                });
                (m, v)
            } else {
                self.running[bi].clone()
            };
            for ch in 0..c {
                let is = 1.0 / (v64[ch] + BN_EPS).sqrt();
                mean[ch] = T::from_f64(m64[ch]);
                invstd[ch] = T::from_f64(is);
                sa[ch] = params[g + ch] * invstd[ch];
                sb[ch] = params[b + ch] - mean[ch] * sa[ch];
            }
        }
        let drop = self.drop(a);
        let relu = a.relu;
        out.par_chunks_mut(sz)
            .zip(xin.par_chunks(sz))
            .enumerate()
            .for_each(|(i, (o, xi))| {
                act::forward(xi, o, c, hw, &sa, &sb, drop, relu, (i * sz) as u32)
            });
        (mean, invstd)
    }

    fn drop<T: Real>(&self, a: &ActStep) -> Option<act::Drop<T>> {
        match a.dropout {
            Some((p, di)) if self.train && p > 0.0 => Some(act::Drop {
                key: self.keys[di],
                threshold: act::threshold(p),
                scale: T::from_f64(1.0 / (1.0 - p as f64)),
            }),
            _ => None,
        }
    }

    fn backward<T: Real>(
        &self,
        s: &Saved<T>,
        params: &[T],
        g_out: &[T],
        n: usize,
    ) -> (Option<Vec<T>>, Vec<T>) {
        let e = &*self.engine;
        let mut gp = vec![T::ZERO; params.len()];
        let pool = T::pool(e);
        let mut g = pool.take(g_out.len());
        g.copy_from_slice(g_out);
        let mut arg_i = s.args.len();
        let mut norm_i = s.norm.len();
        for (si, step) in e.steps.iter().enumerate().rev() {
            let (isz, osz) = (e.sizes[si], e.sizes[si + 1]);
            let (xin, y) = (&s.acts[si], &s.acts[si + 1]);
            if si == 0 && !self.input_grad && matches!(step, Step::Conv(_)) {
                if let Step::Conv(cs) = step {
                    e.timed(si, true, || {
                        conv_backward(cs, xin, params, &g, None, &mut gp, n, isz, osz)
                    });
                }
                pool.give([g]);
                return (None, gp);
            }
            let mut gx = pool.take(n * isz);
            e.timed(si, true, || match step {
                Step::Conv(cs) => {
                    conv_backward(cs, xin, params, &g, Some(&mut gx[..]), &mut gp, n, isz, osz)
                }
                Step::Act(a) => {
                    let nm = if a.bn.is_some() {
                        norm_i -= 1;
                        Some(&s.norm[norm_i])
                    } else {
                        None
                    };
                    self.act_backward(a, xin, y, &g, &mut gx, params, &mut gp, nm, n);
                }
                Step::MaxPool { .. } => {
                    arg_i -= 1;
                    let arg = &s.args[arg_i];
                    gx.par_chunks_mut(isz)
                        .zip(g.par_chunks(osz))
                        .enumerate()
                        .for_each(|(i, (gxi, gi))| {
                            gxi.fill(T::ZERO);
                            for (&gv, &j) in gi.iter().zip(&arg[i * osz..(i + 1) * osz]) {
                                gxi[j as usize] += gv;
                            }
                        });
                }
                Step::AvgPool { c, h, w, k } => gx
                    .par_chunks_mut(isz)
                    .zip(g.par_chunks(osz))
                    .for_each(|(gxi, gi)| misc::avg_pool_back(gi, gxi, *c, *h, *w, *k)),
                Step::Gap { hw } => gx
                    .par_chunks_mut(isz)
                    .zip(g.par_chunks(osz))
                    .for_each(|(gxi, gi)| misc::gap_back(gi, gxi, *hw)),
                Step::LogSoftmax => gx
                    .chunks_mut(isz)
                    .zip(g.chunks(osz))
                    .zip(y.chunks(osz))
                    .for_each(|((gxi, gi), yi)| misc::log_softmax_back(gi, yi, gxi)),
            });
            pool.give([std::mem::replace(&mut g, gx)]);
        }
        match self.input_grad {
            true => (Some(g), gp),
            false => {
                pool.give([g]);
                (None, gp)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn act_backward<T: Real>(
        &self,
        a: &ActStep,
        xin: &[T],
        y: &[T],
        g: &[T],
        gx: &mut [T],
        params: &[T],
        gp: &mut [T],
        norm: Option<&(Vec<T>, Vec<T>)>,
        n: usize,
    ) {
        let (c, hw) = (a.c, a.hw);
        let sz = c * hw;
        let drop = self.drop(a);
        let relu = a.relu;
        let parts: Vec<Vec<(f64, f64)>> = gx
            .par_chunks_mut(sz)
            .zip(g.par_chunks(sz))
            .zip(y.par_chunks(sz))
            .zip(xin.par_chunks(sz))
            .enumerate()
            .map(|(i, (((gxi, gi), yi), xi))| {
                act::grad_z(gi, yi, gxi, drop, relu, (i * sz) as u32);
                let mut s = vec![(0.0, 0.0); c];
                if let Some((mean, _)) = norm {
                    act::grad_sums(gxi, xi, c, hw, mean, &mut s);
                }
                s
            })
            .collect();
        let (Some((go, bo, _)), Some((mean, invstd))) = (a.bn, norm) else {
            return;
        };
        let count = (n * hw) as f64;
        let mut k = vec![(T::ZERO, T::ZERO, T::ZERO); c];
        for ch in 0..c {
            let (sg, sgx) = parts
                .iter()
                .fold((0.0, 0.0), |(a1, a2), p| (a1 + p[ch].0, a2 + p[ch].1));
            let is = invstd[ch].to_f64();
            let gamma = params[go + ch].to_f64();
            gp[go + ch] += T::from_f64(sgx * is);
            gp[bo + ch] += T::from_f64(sg);
            k[ch] = if self.train {
                (
                    T::from_f64(gamma * is),
                    T::from_f64(-gamma * is * is * is * sgx / count),
                    T::from_f64(-gamma * is * sg / count),
                )
            } else {
                (T::from_f64(gamma * is), T::ZERO, T::ZERO)
            };
        }
        gx.par_chunks_mut(sz)
            .zip(xin.par_chunks(sz))
            .for_each(|(gxi, xi)| act::bn_input_grad(gxi, xi, c, hw, mean, &k));
    }
}

fn conv_forward<T: Real>(
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    out: &mut [T],
    isz: usize,
    osz: usize,
) {
    let w = &params[cs.weight..cs.weight + cs.co * cs.ci * cs.off.len()];
    let bias = cs.bias.map(|b| &params[b..b + cs.co]);
    let plane = cs.hp * cs.wp;
    let xlen = cs.ci * plane + cs.lw + cs.front + conv::CHUNK;
    out.par_chunks_mut(osz)
        .zip(xin.par_chunks(isz))
        .for_each_init(
            || (vec![T::ZERO; xlen], vec![T::ZERO; cs.co * cs.lw]),
            |(xp, wide), (o, xi)| {
                pad_into(cs, xi, xp);
                conv::correlate(
                    xp, plane, cs.ci, w, bias, cs.co, &cs.off, wide, cs.lw, cs.lw,
                );
                for c in 0..cs.co {
                    for r in 0..cs.oh {
                        let src = &wide[c * cs.lw + r * cs.wp..c * cs.lw + r * cs.wp + cs.ow];
                        o[(c * cs.oh + r) * cs.ow..(c * cs.oh + r + 1) * cs.ow]
                            .copy_from_slice(src);
                    }
                }
            },
        );
}

/// Copies one image's `ci×h×w` planes into the zero-padded `ci×hp×wp` layout (the tail stays 0).
fn pad_into<T: Real>(cs: &ConvStep, xi: &[T], xp: &mut [T]) {
    let plane = cs.hp * cs.wp;
    if cs.pad > 0 {
        xp[..cs.ci * plane].fill(T::ZERO);
    }
    for c in 0..cs.ci {
        for r in 0..cs.h {
            let dst = c * plane + (r + cs.pad) * cs.wp + cs.pad;
            xp[dst..dst + cs.w]
                .copy_from_slice(&xi[(c * cs.h + r) * cs.w..(c * cs.h + r + 1) * cs.w]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_backward<T: Real>(
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    g: &[T],
    gx: Option<&mut [T]>,
    gp: &mut [T],
    n: usize,
    isz: usize,
    osz: usize,
) {
    let nt = cs.off.len();
    let nw = cs.co * cs.ci * nt;
    let w = &params[cs.weight..cs.weight + nw];
    // Flipped, transposed kernel: wf[(i·co + o)·nt + t] = w[(o·ci + i)·nt + nt−1−t].
    let mut wf = vec![T::ZERO; nw];
    for o in 0..cs.co {
        for i in 0..cs.ci {
            for t in 0..nt {
                wf[(i * cs.co + o) * nt + t] = w[(o * cs.ci + i) * nt + nt - 1 - t];
            }
        }
    }
    let plane = cs.hp * cs.wp;
    let gs = cs.front + cs.lq;
    let glen = cs.co * gs + cs.front + conv::CHUNK;
    let xlen = cs.ci * plane + cs.lw + cs.front + conv::CHUNK;
    let lwg = (cs.oh * cs.wp).div_ceil(conv::LANES) * conv::LANES;
    let with_bias = cs.bias.is_some();
    let per_image =
        |gi: &[T], xi: &[T], gxi: Option<&mut [T]>, scratch: &mut (Vec<T>, Vec<T>, Vec<T>)| {
            let (gpad, xp, gxw) = scratch;
            gpad.fill(T::ZERO);
            for c in 0..cs.co {
                for r in 0..cs.oh {
                    let dst = c * gs + cs.front + r * cs.wp;
                    gpad[dst..dst + cs.ow]
                        .copy_from_slice(&gi[(c * cs.oh + r) * cs.ow..(c * cs.oh + r + 1) * cs.ow]);
                }
            }
            pad_into(cs, xi, xp);
            let mut part = vec![T::ZERO; nw + if with_bias { cs.co } else { 0 }];
            conv::weight_grad(
                &gpad[cs.front..],
                gs,
                cs.co,
                xp,
                plane,
                cs.ci,
                &cs.off,
                lwg,
                &mut part[..nw],
            );
            if with_bias {
                for c in 0..cs.co {
                    part[nw + c] = gi[c * cs.oh * cs.ow..(c + 1) * cs.oh * cs.ow]
                        .iter()
                        .fold(T::ZERO, |s, &v| s + v);
                }
            }
            if let Some(gxi) = gxi {
                conv::correlate(
                    gpad, gs, cs.co, &wf, None, cs.ci, &cs.off, gxw, cs.lq, cs.lq,
                );
                for c in 0..cs.ci {
                    for r in 0..cs.h {
                        let src = c * cs.lq + (r + cs.pad) * cs.wp + cs.pad;
                        gxi[(c * cs.h + r) * cs.w..(c * cs.h + r + 1) * cs.w]
                            .copy_from_slice(&gxw[src..src + cs.w]);
                    }
                }
            }
            part
        };
    let init = || {
        (
            vec![T::ZERO; glen],
            vec![T::ZERO; xlen],
            vec![T::ZERO; cs.ci * cs.lq],
        )
    };
    let parts: Vec<Vec<T>> = match gx {
        Some(gx) => gx
            .par_chunks_mut(isz)
            .zip(g.par_chunks(osz))
            .zip(xin.par_chunks(isz))
            .map_init(init, |s, ((gxi, gi), xi)| per_image(gi, xi, Some(gxi), s))
            .collect(),
        None => g
            .par_chunks(osz)
            .zip(xin.par_chunks(isz))
            .map_init(init, |s, (gi, xi)| per_image(gi, xi, None, s))
            .collect(),
    };
    debug_assert_eq!(parts.len(), n);
    for part in &parts {
        for (k, v) in part[..nw].iter().enumerate() {
            gp[cs.weight + k] += *v;
        }
        if let Some(b) = cs.bias {
            for (k, v) in part[nw..].iter().enumerate() {
                gp[b + k] += *v;
            }
        }
    }
}

fn slice<'a, T>(v: &'a [T], layout: &Layout, what: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(Error::Msg(format!("fast path: {what} must be contiguous"))),
    }
}

impl Pass {
    fn check(&self, x: &Shape, p: &Shape) -> Result<usize> {
        let e = &*self.engine;
        let dims = x.dims();
        if dims.is_empty() || dims[1..].iter().product::<usize>() != e.sizes[0] {
            return Err(Error::Msg(format!(
                "fast path: input of shape {x:?} does not fit the net ({} values per image)",
                e.sizes[0]
            )));
        }
        let largest = e.sizes.iter().max().copied().unwrap_or(0);
        if (dims[0] as u64) * (largest as u64) > u32::MAX as u64 {
            return Err(Error::Msg(format!(
                "fast path: a batch of {} is too large for this net (at most {} images)",
                dims[0],
                u32::MAX as usize / largest.max(1)
            )));
        }
        if p.elem_count() != e.n_params {
            return Err(Error::Msg(format!(
                "fast path: {} parameters given, the net has {}",
                p.elem_count(),
                e.n_params
            )));
        }
        Ok(dims[0])
    }

    fn typed_bwd<T: Real + candle_core::WithDType>(
        &self,
        s: &Saved<T>,
        arg1: &Tensor,
        arg2: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = arg1.dim(0)?;
        let params = arg2.flatten_all()?.to_vec1::<T>()?;
        let g = grad_res.flatten_all()?.to_vec1::<T>()?;
        let (gx, gp) = self.backward(s, &params, &g, n);
        let gx = match gx {
            Some(v) => Some(Tensor::from_vec(v, arg1.shape(), arg1.device())?),
            None => None,
        };
        Ok((gx, Some(Tensor::from_vec(gp, arg2.shape(), arg2.device())?)))
    }
}

impl CustomOp2 for Pass {
    fn name(&self) -> &'static str {
        "under8k-engine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.check(l1.shape(), l2.shape())?;
        let mut shape = vec![n];
        shape.extend(&self.engine.out_dims);
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(p)) => {
                let (out, saved) = self.forward(slice(x, l1, "input")?, slice(p, l2, "params")?, n);
                *self.saved.lock().expect("saved lock") = saved.map(AnySaved::F32);
                CpuStorage::F32(out)
            }
            (CpuStorage::F64(x), CpuStorage::F64(p)) => {
                let (out, saved) = self.forward(slice(x, l1, "input")?, slice(p, l2, "params")?, n);
                *self.saved.lock().expect("saved lock") = saved.map(AnySaved::F64);
                CpuStorage::F64(out)
            }
            _ => {
                return Err(Error::UnsupportedDTypeForOp(s1.dtype(), "under8k engine"));
            }
        };
        Ok((out, Shape::from(shape)))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().expect("saved lock").take();
        match saved {
            Some(AnySaved::F32(s)) if arg1.dtype() == DType::F32 => {
                self.typed_bwd(&s, arg1, arg2, grad_res)
            }
            Some(AnySaved::F64(s)) if arg1.dtype() == DType::F64 => {
                self.typed_bwd(&s, arg1, arg2, grad_res)
            }
            _ => Err(Error::Msg(
                "fast path: backward needs a forward that kept its activations (and runs once)"
                    .into(),
            )),
        }
    }
}
