//! The Winograd kernels for `f32` with explicit AVX2 and AVX-512 vectors: the same operations
//! in the same order as the portable code, whole vectors at a time. Each entry returns whether
//! it ran (`f32` on a vector path); the caller has checked every index it reads or writes.

use std::arch::x86_64::*;

use super::super::KernelPath;
use super::{Input, Real};

/// `s` as `f32` (checked by [`KernelPath::vectors_for`] before every use).
fn f32s<T: Real>(s: &[T]) -> &[f32] {
    super::super::real::as_f32(s).expect("f32")
}

/// [`super::transform`] of the first pairs, 4 at a time with AVX-512 and 2 with AVX2: `t = B
/// ± C`, `B = (d0, d1, d2, d1)` and `C = (d2, d2, d1, d3)` picked from one load, one rounding
/// each: the same values. Returns the pairs done.
pub(super) fn transform<T: Real>(x: &[T], pairs: usize, t: &mut [T]) -> usize {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return 0;
    };
    let (x, t) = (f32s(x), super::super::real::as_f32_mut(t).expect("f32"));
    // Vectors whose load (one pair's inputs per 2 values, and 2 more) and store stay within
    // the slices.
    let per = pairs_per_vector(path);
    let n = (pairs / per).min(x.len().saturating_sub(2 * per) / (2 * per));
    assert!(n == 0 || (2 * per * (n + 1) <= x.len() && 4 * per * n <= t.len()));
    // SAFETY: the CPU has the path's features (the active path); the vectors are within the
    // slices (asserted above).
    unsafe {
        match path {
            KernelPath::Avx512 => transform512(x, n, t),
            _ => transform256(x, n, t),
        }
    }
    per * n
}

/// Pairs a vector of [`transform`] on a vector `path` holds: 4 with AVX-512, 2 with AVX2.
fn pairs_per_vector(path: KernelPath) -> usize {
    if path == KernelPath::Avx512 { 4 } else { 2 }
}

/// [`super::transform_rows`] of every row whose vectors' loads stay within `x`, 4 pairs a
/// vector with AVX-512 and 2 with AVX2 as [`transform`]: a row's whole vectors, then one more
/// ending at its last pair (the pairs it repeats get the same values again). Returns the rows
/// done from the first (all of them where `x` runs on far enough past the last row; none off
/// the vector paths or for rows under a vector's pairs).
pub(super) fn transform_rows<T: Real>(
    x: &[T],
    w: usize,
    rows: usize,
    pr: usize,
    t: &mut [T],
) -> usize {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return 0;
    };
    let (x, t) = (f32s(x), super::super::real::as_f32_mut(t).expect("f32"));
    let per = pairs_per_vector(path);
    if pr < per {
        return 0;
    }
    // A row's last vector starts at pair `pr − per` and reads `4·per` values from there.
    let reach = 2 * (pr - per) + 4 * per;
    let rows = rows.min((x.len() + w).saturating_sub(reach) / w);
    assert!(rows == 0 || (w * (rows - 1) + reach <= x.len() && 4 * rows * pr <= t.len()));
    // SAFETY: the CPU has the path's features (the active path); the loads and stores lie
    // within the slices (asserted above).
    unsafe {
        match path {
            KernelPath::Avx512 => rows512(x, w, rows, pr, t),
            _ => rows256(x, w, rows, pr, t),
        }
    }
    rows
}

/// The rows of [`transform_rows`] with AVX-512 ([`each_row`], 4 pairs a vector).
///
/// # Safety
/// AVX-512; `x` holds `w·(rows − 1) + 2·(pr − 4) + 16` values and `t` `4·rows·pr`, `pr ≥ 4`.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn rows512(x: &[f32], w: usize, rows: usize, pr: usize, t: &mut [f32]) {
    // SAFETY: within the lengths the caller checked (`each_row`); the CPU has AVX-512.
    each_row(x, (w, rows, pr, 4), t, |x, n, t| unsafe {
        transform512(x, n, t)
    });
}

