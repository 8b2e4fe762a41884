//! [`super::weight_grad_at`]'s lane sums for `f32` with explicit vectors: `OB` output-gradient
//! rows × `KB` input runs of accumulators in registers, one load per row and run for each
//! place. AVX-512 keeps all 16 lanes of a sum in a zmm; AVX2 sweeps the places twice, the low
//! and the high 8 lanes. Each lane is `g·x + acc` rounded once, in the order of the places, as
//! the portable code computes it: the same bits.

use std::arch::x86_64::*;

use super::super::KernelPath;
use super::super::real::{as_f32, as_f32_mut};
use super::{LANES, Real};

/// Where a block reads and writes: the output gradient with its row stride, the block's first
/// row, the input, the block's runs, the places, the weight gradient (`nk` runs a row) and the
/// block's first run.
struct Block<'a> {
    g: &'a [f32],
    gs: usize,
    o: usize,
    x: &'a [f32],
    runs: &'a [usize],
    places: &'a [(usize, usize)],
    gw: &'a mut [f32],
    nk: usize,
    k: usize,
}

/// [`super::weight_grad_at`]'s sums, folded and added to `gw[o·nk + k]` for every row `o < no`
/// and run `k`, when `T` is `f32` on a vector path; returns whether it ran. The caller has
/// checked every index read.
pub(super) fn weight_grad<T: Real>(
    g: &[T],
    gs: usize,
    no: usize,
    x: &[T],
    runs: &[usize],
    places: &[(usize, usize)],
    gw: &mut [T],
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let (g, x, gw) = (
        as_f32(g).expect("f32"),
        as_f32(x).expect("f32"),
        as_f32_mut(gw).expect("f32"),
    );
    let nk = runs.len();
    assert!(gw.len() >= no * nk);
    let kbs: &[usize] = match path {
        KernelPath::Avx512 => &[10, 4, 2, 1],
        _ => &[4, 2, 1],
    };
    let mut o = 0;
    while o < no {
        let ob = if no - o >= 2 { 2 } else { 1 };
        let mut k = 0;
        while k < nk {
            let kb = *kbs.iter().find(|&&b| b <= nk - k).expect("1 fits");
            let b = Block {
                g,
                gs,
                o,
                x,
                runs: &runs[k..k + kb],
                places,
                gw: &mut *gw,
                nk,
                k,
            };
            // SAFETY: the path's features are the CPU's (`KernelPath::active`); every index is
            // checked by the caller (the places and runs within `x` and `g`) and above (`gw`).
            unsafe {
                match (path == KernelPath::Avx512, ob, kb) {
                    (true, 2, 10) => block512::<2, 10>(b),
                    (true, 2, 4) => block512::<2, 4>(b),
                    (true, 2, 2) => block512::<2, 2>(b),
                    (true, 2, _) => block512::<2, 1>(b),
                    (true, _, 10) => block512::<1, 10>(b),
                    (true, _, 4) => block512::<1, 4>(b),
                    (true, _, 2) => block512::<1, 2>(b),
                    (true, _, _) => block512::<1, 1>(b),
                    (false, 2, 4) => block256::<2, 4>(b),
                    (false, 2, 2) => block256::<2, 2>(b),
                    (false, 2, _) => block256::<2, 1>(b),
                    (false, _, 4) => block256::<1, 4>(b),
                    (false, _, 2) => block256::<1, 2>(b),
                    (false, _, _) => block256::<1, 1>(b),
                }
            }
            k += kb;
        }
        o += ob;
    }
    true
}

/// # Safety
/// AVX-512 F; the block's reads within `g` and `x`, its writes within `gw`.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn block512<const OB: usize, const KB: usize>(b: Block<'_>) {
    let (gp, xp) = (b.g.as_ptr(), b.x.as_ptr());
    // SAFETY (every pointer below): within the slices, as the caller checked.
    let rows: [*const f32; OB] = std::array::from_fn(|r| unsafe { gp.add((b.o + r) * b.gs) });
    let runs: [*const f32; KB] = std::array::from_fn(|q| unsafe { xp.add(b.runs[q]) });
    let mut a = [[_mm512_setzero_ps(); KB]; OB];
    for &(pa, pb) in b.places {
        let xv: [__m512; KB] = std::array::from_fn(|q| unsafe { _mm512_loadu_ps(runs[q].add(pa)) });
        for r in 0..OB {
            let gv = unsafe { _mm512_loadu_ps(rows[r].add(pb)) };
            for q in 0..KB {
                a[r][q] = _mm512_fmadd_ps(gv, xv[q], a[r][q]);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (q, v) in row.iter().enumerate() {
            b.gw[(b.o + r) * b.nk + b.k + q] += fold512(*v);
        }
    }
}

/// [`super::fold`] in a zmm: the high 8 lanes onto the low, then 4, 2 and 1, each add rounded
/// once as the portable code's.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn fold512(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
}

/// # Safety
/// AVX2 and FMA; the block's reads within `g` and `x`, its writes within `gw`.
#[target_feature(enable = "avx2,fma")]
unsafe fn block256<const OB: usize, const KB: usize>(b: Block<'_>) {
    let (gp, xp) = (b.g.as_ptr(), b.x.as_ptr());
    let mut sums = [[[0.0f32; LANES]; KB]; OB];
    for half in [0, 8] {
        // SAFETY (every pointer below): within the slices, as the caller checked.
        let rows: [*const f32; OB] =
            std::array::from_fn(|r| unsafe { gp.add((b.o + r) * b.gs + half) });
        let runs: [*const f32; KB] = std::array::from_fn(|q| unsafe { xp.add(b.runs[q] + half) });
        let mut a = [[_mm256_setzero_ps(); KB]; OB];
        for &(pa, pb) in b.places {
            let xv: [__m256; KB] =
                std::array::from_fn(|q| unsafe { _mm256_loadu_ps(runs[q].add(pa)) });
            for r in 0..OB {
                let gv = unsafe { _mm256_loadu_ps(rows[r].add(pb)) };
                for q in 0..KB {
                    a[r][q] = _mm256_fmadd_ps(gv, xv[q], a[r][q]);
                }
            }
        }
        for (r, row) in a.iter().enumerate() {
            for (q, v) in row.iter().enumerate() {
                let to = &mut sums[r][q][half..half + 8];
                unsafe { _mm256_storeu_ps(to.as_mut_ptr(), *v) };
            }
        }
    }
    for (r, row) in sums.iter().enumerate() {
        for (q, s) in row.iter().enumerate() {
            b.gw[(b.o + r) * b.nk + b.k + q] += super::fold(s);
        }
    }
}
