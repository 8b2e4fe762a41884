//! [`super::forward`] for `f32` with explicit AVX-512 and AVX2 vectors: the same operations in
//! the same order as the portable code, a whole position of the group's lanes at a time (AVX2:
//! the 16 lanes as two halves of 8, one after the other; the lanes are independent). Both
//! widths are one body ([`width!`]). Loads and stores are unchecked: [`super::forward`] asserted
//! the slices' lengths, and every index is a position within a plane, a channel, an output and
//! a tile element below their counts (a bounds check on each cost 1.5× the kernel's time).
// The tile transforms write a transposed array: each loop index picks a row and a column.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::KernelPath;
use super::super::places::Epilogue;
use super::super::real::{as_f32, as_f32_mut};
use super::{LANES, Real, Shape};

/// `s` as `f32` (checked by [`KernelPath::vectors_for`] before every use).
fn f32s<T: Real>(s: &[T]) -> &[f32] {
    as_f32(s).expect("f32")
}

/// An act step's per-output map and whether it has a ReLU, as `f32`.
type Act<'a> = Option<(&'a [f32], &'a [f32], bool)>;

/// [`super::forward`] of a group of shape `s` on the active path when `T` is `f32` and the path
/// has vectors; `false` (nothing done) otherwise. The caller has checked every length.
pub(super) fn forward<T: Real>(
    x: &[T],
    s: &Shape,
    u: &[T],
    out: &mut [T],
    act: Option<Epilogue<'_, T>>,
    scratch: &mut [T],
) -> bool {
    let Some(path) = KernelPath::vectors_for::<T>() else {
        return false;
    };
    let (x, u) = (f32s(x), f32s(u));
    let act = act.map(|e| (f32s(e.a), f32s(e.b), e.relu));
    let (out, scratch) = (
        as_f32_mut(out).expect("f32"),
        as_f32_mut(scratch).expect("f32"),
    );
    match path {
        // SAFETY (both): the CPU has the path's features (the active path).
        KernelPath::Avx512 => unsafe { w512::forward(x, u, s, out, act, scratch, 0) },
        _ => {
            for half in [0, LANES / 2] {
                unsafe { w256::forward(x, u, s, out, act, scratch, half) };
            }
        }
    }
    true
}

