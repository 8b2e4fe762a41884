//! Row-wise Winograd F(2,3) kernels for 3×3 stride-1 convolutions on wide planes (numerics
//! version 3): two neighbouring outputs of a kernel row from four inputs with four multiplies
//! instead of six.
//!
//! A kernel row `(g0, g1, g2)` and inputs `d0..d3` give `y0 = g0·d0 + g1·d1 + g2·d2` and `y1 =
//! g0·d1 + g1·d2 + g2·d3` as `t = (d0 − d2, d1 + d2, d2 − d1, d1 − d3)`, `u = (g0, (g0 + g1 +
//! g2)/2, (g0 − g1 + g2)/2, g2)`, `m_i = Σ t_i·u_i` (over input channels and kernel rows), `y0
//! = (m0 + m1) + m2` and `y1 = (m1 − m2) − m3`.
//!
//! Positions come in pairs of the wide layout ([`super::conv`]): pair `j` is flat positions
//! `2j` and `2j + 1`, so channel and row strides must be even. The input is transformed pair
//! by pair over its whole flat length ([`transform`]), or for an unpadded forward each row's
//! pairs whose outputs are kept, packed ([`transform_rows`], [`correlate_rows`]: no product
//! for a cropped column); the weights once per call ([`weights`]), the output gradient for the
//! weight gradient by [`grad_transform`].
//!
//! Every path does the same operations in the same order: the lanes of each `m_i` sum from
//! zero in (channel, kernel row) order with one rounding per multiply-add, the inverse and the
//! taps are the same adds; the explicit-vector kernels for `f32` (`simd`) do the same with
//! whole vectors, so the same bits on every path.

use super::real::Real;

/// Pairs per block of the forward: `lp` (the pairs computed) must be a multiple of it.
pub const PAIRS: usize = 8;

/// The transformed weights `u[(r·3 + kh)·4 + i]` of `w[(r·3 + kh)·3 + kw]` for `rows` rows
/// `r` of 3 kernel rows each (`r = o·ci + c`).
pub fn weights<T: Real>(w: &[T], rows: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    w[..rows * 9]
        .chunks_exact(3)
        .flat_map(|g| {
            [
                g[0],
                (g[0] + g[1] + g[2]) * half,
                (g[0] - g[1] + g[2]) * half,
                g[2],
            ]
        })
        .collect()
}

fma_dispatch! {
/// `t[4j..4j + 4] = (d0 − d2, d1 + d2, d2 − d1, d1 − d3)` of `d = x[2j..2j + 4]`, for `j <
/// pairs`.
pub fn transform<T: Real>(x: &[T], pairs: usize, t: &mut [T]) {
    assert!(x.len() >= 2 * pairs + 2 && t.len() >= 4 * pairs, "transform: too short");
    #[cfg(target_arch = "x86_64")]
    let done = simd::transform(x, pairs, t);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for j in done..pairs {
        pair_into(x, j, t);
    }
}
}

/// Pair `j` of [`transform`]: `t[4j..4j + 4]` from `x[2j..2j + 4]`.
#[inline(always)]
fn pair_into<T: Real>(x: &[T], j: usize, t: &mut [T]) {
    let d = &x[2 * j..2 * j + 4];
    t[4 * j..4 * j + 4].copy_from_slice(&[d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]);
}

fma_dispatch! {
/// [`transform`] of the first `pr` pairs of each of `rows` rows of `w` values (one after
/// another in `x`), packed: row `r`'s pair `j` into `t[4·(r·pr + j)..]`. Each pair lies within
/// its row (`2·pr + 2 ≤ w`). The compact layout of an unpadded forward ([`correlate`] over it
/// with rows `pr` pairs apart computes the kept outputs alone, `2·pr` a row).
pub fn transform_rows<T: Real>(x: &[T], w: usize, rows: usize, pr: usize, t: &mut [T]) {
    assert!(2 * pr + 2 <= w, "transform_rows: a pair past its row");
    assert!(x.len() >= rows * w && t.len() >= 4 * rows * pr, "transform_rows: too short");
    #[cfg(target_arch = "x86_64")]
    let done = simd::transform_rows(x, w, rows, pr, t);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for r in done..rows {
        let (x, t) = (&x[r * w..], &mut t[4 * r * pr..][..4 * pr]);
        for j in 0..pr {
            pair_into(x, j, t);
        }
    }
}
}

