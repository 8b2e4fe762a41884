//! A probe for the next numerics change, not used by the engine: row-wise Winograd F(2,3) for
//! 3×3 stride-1 convolutions, forward and weight gradient, timed against the direct kernels
//! ([`conv::correlate`], [`conv::weight_grad`]) on one training group of the seed net's 10→10
//! convolution on 26×26 planes (`docs/PERFORMANCE.md`, round three, thirteenth pass).
//!
//! Each kernel row `(g0, g1, g2)` gives two outputs from four inputs `d0..d3` with four
//! multiplies instead of six: `t = (d0 − d2, d1 + d2, d2 − d1, d1 − d3)`, `u = (g0, (g0 + g1 +
//! g2)/2, (g0 − g1 + g2)/2, g2)`, `m_i = Σ t_i·u_i` over input channels and kernel rows, then
//! `y0 = (m0 + m1) + m2` and `y1 = (m1 − m2) − m3`.
//! - The input is transformed as it is copied ([`transform`], in vectors [`transform512`]): the
//!   engine already copies each convolution's input into its layout, and the transform costs
//!   about one more copy.
//! - The kernel ([`kernel512`], [`kernel256`]) is the direct kernel's block: accumulators for
//!   a few outputs × a few vectors, one load per vector and one broadcast (of the 4 `u`) per
//!   output for each input channel and kernel row. The inverse transform runs before the
//!   store.
//! - The weight gradient ([`wgrad512`], [`wgrad256`]) takes the same transformed input and
//!   the output gradient transformed as it is copied ([`grad_transform`]): 4 products per pair
//!   of positions instead of 6, then the 3 taps from the 4 sums ([`wgrad_finish`]).
//! - Every path does the same operations in the same order: the test holds the two paths'
//!   outputs equal bit for bit, and both within 1e-5 of the direct kernels'.
//!
//! Run it with `cargo test --release -p under8k-model --lib winograd_probe -- --ignored
//! --nocapture`.

use std::arch::x86_64::*;
use std::time::Instant;

use super::conv;

/// The transformed input of `ci` channels of `per` pairs each (channel `c`'s values at
/// `x[c·2·per..]`, every plane's rows one after another, `w` even, so pair `q` reads
/// `x[2q..2q + 4]`, on past the row as the wide layout does): `t[(c·per + q)·4 + i]`. `x` must
/// run on 2 values past the last channel.
fn transform(x: &[f32], ci: usize, per: usize, t: &mut [f32]) {
    for c in 0..ci {
        let src = &x[c * 2 * per..][..2 * per + 2];
        for (q, o) in t[c * per * 4..][..per * 4].chunks_exact_mut(4).enumerate() {
            let d = &src[2 * q..2 * q + 4];
            o.copy_from_slice(&[d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]);
        }
    }
}

/// [`transform`] in vectors of 4 pairs: `t = B ± C`, `B = (d0, d1, d2, d1)` and `C = (d2, d2,
/// d1, d3)` picked from one load, one rounding each: the same values. `x` must run on 16 values
/// past the last channel and `t` 16 past its end.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn transform512(x: &[f32], ci: usize, per: usize, t: &mut [f32]) {
    let b = _mm512_setr_epi32(0, 1, 2, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6, 7, 8, 7);
    let c = _mm512_setr_epi32(2, 2, 1, 3, 4, 4, 3, 5, 6, 6, 5, 7, 8, 8, 7, 9);
    let pm = [-1.0, 1.0, -1.0, -1.0];
    // SAFETY: 16 values.
    let sign = unsafe { _mm512_loadu_ps([pm; 4].as_flattened().as_ptr()) };
    let quads = per.div_ceil(4);
    assert!(x.len() >= (ci - 1) * 2 * per + 8 * quads + 16);
    assert!(t.len() >= (ci - 1) * 4 * per + 16 * quads);
    for ch in 0..ci {
        for k in 0..quads {
            let (from, to) = (ch * 2 * per + 8 * k, (ch * per + 4 * k) * 4);
            // SAFETY: from + 16 ≤ x.len() and to + 16 ≤ t.len() (asserted above). A channel's
            // last vector writes on into the next channel's first pairs, which that channel's
            // first vector writes again.
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr().add(from));
                let y = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(c, v),
                    sign,
                    _mm512_permutexvar_ps(b, v),
                );
                _mm512_storeu_ps(t.as_mut_ptr().add(to), y);
            }
        }
    }
}