/// The rows of [`transform_rows`] with AVX2 ([`each_row`], 2 pairs a vector).
///
/// # Safety
/// AVX2 and FMA; `x` holds `w·(rows − 1) + 2·(pr − 2) + 8` values and `t` `4·rows·pr`, `pr ≥ 2`.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows256(x: &[f32], w: usize, rows: usize, pr: usize, t: &mut [f32]) {
    // SAFETY: within the lengths the caller checked (`each_row`); the CPU has AVX2 and FMA.
    each_row(x, (w, rows, pr, 2), t, |x, n, t| unsafe {
        transform256(x, n, t)
    });
}

/// Each of `rows` rows of `w` values: `vectors(x, n, t)` ([`transform`]'s `n` vectors of `per`
/// pairs) over its first `pr / per` vectors, then one at pair `pr − per` unless they cover the
/// row, its pairs packed `pr` a row in `t`. Inlined into a kernel path's function, so that the
/// vectors' code is too.
#[inline(always)]
fn each_row(
    x: &[f32],
    (w, rows, pr, per): (usize, usize, usize, usize),
    t: &mut [f32],
    vectors: impl Fn(&[f32], usize, &mut [f32]),
) {
    for r in 0..rows {
        let (x, t) = (&x[r * w..], &mut t[4 * r * pr..]);
        vectors(x, pr / per, t);
        if !pr.is_multiple_of(per) {
            let last = pr - per;
            vectors(&x[2 * last..], 1, &mut t[4 * last..]);
        }
    }
}

/// `B ± C` of `(d0, d1, d2, d1)` and `(d2, d2, d1, d3)` for every pair: sign lanes `(−, +, −, −)`.
const SIGNS: [f32; 16] = [
    -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0,
];

