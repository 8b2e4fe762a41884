//! Pooling, global average pooling and log-softmax on one image.

use super::real::Real;

/// A pooling window over `c` planes `h×w`: `k×k`, stride `s`, floor mode (windows overlap when
/// `s < k`).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Planes.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub s: usize,
}

impl Window {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        (
            (self.h - self.k) / self.s + 1,
            (self.w - self.k) / self.s + 1,
        )
    }

    /// Whether the windows lie apart (no input in two windows): each input value's gradient is
    /// then its window's output gradient at the winner and 0 elsewhere.
    pub fn apart(&self) -> bool {
        self.k <= self.s
    }
}

/// Max pooling; `arg` gets each window's first maximum in row-major order (PyTorch's rule:
/// strictly greater, or NaN), as an index into `x`.
pub fn max_pool<T: Real>(x: &[T], out: &mut [T], arg: &mut [u32], win: &Window) {
    if win.k == 2 && win.s == 2 {
        max_pool2(x, out, arg, win.c, win.h, win.w)
    } else {
        max_pool_scan(x, out, arg, win)
    }
}

/// [`max_pool`] for any window: each scanned in row-major order, the running best replaced by a
/// strictly greater value or a NaN.
fn max_pool_scan<T: Real>(x: &[T], out: &mut [T], arg: &mut [u32], win: &Window) {
    let &Window { c, h, w, k, s } = win;
    let (oh, ow) = win.out();
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = oy * s * w + ox * s;
                for dy in 0..k {
                    for dx in 0..k {
                        let i = (oy * s + dy) * w + ox * s + dx;
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

/// One step of the scan: `(b, ib)` follows `(a, ia)` in row-major order; the later one wins when
/// strictly greater or NaN.
#[inline(always)]
fn later_wins<T: Real>((a, ia): (T, usize), (b, ib): (T, usize)) -> (T, usize) {
    if b > a || b.is_nan() {
        (b, ib)
    } else {
        (a, ia)
    }
}

fma_dispatch! {
/// [`max_pool`] for `k = 2`, one pair of input rows at a time, as a tournament: the top pair,
/// the bottom pair, then the two winners. The same window element as the row-major scan
/// (first maximum; with NaNs, the last NaN, as the scan replaces NaN by NaN), without its chain
/// of dependent selects; checked against [`max_pool_scan`] by a property test. Compiled per
/// kernel path (the compiler vectorises the tournament: 0.64 → 0.29 ms per batch); on the
/// AVX-512 path, and on the AVX2 path for rows of at least 8 windows, each row goes through
/// explicit vectors instead ([`simd_pool_row`]).
fn max_pool2<T: Real>(x: &[T], out: &mut [T], arg: &mut [u32], c: usize, h: usize, w: usize) {
    let ow = w / 2;
    for (top, o) in pool2_rows(c, h, w) {
        let (r0, r1) = (&x[top..top + 2 * ow], &x[top + w..top + w + 2 * ow]);
        let (orow, arow) = (&mut out[o..o + ow], &mut arg[o..o + ow]);
        if simd_pool_row(orow, r0, r1, Some((arow, top, w))) {
            continue;
        }
        for ox in 0..ow {
            let i = top + 2 * ox;
            let up = later_wins((r0[2 * ox], i), (r0[2 * ox + 1], i + 1));
            let down = later_wins((r1[2 * ox], i + w), (r1[2 * ox + 1], i + w + 1));
            let (v, at) = later_wins(up, down);
            orow[ox] = v;
            arow[ox] = at as u32;
        }
    }
}
}

/// A 2×2 pool's output rows over `c` planes `h×w`: where each one's top input row starts, and
/// where it goes.
#[inline(always)]
fn pool2_rows(c: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize)> {
    let (oh, ow) = (h / 2, w / 2);
    (0..c * oh).map(move |k| {
        let (ch, oy) = (k / oh, k % oh);
        (ch * h * w + 2 * oy * w, k * ow)
    })
}

/// [`max_pool`]'s values alone (inference), for `k = s = 2`: the same tournament, so the same
/// element of each window, without the indices.
pub fn max_pool2_values<T: Real>(x: &[T], out: &mut [T], win: &Window) {
    assert!(win.k == 2 && win.s == 2, "a 2×2 window of stride 2");
    max_pool2_v(x, out, win.c, win.h, win.w)
}

/// [`later_wins`] on values alone.
#[inline(always)]
fn later<T: Real>(a: T, b: T) -> T {
    if b > a || b.is_nan() { b } else { a }
}

fma_dispatch! {
/// [`max_pool2`] without the indices.
fn max_pool2_v<T: Real>(x: &[T], out: &mut [T], c: usize, h: usize, w: usize) {
    let ow = w / 2;
    for (top, o) in pool2_rows(c, h, w) {
        let (r0, r1) = (&x[top..top + 2 * ow], &x[top + w..top + w + 2 * ow]);
        let row = &mut out[o..o + ow];
        if simd_pool_row(row, r0, r1, None) {
            continue;
        }
        for (ox, v) in row.iter_mut().enumerate() {
            let up = later(r0[2 * ox], r0[2 * ox + 1]);
            let down = later(r1[2 * ox], r1[2 * ox + 1]);
            *v = later(up, down);
        }
    }
}
}

fma_dispatch! {
/// [`max_pool2_values`] on `c` planes of `h×w` positions in the lanes layout (`lanes` images
/// side by side at each position): the same tournament for each image, so the same bits.
pub fn max_pool2_lanes<T: Real>(x: &[T], out: &mut [T], c: usize, h: usize, w: usize, lanes: usize) {
    let (oh, ow) = (h / 2, w / 2);
    assert!(x.len() >= c * h * w * lanes && out.len() >= c * oh * ow * lanes);
    let at = |ch: usize, y: usize, x: usize| ((ch * h + y) * w + x) * lanes;
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (y, x0) = (2 * oy, 2 * ox);
                let (a, b) = (&x[at(ch, y, x0)..][..lanes], &x[at(ch, y, x0 + 1)..][..lanes]);
                let (d, e) = (&x[at(ch, y + 1, x0)..][..lanes], &x[at(ch, y + 1, x0 + 1)..][..lanes]);
                let o = &mut out[((ch * oh + oy) * ow + ox) * lanes..][..lanes];
                for j in 0..lanes {
                    o[j] = later(later(a[j], b[j]), later(d[j], e[j]));
                }
            }
        }
    }
}
}