/// The transformed weights `u[((o·ci + c)·3 + kh)·4 + i]` of `w[((o·ci + c)·3 + kh)·3 + kw]`.
fn weights(w: &[f32], co: usize, ci: usize) -> Vec<f32> {
    (0..co * ci * 3)
        .flat_map(|row| {
            let g = &w[row * 3..row * 3 + 3];
            [
                g[0],
                (g[0] + g[1] + g[2]) * 0.5,
                (g[0] - g[1] + g[2]) * 0.5,
                g[2],
            ]
        })
        .collect()
}

/// One kernel per vector width, from one template: `out[o·os + 2p + {0, 1}]` for every pair
/// `p < lp` (a multiple of the block's pairs), from the transformed input `t` (channels `xs`
/// pairs apart, rows `half` pairs apart) and the transformed weights `u`; `co` a multiple of
/// [`OB`]. `$store` takes a block's accumulators of one output through the inverse transform
/// into `to`.
macro_rules! kernel {
    ($(#[$m:meta])* $name:ident, $feat:literal, $v:ty, $nv:expr, $load:ident, $fma:ident,
     $zero:ident, $bcast:ident, $store:ident) => {
        $(#[$m])*
        ///
        /// # Safety
        /// The CPU must have the target features named.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            t: &[f32],
            xs: usize,
            ci: usize,
            half: usize,
            u: &[f32],
            co: usize,
            out: &mut [f32],
            os: usize,
            lp: usize,
        ) {
            // Pairs per vector, and per block.
            const PV: usize = std::mem::size_of::<$v>() / 16;
            const PB: usize = PV * $nv;
            let nk = ci * 3;
            assert!(co.is_multiple_of(OB) && lp.is_multiple_of(PB));
            assert!(t.len() >= ((ci - 1) * xs + 2 * half + lp) * 4);
            assert!(u.len() >= co * nk * 4 && out.len() >= (co - 1) * os + 2 * lp);
            for p in (0..lp).step_by(PB) {
                for ob in (0..co).step_by(OB) {
                    let mut acc: [[$v; $nv]; OB] = [[$zero(); $nv]; OB];
                    for c in 0..ci {
                        for kh in 0..3 {
                            let at = (c * xs + kh * half + p) * 4;
                            // SAFETY: at + 4·PB ≤ t.len() (asserted above).
                            let tv: [$v; $nv] = std::array::from_fn(|v| unsafe {
                                $load(t.as_ptr().add(at + v * PV * 4))
                            });
                            for (r, a) in acc.iter_mut().enumerate() {
                                // SAFETY: the 4 weights lie within u (asserted above).
                                let w = unsafe {
                                    $bcast(u.as_ptr().add(((ob + r) * nk + c * 3 + kh) * 4))
                                };
                                for v in 0..$nv {
                                    a[v] = $fma(tv[v], w, a[v]);
                                }
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        $store(a, &mut out[(ob + r) * os + 2 * p..][..2 * PB]);
                    }
                }
            }
        }
    };
}

/// Outputs per block: 5 × 4 zmm (20 of the 32 registers) or 5 × 2 ymm (10 of the 16), as the
/// direct kernel's blocks.
const OB: usize = 5;

kernel! {
    /// AVX-512: 5 outputs × 16 pairs.
    kernel512, "avx2,fma,avx512f,avx512vl", __m512, 4, _mm512_loadu_ps, _mm512_fmadd_ps,
    _mm512_setzero_ps, bcast512, store512
}

kernel! {
    /// AVX2: 5 outputs × 4 pairs.
    kernel256, "avx2,fma", __m256, 2, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps,
    bcast256, store256
}

/// The 4 weights at `u` in every group of 4 lanes.
///
/// # Safety
/// `u` must point to 4 values; the CPU must have AVX-512 F.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn bcast512(u: *const f32) -> __m512 {
    // SAFETY: the caller's promise.
    _mm512_broadcast_f32x4(unsafe { _mm_loadu_ps(u) })
}

/// The 4 weights at `u` in every group of 4 lanes.
///
/// # Safety
/// `u` must point to 4 values; the CPU must have AVX2.
#[target_feature(enable = "avx2,fma")]
unsafe fn bcast256(u: *const f32) -> __m256 {
    // SAFETY: the caller's promise.
    _mm256_broadcast_ps(unsafe { &*(u as *const __m128) })
}

/// Per group of 4 lanes `(m0, m1, m2, m3)`: `((m0 + m1) + m2, (m1 − m2) − m3)` in its first
/// two lanes, each step `a ± b` rounded once.
macro_rules! inverse {
    ($a:expr, $set:ident, $permute:ident, $fma:ident) => {{
        let pm = [1.0, -1.0, 1.0, -1.0];
        // SAFETY: 16 values, as many as a vector holds at most.
        let sign = unsafe { $set([pm; 4].as_flattened().as_ptr()) };
        // Lanes (m1, m2, …) and (m2, m3, …) of each group.
        let s = $fma($permute::<0b11_11_10_01>($a), sign, $a);
        $fma($permute::<0b11_11_11_10>($a), sign, s)
    }};
}

/// A 5-output block's 4 zmm of one output (16 pairs) through the inverse transform into `to`.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn store512(a: &[__m512; 4], to: &mut [f32]) {
    let y = a.map(|v| inverse!(v, _mm512_loadu_ps, _mm512_permute_ps, _mm512_fmadd_ps));
    let first_two = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
    let to = &mut to[..32];
    // SAFETY: `to` holds the 32 values stored.
    unsafe {
        _mm512_storeu_ps(
            to.as_mut_ptr(),
            _mm512_permutex2var_ps(y[0], first_two, y[1]),
        );
        _mm512_storeu_ps(
            to.as_mut_ptr().add(16),
            _mm512_permutex2var_ps(y[2], first_two, y[3]),
        );
    }
}

/// A 5-output block's 2 ymm of one output (4 pairs) through the inverse transform into `to`.
#[target_feature(enable = "avx2,fma")]
fn store256(a: &[__m256; 2], to: &mut [f32]) {
    let y = a.map(|v| inverse!(v, _mm256_loadu_ps, _mm256_permute_ps, _mm256_fmadd_ps));
    // Pairs 0, 2 | 1, 3, then in order.
    let m = _mm256_castps_pd(_mm256_shuffle_ps::<0b01_00_01_00>(y[0], y[1]));
    let m = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(m));
    let to = &mut to[..8];
    // SAFETY: `to` holds the 8 values stored.
    unsafe { _mm256_storeu_ps(to.as_mut_ptr(), m) };
}