fma_dispatch! {
/// The output gradient transformed for the weight gradient: `s[(o·lp + j)·4..] = (g0 − 0, g0 +
/// g1, g0 − g1, 0 − g1)` of `(g0, g1) = g[o·gs + 2j..]`, for `o < no` and `j < lp` (the
/// subtractions of 0 written as the vector code computes them: the same bits for signed zeros).
pub fn grad_transform<T: Real>(g: &[T], gs: usize, no: usize, lp: usize, s: &mut [T]) {
    assert!(no == 0 || (no - 1) * gs + 2 * lp <= g.len(), "grad_transform: too short");
    assert!(s.len() >= no * lp * 4);
    for o in 0..no {
        let (row, to) = (&g[o * gs..][..2 * lp], &mut s[o * lp * 4..][..lp * 4]);
        #[cfg(target_arch = "x86_64")]
        if lp.is_multiple_of(4) && simd::grad_row(row, lp, to) {
            continue;
        }
        for (v, d) in to.chunks_exact_mut(4).zip(row.chunks_exact(2)) {
            let (g0, g1) = (d[0], d[1]);
            v.copy_from_slice(&[g0 - T::ZERO, g0 + g1, g0 - g1, T::ZERO - g1]);
        }
    }
}
}

/// Where a correlation reads its transformed input ([`Input::of`]): channels `xs` pairs apart,
/// kernel rows `half` pairs apart.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a, T> {
    t: &'a [T],
    xs: usize,
    ci: usize,
    half: usize,
}

impl<'a, T> Input<'a, T> {
    /// The transformed input `t` of `ci` channels `xs` values apart with rows `wp` values apart,
    /// both even: the strides in pairs.
    pub fn of(t: &'a [T], xs: usize, ci: usize, wp: usize) -> Self {
        assert!(
            xs.is_multiple_of(2) && wp.is_multiple_of(2),
            "winograd: odd strides"
        );
        Input {
            t,
            xs: xs / 2,
            ci,
            half: wp / 2,
        }
    }

