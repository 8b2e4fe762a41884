//! The convolution drivers: a layer's images in parallel, each padded into the wide-plane layout
//! the kernels in [`conv`] work on; weight gradients summed per image in image order.

use rayon::prelude::*;

use super::plan::ConvStep;
use super::real::Real;
use super::{act, conv};

/// A layer's forward over the batch. With `stats`, also each image's per-channel `(Σy, Σy²)` of
/// the output ([`act::plane_sums`], what a BatchNorm in training mode next needs), computed
/// while the image's output is still in cache.
pub(super) fn conv_forward<T: Real>(
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    out: &mut [T],
    isz: usize,
    osz: usize,
    stats: bool,
) -> Option<Vec<Vec<(f64, f64)>>> {
    let (xlen, wlen) = conv_scratch(cs);
    let hw = cs.oh * cs.ow;
    let sums: Vec<Vec<(f64, f64)>> = out
        .par_chunks_mut(osz)
        .zip(xin.par_chunks(isz))
        .map_init(
            || (vec![T::ZERO; xlen], vec![T::ZERO; wlen]),
            |(xp, wide), (o, xi)| {
                conv_image(cs, xi, params, o, xp, wide);
                let mut s = vec![];
                if stats {
                    s = vec![(0.0, 0.0); cs.co];
                    act::plane_sums(o, cs.co, hw, &mut s);
                }
                s
            },
        )
        .collect();
    stats.then_some(sums)
}

/// Lengths of the padded-input and wide-output scratch buffers [`conv_image`] needs.
pub(super) fn conv_scratch(cs: &ConvStep) -> (usize, usize) {
    (
        cs.ci * cs.hp * cs.wp + cs.lw + cs.front + conv::CHUNK,
        cs.co * cs.lw,
    )
}

/// One image's convolution forward, with scratch buffers at least [`conv_scratch`] long.
pub(super) fn conv_image<T: Real>(
    cs: &ConvStep,
    xi: &[T],
    params: &[T],
    o: &mut [T],
    xp: &mut [T],
    wide: &mut [T],
) {
    let w = &params[cs.weight..cs.weight + cs.co * cs.ci * cs.off.len()];
    let bias = cs.bias.map(|b| &params[b..b + cs.co]);
    pad_into(cs, xi, xp);
    conv::correlate(
        xp,
        cs.hp * cs.wp,
        cs.ci,
        w,
        bias,
        cs.co,
        &cs.off,
        wide,
        cs.lw,
        cs.lw,
    );
    crop(cs, wide, o);
}

/// Keeps, of the wide stride-1 output planes, every `stride`-th row and column of the output.
fn crop<T: Real>(cs: &ConvStep, wide: &[T], o: &mut [T]) {
    let s = cs.stride;
    for c in 0..cs.co {
        for r in 0..cs.oh {
            let src = &wide[c * cs.lw + r * s * cs.wp..];
            let dst = &mut o[(c * cs.oh + r) * cs.ow..(c * cs.oh + r + 1) * cs.ow];
            match s {
                1 => dst.copy_from_slice(&src[..cs.ow]),
                _ => {
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = src[x * s];
                    }
                }
            }
        }
    }
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
pub(super) fn conv_backward<T: Real>(
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
    let (xlen, _) = conv_scratch(cs);
    let lwg = (cs.rows * cs.wp).div_ceil(conv::LANES) * conv::LANES;
    let s = cs.stride;
    let with_bias = cs.bias.is_some();
    let per_image =
        |gi: &[T], xi: &[T], gxi: Option<&mut [T]>, scratch: &mut (Vec<T>, Vec<T>, Vec<T>)| {
            let (gpad, xp, gxw) = scratch;
            gpad.fill(T::ZERO);
            // The stride-1 output's gradient: the given one at every `s`-th row and column, 0
            // elsewhere.
            for c in 0..cs.co {
                for r in 0..cs.oh {
                    let dst = c * gs + cs.front + r * s * cs.wp;
                    let src = &gi[(c * cs.oh + r) * cs.ow..(c * cs.oh + r + 1) * cs.ow];
                    match s {
                        1 => gpad[dst..dst + cs.ow].copy_from_slice(src),
                        _ => {
                            for (x, &v) in src.iter().enumerate() {
                                gpad[dst + x * s] = v;
                            }
                        }
                    }
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