/// The output gradient transformed as it is copied: `s[(o·lp + q)·4 + i]` for pair `q` of row
/// `o` (`(g0, g1) = g[o·gs + 2q..]`): `(g0, g0 + g1, g0 − g1, −g1)`.
fn grad_transform(g: &[f32], co: usize, gs: usize, lp: usize, s: &mut [f32]) {
    for o in 0..co {
        let row = &g[o * gs..][..2 * lp];
        for (q, v) in s[o * lp * 4..][..lp * 4].chunks_exact_mut(4).enumerate() {
            let (g0, g1) = (row[2 * q], row[2 * q + 1]);
            v.copy_from_slice(&[g0, g0 + g1, g0 - g1, -g1]);
        }
    }
}

/// A weight gradient's operands: the transformed output gradient `s` (`co` rows of `lp` pairs)
/// and input `t` (channels `xs` pairs apart, rows `half` pairs apart).
#[derive(Clone, Copy)]
struct Wg<'a> {
    s: &'a [f32],
    t: &'a [f32],
    xs: usize,
    ci: usize,
    half: usize,
    co: usize,
    lp: usize,
}

impl Wg<'_> {
    /// Checks every index a kernel with blocks of `rows` × `runs` reads or writes; returns the
    /// runs `ci·3`.
    fn check(&self, rows: usize, runs: usize, acc: &[[f32; 8]]) -> usize {
        let nk = self.ci * 3;
        assert!(self.co.is_multiple_of(rows) && nk.is_multiple_of(runs));
        assert!(self.lp.is_multiple_of(2) && self.s.len() >= self.co * self.lp * 4);
        assert!(self.t.len() >= ((self.ci - 1) * self.xs + 2 * self.half + self.lp) * 4);
        assert!(acc.len() >= self.co * nk);
        nk
    }

    /// Where runs `kb..kb + K` (`k = c·3 + kh`) start in `t`.
    fn runs<const K: usize>(&self, kb: usize) -> [usize; K] {
        std::array::from_fn(|q| ((kb + q) / 3 * self.xs + (kb + q) % 3 * self.half) * 4)
    }
}

