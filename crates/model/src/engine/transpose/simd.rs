//! [`super::into_lanes`] and [`super::out_of_lanes`] for `f32` with explicit vectors: on the
//! AVX-512 path 16 positions × 16 images at a time through a transpose in registers, on the AVX2
//! path 8 positions × 16 images as two 8 × 8 transposes (masked loads and stores only for the
//! last positions, where fewer than 8 are left). Each entry returns whether it ran.

use std::arch::x86_64::*;

use super::super::KernelPath;
use super::super::real::{as_f32, as_f32_mut};
use super::super::simd::{lanes as mask, load256, store256};
use super::{Bn, Real};

pub(super) fn into_lanes<T: Real>(
    src: &[T],
    stride: usize,
    m: usize,
    n: usize,
    to: &impl Fn(usize) -> usize,
    bn: Option<Bn<'_, T>>,
    dst: &mut [T],
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let (src, dst) = (as_f32(src).expect("f32"), as_f32_mut(dst).expect("f32"));
    // `T` is `f32`: through `f64` and back is exact.
    let f = |v: T| v.to_f64() as f32;
    let bn = bn.map(|b| {
        let k = (f(b.k.0), f(b.k.1), f(b.k.2));
        (as_f32(b.y).expect("f32"), f(b.mean), k)
    });
    // SAFETY: the path's features are the CPU's (`KernelPath::active`); the caller checked
    // every index read and written.
    match path {
        KernelPath::Avx512 => unsafe { into512(src, stride, m, n, to, bn, dst) },
        _ => unsafe { into256(src, stride, m, n, to, bn, dst) },
    }
    true
}

pub(super) fn out_of_lanes<T: Real>(
    src: &[T],
    from: &impl Fn(usize) -> usize,
    m: usize,
    n: usize,
    stride: usize,
    dst: &mut [T],
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let (src, dst) = (as_f32(src).expect("f32"), as_f32_mut(dst).expect("f32"));
    // SAFETY: as in `into_lanes`.
    match path {
        KernelPath::Avx512 => unsafe { out512(src, from, m, n, stride, dst) },
        _ => unsafe { out256(src, from, m, n, stride, dst) },
    }
    true
}

/// BatchNorm's input gradient in `f32`: `y` and the channel's mean and coefficients.
type BnF32<'a> = (&'a [f32], f32, (f32, f32, f32));