#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn transform512(x: &[f32], n: usize, t: &mut [f32]) {
    let b = _mm512_setr_epi32(0, 1, 2, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6, 7, 8, 7);
    let c = _mm512_setr_epi32(2, 2, 1, 3, 4, 4, 3, 5, 6, 6, 5, 7, 8, 8, 7, 9);
    // SAFETY: 16 values; every load reads x[8k..8k + 16] and every store writes t[16k..16k +
    // 16] for k < n (checked by the caller).
    unsafe {
        let sign = _mm512_loadu_ps(SIGNS.as_ptr());
        for k in 0..n {
            let v = _mm512_loadu_ps(x.as_ptr().add(8 * k));
            let y = _mm512_fmadd_ps(
                _mm512_permutexvar_ps(c, v),
                sign,
                _mm512_permutexvar_ps(b, v),
            );
            _mm512_storeu_ps(t.as_mut_ptr().add(16 * k), y);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn transform256(x: &[f32], n: usize, t: &mut [f32]) {
    let b = _mm256_setr_epi32(0, 1, 2, 1, 2, 3, 4, 3);
    let c = _mm256_setr_epi32(2, 2, 1, 3, 4, 4, 3, 5);
    // SAFETY: 8 values; every load reads x[4k..4k + 8] and every store writes t[8k..8k + 8] for
    // k < n (checked by the caller).
    unsafe {
        let sign = _mm256_loadu_ps(SIGNS.as_ptr());
        for k in 0..n {
            let v = _mm256_loadu_ps(x.as_ptr().add(4 * k));
            let y = _mm256_fmadd_ps(
                _mm256_permutevar8x32_ps(v, c),
                sign,
                _mm256_permutevar8x32_ps(v, b),
            );
            _mm256_storeu_ps(t.as_mut_ptr().add(8 * k), y);
        }
    }
}

/// [`super::grad_transform`] of one row of `lp` pairs (`lp` a multiple of 4), 4 pairs at a time
/// with AVX-512 and 2 with AVX2: `s = B ± C`, `B = (g0, g0, g0, 0)` and `C = (0, g1, g1, g1)`,
/// sign lanes `(−, +, −, −)`: `g0 − 0 = g0` and `0 − g1` exactly as the portable code writes
/// them, one rounding each. Returns whether it ran.
pub(super) fn grad_row<T: Real>(g: &[T], lp: usize, s: &mut [T]) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let (g, s) = (f32s(g), super::super::real::as_f32_mut(s).expect("f32"));
    assert!(lp.is_multiple_of(4) && g.len() >= 2 * lp && s.len() >= 4 * lp);
    // SAFETY: the CPU has the path's features (the active path); every load and store is
    // within the lengths asserted above.
    unsafe {
        match path {
            KernelPath::Avx512 => grad_row512(g, lp, s),
            _ => grad_row256(g, lp, s),
        }
    }
    true
}

#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn grad_row512(g: &[f32], lp: usize, s: &mut [f32]) {
    // Index 16 picks the zero of the second operand.
    let b = _mm512_setr_epi32(0, 0, 0, 16, 2, 2, 2, 16, 4, 4, 4, 16, 6, 6, 6, 16);
    let c = _mm512_setr_epi32(16, 1, 1, 1, 16, 3, 3, 3, 16, 5, 5, 5, 16, 7, 7, 7);
    let zero = _mm512_setzero_ps();
    // SAFETY: 8 values read and 16 written per 4 pairs, within the caller's lengths.
    unsafe {
        let sign = _mm512_loadu_ps(SIGNS.as_ptr());
        for k in 0..lp / 4 {
            let v = _mm512_castps256_ps512(_mm256_loadu_ps(g.as_ptr().add(8 * k)));
            let y = _mm512_fmadd_ps(
                _mm512_permutex2var_ps(v, c, zero),
                sign,
                _mm512_permutex2var_ps(v, b, zero),
            );
            _mm512_storeu_ps(s.as_mut_ptr().add(16 * k), y);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn grad_row256(g: &[f32], lp: usize, s: &mut [f32]) {
    let b = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
    let c = _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3);
    let zero = _mm256_setzero_ps();
    // SAFETY: 4 values read and 8 written per 2 pairs, within the caller's lengths.
    unsafe {
        let sign = _mm256_loadu_ps(SIGNS.as_ptr());
        for k in 0..lp / 2 {
            let v = _mm256_castps128_ps256(_mm_loadu_ps(g.as_ptr().add(4 * k)));
            // B's lane 3 and C's lane 0 of each pair from zero.
            let bv = _mm256_blend_ps::<0b1000_1000>(_mm256_permutevar8x32_ps(v, b), zero);
            let cv = _mm256_blend_ps::<0b0001_0001>(_mm256_permutevar8x32_ps(v, c), zero);
            _mm256_storeu_ps(s.as_mut_ptr().add(8 * k), _mm256_fmadd_ps(cv, sign, bv));
        }
    }
}

/// The largest block size of `sizes` (largest first, ending with 1) that fits in `left`.
fn largest(sizes: &[usize], left: usize) -> usize {
    *sizes.iter().find(|&&b| b <= left).expect("1 fits")
}

/// [`super::correlate`] in blocks of outputs × vectors of pairs.
pub(super) fn correlate<T: Real>(
    x: Input<'_, T>,
    u: &[T],
    no: usize,
    out: &mut [T],
    os: usize,
    lp: usize,
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let f = Fwd::new(x, u, out, os);
    blocks(&f, path, no, lp);
    true
}

/// The forward's blocks over `lp` pairs of `no` outputs on `path`.
fn blocks(f: &Fwd<'_>, path: KernelPath, no: usize, lp: usize) {
    let mut p = 0;
    while p < lp {
        // AVX-512: 16 pairs a block while they last, then 8; AVX2: 4.
        let (nv, pairs) = match path {
            KernelPath::Avx512 if p + 16 <= lp => (4, 16),
            KernelPath::Avx512 => (2, 8),
            _ => (2, 4),
        };
        let mut o = 0;
        while o < no {
            let ob = largest(&[5, 4, 2, 1], no - o);
            // SAFETY: the caller checked every index for lp pairs of no outputs; the CPU has
            // the path's features (the active path).
            unsafe {
                match (path, ob, nv) {
                    (KernelPath::Avx512, 5, 4) => fwd512::<5, 4>(f, o, p),
                    (KernelPath::Avx512, 4, 4) => fwd512::<4, 4>(f, o, p),
                    (KernelPath::Avx512, 2, 4) => fwd512::<2, 4>(f, o, p),
                    (KernelPath::Avx512, 1, 4) => fwd512::<1, 4>(f, o, p),
                    (KernelPath::Avx512, 5, _) => fwd512::<5, 2>(f, o, p),
                    (KernelPath::Avx512, 4, _) => fwd512::<4, 2>(f, o, p),
                    (KernelPath::Avx512, 2, _) => fwd512::<2, 2>(f, o, p),
                    (KernelPath::Avx512, _, _) => fwd512::<1, 2>(f, o, p),
                    (_, 5, _) => fwd256::<5>(f, o, p),
                    (_, 4, _) => fwd256::<4>(f, o, p),
                    (_, 2, _) => fwd256::<2>(f, o, p),
                    _ => fwd256::<1>(f, o, p),
                }
            }
            o += ob;
        }
        p += pairs;
    }
}

/// A forward's operands: the transformed input and weights, kernel rows per output, the
/// output with its stride.
struct Fwd<'a> {
    x: Input<'a, f32>,
    u: &'a [f32],
    nk: usize,
    out: *mut f32,
    os: usize,
}

impl<'a> Fwd<'a> {
    /// The operands of `T` = `f32` (checked by [`KernelPath::vectors_for`] or the caller).
    fn new<T: Real>(x: Input<'a, T>, u: &'a [T], out: &'a mut [T], os: usize) -> Self {
        let out = super::super::real::as_f32_mut(out).expect("f32");
        Fwd {
            x: x.over(f32s(x.t)),
            u: f32s(u),
            nk: x.ci * 3,
            out: out.as_mut_ptr(),
            os,
        }
    }
}

/// Per group of 4 lanes `(m0, m1, m2, m3)`: `((m0 + m1) + m2, (m1 − m2) − m3)` in its first
/// two lanes, each step `a ± b` rounded once (a multiply-add by ±1).
macro_rules! inverse {
    ($a:expr, $set:ident, $permute:ident, $fma:ident) => {{
        let pm = [1.0f32, -1.0, 1.0, -1.0];
        // SAFETY: 16 values, as many as a vector holds at most.
        let sign = unsafe { $set([pm; 4].as_flattened().as_ptr()) };
        // Lanes (m1, m2, …) and (m2, m3, …) of each group.
        let s = $fma($permute::<0b11_11_10_01>($a), sign, $a);
        $fma($permute::<0b11_11_11_10>($a), sign, s)
    }};
}

/// `OB` outputs × `NV` zmm (4 pairs each) from output `o` and pair `p` on.
///
/// # Safety
/// AVX-512 F; the block's reads and writes within what the caller checked.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn fwd512<const OB: usize, const NV: usize>(f: &Fwd<'_>, o: usize, p: usize) {
    let mut acc = [[_mm512_setzero_ps(); NV]; OB];
    // Kernel rows `k = c·3 + kh` in order, as two loops: no division by 3 in the inner one.
    for c in 0..f.x.ci {
        for kh in 0..3 {
            let (k, at) = (c * 3 + kh, f.x.at(c, kh, p));
            // SAFETY (all below): within the checked lengths.
            let tv: [__m512; NV] = std::array::from_fn(|v| unsafe {
                _mm512_loadu_ps(f.x.t.as_ptr().add(at + 16 * v))
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let w = unsafe { _mm_loadu_ps(f.u.as_ptr().add(((o + r) * f.nk + k) * 4)) };
                let w = _mm512_broadcast_f32x4(w);
                for v in 0..NV {
                    a[v] = _mm512_fmadd_ps(tv[v], w, a[v]);
                }
            }
        }
    }
    let first_two = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
    for (r, a) in acc.iter().enumerate() {
        let y = a.map(|v| inverse!(v, _mm512_loadu_ps, _mm512_permute_ps, _mm512_fmadd_ps));
        for v in (0..NV).step_by(2) {
            let z = _mm512_permutex2var_ps(y[v], first_two, y[v + 1]);
            let at = f.out.wrapping_add((o + r) * f.os + 2 * p + 8 * v);
            unsafe { _mm512_storeu_ps(at, z) };
        }
    }
}

/// `OB` outputs × 2 ymm (2 pairs each) from output `o` and pair `p` on.
///
/// # Safety
/// AVX2 and FMA; the block's reads and writes within what the caller checked.
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd256<const OB: usize>(f: &Fwd<'_>, o: usize, p: usize) {
    let mut acc = [[_mm256_setzero_ps(); 2]; OB];
    // Kernel rows `k = c·3 + kh` in order, as two loops: no division by 3 in the inner one.
    for c in 0..f.x.ci {
        for kh in 0..3 {
            let (k, at) = (c * 3 + kh, f.x.at(c, kh, p));
            // SAFETY (all below): within the checked lengths.
            let tv: [__m256; 2] =
                std::array::from_fn(|v| unsafe { _mm256_loadu_ps(f.x.t.as_ptr().add(at + 8 * v)) });
            for (r, a) in acc.iter_mut().enumerate() {
                let w = unsafe { f.u.as_ptr().add(((o + r) * f.nk + k) * 4) as *const __m128 };
                let w = unsafe { _mm256_broadcast_ps(&*w) };
                for v in 0..2 {
                    a[v] = _mm256_fmadd_ps(tv[v], w, a[v]);
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let y = a.map(|v| inverse!(v, _mm256_loadu_ps, _mm256_permute_ps, _mm256_fmadd_ps));
        // Pairs 0, 2 | 1, 3, then in order.
        let m = _mm256_castps_pd(_mm256_shuffle_ps::<0b01_00_01_00>(y[0], y[1]));
        let m = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(m));
        unsafe { _mm256_storeu_ps(f.out.wrapping_add((o + r) * f.os + 2 * p), m) };
    }
}

/// The weight gradient's lanes ([`super::weight_grad`]) into `acc[o·nk + k]`, with rows in
/// pairs: AVX-512 puts two rows in one zmm (low and high halves) with each input run broadcast
/// to both; AVX2 takes two rows × a few runs of ymm. An odd last row is paired with a copy of
/// itself, whose lanes go to a spare row of `acc` (which holds the rows rounded up to pairs).
/// Every lane of those rows is written and none is read (each sum starts in a register), so
/// `acc` need not be zeroed first.
pub(super) fn weight_grad<T: Real>(
    s: &[T],
    no: usize,
    lp: usize,
    x: Input<'_, T>,
    acc: &mut [[T; 8]],
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let x = x.over(f32s(x.t));
    let s = f32s(s);
    let nk = x.ci * 3;
    let pairs = no.div_ceil(2);
    let acc = super::super::real::as_f32_mut(acc.as_flattened_mut()).expect("f32");
    assert!(acc.len() >= super::acc_len(no, x.ci));
    let w = Wg {
        s,
        lp,
        x,
        nk,
        no,
        acc: acc.as_mut_ptr(),
    };
    let mut rp = 0;
    while rp < pairs {
        // AVX-512: at most 5 pairs a block, the blocks as even as they come (8 pairs: 4 + 4,
        // not 5 + 2 + 1, whose small blocks load more than they multiply). Which block a row
        // is in does not change its sums.
        let pb = match path {
            KernelPath::Avx512 => (pairs - rp).div_ceil((pairs - rp).div_ceil(5)),
            _ => 1,
        };
        let mut k = 0;
        while k < nk {
            let kb = largest(&[5, 3, 2, 1], nk - k);
            // SAFETY: the caller checked s and t for lp pairs of every row and run; `lanes`
            // holds every pair of rows; the CPU has the path's features (the active path).
            unsafe {
                match (path, pb) {
                    (KernelPath::Avx512, 5) => wg512_runs::<5>(&w, rp, k, kb),
                    (KernelPath::Avx512, 4) => wg512_runs::<4>(&w, rp, k, kb),
                    (KernelPath::Avx512, 3) => wg512_runs::<3>(&w, rp, k, kb),
                    (KernelPath::Avx512, 2) => wg512_runs::<2>(&w, rp, k, kb),
                    (KernelPath::Avx512, _) => wg512_runs::<1>(&w, rp, k, kb),
                    (_, _) => match kb {
                        5 => wg256::<5>(&w, rp, k),
                        3 => wg256::<3>(&w, rp, k),
                        2 => wg256::<2>(&w, rp, k),
                        _ => wg256::<1>(&w, rp, k),
                    },
                }
            }
            k += kb;
        }
        rp += pb;
    }
    true
}

/// [`wg512`] for `PW` pairs of rows and `kb` runs (5, 3, 2 or 1).
///
/// # Safety
/// As [`wg512`].
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn wg512_runs<const PW: usize>(w: &Wg<'_>, rp: usize, k: usize, kb: usize) {
    // SAFETY: the caller's.
    unsafe {
        match kb {
            5 => wg512::<PW, 5>(w, rp, k),
            3 => wg512::<PW, 3>(w, rp, k),
            2 => wg512::<PW, 2>(w, rp, k),
            _ => wg512::<PW, 1>(w, rp, k),
        }
    }
}

/// A weight gradient's operands: the transformed gradient (`no` rows of `lp` pairs), the
/// transformed input, its kernel rows, and the lanes (`8` per row and run, rows rounded up to
/// pairs).
struct Wg<'a> {
    s: &'a [f32],
    lp: usize,
    x: Input<'a, f32>,
    nk: usize,
    no: usize,
    acc: *mut f32,
}

impl Wg<'_> {
    /// Where row `o`'s gradient starts (an odd last row's partner: the row itself).
    fn row(&self, o: usize) -> *const f32 {
        self.s
            .as_ptr()
            .wrapping_add(o.min(self.no - 1) * self.lp * 4)
    }

    /// Where row `o`'s lanes for run `k` go.
    fn lanes(&self, o: usize, k: usize) -> *mut f32 {
        self.acc.wrapping_add((o * self.nk + k) * 8)
    }
}

/// `PW` pairs of rows (from pair `rp`) × `KB` runs (from run `k`).
///
/// # Safety
/// AVX-512 F; within what [`weight_grad`] checked.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn wg512<const PW: usize, const KB: usize>(w: &Wg<'_>, rp: usize, k: usize) {
    let mut a = [[_mm512_setzero_ps(); KB]; PW];
    let runs: [*const f32; KB] =
        std::array::from_fn(|q| w.x.t.as_ptr().wrapping_add(w.x.run(k + q)));
    let rows: [(*const f32, *const f32); PW] =
        std::array::from_fn(|r| (w.row(2 * (rp + r)), w.row(2 * (rp + r) + 1)));
    for j in (0..w.lp).step_by(2) {
        // SAFETY (all below): within the checked lengths.
        let sv: [__m512; PW] = std::array::from_fn(|r| unsafe {
            let lo = _mm512_castps256_ps512(_mm256_loadu_ps(rows[r].0.add(4 * j)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castps_pd(lo),
                _mm256_castps_pd(_mm256_loadu_ps(rows[r].1.add(4 * j))),
            ))
        });
        for (q, run) in runs.iter().enumerate() {
            let tv = unsafe { _mm256_castps_pd(_mm256_loadu_ps(run.add(4 * j))) };
            let tv = _mm512_castpd_ps(_mm512_broadcast_f64x4(tv));
            for r in 0..PW {
                a[r][q] = _mm512_fmadd_ps(sv[r], tv, a[r][q]);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (q, v) in row.iter().enumerate() {
            let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*v));
            let o = 2 * (rp + r);
            unsafe {
                _mm256_storeu_ps(w.lanes(o, k + q), _mm512_castps512_ps256(*v));
                _mm256_storeu_ps(w.lanes(o + 1, k + q), _mm256_castpd_ps(hi));
            }
        }
    }
}

/// One pair of rows (pair `rp`) × `KB` runs (from run `k`).
///
/// # Safety
/// AVX2 and FMA; within what [`weight_grad`] checked.
#[target_feature(enable = "avx2,fma")]
unsafe fn wg256<const KB: usize>(w: &Wg<'_>, rp: usize, k: usize) {
    let mut a = [[_mm256_setzero_ps(); KB]; 2];
    let runs: [*const f32; KB] =
        std::array::from_fn(|q| w.x.t.as_ptr().wrapping_add(w.x.run(k + q)));
    let rows = [w.row(2 * rp), w.row(2 * rp + 1)];
    for j in (0..w.lp).step_by(2) {
        // SAFETY (all below): within the checked lengths.
        let sv: [__m256; 2] = rows.map(|r| unsafe { _mm256_loadu_ps(r.add(4 * j)) });
        for (q, run) in runs.iter().enumerate() {
            let tv = unsafe { _mm256_loadu_ps(run.add(4 * j)) };
            for r in 0..2 {
                a[r][q] = _mm256_fmadd_ps(sv[r], tv, a[r][q]);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (q, v) in row.iter().enumerate() {
            unsafe { _mm256_storeu_ps(w.lanes(2 * rp + r, k + q), *v) };
        }
    }
}