/// The kernels of one vector width: module `$m`, vectors `$v` of `$l` lanes under target
/// features `$f`, output blocks `$obs` (as many accumulators as the registers hold), and that
/// width's intrinsics.
macro_rules! width {
    (
        $m:ident, $f:literal, $v:ty, $l:literal, $obs:expr,
        [$add:ident, $sub:ident, $mul:ident, $fmadd:ident, $max:ident, $set1:ident, $zero:ident,
         $load:ident, $store:ident]
    ) => {
        mod $m {
            use super::*;

            type V = $v;

            /// The vector at `s[at..]`.
            ///
            /// # Safety
            /// `at + $l ≤ s.len()`.
            #[inline]
            #[target_feature(enable = $f)]
            unsafe fn load(s: &[f32], at: usize) -> V {
                debug_assert!(at + $l <= s.len());
                // SAFETY: the values the (unaligned) load reads lie in `s` (the caller).
                unsafe { $load(s.as_ptr().add(at)) }
            }

            /// `v` into `s[at..]`.
            ///
            /// # Safety
            /// `at + $l ≤ s.len()`.
            #[inline]
            #[target_feature(enable = $f)]
            unsafe fn store(s: &mut [f32], at: usize, v: V) {
                debug_assert!(at + $l <= s.len());
                // SAFETY: the values the (unaligned) store writes lie in `s` (the caller).
                unsafe { $store(s.as_mut_ptr().add(at), v) }
            }

            /// `Bᵀ d` of 6 positions (the portable code's operations).
            #[inline]
            #[target_feature(enable = $f)]
            fn bt(d: [V; 6]) -> [V; 6] {
                let (m4, m5, two, four) = ($set1(-4.0), $set1(-5.0), $set1(2.0), $set1(4.0));
                let a = $fmadd(m4, d[2], d[4]);
                let b = $fmadd(m4, d[1], d[3]);
                let c = $sub(d[4], d[2]);
                let e = $mul(two, $sub(d[3], d[1]));
                [
                    $fmadd(four, d[0], $fmadd(m5, d[2], d[4])),
                    $add(b, a),
                    $sub(a, b),
                    $add(c, e),
                    $sub(c, e),
                    $fmadd(four, d[1], $fmadd(m5, d[3], d[5])),
                ]
            }

            /// `Aᵀ m` of 6 products: 4 outputs (the portable code's operations).
            #[inline]
            #[target_feature(enable = $f)]
            fn at(m: [V; 6]) -> [V; 4] {
                let (s, t) = ($add(m[1], m[2]), $sub(m[1], m[2]));
                let (p, q) = ($add(m[3], m[4]), $sub(m[3], m[4]));
                [
                    $add($add(m[0], s), p),
                    $fmadd($set1(2.0), q, t),
                    $fmadd($set1(4.0), p, s),
                    $add($fmadd($set1(8.0), q, t), m[5]),
                ]
            }

            /// The group's convolution, lanes `half..half + $l` of each position.
            #[target_feature(enable = $f)]
            pub(super) fn forward(
                x: &[f32],
                u: &[f32],
                s: &Shape,
                out: &mut [f32],
                act: Act<'_>,
                scratch: &mut [f32],
                half: usize,
            ) {
                let (v, m) = scratch.split_at_mut(36 * s.ci * LANES);
                for ty in 0..s.oh.div_ceil(4) {
                    for tx in 0..s.ow.div_ceil(4) {
                        let at = (4 * ty, 4 * tx);
                        for c in 0..s.ci {
                            input_tile(x, s, c, at, v, half);
                        }
                        for ij in 0..36 {
                            let mut o = 0;
                            while o < s.co {
                                let ob = *$obs.iter().find(|&&b| b <= s.co - o).expect("1 fits");
                                match ob {
                                    15 => block::<15>(v, u, s, m, (ij, o), half),
                                    10 => block::<10>(v, u, s, m, (ij, o), half),
                                    5 => block::<5>(v, u, s, m, (ij, o), half),
                                    _ => block::<1>(v, u, s, m, (ij, o), half),
                                }
                                o += ob;
                            }
                        }
                        for o in 0..s.co {
                            output_tile(m, s, o, at, out, act, half);
                        }
                    }
                }
            }

            /// `Bᵀ d B` of input plane `c`'s tile at `(r0, s0)` (zeros past the plane) into
            /// `v[((ij·ci + c)·LANES + half)..]`.
            #[inline]
            #[target_feature(enable = $f)]
            fn input_tile(
                x: &[f32],
                s: &Shape,
                c: usize,
                (r0, s0): (usize, usize),
                v: &mut [f32],
                half: usize,
            ) {
                let mut cols = [[$zero(); 6]; 6];
                for k in 0..6 {
                    let mut d = [$zero(); 6];
                    for (r, d) in d.iter_mut().enumerate() {
                        let (y, x0) = (r0 + r, s0 + k);
                        if y < s.h && x0 < s.w {
                            // SAFETY: position (y, x0) of plane c < ci, lanes `half..half + $l`
                            // of LANES: within the `ci·h·w·LANES` values `super::forward` asserted.
                            *d = unsafe { load(x, ((c * s.h + y) * s.w + x0) * LANES + half) };
                        }
                    }
                    for (i, t) in bt(d).into_iter().enumerate() {
                        cols[i][k] = t;
                    }
                }
                for i in 0..6 {
                    let t = bt(cols[i]);
                    for j in 0..6 {
                        // SAFETY: element i·6 + j < 36 of channel c < ci: within the first
                        // `36·ci·LANES` scratch values (`scratch_len`, asserted).
                        unsafe { store(v, ((i * 6 + j) * s.ci + c) * LANES + half, t[j]) };
                    }
                }
            }

            /// The products of element `ij` for outputs `o0..o0 + OB` into
            /// `m[((o·36 + ij)·LANES + half)..]`, held in registers over the input channels.
            #[inline]
            #[target_feature(enable = $f)]
            fn block<const OB: usize>(
                v: &[f32],
                u: &[f32],
                s: &Shape,
                m: &mut [f32],
                (ij, o0): (usize, usize),
                half: usize,
            ) {
                let mut acc = [$zero(); OB];
                for c in 0..s.ci {
                    // SAFETY: element ij < 36 of channel c < ci, as `input_tile` stored it.
                    let vc = unsafe { load(v, (ij * s.ci + c) * LANES + half) };
                    let w = &u[(ij * s.ci + c) * s.co + o0..][..OB];
                    for (a, &k) in acc.iter_mut().zip(w) {
                        *a = $fmadd($set1(k), vc, *a);
                    }
                }
                for (o, a) in acc.into_iter().enumerate() {
                    // SAFETY: output o0 + o < co, element ij < 36: within the last
                    // `36·co·LANES` scratch values (`scratch_len`, asserted).
                    unsafe { store(m, ((o0 + o) * 36 + ij) * LANES + half, a) };
                }
            }

            /// Output `o`'s `Aᵀ m A` for the tile at `(r0, s0)`, through the act step, into
            /// `out`: only the positions within the plane.
            #[inline]
            #[target_feature(enable = $f)]
            fn output_tile(
                m: &[f32],
                s: &Shape,
                o: usize,
                (r0, s0): (usize, usize),
                out: &mut [f32],
                act: Act<'_>,
                half: usize,
            ) {
                let mut rows = [[$zero(); 6]; 4];
                for j in 0..6 {
                    let mut col = [$zero(); 6];
                    for (i, c) in col.iter_mut().enumerate() {
                        // SAFETY: as `block` stored it (o < co, element < 36).
                        *c = unsafe { load(m, (o * 36 + i * 6 + j) * LANES + half) };
                    }
                    for (a, t) in at(col).into_iter().enumerate() {
                        rows[a][j] = t;
                    }
                }
                for a in 0..4 {
                    let r = r0 + a;
                    if r >= s.oh {
                        break;
                    }
                    for (b, mut y) in at(rows[a]).into_iter().enumerate() {
                        let q = s0 + b;
                        if q >= s.ow {
                            break;
                        }
                        if let Some((ea, eb, relu)) = act {
                            y = $fmadd(y, $set1(ea[o]), $set1(eb[o]));
                            // max(0, y) is `0 > y ? 0 : y`: the portable select, NaN and −0 kept.
                            if relu {
                                y = $max($zero(), y);
                            }
                        }
                        // SAFETY: position (r, q) of output plane o < co: within the
                        // `co·oh·ow·LANES` values `super::forward` asserted.
                        unsafe { store(out, ((o * s.oh + r) * s.ow + q) * LANES + half, y) };
                    }
                }
            }
        }
    };
}

width!(
    w512,
    "avx2,fma,avx512f,avx512vl",
    __m512,
    16,
    [15usize, 10, 5, 1],
    [
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_mul_ps,
        _mm512_fmadd_ps,
        _mm512_max_ps,
        _mm512_set1_ps,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    ]
);

width!(
    w256,
    "avx2,fma",
    __m256,
    8,
    [10usize, 5, 1],
    [
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_mul_ps,
        _mm256_fmadd_ps,
        _mm256_max_ps,
        _mm256_set1_ps,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps
    ]
);