/// A row of [`max_pool2`] (with each winner's index: `arg`, the row's first window's top-left
/// index and the plane's width) or of [`max_pool2_v`] (without) for `f32` with explicit
/// vectors: on the AVX-512 path ([`super::simd::max_pool2_row512`]), and on the AVX2 path for
/// rows of at least 8 windows ([`super::simd::max_pool2_row256`]); `false` when it does not
/// apply (the caller then runs the generic loop, with the same bits).
#[allow(unsafe_code)]
#[inline(always)]
fn simd_pool_row<T: Real>(
    row: &mut [T],
    r0: &[T],
    r1: &[T],
    arg: Option<(&mut [u32], usize, usize)>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use super::KernelPath;
        use super::real::{as_f32, as_f32_mut};
        // Which kernel, before anything is converted: the generic loop needs none of it.
        let wide = match KernelPath::active() {
            KernelPath::Avx512 => true,
            KernelPath::Avx2 if row.len() >= 8 => false,
            _ => return false,
        };
        let (Some(o), Some(r0), Some(r1)) = (as_f32_mut(row), as_f32(r0), as_f32(r1)) else {
            return false;
        };
        let args = arg.map(|(arg, top, w)| super::simd::PoolArgs {
            arg,
            top: u32::try_from(top).expect("pool indices fit in u32"),
            w: w as u32,
        });
        // SAFETY: each path runs only on a CPU with its features.
        match wide {
            true => unsafe { super::simd::max_pool2_row512(o, r0, r1, args) },
            false => unsafe { super::simd::max_pool2_row256(o, r0, r1, args) },
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (row, r0, r1, arg);
        false
    }
}

