//! The probe's kernels, once per vector width ([`kernels!`]): AVX-512 with 16 images to a
//! vector, AVX2 with 8. Each image lies in one lane and no operation mixes lanes, so both do
//! the same arithmetic per image. A plane is `[channel][row][column]` of vectors.
// The tile transforms write a transposed array: each loop index picks a row and a column.
#![allow(clippy::needless_range_loop)]

use crate::probe::Laps;

/// One vector width's kernels.
pub trait Kernels {
    /// The instruction set, for the table.
    const NAME: &'static str;
    /// Images to a vector.
    const LANES: usize;
    /// A vector of `LANES` images' values.
    type V: Copy;

    /// Whether this CPU has the instructions.
    fn available() -> bool;

    /// Vectors of `values` (`LANES` to a vector). Only where [`Kernels::available`].
    fn planes(values: &[f32]) -> Vec<Self::V>;

    /// The values of `v`. Only where [`Kernels::available`].
    fn values(v: &[Self::V]) -> Vec<f32>;

    /// The forward of one group: `x` `[CI][4·NT + 2]²`, transformed weights `u`
    /// `[36][CI][CO]`, `y` `[CO][4·NT]²`; `v` and `m` a row of tiles' transformed inputs
    /// and products.
    ///
    /// # Safety
    /// The CPU has the instructions ([`Kernels::available`]).
    unsafe fn forward<const CI: usize, const CO: usize, const NT: usize>(
        x: &[Self::V],
        u: &[f32],
        y: &mut [Self::V],
        bufs: (&mut [Self::V], &mut [Self::V]),
        laps: &mut Laps,
    );

    /// Adds one group's weight gradient, per lane, to `du` `[36][CI][CO]`: `x`
    /// `[CI][4·NT + 2]²`, `dy` `[CO][4·NT]²`; `v` and `g` a row of tiles' transforms. Blocks
    /// of inputs × `OB` outputs stay in registers over the row.
    ///
    /// # Safety
    /// The CPU has the instructions ([`Kernels::available`]).
    unsafe fn weight_grad<const CI: usize, const CO: usize, const NT: usize, const OB: usize>(
        x: &[Self::V],
        dy: &[Self::V],
        du: &mut [Self::V],
        bufs: (&mut [Self::V], &mut [Self::V]),
        laps: &mut Laps,
    );
}

