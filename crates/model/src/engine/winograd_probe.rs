//! A probe for the next numerics change, not used by the engine: a row-wise Winograd F(2,3)
//! forward for 3×3 stride-1 convolutions, fused into the kernel, timed against the direct
//! kernel ([`conv::correlate`]) on one training group of the seed net's 10→10 convolution on
//! 26×26 planes (`docs/PERFORMANCE.md`, round three, thirteenth pass).
//!
//! Each kernel row `(g0, g1, g2)` gives two outputs from four inputs `d0..d3` with four
//! multiplies instead of six: `t = (d0 − d2, d1 + d2, d2 − d1, d1 − d3)`, `u = (g0, (g0 + g1 +
//! g2)/2, (g0 − g1 + g2)/2, g2)`, `m_i = Σ t_i·u_i` over input channels and kernel rows, then
//! `y0 = m0 + m1 + m2` and `y1 = m1 − m2 − m3`. The input lies as even and odd columns (a
//! layout the padded copy could write as it copies), so `t` is computed in registers from four
//! loads, and the outputs are interleaved back before the store: no pass of its own.
//!
//! Run it with `cargo test --release -p under8k-model --lib winograd_probe -- --ignored
//! --nocapture` on a CPU with AVX-512.

use std::arch::x86_64::*;
use std::time::Instant;

use super::conv;

/// The even and odd columns of `n` images' `ci` planes of `h×w` (`w` even), laid out as the
/// wide layout with rows of `w/2`: value `(c, b, r, j)` at `c·xs + b·h·w/2 + r·w/2 + j`.
fn split(x: &[f32], n: usize, ci: usize, h: usize, w: usize, tail: usize) -> [Vec<f32>; 2] {
    let half = w / 2;
    let xs = n * h * half;
    std::array::from_fn(|odd| {
        let mut v = vec![0.0; ci * xs + tail];
        for c in 0..ci {
            for b in 0..n {
                for r in 0..h {
                    let src = &x[(c * n + b) * h * w + r * w..][..w];
                    let at = c * xs + b * h * half + r * half;
                    for (j, d) in v[at..at + half].iter_mut().enumerate() {
                        *d = src[2 * j + odd];
                    }
                }
            }
        }
        v
    })
}