/// Average pooling.
pub fn avg_pool<T: Real>(x: &[T], out: &mut [T], win: &Window) {
    let &Window { c, h, w, k, s } = win;
    let (oh, ow) = win.out();
    let inv = T::from_f64(1.0 / (k * k) as f64);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = T::ZERO;
                for dy in 0..k {
                    for dx in 0..k {
                        sum += plane[(oy * s + dy) * w + ox * s + dx];
                    }
                }
                out[ch * oh * ow + oy * ow + ox] = sum * inv;
            }
        }
    }
}

/// Backward of [`avg_pool`]: `1/k²` of each gradient to each pixel of its window (summed where
/// windows overlap, in output order); the cropped border gets none.
pub fn avg_pool_back<T: Real>(g: &[T], gx: &mut [T], win: &Window) {
    let &Window { c, h, w, k, s } = win;
    let (oh, ow) = win.out();
    let inv = T::from_f64(1.0 / (k * k) as f64);
    gx.fill(T::ZERO);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let v = g[ch * oh * ow + oy * ow + ox] * inv;
                for dy in 0..k {
                    for dx in 0..k {
                        let i = ch * h * w + (oy * s + dy) * w + ox * s + dx;
                        // Disjoint windows assign (as before overlap was possible: `0 + −0`
                        // would turn a −0 into +0), overlapping ones add.
                        gx[i] = if s >= k { v } else { gx[i] + v };
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The 2×2 tournament picks the same element as the row-major scan, on values drawn
        /// from a small set so that ties and NaNs are common, on every kernel path. Rows up to
        /// 39 wide: on the AVX-512 path an output row goes in pieces of 16, the last one
        /// masked, each reading 32 inputs as two halves; on the AVX2 path, rows of 8 windows or
        /// more in pieces of 8, the last one overlapping the one before, and shorter rows (as
        /// the portable path) in the compiler's code. The values-only and lanes tournaments
        /// (inference) keep the same elements.
        #[test]
        fn max_pool2_is_the_scan(
            (c, h, w, x) in (1usize..4, 2usize..7, 2usize..40).prop_flat_map(|(c, h, w)| {
                let v = prop_oneof![Just(f32::NAN), Just(-f32::NAN), Just(-1.0f32), Just(0.0), Just(-0.0), Just(1.0)];
                (Just(c), Just(h), Just(w), proptest::collection::vec(v, c * h * w))
            })
        ) {
            let n = c * (h / 2) * (w / 2);
            let window = Window { c, h, w, k: 2, s: 2 };
            let (mut o2, mut a2) = (vec![0f32; n], vec![0u32; n]);
            max_pool_scan(&x, &mut o2, &mut a2, &window);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            // Every kernel path of this CPU (explicit vectors on the AVX-512 path, the
            // compiler's elsewhere).
            let runs = crate::engine::on_every_path(|| {
                let (mut o1, mut a1) = (vec![0f32; n], vec![0u32; n]);
                max_pool2(&x, &mut o1, &mut a1, c, h, w);
                let mut o3 = vec![0f32; n];
                max_pool2_values(&x, &mut o3, &window);
                (o1, a1, o3)
            });
            for (path, (o1, a1, o3)) in &runs {
                prop_assert_eq!(a1, &a2, "indices ({})", path);
                prop_assert_eq!(bits(o1), bits(&o2), "values ({})", path);
                // The values-only tournament (inference) keeps the same elements.
                prop_assert_eq!(bits(o3), bits(o1), "values only ({})", path);
            }
            // The lanes layout: lane `i` holds the planes rotated by `i` values, and each lane
            // pools as the values-only tournament pools that image alone.
            const L: usize = 3;
            let len = x.len();
            let image = |i: usize| (0..len).map(|j| x[(j + i) % len]).collect::<Vec<_>>();
            let lanes: Vec<f32> = (0..len * L).map(|q| image(q % L)[q / L]).collect();
            let mut o4 = vec![0f32; n * L];
            max_pool2_lanes(&lanes, &mut o4, c, h, w, L);
            for i in 0..L {
                let mut alone = vec![0f32; n];
                max_pool2_values(&image(i), &mut alone, &window);
                let lane: Vec<f32> = (0..n).map(|j| o4[j * L + i]).collect();
                prop_assert_eq!(bits(&lane), bits(&alone), "lane {}", i);
            }
        }
    }
}
