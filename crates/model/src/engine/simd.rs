//! [`conv::correlate`](super::conv::correlate)'s inner block for `f32` with explicit vectors:
//! `OB` outputs × `NV` chunks of [`CHUNK`] accumulators kept in registers, one input load per
//! chunk and one weight broadcast per output for each run. The compiler's own code for the
//! generic block kept part of the accumulators in memory. Each lane is `x·w + acc` rounded once,
//! in the same order as the generic block, so the same bits.
//!
//! Also a 2×2 max pool's output row ([`max_pool2_row512`], for [`misc`](super::misc)), 16
//! windows per piece, and AVX2's ([`max_pool2_row256`]), 8 per piece: the compiler's code for
//! the pool's short rows went 4 windows at a time with a scalar tail (training) or one at a
//! time (inference).

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::places::{Epilogue, Places};

/// Outputs per accumulator chunk: [`conv::CHUNK`](super::conv::CHUNK), which checks that the two
/// agree (this module does not import its caller).
pub(super) const CHUNK: usize = 16;

/// Where a block reads and writes: the input, its runs' starts, the weights (`wk` per output),
/// the bias, the first output, the output and its stride, where each vector lies, and the act
/// step applied before the stores.
pub(super) struct Block<'a, P> {
    pub x: &'a [f32],
    pub rows: &'a [usize],
    /// The largest of `rows`.
    pub top: usize,
    pub w: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub o: usize,
    pub out: &'a mut [f32],
    pub os: usize,
    pub at: P,
    pub act: Option<Epilogue<'a, f32>>,
}

impl<P: Places> Block<'_, P> {
    /// Checks every index the kernels below read or write.
    fn check<const OB: usize, const NV: usize>(&self) {
        let wk = self.rows.len();
        debug_assert_eq!(self.rows.iter().max().copied().unwrap_or(0), self.top);
        for v in 0..NV {
            assert!(self.top + self.at.input(v) + CHUNK <= self.x.len());
            assert!((self.o + OB - 1) * self.os + self.at.output(v) + CHUNK <= self.out.len());
        }
        assert!((self.o + OB) * wk <= self.w.len());
        if let Some(b) = self.bias {
            assert!(self.o + OB <= b.len());
        }
        if let Some(e) = &self.act {
            assert!(self.o + OB <= e.a.len() && self.o + OB <= e.b.len());
        }
    }
}

/// The AVX-512 block: `OB·NV` zmm accumulators (16 at most, of the 32 registers).
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
pub(super) unsafe fn block512<const OB: usize, const NV: usize, P: Places>(b: Block<'_, P>) {
    b.check::<OB, NV>();
    let wk = b.rows.len();
    let mut acc = [[_mm512_setzero_ps(); NV]; OB];
    if let Some(bias) = b.bias {
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [_mm512_set1_ps(bias[b.o + r]); NV];
        }
    }
    let (x, w) = (b.x.as_ptr(), b.w.as_ptr());
    for (k, &row) in b.rows.iter().enumerate() {
        // SAFETY: indices checked in `check`.
        let xv: [__m512; NV] =
            std::array::from_fn(|v| unsafe { _mm512_loadu_ps(x.add(row + b.at.input(v))) });
        for (r, a) in acc.iter_mut().enumerate() {
            let c = _mm512_set1_ps(unsafe { *w.add((b.o + r) * wk + k) });
            for v in 0..NV {
                a[v] = _mm512_fmadd_ps(xv[v], c, a[v]);
            }
        }
    }
    let zero = _mm512_setzero_ps();
    for (r, a) in acc.iter().enumerate() {
        let act = b.act.map(|e| {
            let o = b.o + r;
            (_mm512_set1_ps(e.a[o]), _mm512_set1_ps(e.b[o]), e.relu)
        });
        for (v, &av) in a.iter().enumerate() {
            let y = match act {
                // `v < 0 → 0` keeps −0 and NaN, as the act step's select does.
                Some((ea, eb, relu)) => {
                    let y = _mm512_fmadd_ps(av, ea, eb);
                    match relu {
                        true => {
                            _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), zero)
                        }
                        false => y,
                    }
                }
                None => av,
            };
            let at = (b.o + r) * b.os + b.at.output(v);
            unsafe { _mm512_storeu_ps(b.out.as_mut_ptr().add(at), y) };
        }
    }
}

