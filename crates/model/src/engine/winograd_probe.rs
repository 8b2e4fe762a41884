//! A probe for the next numerics change, not used by the engine: row-wise Winograd F(2,3) for
//! 3×3 stride-1 convolutions, timed against the direct kernel ([`conv::correlate`]) on one
//! training group of the seed net's 10→10 convolution on 26×26 planes (`docs/PERFORMANCE.md`,
//! round three, thirteenth pass).
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
//! - Every path does the same operations in the same order: the test holds the two kernels'
//!   outputs equal bit for bit, and both within 1e-5 of the direct kernel's.
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
        let kept = (0..co * n * oh * ow).map(|k| {
            let (o, b, r, c) = (k / (n * oh * ow), k / (oh * ow) % n, k / ow % oh, k % ow);
            o * lw + b * plane + r * w + c
        });
        let (diff, top) = kept.fold((0.0f32, 0.0f32), |(d, m), at| {
            (d.max((direct[at] - out[at]).abs()), m.max(direct[at].abs()))
        });
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
        let used = ci * per * 4;
        assert!(
            t[..used]
                .iter()
                .zip(&tv)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let mut copy = vec![0.0; ci * xs];
        let t_copy = best(reps, &mut || copy.copy_from_slice(&x[..ci * xs]));
        println!(
            "the input's transform in vectors {:.1} µs, a plain copy of it {:.1} µs",
            t_transform * 1e6,
            t_copy * 1e6
        );
    }
    if let [a, b] = &outs[..] {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        println!("AVX-512 and AVX2 kernels: the same bits");
    }
    KernelPath::use_path(before).expect("was active");
}