    /// The same strides over `t` (the same values, seen as another type).
    fn over<U>(&self, t: &'a [U]) -> Input<'a, U> {
        Input {
            t,
            xs: self.xs,
            ci: self.ci,
            half: self.half,
        }
    }

    /// Checks that `lp` pairs from every channel and kernel row lie in `t`.
    fn check(&self, lp: usize) {
        assert!(self.ci > 0);
        let last = (self.ci - 1) * self.xs + 2 * self.half + lp;
        assert!(
            last * 4 <= self.t.len(),
            "winograd: transformed input too short"
        );
    }

    /// Where kernel row `k = c·3 + kh`'s pairs start in `t`.
    fn run(&self, k: usize) -> usize {
        self.at(k / 3, k % 3, 0)
    }

    /// Where kernel row `c·3 + kh`'s pair `p` lies in `t`: [`Self::run`] without its
    /// division, for the vector kernels' inner loops.
    #[inline(always)]
    fn at(&self, c: usize, kh: usize, p: usize) -> usize {
        (c * self.xs + kh * self.half + p) * 4
    }
}

fma_dispatch! {
/// `out[o·os + 2p + e]` for `p < lp` ([`PAIRS`] divides it), `e ∈ {0, 1}`: the 3×3
/// correlation of the input with `no` outputs' transformed weights `u` ([`weights`] of `no·ci`
/// rows), as the module's sums give it.
pub fn correlate<T: Real>(x: Input<'_, T>, u: &[T], no: usize, out: &mut [T], os: usize, lp: usize) {
    assert_eq!(lp % PAIRS, 0);
    x.check(lp);
    assert!(u.len() >= no * x.ci * 12);
    assert!(no == 0 || (no - 1) * os + 2 * lp <= out.len(), "winograd: output too short");
    #[cfg(target_arch = "x86_64")]
    if simd::correlate(x, u, no, out, os, lp) {
        return;
    }
    let nk = x.ci * 3;
    for o in 0..no {
        for p in (0..lp).step_by(PAIRS) {
            let mut acc = [[T::ZERO; 4]; PAIRS];
            for k in 0..nk {
                let (t, w) = (&x.t[x.run(k) + 4 * p..][..4 * PAIRS], &u[(o * nk + k) * 4..][..4]);
                for (a, tq) in acc.iter_mut().zip(t.chunks_exact(4)) {
                    for i in 0..4 {
                        a[i] = tq[i].mul_add(w[i], a[i]);
                    }
                }
            }
            for (q, m) in acc.iter().enumerate() {
                let y = &mut out[o * os + 2 * (p + q)..][..2];
                y.copy_from_slice(&[(m[0] + m[1]) + m[2], (m[1] - m[2]) - m[3]]);
            }
        }
    }
}
}

/// The lanes [`weight_grad`] sums in, for `no` output rows and `ci` input channels: 8 per row
/// and kernel row, the rows rounded up to pairs (the vector kernels pair an odd last row with a
/// copy of itself, whose lanes go to the spare row).
pub fn acc_len(no: usize, ci: usize) -> usize {
    no.next_multiple_of(2) * ci * 3 * 8
}

/// The forward of an unpadded image of `ci` channels of `h` rows whose pairs [`transform_rows`]
/// packed into `t` (`pr` a row, so rows of `2·pr + 2` values): its kept outputs alone, `h − 2`
/// rows of `2·pr` a plane, into `no` planes of `out`, with [`correlate`] over rows `pr` pairs
/// apart, the last [`PAIRS`] again where they do not fill a block (each pair's value is its own
/// sums, whatever the block). Each output's sums are those of the wide layout's forward.
pub fn correlate_rows<T: Real>(
    t: &[T],
    (ci, h, pr): (usize, usize, usize),
    u: &[T],
    no: usize,
    out: &mut [T],
) {
    let (lp, os) = (h.saturating_sub(2) * pr, h.saturating_sub(2) * 2 * pr);
    assert!(lp >= PAIRS, "correlate_rows: under a block's pairs");
    let from = |p: usize| Input::of(&t[4 * p..], 2 * h * pr, ci, 2 * pr);
    let main = lp / PAIRS * PAIRS;
    correlate(from(0), u, no, out, os, main);
    if main < lp {
        let last = lp - PAIRS;
        correlate(from(last), u, no, &mut out[2 * last..], os, PAIRS);
    }
}

fma_dispatch! {
/// `gw[(o·nk + k)·3 + kw] +=` the weight gradient of output `o` and kernel row `k = c·3 + kh`
/// (`nk = ci·3`), from the transformed output gradient `s` ([`grad_transform`]: `no` rows of
/// `lp` pairs, `lp` even) and the transformed input. Lane `4l + i` of each (`o`, `k`) sums
/// `s[o][2j + l][i] · t[k][2j + l][i]` over `j` in order from zero; `m_i = lane i + lane 4 + i`,
/// and the taps are `(m0 + ½(m1 + m2), ½(m1 − m2), ½(m1 + m2) + m3)`. The lanes are summed in
/// `acc` ([`acc_len`] values, its contents on entry unused): the vector kernels overwrite every
/// lane with sums they start in registers, so only the portable code zeroes it first.
pub fn weight_grad<T: Real>(
    s: &[T],
    no: usize,
    lp: usize,
    x: Input<'_, T>,
    acc: &mut [T],
    gw: &mut [T],
) {
    assert_eq!(lp % 2, 0);
    x.check(lp);
    let nk = x.ci * 3;
    assert!(s.len() >= no * lp * 4 && gw.len() >= no * nk * 3, "weight_grad: too short");
    let lanes = acc_len(no, x.ci);
    assert!(acc.len() >= lanes, "weight_grad: too few lanes");
    let (acc, _) = acc[..lanes].as_chunks_mut::<8>();
    #[cfg(target_arch = "x86_64")]
    let done = simd::weight_grad(s, no, lp, x, acc);
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        acc.fill([T::ZERO; 8]);
        for o in 0..no {
            let so = &s[o * lp * 4..][..lp * 4];
            for k in 0..nk {
                let (tk, a) = (&x.t[x.run(k)..][..lp * 4], &mut acc[o * nk + k]);
                for (sv, tv) in so.chunks_exact(8).zip(tk.chunks_exact(8)) {
                    for l in 0..8 {
                        a[l] = sv[l].mul_add(tv[l], a[l]);
                    }
                }
            }
        }
    }
    let half = T::from_f64(0.5);
    for (a, w) in acc[..no * nk].iter().zip(gw.chunks_exact_mut(3)) {
        let m: [T; 4] = std::array::from_fn(|i| a[i] + a[4 + i]);
        let sum = half * (m[1] + m[2]);
        w[0] += m[0] + sum;
        w[1] += half * (m[1] - m[2]);
        w[2] += sum + m[3];
    }
}
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
pub(super) mod tests;