/// The AVX2 block: a chunk is two ymm, `2·OB·NV` accumulators (12 at most, of the 16 registers,
/// enough independent chains to cover the FMA latency on two pipes).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block256<const OB: usize, const NV: usize, P: Places>(b: Block<'_, P>) {
    const H: usize = CHUNK / 8;
    b.check::<OB, NV>();
    let wk = b.rows.len();
    let mut acc = [[[_mm256_setzero_ps(); H]; NV]; OB];
    if let Some(bias) = b.bias {
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [[_mm256_set1_ps(bias[b.o + r]); H]; NV];
        }
    }
    let (x, w) = (b.x.as_ptr(), b.w.as_ptr());
    for (k, &row) in b.rows.iter().enumerate() {
        // The run's weights first, then one input vector at a time through every output: `OB`
        // weights, one input and the accumulators live at once (3 × 2 chunks: 3 + 1 + 12 of
        // the 16 registers), where holding every input vector would spill.
        // SAFETY: indices checked in `check`.
        let c: [__m256; OB] =
            std::array::from_fn(|r| _mm256_set1_ps(unsafe { *w.add((b.o + r) * wk + k) }));
        for v in 0..NV {
            for h in 0..H {
                let xv = unsafe { _mm256_loadu_ps(x.add(row + b.at.input(v) + h * 8)) };
                for (a, &c) in acc.iter_mut().zip(&c) {
                    a[v][h] = _mm256_fmadd_ps(xv, c, a[v][h]);
                }
            }
        }
    }
    let zero = _mm256_setzero_ps();
    for (r, a) in acc.iter().enumerate() {
        let act = b.act.map(|e| {
            let o = b.o + r;
            (_mm256_set1_ps(e.a[o]), _mm256_set1_ps(e.b[o]), e.relu)
        });
        for (v, av) in a.iter().enumerate() {
            for (h, &ah) in av.iter().enumerate() {
                let y = match act {
                    Some((ea, eb, relu)) => {
                        let y = _mm256_fmadd_ps(ah, ea, eb);
                        match relu {
                            true => _mm256_blendv_ps(y, zero, _mm256_cmp_ps::<_CMP_LT_OQ>(y, zero)),
                            false => y,
                        }
                    }
                    None => ah,
                };
                let at = (b.o + r) * b.os + b.at.output(v) + h * 8;
                unsafe { _mm256_storeu_ps(b.out.as_mut_ptr().add(at), y) };
            }
        }
    }
}

/// A mask of the first `n` of 16 lanes (all of them from 16 on); also
/// [`transpose`](super::transpose)'s and [`padded`](super::padded)'s.
#[inline(always)]
pub(super) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// The first `n` of 8 lanes set (all of them from 8 on), as AVX2's masked loads and stores take
/// them (a lane's sign bit).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn lanes256(n: usize) -> __m256i {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
}

/// The first `n` of 8 values at `from` (all of them from 8 on), the rest zero: a plain load for
/// a whole vector, a masked one only for a partial vector (AVX2's masked moves are slow on AMD
/// cores, docs/PERFORMANCE.md, eighteenth pass).
///
/// # Safety
/// The first `min(n, 8)` values at `from` are readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn load256(n: usize, from: *const f32) -> __m256 {
    // SAFETY: the caller's.
    unsafe {
        match n >= 8 {
            true => _mm256_loadu_ps(from),
            false => _mm256_maskload_ps(from, lanes256(n)),
        }
    }
}

/// The first `n` lanes of `v` to `to` (all of them from 8 on), as [`load256`]: plain for a
/// whole vector, masked only for a partial one.
///
/// # Safety
/// The first `min(n, 8)` values at `to` are writable.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store256(n: usize, to: *mut f32, v: __m256) {
    // SAFETY: the caller's.
    unsafe {
        match n >= 8 {
            true => _mm256_storeu_ps(to, v),
            false => _mm256_maskstore_ps(to, lanes256(n), v),
        }
    }
}

/// Where [`max_pool2_row512`] writes each window's winner: its index in the image, given the
/// index of the row's first window's top-left element and the input rows' width.
pub(super) struct PoolArgs<'a> {
    pub arg: &'a mut [u32],
    pub top: u32,
    pub w: u32,
}

/// Checks what a pool row of `n` outputs reads and writes: `2n` values of each input row, and
/// `n` indices with `args`.
fn check_pool_row(n: usize, r0: &[f32], r1: &[f32], args: &Option<PoolArgs<'_>>) {
    assert!(r0.len() >= 2 * n && r1.len() >= 2 * n);
    if let Some(a) = args {
        assert!(a.arg.len() >= n);
    }
}