#[target_feature(enable = "avx512f")]
unsafe fn into512(
    src: &[f32],
    stride: usize,
    m: usize,
    n: usize,
    to: &impl Fn(usize) -> usize,
    bn: Option<BnF32<'_>>,
    dst: &mut [f32],
) {
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for p0 in (0..n).step_by(16) {
        let k = mask(n - p0);
        let v: [__m512; 16] = std::array::from_fn(|i| {
            if i >= m {
                return _mm512_setzero_ps();
            }
            // SAFETY: positions `p0..n` of image `i` lie in `src` (and `y`).
            let g = unsafe { _mm512_maskz_loadu_ps(k, sp.add(i * stride + p0)) };
            match bn {
                None => g,
                Some((y, mean, (k1, k2, k3))) => {
                    let y = unsafe { _mm512_maskz_loadu_ps(k, y.as_ptr().add(i * stride + p0)) };
                    let d = _mm512_sub_ps(y, _mm512_set1_ps(mean));
                    let inner = _mm512_fmadd_ps(d, _mm512_set1_ps(k2), _mm512_set1_ps(k3));
                    _mm512_fmadd_ps(g, _mm512_set1_ps(k1), inner)
                }
            }
        });
        let t = transpose(v);
        for (p, row) in t.iter().enumerate().take(n - p0) {
            // SAFETY: `to(p) + 16` within `dst`, checked by the caller.
            unsafe { _mm512_storeu_ps(dp.add(to(p0 + p)), *row) };
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn out512(
    src: &[f32],
    from: &impl Fn(usize) -> usize,
    m: usize,
    n: usize,
    stride: usize,
    dst: &mut [f32],
) {
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for p0 in (0..n).step_by(16) {
        let k = mask(n - p0);
        let v: [__m512; 16] = std::array::from_fn(|p| match p0 + p < n {
            // SAFETY: `from(p) + 16` within `src`, checked by the caller.
            true => unsafe { _mm512_loadu_ps(sp.add(from(p0 + p))) },
            false => _mm512_setzero_ps(),
        });
        let t = transpose(v);
        for (i, row) in t.iter().enumerate().take(m) {
            // SAFETY: positions `p0..n` of image `i` lie in `dst`.
            unsafe { _mm512_mask_storeu_ps(dp.add(i * stride + p0), k, *row) };
        }
    }
}

/// `out[j]` lane `i` = `v[i]` lane `j`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(v: [__m512; 16]) -> [__m512; 16] {
    // Pairs of rows interleaved 32 bits at a time, then 64, then 128-bit blocks twice.
    let t: [__m512; 16] = std::array::from_fn(|j| {
        let (a, b) = (v[j & !1], v[j | 1]);
        match j & 1 {
            0 => _mm512_unpacklo_ps(a, b),
            _ => _mm512_unpackhi_ps(a, b),
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|j| {
        let base = j & !3;
        let (a, b) = (
            _mm512_castps_pd(t[base + (j & 2) / 2]),
            _mm512_castps_pd(t[base + 2 + (j & 2) / 2]),
        );
        _mm512_castpd_ps(match j & 1 {
            0 => _mm512_unpacklo_pd(a, b),
            _ => _mm512_unpackhi_pd(a, b),
        })
    });
    let w: [__m512; 16] = std::array::from_fn(|j| {
        let base = j & !7;
        let (a, b) = (u[base + (j & 3)], u[base + 4 + (j & 3)]);
        match j & 4 {
            0 => _mm512_shuffle_f32x4::<0x88>(a, b),
            _ => _mm512_shuffle_f32x4::<0xdd>(a, b),
        }
    });
    std::array::from_fn(|j| {
        let (a, b) = (w[j & 7], w[8 + (j & 7)]);
        match j & 8 {
            0 => _mm512_shuffle_f32x4::<0x88>(a, b),
            _ => _mm512_shuffle_f32x4::<0xdd>(a, b),
        }
    })
}

#[target_feature(enable = "avx2,fma")]
unsafe fn into256(
    src: &[f32],
    stride: usize,
    m: usize,
    n: usize,
    to: &impl Fn(usize) -> usize,
    bn: Option<BnF32<'_>>,
    dst: &mut [f32],
) {
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for p0 in (0..n).step_by(8) {
        let v: [__m256; 16] = std::array::from_fn(|i| {
            if i >= m {
                return _mm256_setzero_ps();
            }
            // SAFETY: positions `p0..n` of image `i` lie in `src` (and `y`).
            let g = unsafe { load256(n - p0, sp.add(i * stride + p0)) };
            match bn {
                None => g,
                Some((y, mean, (k1, k2, k3))) => {
                    let y = unsafe { load256(n - p0, y.as_ptr().add(i * stride + p0)) };
                    let d = _mm256_sub_ps(y, _mm256_set1_ps(mean));
                    let inner = _mm256_fmadd_ps(d, _mm256_set1_ps(k2), _mm256_set1_ps(k3));
                    _mm256_fmadd_ps(g, _mm256_set1_ps(k1), inner)
                }
            }
        });
        let lo = transpose8(std::array::from_fn(|i| v[i]));
        let hi = transpose8(std::array::from_fn(|i| v[8 + i]));
        for p in 0..(n - p0).min(8) {
            // SAFETY: `to(p) + 16` within `dst`, checked by the caller.
            unsafe {
                let at = dp.add(to(p0 + p));
                _mm256_storeu_ps(at, lo[p]);
                _mm256_storeu_ps(at.add(8), hi[p]);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn out256(
    src: &[f32],
    from: &impl Fn(usize) -> usize,
    m: usize,
    n: usize,
    stride: usize,
    dst: &mut [f32],
) {
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for p0 in (0..n).step_by(8) {
        let half = |h: usize| -> [__m256; 8] {
            std::array::from_fn(|p| match p0 + p < n {
                // SAFETY: `from(p) + 16` within `src`, checked by the caller.
                true => unsafe { _mm256_loadu_ps(sp.add(from(p0 + p) + h)) },
                false => _mm256_setzero_ps(),
            })
        };
        let (lo, hi) = (transpose8(half(0)), transpose8(half(8)));
        for i in 0..m {
            let row = if i < 8 { lo[i] } else { hi[i - 8] };
            // SAFETY: positions `p0..n` of image `i` lie in `dst`.
            unsafe { store256(n - p0, dp.add(i * stride + p0), row) };
        }
    }
}

/// `out[j]` lane `i` = `v[i]` lane `j`, for 8 × 8.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|j| {
        let (a, b) = (v[j & !1], v[j | 1]);
        match j & 1 {
            0 => _mm256_unpacklo_ps(a, b),
            _ => _mm256_unpackhi_ps(a, b),
        }
    });
    let u: [__m256; 8] = std::array::from_fn(|j| {
        let base = j & !3;
        let (a, b) = (
            _mm256_castps_pd(t[base + (j & 2) / 2]),
            _mm256_castps_pd(t[base + 2 + (j & 2) / 2]),
        );
        _mm256_castpd_ps(match j & 1 {
            0 => _mm256_unpacklo_pd(a, b),
            _ => _mm256_unpackhi_pd(a, b),
        })
    });
    std::array::from_fn(|j| {
        let (a, b) = (u[j & 3], u[4 + (j & 3)]);
        match j & 4 {
            0 => _mm256_permute2f128_ps::<0x20>(a, b),
            _ => _mm256_permute2f128_ps::<0x31>(a, b),
        }
    })
}