/// The weight gradient's 8 lanes per output row `o` and run `k = c·3 + kh`: lane `4l + i` sums
/// `s[o][2j + l][i] · t[c][2j + l + kh·half][i]` over `j` in order (one multiply-add each).
/// `acc[o·nk + k]` receives them.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn wgrad256(g: &Wg<'_>, acc: &mut [[f32; 8]]) {
    const OBW: usize = 2;
    const KBW: usize = 5;
    let (nk, Wg { s, t, co, lp, .. }) = (g.check(OBW, KBW, acc), *g);
    for ob in (0..co).step_by(OBW) {
        for kb in (0..nk).step_by(KBW) {
            let mut a = [[_mm256_setzero_ps(); KBW]; OBW];
            let runs: [usize; KBW] = g.runs(kb);
            for j in (0..lp).step_by(2) {
                // SAFETY: every index is within the lengths asserted above.
                let sv: [__m256; OBW] = std::array::from_fn(|r| unsafe {
                    _mm256_loadu_ps(s.as_ptr().add(((ob + r) * lp + j) * 4))
                });
                for (q, &run) in runs.iter().enumerate() {
                    // SAFETY: as above.
                    let tv = unsafe { _mm256_loadu_ps(t.as_ptr().add(run + j * 4)) };
                    for r in 0..OBW {
                        a[r][q] = _mm256_fmadd_ps(sv[r], tv, a[r][q]);
                    }
                }
            }
            for (r, row) in a.iter().enumerate() {
                for (q, v) in row.iter().enumerate() {
                    // SAFETY: the 8 values of one accumulator.
                    unsafe { _mm256_storeu_ps(acc[(ob + r) * nk + kb + q].as_mut_ptr(), *v) };
                }
            }
        }
    }
}

/// [`wgrad256`] with AVX-512: two output rows share a zmm (low and high halves), and each run's
/// 8 values are broadcast to both halves, so every lane does the same multiply-adds in the same
/// order: the same bits.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn wgrad512(g: &Wg<'_>, acc: &mut [[f32; 8]]) {
    // Row pairs and runs per block: 5 × 5 accumulators, 5 gradient pairs and a run.
    const PW: usize = 5;
    const KBW: usize = 5;
    let (nk, Wg { s, t, co, lp, .. }) = (g.check(2 * PW, KBW, acc), *g);
    for ob in (0..co).step_by(2 * PW) {
        for kb in (0..nk).step_by(KBW) {
            let mut a = [[_mm512_setzero_ps(); KBW]; PW];
            let runs: [usize; KBW] = g.runs(kb);
            for j in (0..lp).step_by(2) {
                // SAFETY: every index is within the lengths asserted above.
                let sv: [__m512; PW] = std::array::from_fn(|r| unsafe {
                    let lo = s.as_ptr().add(((ob + 2 * r) * lp + j) * 4);
                    let hi = s.as_ptr().add(((ob + 2 * r + 1) * lp + j) * 4);
                    let lo = _mm512_castps256_ps512(_mm256_loadu_ps(lo));
                    _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                        _mm512_castps_pd(lo),
                        _mm256_castps_pd(_mm256_loadu_ps(hi)),
                    ))
                });
                for (q, &run) in runs.iter().enumerate() {
                    // SAFETY: as above.
                    let tv =
                        unsafe { _mm256_castps_pd(_mm256_loadu_ps(t.as_ptr().add(run + j * 4))) };
                    let tv = _mm512_castpd_ps(_mm512_broadcast_f64x4(tv));
                    for r in 0..PW {
                        a[r][q] = _mm512_fmadd_ps(sv[r], tv, a[r][q]);
                    }
                }
            }
            for (r, row) in a.iter().enumerate() {
                for (q, v) in row.iter().enumerate() {
                    let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*v));
                    // SAFETY: the 8 values of each of the two accumulators.
                    unsafe {
                        _mm256_storeu_ps(
                            acc[(ob + 2 * r) * nk + kb + q].as_mut_ptr(),
                            _mm512_castps512_ps256(*v),
                        );
                        _mm256_storeu_ps(
                            acc[(ob + 2 * r + 1) * nk + kb + q].as_mut_ptr(),
                            _mm256_castpd_ps(hi),
                        );
                    }
                }
            }
        }
    }
}

