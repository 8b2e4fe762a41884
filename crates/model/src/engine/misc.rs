//! Pooling, global average pooling and log-softmax on one image.

use super::Real;

/// `k×k` max pooling (stride `k`, floor) of `c` planes `h×w`; `arg` gets each window's first
/// maximum in row-major order (PyTorch's rule: strictly greater, or NaN).
#[allow(clippy::too_many_arguments)]
pub fn max_pool<T: Real>(
    x: &[T],
    out: &mut [T],
    arg: &mut [u32],
    c: usize,
    h: usize,
    w: usize,
    k: usize,
) {
    let (oh, ow) = (h / k, w / k);
    if k == 2 {
        return max_pool2(x, out, arg, c, h, w);
    }
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = oy * k * w + ox * k;
                for dy in 0..k {
                    for dx in 0..k {
                        let i = (oy * k + dy) * w + ox * k + dx;
                        if plane[i] > plane[best] || plane[i].is_nan() {
                            best = i;
                        }
                    }
                }
                let o = ch * oh * ow + oy * ow + ox;
                out[o] = plane[best];
                arg[o] = (ch * h * w + best) as u32;
            }
        }
    }
}

/// [`max_pool`] for `k = 2`, one pair of input rows at a time.
fn max_pool2<T: Real>(x: &[T], out: &mut [T], arg: &mut [u32], c: usize, h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for ch in 0..c {
        for oy in 0..oh {
            let top = ch * h * w + 2 * oy * w;
            let r0 = &x[top..top + 2 * ow];
            let r1 = &x[top + w..top + w + 2 * ow];
            let o = ch * oh * ow + oy * ow;
            let (orow, arow) = (&mut out[o..o + ow], &mut arg[o..o + ow]);
            for ox in 0..ow {
                let cand = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
                let at = [0, 1, w, w + 1];
                // Branch-free (the comparisons are unpredictable on real data).
                let mut b = 0usize;
                for (j, &v) in cand.iter().enumerate().skip(1) {
                    let take = (v > cand[b] || v.is_nan()) as usize;
                    b = take * j + (1 - take) * b;
                }
                orow[ox] = cand[b];
                arow[ox] = (top + 2 * ox + at[b]) as u32;
            }
        }
    }
}

/// Backward of [`max_pool`]: the whole gradient to each window's arg-max.
pub fn max_pool_back<T: Real>(g: &[T], arg: &[u32], gx: &mut [T]) {
    gx.fill(T::ZERO);
    for (&gv, &i) in g.iter().zip(arg) {
        gx[i as usize] += gv;
    }
}

/// `k×k` average pooling (stride `k`, floor).
pub fn avg_pool<T: Real>(x: &[T], out: &mut [T], c: usize, h: usize, w: usize, k: usize) {
    let (oh, ow) = (h / k, w / k);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = T::ZERO;
                for dy in 0..k {
                    for dx in 0..k {
                        s += plane[(oy * k + dy) * w + ox * k + dx];
                    }
                }
                out[ch * oh * ow + oy * ow + ox] = s * inv;
            }
        }
    }
}

/// Backward of [`avg_pool`]: `1/k²` of each gradient to each pixel of its window; the cropped
/// border gets none.
pub fn avg_pool_back<T: Real>(g: &[T], gx: &mut [T], c: usize, h: usize, w: usize, k: usize) {
    let (oh, ow) = (h / k, w / k);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    gx.fill(T::ZERO);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let v = g[ch * oh * ow + oy * ow + ox] * inv;
                for dy in 0..k {
                    for dx in 0..k {
                        gx[ch * h * w + (oy * k + dy) * w + ox * k + dx] = v;
                    }
                }
            }
        }
    }
}

/// Mean of each of `c` planes of `hw` values.
pub fn gap<T: Real>(x: &[T], out: &mut [T], hw: usize) {
    let inv = T::from_f64(1.0 / hw as f64);
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(hw)) {
        *o = plane.iter().fold(T::ZERO, |s, &v| s + v) * inv;
    }
}

/// Backward of [`gap`].
pub fn gap_back<T: Real>(g: &[T], gx: &mut [T], hw: usize) {
    let inv = T::from_f64(1.0 / hw as f64);
    for (&gv, plane) in g.iter().zip(gx.chunks_exact_mut(hw)) {
        plane.fill(gv * inv);
    }
}

/// `out = x − max − ln Σ exp(x − max)` over one row.
pub fn log_softmax<T: Real>(x: &[T], out: &mut [T]) {
    let m = x.iter().fold(x[0], |m, &v| if v > m { v } else { m });
    let s = x.iter().fold(T::ZERO, |s, &v| s + (v - m).exp());
    let l = s.ln();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v - m - l;
    }
}

/// Backward of [`log_softmax`] from its output `y`: `gx = g − softmax·Σg`.
pub fn log_softmax_back<T: Real>(g: &[T], y: &[T], gx: &mut [T]) {
    let s = g.iter().fold(T::ZERO, |s, &v| s + v);
    for ((o, &gv), &yv) in gx.iter_mut().zip(g).zip(y) {
        *o = gv - yv.exp() * s;
    }
}
