//! The inference forward: eval mode, nothing kept for backward.
//!
//! A few images at a time run through the whole stack before the next few (those groups in
//! parallel), so their activations stay in the core's cache instead of a batch's worth going
//! through memory after every step. Where the largest training group is [`LANES`] images, a
//! group runs with its images in the vector lanes ([`lanes`]) through every unpadded stride-1
//! convolution and 2×2 max pool, and goes back to one image after another before any other
//! step. Elsewhere each convolution takes the images in its own training groups
//! ([`ConvStep::group`](super::plan::ConvStep)), or, when unpadded with large planes, one image
//! at a time read where it lies (no padded copy). An act step after a stride-1 convolution runs
//! as the convolution crops or stores its output, and a 2×2 max pool keeps no arg-max. Every
//! value goes through the same operations as in the batch path, with BatchNorm's running
//! statistics folded into the same per-channel affine map, and an output's sum does not depend
//! on the group or the layout, so the outputs are the same bits as one image alone.

use super::buffers::Buf;
use super::drivers::{
    Scratch, conv_direct, conv_group, conv_scratch, direct_slack, tile_weights, tiles_moved,
};
use super::lanes::{self, LANES};
use super::places::Epilogue;
use super::plan::{ConvStep, Engine, Pooled, Step};
use super::{act, misc, spread, tiles};

/// Per act step: its affine map (BatchNorm's from the running statistics, else the identity).
pub(super) type Maps<T> = [Option<(Vec<T>, Vec<T>)>];

/// What every group of images shares: the steps, their maps and parameters, how each
/// convolution runs, and the lengths of a group's buffers (the two activation buffers first,
/// then a padded input and a wide output per convolution that runs in the wide layout).
struct Plan<'a, T> {
    e: &'a Engine,
    maps: &'a Maps<T>,
    params: &'a [T],
    /// Images per group: the largest training group of the convolutions.
    group: usize,
    /// Per step: how it runs, for a convolution.
    convs: Vec<Option<ConvRun<T>>>,
    /// Lengths of a group's buffers.
    lens: Vec<usize>,
    /// Length of a general max pool's arg-max scratch (0 without one).
    arg: usize,
}

/// How inference runs a convolution: in the wide layout, its padded input in the group's buffer
/// `slot` and its wide output in the next; in the lanes; or on Winograd tiles (numerics version
/// 5), its transformed weights `u`, a group's input and output in the lanes and the kernel's
/// scratch in buffers `slot` to `slot + 2`: where the group lies in the lanes (`resident`), the
/// kernel reads and writes the group's own buffers; elsewhere it moves up to 16 images in and
/// out, as the batch path's evaluation does, so the same bits either way.
enum ConvRun<T> {
    Wide {
        slot: usize,
    },
    Lanes(lanes::Geometry),
    Tiles {
        u: Vec<T>,
        slot: usize,
        resident: bool,
    },
}

/// The inference forward of `n` images `x` with parameters `params` and act-step maps `maps`.
pub(super) fn forward<T: Pooled>(
    e: &Engine,
    maps: &Maps<T>,
    x: &[T],
    params: &[T],
    n: usize,
) -> Vec<T> {
    let plan = Plan::new(e, maps, params);
    let (isz, osz) = (e.sizes[0], *e.sizes.last().expect("output size"));
    let mut out = vec![T::ZERO; n * osz];
    let scratch = || (Scratch::take(T::pool(e), &plan.lens), vec![0u32; plan.arg]);
    let items = out
        .chunks_mut(plan.group * osz)
        .zip(x.chunks(plan.group * isz))
        .collect();
    spread::each(items, scratch, |(s, arg), _, (o, xi)| {
        plan.run(&mut s.bufs, arg, xi, o)
    });
    out
}

