//! One forward (and, through candle's autograd, backward) pass of an [`Engine`]: the steps run
//! over a batch, what backward needs kept, BatchNorm's batch statistics handed back.

use std::sync::{Arc, Mutex};

use super::buffers::Buf;
use super::drivers::{
    BnGrad, ImageSums, InputGrad, Planes, PreAct, Purpose, Scratch, Then, conv_backward,
    conv_forward, takes_bn_grad,
};
use super::infer;
use super::plan::Pooled;
use super::plan::{ActStep, Engine, Step};
use super::{act, misc, spread};
use crate::layers::BN_EPS;

/// What one forward pass keeps for its backward.
pub(super) struct Saved<T: Pooled> {
    pub(super) engine: Arc<Engine>,
    pub(super) acts: Vec<Buf<T>>,
    pub(super) args: Vec<Buf<u32>>,
    /// Per act step with BatchNorm: the mean and `1/√(var+ε)` used.
    pub(super) norm: Vec<(Vec<T>, Vec<T>)>,
    /// Per step: for an act step folded into the convolution after it ([`folds`]), its affine
    /// map (its output was never stored: `acts` holds an empty placeholder, as it does for the
    /// pass's input).
    pub(super) maps: Vec<Option<(Vec<T>, Vec<T>)>>,
    /// Per step: for a folded act step with dropout, the mask its forward recorded
    /// ([`PreAct::bits`]).
    pub(super) masks: Vec<Option<Buf<u32>>>,
}

impl<T: Pooled> Saved<T> {
    /// Step `k`'s input, as [`step_input`] finds it among what the forward stored.
    fn input<'a>(&'a self, x: &'a [T], k: usize) -> &'a [T] {
        step_input(&self.acts, x, k)
    }
}

/// Step `k`'s input: `x`, the pass's input, for the first step (the forward keeps no copy of
/// it: its 400 KB a batch of 128 were a serial copy of 0.4–0.6 % of a step before the first
/// layer's threads start), else `acts[k]`.
fn step_input<'a, T>(acts: &'a [Buf<T>], x: &'a [T], k: usize) -> &'a [T] {
    match k {
        0 => x,
        k => &acts[k],
    }
}

impl<T: Pooled> Drop for Saved<T> {
    fn drop(&mut self) {
        T::pool(&self.engine).give(self.acts.drain(..));
        self.engine.args.give(self.args.drain(..));
        self.engine.args.give(self.masks.drain(..).flatten());
    }
}