/// One output row of a 2×2, stride-2 max pool from its two input rows, 16 outputs at a time
/// and the last piece masked; with `args`, also each winner's index. Each window is the same
/// tournament as the generic code's: `later(a, b)` takes `b` when `b > a` or `b` is NaN,
/// applied to the top pair, the bottom pair, then the two winners. The same values and
/// indices, so the same bits.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
pub(super) unsafe fn max_pool2_row512(
    dst: &mut [f32],
    r0: &[f32],
    r1: &[f32],
    mut args: Option<PoolArgs<'_>>,
) {
    let n = dst.len();
    check_pool_row(n, r0, r1, &args);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    // `later(a, b)`, and where it took `b`.
    let later = |a: __m512, b: __m512| {
        let take = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
        (_mm512_mask_blend_ps(take, a, b), take)
    };
    for at in (0..n).step_by(16) {
        let m = 2 * (n - at).min(16);
        let (k0, k1) = (lanes(m), lanes(m.saturating_sub(16)));
        // SAFETY: the masks keep every read below `2n`, within both rows.
        let pair = |r: &[f32]| unsafe {
            let lo = _mm512_maskz_loadu_ps(k0, r.as_ptr().add(2 * at));
            let hi = _mm512_maskz_loadu_ps(k1, r.as_ptr().add(2 * at + 16));
            later(
                _mm512_permutex2var_ps(lo, even, hi),
                _mm512_permutex2var_ps(lo, odd, hi),
            )
        };
        let ((up, t_up), (down, t_down)) = (pair(r0), pair(r1));
        let (v, t) = later(up, down);
        let k = lanes(n - at);
        unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(at), k, v) };
        if let Some(a) = &mut args {
            // Each window's top-left index, then + 1 where the right one won, + w for the
            // bottom pair.
            let first = _mm512_set1_epi32((a.top + 2 * at as u32) as i32);
            let left = _mm512_add_epi32(first, even);
            let one = _mm512_set1_epi32(1);
            let i_up = _mm512_mask_add_epi32(left, t_up, left, one);
            let left_down = _mm512_add_epi32(left, _mm512_set1_epi32(a.w as i32));
            let i_down = _mm512_mask_add_epi32(left_down, t_down, left_down, one);
            let i = _mm512_mask_blend_epi32(t, i_up, i_down);
            unsafe { _mm512_mask_storeu_epi32(a.arg.as_mut_ptr().add(at) as *mut i32, k, i) };
        }
    }
}

/// [`max_pool2_row512`] with AVX2's 8 lanes, for rows of at least 8 outputs (the caller runs
/// the generic loop on shorter ones): 8 outputs at a time, and a row whose length is not a
/// multiple of 8 ends with a piece that overlaps the one before (the same windows again, the
/// same values and indices written). The same tournament, so the same bits.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn max_pool2_row256(
    dst: &mut [f32],
    r0: &[f32],
    r1: &[f32],
    mut args: Option<PoolArgs<'_>>,
) {
    let n = dst.len();
    assert!(n >= 8, "AVX2's pool rows take 8 outputs or more");
    check_pool_row(n, r0, r1, &args);
    // `later(a, b)`, and where it took `b` (all ones).
    let later = |a: __m256, b: __m256| {
        let take = _mm256_or_ps(
            _mm256_cmp_ps(b, a, _CMP_GT_OQ),
            _mm256_cmp_ps(b, b, _CMP_UNORD_Q),
        );
        (_mm256_blendv_ps(a, b, take), _mm256_castps_si256(take))
    };
    // Window `j`'s top-left element's offset from the piece's first window's: `2j`.
    let even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let starts = (0..n.div_ceil(8)).map(|k| (8 * k).min(n - 8));
    for at in starts {
        // SAFETY: `at + 8 ≤ n`, so every read is below `2n`, within both rows.
        let pair = |r: &[f32]| unsafe {
            let lo = _mm256_loadu_ps(r.as_ptr().add(2 * at));
            let hi = _mm256_loadu_ps(r.as_ptr().add(2 * at + 8));
            // Per 128-bit half: lo's even (odd) elements, then hi's; the quarters reordered.
            let pick = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0b11_01_10_00))
            };
            let left = pick(_mm256_shuffle_ps(lo, hi, 0b10_00_10_00));
            let right = pick(_mm256_shuffle_ps(lo, hi, 0b11_01_11_01));
            later(left, right)
        };
        let ((up, t_up), (down, t_down)) = (pair(r0), pair(r1));
        let (v, t) = later(up, down);
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(at), v) };
        if let Some(a) = &mut args {
            // Each window's top-left index, then + 1 where the right one won (the mask is −1),
            // + w for the bottom pair.
            let left = _mm256_add_epi32(_mm256_set1_epi32((a.top + 2 * at as u32) as i32), even);
            let i_up = _mm256_sub_epi32(left, t_up);
            let left_down = _mm256_add_epi32(left, _mm256_set1_epi32(a.w as i32));
            let i_down = _mm256_sub_epi32(left_down, t_down);
            let i = _mm256_blendv_epi8(i_up, i_down, t);
            unsafe { _mm256_storeu_si256(a.arg.as_mut_ptr().add(at) as *mut __m256i, i) };
        }
    }
}