/// The weight gradient `gw[((o·ci + c)·3 + kh)·3 + kw]` from the lanes of [`wgrad256`]: the two
/// pairs' lanes added (`m_i`), then `(m0 + ½(m1 + m2), ½(m1 − m2), ½(m1 + m2) + m3)`.
fn wgrad_finish(acc: &[[f32; 8]], gw: &mut [f32]) {
    for (a, w) in acc.iter().zip(gw.chunks_exact_mut(3)) {
        let m: [f32; 4] = std::array::from_fn(|i| a[i] + a[4 + i]);
        let sum = 0.5 * (m[1] + m[2]);
        w.copy_from_slice(&[m[0] + sum, 0.5 * (m[1] - m[2]), sum + m[3]]);
    }
}

/// [`wgrad512`] or [`wgrad256`].
type Wgrad = unsafe fn(&Wg<'_>, &mut [[f32; 8]]);

/// The best of 5 rounds of `reps` calls, in seconds per call.
fn best(reps: usize, f: &mut dyn FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..reps {
                f();
            }
            s.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::MAX, f64::min)
}

/// Whether `a` and `b` hold the same bits.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The largest `|want − got|` and the largest `|want|` over the pairs.
fn largest_difference(pairs: impl Iterator<Item = (f32, f32)>) -> (f32, f32) {
    pairs.fold((0.0f32, 0.0f32), |(d, m), (want, got)| {
        (d.max((want - got).abs()), m.max(want.abs()))
    })
}

/// [`kernel512`] or [`kernel256`].
type Kernel = unsafe fn(&[f32], usize, usize, usize, &[f32], usize, &mut [f32], usize, usize);