pub(super) enum AnySaved {
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
    pub(super) engine: Arc<Engine>,
    pub(super) train: bool,
    /// One mask key per dropout layer (training only).
    pub(super) keys: Vec<u64>,
    /// Per BatchNorm layer: running mean and variance (used in eval mode).
    pub(super) running: Vec<(Vec<f64>, Vec<f64>)>,
    pub(super) save: bool,
    pub(super) input_grad: bool,
    pub(super) saved: Mutex<Option<AnySaved>>,
    pub(super) stats: Arc<Mutex<Vec<BatchStats>>>,
    /// Fold act steps into the direct convolutions after them when saving ([`folds`]), and do
    /// not store an act step's output that only a max pool after it reads ([`pools_only`]):
    /// the same bits either way (a test turns it off to compare).
    pub(super) fold: bool,
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
            fold: true,
        }
    }

    /// Where the forward pass leaves the BatchNorm batch statistics (training mode), in layer
    /// order (the pass itself moves into candle's graph).
    pub fn batch_stats(&self) -> Arc<Mutex<Vec<BatchStats>>> {
        self.stats.clone()
    }

    pub(super) fn forward<T: Pooled>(
        &self,
        x: &[T],
        params: &[T],
        n: usize,
    ) -> (Vec<T>, Option<Saved<T>>) {
        if !self.train && !self.save {
            return (self.infer(x, params, n), None);
        }
        let e = &*self.engine;
        let pool = T::pool(e);
        // The input is not copied: the backward reads it from the op's argument ([`step_input`]).
        let mut acts: Vec<Buf<T>> = vec![Buf::default()];
        let mut args = vec![];
        let mut norm = vec![];
        let mut stats = vec![];
        let mut maps: Vec<Option<(Vec<T>, Vec<T>)>> = vec![None; e.steps.len()];
        let mut masks: Vec<Option<Buf<u32>>> = (0..e.steps.len()).map(|_| None).collect();
        // Per-image BatchNorm sums a convolution computed for the act step after it.
        let mut sums = None;
        // A max pool's output and arg-max the act step before it computed.
        let mut pooled: Option<(misc::Window, Buf<T>, Buf<u32>)> = None;
        for (si, step) in e.steps.iter().enumerate() {
            let (isz, osz) = (e.sizes[si], e.sizes[si + 1]);
            // After a folded act step, its input (its output was not stored).
            let folded = si.checked_sub(1).filter(|&p| maps[p].is_some());
            let xin = step_input(&acts, x, folded.unwrap_or(si));
            let fold = self.fold && self.save && folds(e, si);
            let mut out = match fold || (self.fold && pools_only(e, si)) {
                true => Buf::default(),
                false => pool.take(n * osz),
            };
            e.timed(si, false, || match step {
                Step::Conv(cs) => {
                    let bn_next =
                        matches!(e.steps.get(si + 1), Some(Step::Act(a)) if a.bn.is_some());
                    let pre = folded.map(|p| self.pre_act(&e.steps[p], &maps[p], None));
                    // A folded act step's dropout mask, recorded for the backward.
                    let mut mask = pre
                        .filter(|p| p.drop.is_some())
                        .map(|p| e.args.take(n * p.image_words(isz)));
                    sums = conv_forward(
                        pool,
                        cs,
                        xin,
                        params,
                        &mut out,
                        isz,
                        osz,
                        match self.train {
                            true => Purpose::Train { stats: bn_next },
                            false => Purpose::Eval,
                        },
                        pre,
                        mask.as_deref_mut(),
                    );
                    if let Some(p) = folded {
                        masks[p] = mask;
                    }
                }
                Step::Act(a) => {
                    let (mean, invstd, sa, sb) =
                        self.act_map(a, xin, params, n, &mut stats, sums.take());
                    if a.bn.is_some() {
                        norm.push((mean, invstd));
                    }
                    if fold {
                        // The convolution after it applies the map as it reads.
                        maps[si] = Some((sa, sb));
                    } else {
                        // A max pool next runs on each image as soon as its act step has.
                        pooled = match e.steps.get(si + 1) {
                            Some(Step::MaxPool(win)) => {
                                let len = n * e.sizes[si + 2];
                                Some((*win, pool.take(len), e.args.take(len)))
                            }
                            _ => None,
                        };
                        let then = pooled
                            .as_mut()
                            .map(|(w, o, a)| (&*w, &mut o[..], &mut a[..]));
                        self.act_forward(a, (&sa, &sb), xin, &mut out, then);
                    }
                }
                Step::MaxPool(win) => {
                    let arg = match pooled.take() {
                        Some((_, o, arg)) => {
                            pool.give([std::mem::replace(&mut out, o)]);
                            arg
                        }
                        None => {
                            let mut arg = e.args.take(n * osz);
                            let items = (out.chunks_mut(osz).zip(arg.chunks_mut(osz)))
                                .zip(xin.chunks(isz))
                                .collect();
                            spread::all(items, |_, ((o, a), xi)| misc::max_pool(xi, o, a, win));
                            arg
                        }
                    };
                    args.push(arg);
                }
                Step::AvgPool(_) | Step::Gap { .. } | Step::LogSoftmax => {
                    let items = out.chunks_mut(osz).zip(xin.chunks(isz)).collect();
                    spread::all(items, |_, (o, xi)| step.plain(xi, o));
                }
            });
            if !self.save {
                pool.give(acts.drain(..));
            }
            acts.push(out);
        }
        *self.stats.lock().expect("stats lock") = stats;
        let out = acts.last().expect("output").to_vec();
        let saved = match self.save {
            true => Some(Saved {
                engine: self.engine.clone(),
                acts,
                args,
                norm,
                maps,
                masks,
            }),
            false => {
                pool.give(acts);
                // No mask without saving: only a saving pass folds act steps.
                e.args.give(args);
                None
            }
        };
        (out, saved)
    }

    /// Applies an act step's affine map `(sa, sb)`, dropout and ReLU to `xin` into `out`; `then`:
    /// the max pool after, run on each image's output while it is in cache (its window, output
    /// and arg-max). With `then` and an empty `out` ([`pools_only`]), each image's output goes
    /// through a scratch plane instead of being stored.
    fn act_forward<T: Pooled>(
        &self,
        a: &ActStep,
        (sa, sb): (&[T], &[T]),
        xin: &[T],
        out: &mut [T],
        then: Option<(&misc::Window, &mut [T], &mut [u32])>,
    ) {
        assert!(
            then.is_some() || out.len() == xin.len(),
            "an act step's output is stored unless a max pool reads it as it is computed"
        );
        let (c, hw) = (a.c, a.hw);
        let sz = c * hw;
        let drop = self.drop(a);
        let relu = a.relu;
        let one = |i: usize, o: &mut [T], xi: &[T]| {
            act::forward(xi, o, c, hw, sa, sb, drop, relu, (i * sz) as u32)
        };
        match then {
            Some((win, po, pa)) => {
                let (oh, ow) = win.out();
                let psz = win.c * oh * ow;
                let pooled = po.chunks_mut(psz).zip(pa.chunks_mut(psz));
                let both = |i: usize, o: &mut [T], xi: &[T], (p, pa): (&mut [T], &mut [u32])| {
                    one(i, o, xi);
                    misc::max_pool(o, p, pa, win);
                };
                match out.is_empty() {
                    true => spread::each(
                        xin.chunks(sz).zip(pooled).collect(),
                        || Scratch::take(T::pool(&self.engine), &[sz]),
                        |s, i, (xi, p)| both(i, &mut s.bufs[0], xi, p),
                    ),
                    false => spread::all(
                        out.chunks_mut(sz).zip(xin.chunks(sz)).zip(pooled).collect(),
                        |i, ((o, xi), p)| both(i, o, xi, p),
                    ),
                };
            }
            None => {
                let items = out.chunks_mut(sz).zip(xin.chunks(sz)).collect();
                spread::all(items, |i, (o, xi)| one(i, o, xi));
            }
        }
    }

    /// An act step's per-channel affine map `(a, b)`, with the mean and inverse std behind it
    /// (identity map and empty statistics without BatchNorm); in training, from the batch
    /// statistics of `xin` (pushed to `stats`; `pre`: its per-image sums when the convolution
    /// before computed them).
    #[allow(clippy::type_complexity)]
    fn act_map<T: Pooled>(
        &self,
        a: &ActStep,
        xin: &[T],
        params: &[T],
        n: usize,
        stats: &mut Vec<BatchStats>,
        pre: Option<ImageSums>,
    ) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        let (c, hw) = (a.c, a.hw);
        let Some((g, b, bi)) = a.bn else {
            return (
                vec![T::ZERO; c],
                vec![T::ONE; c],
                vec![T::ONE; c],
                vec![T::ZERO; c],
            );
        };
        let (m64, v64) = if self.train {
            let parts: ImageSums = pre.unwrap_or_else(|| {
                spread::all(xin.chunks(c * hw).collect(), |_, xi| {
                    let mut s = vec![(0.0, 0.0); c];
                    act::plane_sums(xi, c, hw, &mut s);
                    s
                })
            });
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
        bn_affine(&params[g..g + c], &params[b..b + c], &m64, &v64)
    }

    /// A folded act step's map as the convolution after it applies it ([`PreAct`]), with the
    /// dropout mask its forward recorded when given.
    fn pre_act<'m, T: Pooled>(
        &self,
        step: &Step,
        map: &'m Option<(Vec<T>, Vec<T>)>,
        bits: Option<&'m [u32]>,
    ) -> PreAct<'m, T> {
        let (Step::Act(a), Some((sa, sb))) = (step, map) else {
            unreachable!("a folded act step has its map")
        };
        PreAct {
            a: sa,
            b: sb,
            drop: self.drop(a),
            relu: a.relu,
            bits,
        }
    }

    /// The inference forward ([`infer`]).
    fn infer<T: Pooled>(&self, x: &[T], params: &[T], n: usize) -> Vec<T> {
        infer::forward(&self.engine, &self.infer_affine::<T>(params), x, params, n)
    }

    /// Per act step of an inference pass: its affine map, BatchNorm's from the running
    /// statistics, else the identity (`1·y + 0`, as the batch path applies it).
    #[allow(clippy::type_complexity)]
    fn infer_affine<T: Pooled>(&self, params: &[T]) -> Vec<Option<(Vec<T>, Vec<T>)>> {
        self.engine
            .steps
            .iter()
            .map(|step| match step {
                Step::Act(ActStep {
                    c,
                    bn: Some((g, b, bi)),
                    ..
                }) => {
                    let (m, v) = &self.running[*bi];
                    let (_, _, sa, sb) = bn_affine(&params[*g..g + c], &params[*b..b + c], m, v);
                    Some((sa, sb))
                }
                Step::Act(a) => Some((vec![T::ONE; a.c], vec![T::ZERO; a.c])),
                _ => None,
            })
            .collect()
    }

    fn drop<T: Pooled>(&self, a: &ActStep) -> Option<act::Drop<T>> {
        match a.dropout {
            Some((p, di)) if self.train && p > 0.0 => Some(act::Drop {
                key: self.keys[di],
                threshold: crate::layers::threshold(p),
                scale: T::from_f64(1.0 / (1.0 - p as f64)),
            }),
            _ => None,
        }
    }

    /// The backward of the forward that kept `s`, whose input was `x`: the input gradient (when
    /// the pass computes it) and the parameters' gradient.
    pub(super) fn backward<T: Pooled>(
        &self,
        s: &Saved<T>,
        x: &[T],
        params: &[T],
        g_out: &[T],
        n: usize,
    ) -> (Option<Vec<T>>, Vec<T>) {
        let e = &*self.engine;
        assert_eq!(x.len(), n * e.sizes[0], "backward: the forward's input");
        let mut gp = vec![T::ZERO; params.len()];
        let pool = T::pool(e);
        let mut g = pool.take(g_out.len());
        g.copy_from_slice(g_out);
        let mut arg_i = s.args.len();
        let mut norm_i = s.norm.len();
        // The act step's per-image sums when the convolution after it already ran its first
        // backward pass (`g` then holds ∂L/∂z).
        let mut fused: Option<ImageSums> = None;
        // BatchNorm's input gradient, left for the convolution before it to apply ([`defers`]).
        let mut deferred: Option<BnGrad<'_, T>> = None;
        for (si, step) in e.steps.iter().enumerate().rev() {
            assert!(
                deferred.is_none() || matches!(step, Step::Conv(_)),
                "a deferred BatchNorm input gradient goes to the convolution before it"
            );
            let (isz, osz) = (e.sizes[si], e.sizes[si + 1]);
            // After a folded act step, its input and the map that recomputes its output.
            let folded = si.checked_sub(1).filter(|&p| s.maps[p].is_some());
            let pre = folded.map(|p| self.pre_act(&e.steps[p], &s.maps[p], s.masks[p].as_deref()));
            let (xin, y) = (s.input(x, folded.unwrap_or(si)), &s.acts[si + 1]);
            if si == 0 && !self.input_grad && matches!(step, Step::Conv(_)) {
                if let Step::Conv(cs) = step {
                    let bn = deferred.take();
                    e.timed(si, true, || {
                        conv_backward(
                            pool, cs, xin, params, &g, None, &mut gp, n, isz, osz, None, bn,
                        )
                    });
                }
                pool.give([g]);
                return (None, gp);
            }
            let nm = |a: &ActStep, i: usize| a.bn.map(|_| &s.norm[i - 1]);
            if let (Step::Act(a), Some(parts)) = (step, fused.take()) {
                let norm = nm(a, norm_i);
                norm_i -= usize::from(norm.is_some());
                let defer = defers(e, si);
                deferred = e.timed(si, true, || {
                    self.bn_backward(a, xin, &mut g, params, &mut gp, norm, n, parts, defer)
                });
                continue;
            }
            // The act step before this one (its statistics and its input), whose first backward
            // pass a convolution or a max pool runs on its input gradient while it is in cache.
            let before = match si.checked_sub(1).map(|p| (p, &e.steps[p])) {
                Some((p, Step::Act(a))) => Some((a, nm(a, norm_i), s.input(x, p))),
                _ => None,
            };
            let mut gx = pool.take(n * isz);
            e.timed(si, true, || match step {
                Step::Conv(cs) => {
                    // The act step's first pass (∂L/∂z and the sums) per group here.
                    let then = before.map(|(a, norm, z)| {
                        move |first: usize, gxg: &mut [T], ys: Planes<'_, T>| -> ImageSums {
                            gxg.chunks_mut(isz)
                                .enumerate()
                                .map(|(j, gzi)| {
                                    let i = first + j;
                                    let zi = &z[i * isz..(i + 1) * isz];
                                    let yi = ys.skip(j);
                                    self.act_grad_image(a, i, None, yi, gzi, zi, norm)
                                })
                                .collect()
                        }
                    });
                    let gxs = InputGrad {
                        gx: &mut gx,
                        then: then.as_ref().map(|f| f as Then<'_, T>),
                    };
                    let parts = conv_backward(
                        pool,
                        cs,
                        xin,
                        params,
                        &g,
                        Some(gxs),
                        &mut gp,
                        n,
                        isz,
                        osz,
                        pre,
                        deferred.take(),
                    );
                    fused = then.is_some().then_some(parts);
                }
                Step::Act(a) => {
                    assert!(
                        s.maps[si].is_none(),
                        "a folded act step's backward runs in the convolution's after it"
                    );
                    let norm = nm(a, norm_i);
                    norm_i -= usize::from(norm.is_some());
                    let items = (gx.chunks_mut(isz).zip(g.chunks(isz)))
                        .zip(y.chunks(isz).zip(xin.chunks(isz)))
                        .collect();
                    let parts: ImageSums = spread::all(items, |i, ((gzi, gi), (yi, zi))| {
                        let yi = Planes::dense(yi, a.c, a.hw);
                        self.act_grad_image(a, i, Some(gi), yi, gzi, zi, norm)
                    });
                    let defer = defers(e, si);
                    deferred =
                        self.bn_backward(a, xin, &mut gx, params, &mut gp, norm, n, parts, defer);
                }
                Step::MaxPool(win) => {
                    arg_i -= 1;
                    let arg = &s.args[arg_i];
                    // The act step's first pass (∂L/∂z and the sums) per image here.
                    let items = gx.chunks_mut(isz).zip(g.chunks(osz)).collect();
                    let parts: ImageSums = spread::all(items, |i, (gxi, gi)| {
                        let ai = &arg[i * osz..(i + 1) * osz];
                        gxi.fill(T::ZERO);
                        let act = before.map(|(a, norm, z)| (a, norm, &z[i * isz..][..isz]));
                        match act {
                            // Windows apart: only each window's winner has a gradient, and
                            // its value is the pool's output.
                            Some((a, norm, zi)) if win.apart() => {
                                let yo = &y[i * osz..(i + 1) * osz];
                                self.act_grad_winners(a, i, gi, yo, ai, gxi, zi, norm)
                            }
                            _ => {
                                for (&gv, &j) in gi.iter().zip(ai) {
                                    gxi[j as usize] += gv;
                                }
                                let Some((a, norm, zi)) = act else {
                                    return vec![];
                                };
                                let yi = Planes::dense(&xin[i * isz..], a.c, a.hw);
                                self.act_grad_image(a, i, None, yi, gxi, zi, norm)
                            }
                        }
                    });
                    fused = before.is_some().then_some(parts);
                }
                Step::AvgPool(win) => {
                    let items = gx.chunks_mut(isz).zip(g.chunks(osz)).collect();
                    spread::all(items, |_, (gxi, gi)| misc::avg_pool_back(gi, gxi, win));
                }
                Step::Gap { hw } => {
                    let items = gx.chunks_mut(isz).zip(g.chunks(osz)).collect();
                    spread::all(items, |_, (gxi, gi)| misc::gap_back(gi, gxi, *hw));
                }
                Step::LogSoftmax => gx
                    .chunks_mut(isz)
                    .zip(g.chunks(osz))
                    .zip(y.chunks(osz))
                    .for_each(|((gxi, gi), yi)| misc::log_softmax_back(gi, yi, gxi)),
            });
            pool.give([std::mem::replace(&mut g, gx)]);
        }
        match self.input_grad {
            true => (Some(g.into_vec()), gp),
            false => {
                pool.give([g]);
                (None, gp)
            }
        }
    }

    /// [`act_grad_image`](Self::act_grad_image) in place of a max pool's backward when the
    /// pool's windows do not overlap, on `gz` zeroed: each window's winner (`arg`) is one input
    /// value, whose gradient is its output gradient `g` added to that +0, and every other value
    /// keeps the +0, which `∂L/∂z` keeps whatever the act step's output there; at a winner,
    /// that output is the pool's output `pooled`. So the act step's output is never read, and
    /// only the winners are touched, once each: the bits of the pool's own backward (a zeroed
    /// plane and the gradients added in) followed by `act_grad_image`.
    #[allow(clippy::too_many_arguments)]
    fn act_grad_winners<T: Pooled>(
        &self,
        a: &ActStep,
        i: usize,
        g: &[T],
        pooled: &[T],
        arg: &[u32],
        gz: &mut [T],
        x: &[T],
        norm: Option<&(Vec<T>, Vec<T>)>,
    ) -> Vec<(f64, f64)> {
        let (drop, first) = (self.drop(a), i * a.c * a.hw);
        for ((&gv, &o), &j) in g.iter().zip(pooled).zip(arg) {
            let j = j as usize;
            gz[j] = act::grad_z_one(T::ZERO + gv, o, drop, a.relu, (first + j) as u32);
        }
        bn_sums(a, gz, x, norm)
    }

    /// An act step's backward for image `i` up to its BatchNorm: `∂L/∂z` into `gz` from the
    /// output gradient `g` (or in place when `None`) and the step's output planes `y`; with
    /// BatchNorm, also the per-channel `(Σgz, Σgz·(x−mean))` over the step's input `x`.
    #[allow(clippy::too_many_arguments)]
    fn act_grad_image<T: Pooled>(
        &self,
        a: &ActStep,
        i: usize,
        g: Option<&[T]>,
        y: Planes<'_, T>,
        gz: &mut [T],
        x: &[T],
        norm: Option<&(Vec<T>, Vec<T>)>,
    ) -> Vec<(f64, f64)> {
        let (hw, drop) = (a.hw, self.drop(a));
        for (ch, gzc) in gz.chunks_mut(hw).enumerate() {
            let gc = g.map(|g| &g[ch * hw..(ch + 1) * hw]);
            let at = ((i * a.c + ch) * hw) as u32;
            act::grad_z(gc, y.plane(ch, hw), gzc, drop, a.relu, at);
        }
        bn_sums(a, gz, x, norm)
    }

    /// An act step's BatchNorm backward from `∂L/∂z` in `gz` and the per-image sums of
    /// [`Self::act_grad_image`]: γ and β's gradients, then the input gradient in place of `gz`,
    /// or, with `defer`, returned for the convolution before the step to apply ([`BnGrad`]).
    /// Nothing to do without BatchNorm.
    #[allow(clippy::too_many_arguments)]
    fn bn_backward<'s, T: Pooled>(
        &self,
        a: &ActStep,
        xin: &'s [T],
        gz: &mut [T],
        params: &[T],
        gp: &mut [T],
        norm: Option<&'s (Vec<T>, Vec<T>)>,
        n: usize,
        parts: ImageSums,
        defer: bool,
    ) -> Option<BnGrad<'s, T>> {
        let k = self.bn_grads(a, params, gp, norm, n, parts)?;
        let (mean, _) = norm?;
        if defer {
            return Some(BnGrad { y: xin, mean, k });
        }
        let (c, hw) = (a.c, a.hw);
        let items = gz.chunks_mut(c * hw).zip(xin.chunks(c * hw)).collect();
        spread::all(items, |_, (gxi, xi)| {
            act::bn_input_grad(gxi, xi, c, hw, mean, &k)
        });
        None
    }

    /// [`bn_backward`](Self::bn_backward) up to its input gradient: γ and β's gradients added
    /// to `gp`, and the input gradient's per-channel coefficients returned (`None` without
    /// BatchNorm).
    fn bn_grads<T: Pooled>(
        &self,
        a: &ActStep,
        params: &[T],
        gp: &mut [T],
        norm: Option<&(Vec<T>, Vec<T>)>,
        n: usize,
        parts: ImageSums,
    ) -> Option<Vec<(T, T, T)>> {
        let (c, hw) = (a.c, a.hw);
        let (Some((go, bo, _)), Some((_, invstd))) = (a.bn, norm) else {
            return None;
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
        Some(k)
    }
}