impl<'a, T: Pooled> Plan<'a, T> {
    fn new(e: &'a Engine, maps: &'a Maps<T>, params: &'a [T]) -> Self {
        let convs = || {
            e.steps.iter().filter_map(|s| match s {
                Step::Conv(cs) => Some(cs),
                _ => None,
            })
        };
        let group = convs().map(|cs| cs.group).max().unwrap_or(1);
        // Room after the images for what a direct convolution reads past its last one.
        let slack = convs()
            .filter(|cs| cs.direct())
            .map(direct_slack)
            .max()
            .unwrap_or(0);
        let widest = group * e.sizes.iter().copied().max().unwrap_or(0) + slack;
        // The lanes layout where the groups fill the vectors' lanes.
        let lanes = group == LANES;
        let mut lens = vec![widest, widest];
        let convs = e
            .steps
            .iter()
            .map(|step| match step {
                Step::Conv(cs) if cs.tiles => {
                    // A group in and out of the lanes, where it does not lie there already.
                    let (xl, yl) = match lanes {
                        true => (0, 0),
                        false => (LANES * cs.ci * cs.h * cs.w, LANES * cs.co * cs.oh * cs.ow),
                    };
                    lens.extend([xl, yl, tiles::scratch_len(cs.ci, cs.co)]);
                    Some(ConvRun::Tiles {
                        u: tile_weights(cs, params),
                        slot: lens.len() - 3,
                        resident: lanes,
                    })
                }
                Step::Conv(cs) if lanes && lanes::fits(cs) => {
                    Some(ConvRun::Lanes(lanes::Geometry::new(cs)))
                }
                Step::Conv(cs) => {
                    let (xl, wl) = conv_scratch(cs, cs.group);
                    lens.extend([xl, wl]);
                    Some(ConvRun::Wide {
                        slot: lens.len() - 2,
                    })
                }
                _ => None,
            })
            .collect();
        let general_pool = e
            .steps
            .iter()
            .any(|s| matches!(s, Step::MaxPool(w) if !pool2(w)));
        let arg = if general_pool { widest } else { 0 };
        Plan {
            e,
            maps,
            params,
            group,
            convs,
            lens,
            arg,
        }
    }