#[test]
#[ignore = "a timing probe: run it by hand with --release --nocapture"]
#[allow(clippy::print_stdout)]
fn row_winograd_against_the_direct_kernel() {
    use super::KernelPath;
    let before = KernelPath::active();
    // The seed net's second convolution: 3 images of 10 planes of 26×26 per training group.
    let (n, ci, co, h, w): (usize, usize, usize, usize, usize) = (3, 10, 10, 26, 26);
    let (oh, ow, plane, half) = (h - 2, w - 2, h * w, w / 2);
    let (xs, per) = (n * plane, n * h * half);
    let lw = ((n - 1) * plane + oh * w).next_multiple_of(32);
    let off: Vec<usize> = (0..9).map(|t| (t / 3) * w + t % 3).collect();
    // Whether wide position `p` of a group is an output kept.
    let kept = |p: usize| {
        let (b, r, c) = (p / plane, p % plane / w, p % w);
        b < n && r < oh && c < ow
    };
    // Fixed patterns in [-1, 1) and [-0.5, 0.5): the timings do not depend on the values.
    let x: Vec<f32> = (0..ci * xs + lw + 2 * w + 2 + conv::CHUNK)
        .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let wt: Vec<f32> = (0..co * ci * 9)
        .map(|i| (i * 104_729 % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let reps = 2000;
    let mut t = vec![0.0; (ci * per + 2 * half + lw / 2) * 4 + 16];
    transform(&x, ci, per, &mut t);
    let u = weights(&wt, co, ci);
    let mut outs: Vec<Vec<f32>> = vec![];
    for (path, kernel) in [
        (KernelPath::Avx512, kernel512 as Kernel),
        (KernelPath::Avx2, kernel256 as Kernel),
    ] {
        if !KernelPath::available().contains(&path) {
            println!("{path}: not on this CPU, nothing measured");
            continue;
        }
        KernelPath::use_path(path).expect("available");
        let mut direct = vec![0.0; co * lw];
        let t_direct = best(reps, &mut || {
            conv::correlate(&x, xs, ci, &wt, None, co, &off, &mut direct, lw, lw)
        });
        let mut out = vec![0.0; co * lw];
        // SAFETY: the CPU has `path`'s features (checked above).
        let t_kernel = best(reps, &mut || unsafe {
            kernel(&t, per, ci, half, &u, co, &mut out, lw, lw / 2)
        });
        // Every kept output against the direct kernel's, within f32 rounding of sums of 90
        // terms.
        let at = (0..co * lw).filter(|at| kept(at % lw));
        let (diff, top) = largest_difference(at.map(|at| (direct[at], out[at])));
        assert!(diff <= 1e-5 * top, "{path}: off by {diff} of {top}");
        println!(
            "{path}: direct kernel {:.1} µs, Winograd kernel {:.1} µs: {:.2}× its time; \
             largest difference {diff:.1e} of {top:.2}",
            t_direct * 1e6,
            t_kernel * 1e6,
            t_kernel / t_direct
        );
        outs.push(out);
    }
    if KernelPath::available().contains(&KernelPath::Avx512) {
        let mut tv = vec![0.0; t.len()];
        // SAFETY: the CPU has AVX-512 F (checked above).
        let t_transform = best(reps, &mut || unsafe { transform512(&x, ci, per, &mut tv) });
        assert!(same_bits(&t[..ci * per * 4], &tv));
        let mut copy = vec![0.0; ci * xs];
        let t_copy = best(reps, &mut || copy.copy_from_slice(&x[..ci * xs]));
        println!(
            "the input's transform in vectors {:.1} µs, a plain copy of it {:.1} µs",
            t_transform * 1e6,
            t_copy * 1e6
        );
    }
    // The weight gradient, from the same input and a fixed output gradient in [-1, 1) at the
    // kept positions, 0 elsewhere, as the engine's padded gradient.
    let gs = lw + 16;
    let g: Vec<f32> = (0..co * gs)
        .map(|i| match kept(i % gs) {
            true => (i * 6007 % 1000) as f32 / 500.0 - 1.0,
            false => 0.0,
        })
        .collect();
    let lp = lw / 2;
    let mut s = vec![0.0; co * lp * 4];
    grad_transform(&g, co, gs, lp, &mut s);
    let mut grads: Vec<Vec<f32>> = vec![];
    let wg = Wg {
        s: &s,
        t: &t,
        xs: per,
        ci,
        half,
        co,
        lp,
    };
    for (path, kernel) in [
        (KernelPath::Avx512, wgrad512 as Wgrad),
        (KernelPath::Avx2, wgrad256 as Wgrad),
    ] {
        if !KernelPath::available().contains(&path) {
            continue;
        }
        KernelPath::use_path(path).expect("available");
        let mut direct = vec![0.0; co * ci * 9];
        let t_direct = best(reps, &mut || {
            direct.fill(0.0);
            conv::weight_grad(&g, gs, co, &x, xs, ci, &off, lw, &mut direct)
        });
        let mut acc = vec![[0.0; 8]; co * ci * 3];
        let mut gw = vec![0.0; co * ci * 9];
        // SAFETY: the CPU has `path`'s features (checked above).
        let t_kernel = best(reps, &mut || {
            unsafe { kernel(&wg, &mut acc) };
            wgrad_finish(&acc, &mut gw)
        });
        let (diff, top) = largest_difference(direct.iter().copied().zip(gw.iter().copied()));
        assert!(
            diff <= 1e-5 * top,
            "{path} weight gradient: off by {diff} of {top}"
        );
        println!(
            "{path}: direct weight gradient {:.1} µs, Winograd {:.1} µs: {:.2}× its time; \
             largest difference {diff:.1e} of {top:.2}",
            t_direct * 1e6,
            t_kernel * 1e6,
            t_kernel / t_direct
        );
        grads.push(gw);
    }
    let mut copy = vec![0.0; g.len()];
    let t_gcopy = best(reps, &mut || copy.copy_from_slice(&g));
    let t_gtransform = best(reps, &mut || grad_transform(&g, co, gs, lp, &mut s));
    println!(
        "the output gradient's transform {:.1} µs (scalar), a plain copy of it {:.1} µs",
        t_gtransform * 1e6,
        t_gcopy * 1e6
    );
    if let [a, b] = &grads[..] {
        assert!(same_bits(a, b));
        println!("AVX-512 and AVX2 weight gradients: the same bits");
    }
    if let [a, b] = &outs[..] {
        assert!(same_bits(a, b));
        println!("AVX-512 and AVX2 kernels: the same bits");
    }
    KernelPath::use_path(before).expect("was active");
}