/// Whether act step `si`'s BatchNorm input gradient is left to the convolution before it
/// ([`BnGrad`]): one that [`takes_bn_grad`].
fn defers(e: &Engine, si: usize) -> bool {
    let before = si.checked_sub(1).map(|p| &e.steps[p]);
    matches!(before, Some(Step::Conv(cs)) if takes_bn_grad(cs))
}

/// Whether a training pass folds act step `si` into the convolution after it: that convolution
/// runs one image at a time ([`ConvStep::direct`](super::plan::ConvStep::direct)), so it can
/// compute each image's input from the act step's input as it reads it (forward and backward),
/// and the act step's output is never stored: a pass over the batch and its buffer saved, the
/// same operations on every value.
fn folds(e: &Engine, si: usize) -> bool {
    matches!(e.steps[si], Step::Act(_))
        && matches!(e.steps.get(si + 1), Some(Step::Conv(cs)) if cs.direct())
}

/// Whether act step `si`'s output is read by nothing but the max pool after it, whose windows
/// lie apart ([`misc::Window::apart`], the test the pool's backward branches on): that backward
/// then reads its own output and the act step's input alone ([`Pass::act_grad_winners`]), so
/// the act step's output need not be stored; the act step pools each image from a scratch
/// plane ([`Pass::act_forward`]), the same operations on every value.
fn pools_only(e: &Engine, si: usize) -> bool {
    matches!(e.steps[si], Step::Act(_))
        && matches!(e.steps.get(si + 1), Some(Step::MaxPool(w)) if w.apart())
}