    /// The act step after step `si`, when it runs as that convolution crops or stores its
    /// output.
    fn then(&self, si: usize, cs: &ConvStep) -> Option<Epilogue<'a, T>> {
        match (self.maps.get(si + 1), self.e.steps.get(si + 1)) {
            (Some(Some((a, b))), Some(Step::Act(s))) if cs.stride == 1 => {
                Some(Epilogue { a, b, relu: s.relu })
            }
            _ => None,
        }
    }

    /// Whether step `si` runs in the lanes layout, given whether the group is in it now.
    fn in_lanes(&self, si: usize, step: &Step, now: bool) -> bool {
        match step {
            Step::Conv(_) => matches!(
                self.convs[si],
                Some(ConvRun::Lanes(_) | ConvRun::Tiles { resident: true, .. })
            ),
            Step::MaxPool(w) => now && pool2(w),
            _ => false,
        }
    }

    /// One group: images `xi` through every step into `o`.
    fn run(&self, bufs: &mut [Buf<T>], arg: &mut [u32], xi: &[T], o: &mut [T]) {
        let e = self.e;
        let (ab, convs) = bufs.split_at_mut(2);
        let [a, b] = ab else {
            unreachable!("two activation buffers")
        };
        let m = xi.len() / e.sizes[0];
        a[..xi.len()].copy_from_slice(xi);
        let (mut fused, mut now) = (false, false);
        for (si, step) in e.steps.iter().enumerate() {
            if std::mem::take(&mut fused) {
                continue;
            }
            let (isz, osz) = (e.sizes[si], e.sizes[si + 1]);
            // Into the lanes layout before a step that runs there, out of it before one that
            // does not.
            let next = self.in_lanes(si, step, now);
            if next != now {
                match next {
                    true => lanes::gather(&a[..m * isz], m, isz, b),
                    false => lanes::scatter(a, m, isz, b),
                }
                std::mem::swap(a, b);
                now = next;
            }
            fused = match now {
                true => {
                    let (x, y) = (&a[..isz * LANES], &mut b[..osz * LANES]);
                    self.lanes_step(si, step, x, y, convs)
                }
                false => self.wide_step(si, step, m, a, &mut b[..m * osz], convs, arg),
            };
            std::mem::swap(a, b);
        }
        if now {
            lanes::scatter(a, m, *e.sizes.last().expect("output size"), b);
            std::mem::swap(a, b);
        }
        o.copy_from_slice(&a[..o.len()]);
    }

    /// Step `si` in the lanes layout (`convs`: the group's convolution buffers); whether it ran
    /// the act step after it too.
    fn lanes_step(
        &self,
        si: usize,
        step: &Step,
        x: &[T],
        y: &mut [T],
        convs: &mut [Buf<T>],
    ) -> bool {
        match step {
            Step::Conv(cs) => {
                let act = self.then(si, cs);
                match &self.convs[si] {
                    Some(ConvRun::Lanes(g)) => g.conv(cs, x, self.params, y, act),
                    Some(ConvRun::Tiles { u, slot, .. }) => {
                        // The third of its buffers (`convs` starts at buffer 2).
                        let scratch = &mut convs[*slot];
                        tiles::forward(x, cs.ci, cs.h, cs.w, u, cs.co, y, act, scratch);
                    }
                    _ => unreachable!("a convolution in the lanes has its geometry or tiles"),
                }
                act.is_some()
            }
            Step::MaxPool(w) => {
                misc::max_pool2_lanes(x, y, w.c, w.h, w.w, LANES);
                false
            }
            _ => unreachable!("only convolutions and 2×2 max pools run in the lanes"),
        }
    }

    /// Step `si` on `m` images one after another (`xall` runs on past them: a direct
    /// convolution reads there); whether it ran the act step after it too.
    #[allow(clippy::too_many_arguments)]
    fn wide_step(
        &self,
        si: usize,
        step: &Step,
        m: usize,
        xall: &[T],
        y: &mut [T],
        convs: &mut [Buf<T>],
        arg: &mut [u32],
    ) -> bool {
        let (isz, osz) = (self.e.sizes[si], self.e.sizes[si + 1]);
        let xin = &xall[..m * isz];
        let (params, pairs) = (self.params, y.chunks_mut(osz).zip(xin.chunks(isz)));
        match step {
            Step::Conv(cs) => {
                let act = self.then(si, cs);
                let slot = match &self.convs[si] {
                    Some(ConvRun::Wide { slot }) => *slot,
                    Some(ConvRun::Tiles { u, slot, .. }) => {
                        let [xl, yl, scratch] = &mut convs[slot - 2..slot + 1] else {
                            unreachable!("three buffers")
                        };
                        for (yc, xc) in y.chunks_mut(LANES * osz).zip(xin.chunks(LANES * isz)) {
                            tiles_moved(cs, u, xc, yc, act, [xl, yl, scratch]);
                        }
                        return act.is_some();
                    }
                    _ => unreachable!("a wide convolution has its scratch"),
                };
                let j = slot - 2;
                let (xp, wide) = convs[j..j + 2].split_at_mut(1);
                let (xp, wide) = (&mut xp[0], &mut wide[0]);
                if cs.direct() {
                    for (i, yi) in y.chunks_mut(osz).enumerate() {
                        conv_direct(cs, &xall[i * isz..], params, yi, wide, act);
                    }
                } else {
                    let (gi, go) = (cs.group * isz, cs.group * osz);
                    for (yc, xc) in y.chunks_mut(go).zip(xin.chunks(gi)) {
                        conv_group(cs, xc.len() / isz, xc, params, yc, xp, wide, act);
                    }
                }
                return act.is_some();
            }
            Step::Act(s) => {
                let (sa, sb) = self.maps[si].as_ref().expect("an act step's map");
                pairs.for_each(|(yi, xi)| act::forward(xi, yi, s.c, s.hw, sa, sb, None, s.relu, 0));
            }
            Step::MaxPool(w) if pool2(w) => {
                pairs.for_each(|(yi, xi)| misc::max_pool2_values(xi, yi, w));
            }
            Step::MaxPool(w) => {
                for ((yi, xi), ai) in pairs.zip(arg.chunks_mut(osz)) {
                    misc::max_pool(xi, yi, ai, w);
                }
            }
            Step::AvgPool(_) | Step::Gap { .. } | Step::LogSoftmax => {
                pairs.for_each(|(yi, xi)| step.plain(xi, yi));
            }
        }
        false
    }
}

/// A 2×2 window of stride 2: its own inference kernels.
fn pool2(w: &misc::Window) -> bool {
    w.k == 2 && w.s == 2
}