/// The kernels of one width: module `$m` and its [`Kernels`] `$k`, for vectors `$v` of `$l`
/// lanes under target features `$f` (detected at run time as `$d`), with that width's
/// intrinsics; `$tb` tiles a block of the
/// forward's products (5 outputs each) and `$cb` inputs a block of the weight gradient's, as
/// many as the registers hold.
macro_rules! kernels {
    (
        $m:ident, $k:ident, $name:literal, $f:literal [$($d:tt),+], $v:ty, $l:literal,
        tb $tb:literal, cb $cb:literal,
        [$add:ident, $sub:ident, $mul:ident, $fmadd:ident, $set1:ident, $zero:ident, $load:ident, $store:ident]
    ) => {
        mod $m {
            use std::arch::x86_64::*;

            use crate::probe::Laps;

            type V = $v;

            /// `N` vectors `stride` apart from `v[at]`.
            #[inline]
            #[target_feature(enable = $f)]
            fn gather<const N: usize>(v: &[V], at: usize, stride: usize) -> [V; N] {
                let mut out = [$zero(); N];
                for (k, o) in out.iter_mut().enumerate() {
                    *o = v[at + k * stride];
                }
                out
            }

            /// `Bᵀ d` of 6 inputs (a column of a tile, then a row).
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

            /// `Aᵀ m`: 4 outputs of 6 products.
            #[inline]
            #[target_feature(enable = $f)]
            fn at(m: [V; 6]) -> [V; 4] {
                let (s12, d12) = ($add(m[1], m[2]), $sub(m[1], m[2]));
                let (s34, d34) = ($add(m[3], m[4]), $sub(m[3], m[4]));
                [
                    $add($add(m[0], s12), s34),
                    $fmadd($set1(2.0), d34, d12),
                    $fmadd($set1(4.0), s34, s12),
                    $add($fmadd($set1(8.0), d34, d12), m[5]),
                ]
            }

            /// `A y`: 6 values of 4 output gradients (the transpose of [`at`]).
            #[inline]
            #[target_feature(enable = $f)]
            fn a6(y: [V; 4]) -> [V; 6] {
                let (s02, s13) = ($add(y[0], y[2]), $add(y[1], y[3]));
                let f02 = $fmadd($set1(4.0), y[2], y[0]);
                let f13 = $mul($set1(2.0), $fmadd($set1(4.0), y[3], y[1]));
                [
                    y[0],
                    $add(s02, s13),
                    $sub(s02, s13),
                    $add(f02, f13),
                    $sub(f02, f13),
                    y[3],
                ]
            }

            /// `Bᵀ d B` of the 6 × 6 inputs from `x[at]` (rows `side` apart) into
            /// `v[ij·stride + off]`.
            #[inline]
            #[target_feature(enable = $f)]
            fn input_tile(
                x: &[V],
                side: usize,
                at: usize,
                v: &mut [V],
                (off, stride): (usize, usize),
            ) {
                let mut cols = [[$zero(); 6]; 6];
                for s in 0..6 {
                    let t = bt(gather(x, at + s, side));
                    for i in 0..6 {
                        cols[i][s] = t[i];
                    }
                }
                for (i, col) in cols.into_iter().enumerate() {
                    for (j, t) in bt(col).into_iter().enumerate() {
                        v[(i * 6 + j) * stride + off] = t;
                    }
                }
            }

            /// `A dy Aᵀ` of the 4 × 4 output gradients from `dy[at]` into
            /// `g[ij·stride + off]`.
            #[inline]
            #[target_feature(enable = $f)]
            fn grad_tile(
                dy: &[V],
                side: usize,
                at: usize,
                g: &mut [V],
                (off, stride): (usize, usize),
            ) {
                let mut cols = [[$zero(); 4]; 6];
                for b in 0..4 {
                    let t = a6(gather(dy, at + b, side));
                    for i in 0..6 {
                        cols[i][b] = t[i];
                    }
                }
                for (i, col) in cols.into_iter().enumerate() {
                    for (j, t) in a6(col).into_iter().enumerate() {
                        g[(i * 6 + j) * stride + off] = t;
                    }
                }
            }

            /// The outputs `Aᵀ m A` of a tile's products `m[ij·stride + off]` into `y[at]`
            /// (rows `side` apart).
            #[inline]
            #[target_feature(enable = $f)]
            fn output_tile(
                m: &[V],
                (off, stride): (usize, usize),
                y: &mut [V],
                side: usize,
                at: usize,
            ) {
                let mut rows = [[$zero(); 6]; 4];
                for j in 0..6 {
                    let t = self::at(gather(m, j * stride + off, 6 * stride));
                    for a in 0..4 {
                        rows[a][j] = t[a];
                    }
                }
                for (a, row) in rows.into_iter().enumerate() {
                    y[at + a * side..][..4].copy_from_slice(&self::at(row));
                }
            }

            /// See [`Kernels::forward`](super::Kernels::forward).
            #[target_feature(enable = $f)]
            pub(super) fn forward<const CI: usize, const CO: usize, const NT: usize>(
                x: &[V],
                u: &[f32],
                y: &mut [V],
                (v, m): (&mut [V], &mut [V]),
                laps: &mut Laps,
            ) {
                assert!(CO.is_multiple_of(5), "whole blocks");
                let (hp, op) = (4 * NT + 2, 4 * NT);
                for ty in 0..NT {
                    laps.lap(2);
                    for tx in 0..NT {
                        for c in 0..CI {
                            let at = c * hp * hp + 4 * (ty * hp + tx);
                            input_tile(x, hp, at, v, (tx * CI + c, NT * CI));
                        }
                    }
                    laps.lap(0);
                    for ij in 0..36 {
                        let (v, u) = (&v[ij * NT * CI..][..NT * CI], &u[ij * CI * CO..][..CI * CO]);
                        for o0 in (0..CO).step_by(5) {
                            let mut t0 = 0;
                            while t0 + $tb <= NT {
                                products::<CI, CO, NT, $tb>(v, u, m, (ij, t0, o0));
                                t0 += $tb;
                            }
                            for t0 in t0..NT {
                                products::<CI, CO, NT, 1>(v, u, m, (ij, t0, o0));
                            }
                        }
                    }
                    laps.lap(1);
                    for tx in 0..NT {
                        for o in 0..CO {
                            let at = o * op * op + 4 * (ty * op + tx);
                            output_tile(m, (tx * CO + o, NT * CO), y, op, at);
                        }
                    }
                }
            }

            /// One block of [`forward`]: the products `m[ij][t][o]` of outputs `o0..o0 + 5`
            /// and tiles `t0..t0 + TB` (`v` `[tile][CI]`, `u` `[CI][CO]`, both of `ij`).
            // Not inlined: inlined, the compiler hoists the block's 50 weight broadcasts out
            // of the loop over tiles and spills them.
            #[inline(never)]
            #[target_feature(enable = $f)]
            fn products<const CI: usize, const CO: usize, const NT: usize, const TB: usize>(
                v: &[V],
                u: &[f32],
                m: &mut [V],
                (ij, t0, o0): (usize, usize, usize),
            ) {
                let mut acc = [[$zero(); TB]; 5];
                for c in 0..CI {
                    let vs: [V; TB] = gather(v, t0 * CI + c, CI);
                    let w = &u[c * CO + o0..][..5];
                    for o in 0..5 {
                        let wo = $set1(w[o]);
                        for t in 0..TB {
                            acc[o][t] = $fmadd(wo, vs[t], acc[o][t]);
                        }
                    }
                }
                for (o, a) in acc.iter().enumerate() {
                    for (t, &a) in a.iter().enumerate() {
                        m[(ij * NT + t0 + t) * CO + o0 + o] = a;
                    }
                }
            }

            /// See [`Kernels::weight_grad`](super::Kernels::weight_grad).
            #[target_feature(enable = $f)]
            pub(super) fn weight_grad<
                const CI: usize,
                const CO: usize,
                const NT: usize,
                const OB: usize,
            >(
                x: &[V],
                dy: &[V],
                du: &mut [V],
                (v, g): (&mut [V], &mut [V]),
                laps: &mut Laps,
            ) {
                assert!(
                    CI.is_multiple_of($cb) && CO.is_multiple_of(OB),
                    "whole blocks"
                );
                let (hp, op) = (4 * NT + 2, 4 * NT);
                for ty in 0..NT {
                    laps.lap(1);
                    for tx in 0..NT {
                        for c in 0..CI {
                            let at = c * hp * hp + 4 * (ty * hp + tx);
                            input_tile(x, hp, at, v, (tx * CI + c, NT * CI));
                        }
                    }
                    laps.lap(0);
                    for tx in 0..NT {
                        for o in 0..CO {
                            let at = o * op * op + 4 * (ty * op + tx);
                            grad_tile(dy, op, at, g, (tx * CO + o, NT * CO));
                        }
                    }
                    laps.lap(2);
                    for ij in 0..36 {
                        let (v, g) = (&v[ij * NT * CI..][..NT * CI], &g[ij * NT * CO..][..NT * CO]);
                        let du = &mut du[ij * CI * CO..][..CI * CO];
                        for c0 in (0..CI).step_by($cb) {
                            for o0 in (0..CO).step_by(OB) {
                                block::<CI, CO, OB>(v, g, du, c0, o0);
                            }
                        }
                    }
                }
            }

            /// One block of [`weight_grad`]: inputs `c0..c0 + $cb` × outputs `o0..o0 + OB`,
            /// over a row of tiles (`v` `[tile][CI]`, `g` `[tile][CO]`), added to `du`
            /// `[CI][CO]`.
            #[inline]
            #[target_feature(enable = $f)]
            fn block<const CI: usize, const CO: usize, const OB: usize>(
                v: &[V],
                g: &[V],
                du: &mut [V],
                c0: usize,
                o0: usize,
            ) {
                let mut acc = [[$zero(); OB]; $cb];
                for c in 0..$cb {
                    acc[c].copy_from_slice(&du[(c0 + c) * CO + o0..][..OB]);
                }
                for (vt, gt) in v.chunks_exact(CI).zip(g.chunks_exact(CO)) {
                    let (vs, gs) = (&vt[c0..c0 + $cb], &gt[o0..o0 + OB]);
                    for o in 0..OB {
                        for c in 0..$cb {
                            acc[c][o] = $fmadd(vs[c], gs[o], acc[c][o]);
                        }
                    }
                }
                for c in 0..$cb {
                    du[(c0 + c) * CO + o0..][..OB].copy_from_slice(&acc[c]);
                }
            }

            /// Vectors of `values`.
            ///
            /// # Safety
            /// The CPU has the instructions.
            pub(super) unsafe fn planes(values: &[f32]) -> Vec<V> {
                values
                    .chunks_exact($l)
                    // SAFETY: a chunk holds the values the (unaligned) load reads; the caller
                    // vouches for the instructions.
                    .map(|c| unsafe { $load(c.as_ptr()) })
                    .collect()
            }

            /// The values of `v`.
            ///
            /// # Safety
            /// The CPU has the instructions.
            pub(super) unsafe fn values(v: &[V]) -> Vec<f32> {
                let mut out = vec![0.0; v.len() * $l];
                for (o, v) in out.chunks_exact_mut($l).zip(v) {
                    // SAFETY: a chunk has room for the values the store writes; the caller
                    // vouches for the instructions.
                    unsafe { $store(o.as_mut_ptr(), *v) };
                }
                out
            }
        }

        /// The kernels of module `$m`.
        pub struct $k;

        impl Kernels for $k {
            const NAME: &'static str = $name;
            const LANES: usize = $l;
            type V = $v;

            fn available() -> bool {
                true $(&& std::arch::is_x86_feature_detected!($d))*
            }

            fn planes(values: &[f32]) -> Vec<$v> {
                assert!(Self::available());
                // SAFETY: checked just above.
                unsafe { $m::planes(values) }
            }

            fn values(v: &[$v]) -> Vec<f32> {
                assert!(Self::available());
                // SAFETY: checked just above.
                unsafe { $m::values(v) }
            }

            unsafe fn forward<const CI: usize, const CO: usize, const NT: usize>(
                x: &[$v],
                u: &[f32],
                y: &mut [$v],
                bufs: (&mut [$v], &mut [$v]),
                laps: &mut Laps,
            ) {
                // SAFETY: the caller vouches for the instructions.
                unsafe { $m::forward::<CI, CO, NT>(x, u, y, bufs, laps) }
            }

            unsafe fn weight_grad<
                const CI: usize,
                const CO: usize,
                const NT: usize,
                const OB: usize,
            >(
                x: &[$v],
                dy: &[$v],
                du: &mut [$v],
                bufs: (&mut [$v], &mut [$v]),
                laps: &mut Laps,
            ) {
                // SAFETY: the caller vouches for the instructions.
                unsafe { $m::weight_grad::<CI, CO, NT, OB>(x, dy, du, bufs, laps) }
            }
        }
    };
}

kernels!(
    avx512, Avx512, "AVX-512", "avx512f,fma" ["avx512f", "fma"], std::arch::x86_64::__m512, 16,
    tb 3, cb 5,
    [
        _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_fmadd_ps, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps
    ]
);

kernels!(
    avx2, Avx2, "AVX2", "avx2,fma" ["avx2", "fma"], std::arch::x86_64::__m256, 8,
    tb 2, cb 2,
    [
        _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_fmadd_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps
    ]
);