/// BatchNorm as a per-channel affine map from its statistics (batch or running): the mean and
/// `1/√(var+ε)` rounded to `T`, and `a = γ·invstd`, `b = β − mean·a`.
#[allow(clippy::type_complexity)]
fn bn_affine<T: Pooled>(
    gamma: &[T],
    beta: &[T],
    m64: &[f64],
    v64: &[f64],
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let c = gamma.len();
    let (mut mean, mut invstd) = (vec![T::ZERO; c], vec![T::ONE; c]);
    let (mut sa, mut sb) = (vec![T::ONE; c], vec![T::ZERO; c]);
    for ch in 0..c {
        let is = 1.0 / (v64[ch] + BN_EPS).sqrt();
        mean[ch] = T::from_f64(m64[ch]);
        invstd[ch] = T::from_f64(is);
        sa[ch] = gamma[ch] * invstd[ch];
        sb[ch] = beta[ch] - mean[ch] * sa[ch];
    }
    (mean, invstd, sa, sb)
}

/// An act step's per-channel `(Σgz, Σgz·(x−mean))` of one image from its `∂L/∂z` and its input
/// `x`, with BatchNorm (`norm`: its mean and inverse std); zeros without.
fn bn_sums<T: Pooled>(
    a: &ActStep,
    gz: &[T],
    x: &[T],
    norm: Option<&(Vec<T>, Vec<T>)>,
) -> Vec<(f64, f64)> {
    let mut s = vec![(0.0, 0.0); a.c];
    if let Some((mean, _)) = norm {
        act::grad_sums(gz, x, a.c, a.hw, mean, &mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ArchSpec;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn same(a: &[u32], b: &[u32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(differ, 0, "{what}: {differ} of {} values differ", a.len());
    }

    /// A training step of the seed net with its act steps folded into the direct convolutions
    /// after them and the act step before its max pool not stored ([`pools_only`]), and with
    /// them all stored: the output, the batch statistics, the input gradient
    /// and every parameter gradient are the same bits. 7 images: the backward's groups of 3
    /// end in a partial one, and every image carries its own dropout counters.
    #[test]
    fn folded_act_steps_give_the_same_bits() {
        let e = Arc::new(
            Engine::new(
                &ArchSpec::seed().resolve().unwrap(),
                crate::NUMERICS_VERSION,
            )
            .unwrap(),
        );
        let n = 7;
        // Fixed patterns: any values do (scaled so no ReLU is always on or off).
        let pattern = |len: usize, k: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * k) % 1000) as f32 / 1000.0 - 0.4)
                .collect()
        };
        let (x, params) = (pattern(n * e.sizes[0], 7919), pattern(e.n_params, 104_729));
        let g_out = pattern(n * e.sizes[e.steps.len()], 31);
        let drops = e
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Act(a) if a.dropout.is_some()));
        let keys: Vec<u64> = (1..=drops.count() as u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let run = |fold: bool| {
            let mut pass = Pass::new(e.clone(), true, keys.clone(), vec![], true, true);
            pass.fold = fold;
            let (out, saved) = pass.forward(&x, &params, n);
            let saved = saved.expect("saved");
            let folded = saved.maps.iter().filter(|m| m.is_some()).count();
            // The input (`acts[0]`) is never stored.
            let unstored = saved.acts[1..].iter().filter(|a| a.is_empty()).count();
            let (gx, gp) = pass.backward(&saved, &x, &params, &g_out, n);
            let stats = pass.stats.lock().unwrap().clone();
            (
                (folded, unstored),
                bits(&out),
                bits(&gx.expect("input gradient")),
                bits(&gp),
                stats,
            )
        };
        let (folded, unfolded) = (run(true), run(false));
        // The seed net folds its first two act steps into the convolutions after them, and
        // the third's output only its 2×2 max pool reads: three outputs not stored.
        assert_eq!((folded.0, unfolded.0), ((2, 3), (0, 0)));
        same(&folded.1, &unfolded.1, "outputs");
        assert_eq!(folded.4, unfolded.4, "batch statistics");
        same(&folded.2, &unfolded.2, "input gradients");
        same(&folded.3, &unfolded.3, "parameter gradients");
    }
}