/// The transformed weights `u[((o·ci + c)·3 + kh)·4 + i]` of `w[((o·ci + c)·3 + kh)·3 + kw]`.
fn transformed(w: &[f32], co: usize, ci: usize) -> Vec<f32> {
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

/// One fused kernel per vector width, from one template: `out[o·os + 2p + {0, 1}]` for every
/// pair position `p < lp` (a multiple of the vector's lanes), from the even and odd planes
/// `[e, d]` (channels `xs` apart, rows `half` apart) and the transformed weights `u`; `co` a
/// multiple of the block's outputs. `$store` interleaves a vector of first and one of second
/// outputs into `to`.
macro_rules! fused {
    ($(#[$m:meta])* $name:ident, $feat:literal, $v:ty, $lanes:expr, $ob:expr,
     $load:ident, $add:ident, $sub:ident, $fma:ident, $set1:ident, $zero:ident, $store:ident) => {
        $(#[$m])*
        ///
        /// # Safety
        /// The CPU must have the target features named.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            [e, d]: [&[f32]; 2],
            xs: usize,
            ci: usize,
            half: usize,
            u: &[f32],
            co: usize,
            out: &mut [f32],
            os: usize,
            lp: usize,
        ) {
            let nk = ci * 3;
            let reach = (ci - 1) * xs + 2 * half + lp + $lanes + 1;
            assert!(co.is_multiple_of($ob) && lp.is_multiple_of($lanes));
            assert!(e.len() >= reach && d.len() >= reach);
            assert!(u.len() >= co * nk * 4 && out.len() >= (co - 1) * os + 2 * lp);
            for p in (0..lp).step_by($lanes) {
                for ob in (0..co).step_by($ob) {
                    let mut acc: [[$v; 4]; $ob] = [[$zero(); 4]; $ob];
                    for c in 0..ci {
                        for kh in 0..3 {
                            let at = c * xs + kh * half + p;
                            // SAFETY: at + 1 + lanes ≤ reach ≤ the planes' lengths (asserted).
                            let [e0, e1, d0, d1] = unsafe {
                                [
                                    $load(e.as_ptr().add(at)),
                                    $load(e.as_ptr().add(at + 1)),
                                    $load(d.as_ptr().add(at)),
                                    $load(d.as_ptr().add(at + 1)),
                                ]
                            };
                            let t = [$sub(e0, e1), $add(d0, e1), $sub(e1, d0), $sub(d0, d1)];
                            for (r, a) in acc.iter_mut().enumerate() {
                                let w = &u[((ob + r) * nk + c * 3 + kh) * 4..][..4];
                                for i in 0..4 {
                                    a[i] = $fma(t[i], $set1(w[i]), a[i]);
                                }
                            }
                        }
                    }
                    for (r, [m0, m1, m2, m3]) in acc.into_iter().enumerate() {
                        let y0 = $add($add(m0, m1), m2);
                        let y1 = $sub($sub(m1, m2), m3);
                        $store(y0, y1, &mut out[(ob + r) * os + 2 * p..][..2 * $lanes]);
                    }
                }
            }
        }
    };
}

fused! {
    /// AVX-512: 5 outputs × 4 products × 16 pairs, 20 accumulators of the 32 registers.
    forward512, "avx2,fma,avx512f,avx512vl", __m512, 16, 5, _mm512_loadu_ps, _mm512_add_ps,
    _mm512_sub_ps, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps, store512
}

fused! {
    /// AVX2: 2 outputs × 4 products × 8 pairs, 8 accumulators of the 16 registers. (3 outputs,
    /// with each transformed value made just before its multiply-adds to fit the registers,
    /// ran 1.39–1.42× the direct kernel's time.)
    forward256, "avx2,fma", __m256, 8, 2, _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps,
    _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps, store256
}

/// `(y0[0], y1[0], y0[1], y1[1], …)` into `to` (32 values).
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn store512(y0: __m512, y1: __m512, to: &mut [f32]) {
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    assert!(to.len() >= 32);
    // SAFETY: `to` holds the 32 values stored.
    unsafe {
        _mm512_storeu_ps(to.as_mut_ptr(), _mm512_permutex2var_ps(y0, lo, y1));
        _mm512_storeu_ps(to.as_mut_ptr().add(16), _mm512_permutex2var_ps(y0, hi, y1));
    }
}

/// `(y0[0], y1[0], y0[1], y1[1], …)` into `to` (16 values).
#[target_feature(enable = "avx2,fma")]
fn store256(y0: __m256, y1: __m256, to: &mut [f32]) {
    let (a, b) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
    assert!(to.len() >= 16);
    // SAFETY: `to` holds the 16 values stored.
    unsafe {
        _mm256_storeu_ps(to.as_mut_ptr(), _mm256_permute2f128_ps::<0x20>(a, b));
        _mm256_storeu_ps(to.as_mut_ptr().add(8), _mm256_permute2f128_ps::<0x31>(a, b));
    }
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

/// Times the direct kernel on `path` and `fused` on the same group, and checks every kept
/// output against the direct kernel's, within f32 rounding of sums of 90 terms.
#[allow(clippy::print_stdout)]
fn compare(path: super::KernelPath, fused: Fused) {
    super::KernelPath::use_path(path).expect("available");
    // The seed net's second convolution: 3 images of 10 planes of 26×26 per training group.
    let (n, ci, co, h, w): (usize, usize, usize, usize, usize) = (3, 10, 10, 26, 26);
    let (oh, ow, plane) = (h - 2, w - 2, h * w);
    let xs = n * plane;
    let lw = ((n - 1) * plane + oh * w).next_multiple_of(32);
    let off: Vec<usize> = (0..9).map(|t| (t / 3) * w + t % 3).collect();
    // Fixed patterns in [-1, 1) and [-0.5, 0.5): the timings do not depend on the values.
    let x: Vec<f32> = (0..ci * xs + lw + 2 * w + 2 + conv::CHUNK)
        .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let wt: Vec<f32> = (0..co * ci * 9)
        .map(|i| (i * 104_729 % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut direct = vec![0.0; co * lw];
    let reps = 2000;
    let t_direct = best(reps, &mut || {
        conv::correlate(&x, xs, ci, &wt, None, co, &off, &mut direct, lw, lw)
    });
    let half = w / 2;
    let planes = split(&x, n, ci, h, w, 2 * half + lw / 2 + 17);
    let u = transformed(&wt, co, ci);
    let mut out = vec![0.0; co * lw];
    let [e, d] = &planes;
    // SAFETY: the caller checked that the CPU has `path`'s features.
    let t_fused = best(reps, &mut || unsafe {
        fused([e, d], n * h * half, ci, half, &u, co, &mut out, lw, lw / 2)
    });
    let (mut diff, mut top) = (0.0f32, 0.0f32);
    for o in 0..co {
        for b in 0..n {
            for r in 0..oh {
                for c in 0..ow {
                    let at = o * lw + b * plane + r * w + c;
                    diff = diff.max((direct[at] - out[at]).abs());
                    top = top.max(direct[at].abs());
                }
            }
        }
    }
    assert!(
        diff <= 1e-5 * top,
        "{path}: fused Winograd off by {diff} of {top}"
    );
    let flops = 2.0 * (co * ci * 9 * n * oh * ow) as f64;
    println!(
        "{path}: direct {:.1} µs ({:.1} GFLOP/s), fused row Winograd {:.1} µs ({:.1} GFLOP/s of \
         the direct kernel's FLOPs): {:.2}× the direct time; largest difference {diff:.1e} of \
         {top:.2}",
        t_direct * 1e6,
        flops / t_direct / 1e9,
        t_fused * 1e6,
        flops / t_fused / 1e9,
        t_fused / t_direct
    );
}

/// [`forward512`] or [`forward256`].
type Fused = unsafe fn([&[f32]; 2], usize, usize, usize, &[f32], usize, &mut [f32], usize, usize);

#[test]
#[ignore = "a timing probe: run it by hand with --release --nocapture"]
#[allow(clippy::print_stdout)]
fn fused_row_winograd_against_the_direct_kernel() {
    let available = super::KernelPath::available();
    let before = super::KernelPath::active();
    for (path, fused) in [
        (super::KernelPath::Avx512, forward512 as Fused),
        (super::KernelPath::Avx2, forward256 as Fused),
    ] {
        match available.contains(&path) {
            true => compare(path, fused),
            false => println!("{path}: not on this CPU, nothing measured"),
        }
    }
    super::KernelPath::use_path(before).expect("was active");
}
