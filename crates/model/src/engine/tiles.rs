//! 2D Winograd F(4×4, 3×3) with the images in the vector lanes (numerics version 5 on:
//! evaluation of the large 3×3 convolutions).
//!
//! A 6 × 6 tile of inputs `d` gives 4 × 4 outputs `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A` (Lavin and
//! Gray's transforms, points 0, ±1, ±2, ∞): 36 multiplies an input channel for 16 outputs,
//! where a direct kernel makes 144. A group's images lie in the lanes (`[channel][position]
//! [image]`, as [`super::lanes`] holds them), so every operation is one per lane: each image's
//! outputs are the same bits in any group, and every kernel path computes the same operations
//! in the same order (the portable code loops over the lanes; `simd` takes whole vectors).
//!
//! The operations, per lane, all rounded once (`fma(k, a, b)` = `k·a + b`):
//! - `Bᵀ` of 6 values `d`: `a = fma(−4, d₂, d₄)`, `b = fma(−4, d₁, d₃)`, `c = d₄ − d₂`, `e = 2·(d₃ −
//!   d₁)`, then `(fma(4, d₀, fma(−5, d₂, d₄)), b + a, a − b, c + e, c − e, fma(4, d₁, fma(−5, d₃,
//!   d₅)))`; a tile's 6 columns first, then its 6 rows;
//! - the weights `u = G g Gᵀ`, each element summed in `f64` and rounded once ([`weights`]);
//! - the products: for each of the 36 elements and each output, `fma(u, v, ·)` over the input
//!   channels in order, from 0;
//! - `Aᵀ` of 6 values `m`: `s = m₁ + m₂`, `t = m₁ − m₂`, `p = m₃ + m₄`, `q = m₃ − m₄`, then `((m₀ + s)
//!   + p, fma(2, q, t), fma(4, p, s), fma(8, q, t) + m₅)`; the 6 columns first, then the 4 rows;
//! - the act step after the convolution, `fma(y, a, b)` then ReLU, before the store.
//!
//! Tiles past the input's last row or column read zeros, and outputs past the plane are not
//! stored.

use super::act;
use super::places::Epilogue;
use super::real::Real;

/// Images in a group: one to a lane.
pub const LANES: usize = 16;

/// One position of a group's images.
type Lanes<T> = [T; LANES];

/// `G` of F(4, 3).
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The transformed weights `u[(ij·ci + c)·co + o] = (G w Gᵀ)[i][j]` of the 3 × 3 kernels
/// `w[(o·ci + c)·9..]`, each summed in `f64` (kernel taps in order) and rounded once.
pub fn weights<T: Real>(w: &[T], ci: usize, co: usize) -> Vec<T> {
    assert!(w.len() >= co * ci * 9, "tiles::weights: too few weights");
    let mut u = vec![T::ZERO; 36 * ci * co];
    for (oc, k) in w[..co * ci * 9].chunks_exact(9).enumerate() {
        let (o, c) = (oc / ci, oc % ci);
        for ij in 0..36 {
            let (gi, gj) = (&G[ij / 6], &G[ij % 6]);
            let sum: f64 = (0..9).map(|t| gi[t / 3] * k[t].to_f64() * gj[t % 3]).sum();
            u[(ij * ci + c) * co + o] = T::from_f64(sum);
        }
    }
    u
}

/// Scratch values [`forward`] needs for `ci` inputs and `co` outputs.
pub fn scratch_len(ci: usize, co: usize) -> usize {
    36 * (ci + co) * LANES
}

fma_dispatch! {
/// The convolution of a group: `x` holds `ci` planes of `h × w` positions (`x[(c·h·w + p)·LANES
/// + l]`), `u` is [`weights`] of its kernels, `out` gets `co` planes of `(h − 2) × (w − 2)`
/// positions, `act` applied before each store; `scratch` at least [`scratch_len`] values.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    x: &[T],
    ci: usize,
    h: usize,
    w: usize,
    u: &[T],
    co: usize,
    out: &mut [T],
    act: Option<Epilogue<'_, T>>,
    scratch: &mut [T],
) {
    assert!(h >= 3 && w >= 3, "tiles::forward: a plane smaller than the kernel");
    let (oh, ow) = (h - 2, w - 2);
    assert!(x.len() >= ci * h * w * LANES && u.len() >= 36 * ci * co);
    assert!(out.len() >= co * oh * ow * LANES && scratch.len() >= scratch_len(ci, co));
    assert!(act.is_none_or(|e| e.a.len() >= co && e.b.len() >= co));
    let shape = Shape {
        ci,
        h,
        w,
        co,
        oh,
        ow,
    };
    #[cfg(target_arch = "x86_64")]
    if simd::forward(x, &shape, u, out, act, scratch) {
        return;
    }
    let (v, m) = scratch.split_at_mut(36 * ci * LANES);
    for ty in 0..oh.div_ceil(4) {
        for tx in 0..ow.div_ceil(4) {
            let at = (4 * ty, 4 * tx);
            for c in 0..ci {
                input_tile(&x[c * h * w * LANES..], &shape, at, v, (c, ci));
            }
            products(v, u, ci, co, m);
            for o in 0..co {
                let y = &mut out[o * oh * ow * LANES..];
                let e = act.map(|e| (e.a[o], e.b[o], e.relu));
                output_tile(&m[o * 36 * LANES..][..36 * LANES], &shape, at, y, e);
            }
        }
    }
}
}

/// A group's shape: `ci` input planes of `h × w`, `co` outputs of `oh × ow`.
struct Shape {
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    oh: usize,
    ow: usize,
}

/// `k·a + b` in every lane, rounded once.
#[inline(always)]
fn fma<T: Real>(k: T, a: &Lanes<T>, b: &Lanes<T>) -> Lanes<T> {
    let mut o = [T::ZERO; LANES];
    for l in 0..LANES {
        o[l] = k.mul_add(a[l], b[l]);
    }
    o
}

/// `a + b` in every lane.
#[inline(always)]
fn add<T: Real>(a: &Lanes<T>, b: &Lanes<T>) -> Lanes<T> {
    let mut o = [T::ZERO; LANES];
    for l in 0..LANES {
        o[l] = a[l] + b[l];
    }
    o
}

/// `a − b` in every lane.
#[inline(always)]
fn sub<T: Real>(a: &Lanes<T>, b: &Lanes<T>) -> Lanes<T> {
    let mut o = [T::ZERO; LANES];
    for l in 0..LANES {
        o[l] = a[l] - b[l];
    }
    o
}

/// `Bᵀ d` of 6 positions.
#[inline(always)]
fn bt<T: Real>(d: &[Lanes<T>; 6]) -> [Lanes<T>; 6] {
    let k = |v: f64| T::from_f64(v);
    let a = fma(k(-4.0), &d[2], &d[4]);
    let b = fma(k(-4.0), &d[1], &d[3]);
    let c = sub(&d[4], &d[2]);
    let e = sub(&d[3], &d[1]);
    let mut e2 = [T::ZERO; LANES];
    for l in 0..LANES {
        e2[l] = k(2.0) * e[l];
    }
    [
        fma(k(4.0), &d[0], &fma(k(-5.0), &d[2], &d[4])),
        add(&b, &a),
        sub(&a, &b),
        add(&c, &e2),
        sub(&c, &e2),
        fma(k(4.0), &d[1], &fma(k(-5.0), &d[3], &d[5])),
    ]
}

/// `Aᵀ m` of 6 products: 4 outputs.
#[inline(always)]
fn at<T: Real>(m: &[Lanes<T>; 6]) -> [Lanes<T>; 4] {
    let k = |v: f64| T::from_f64(v);
    let (s, t) = (add(&m[1], &m[2]), sub(&m[1], &m[2]));
    let (p, q) = (add(&m[3], &m[4]), sub(&m[3], &m[4]));
    [
        add(&add(&m[0], &s), &p),
        fma(k(2.0), &q, &t),
        fma(k(4.0), &p, &s),
        add(&fma(k(8.0), &q, &t), &m[5]),
    ]
}

/// `Bᵀ d B` of the tile at `(r0, s0)` of one input plane `x` into `v[(ij·stride + off)·LANES..]`;
/// positions past the plane read zeros.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // a transposed write: the index picks a column
fn input_tile<T: Real>(
    x: &[T],
    p: &Shape,
    (r0, s0): (usize, usize),
    v: &mut [T],
    (off, stride): (usize, usize),
) {
    let zero = [T::ZERO; LANES];
    let mut cols = [[zero; 6]; 6];
    for s in 0..6 {
        let mut d = [zero; 6];
        for (r, d) in d.iter_mut().enumerate() {
            let (y, x0) = (r0 + r, s0 + s);
            if y < p.h && x0 < p.w {
                let at = (y * p.w + x0) * LANES;
                d.copy_from_slice(&x[at..at + LANES]);
            }
        }
        for (i, t) in bt(&d).into_iter().enumerate() {
            cols[i][s] = t;
        }
    }
    for (i, col) in cols.iter().enumerate() {
        for (j, t) in bt(col).into_iter().enumerate() {
            let at = ((i * 6 + j) * stride + off) * LANES;
            v[at..at + LANES].copy_from_slice(&t);
        }
    }
}

/// The products `m[(o·36 + ij)·LANES..]` of the transformed inputs `v` (`[ij][c]`) and weights
/// `u` (`[ij][c][o]`), outputs in blocks of 5 (then one by one) held in registers.
#[inline(always)]
fn products<T: Real>(v: &[T], u: &[T], ci: usize, co: usize, m: &mut [T]) {
    for ij in 0..36 {
        let mut o = 0;
        while o + 5 <= co {
            block::<T, 5>(v, u, (ij, o), ci, co, m);
            o += 5;
        }
        while o < co {
            block::<T, 1>(v, u, (ij, o), ci, co, m);
            o += 1;
        }
    }
}

/// [`products`] of outputs `o0..o0 + OB` for element `ij`.
#[inline(always)]
fn block<T: Real, const OB: usize>(
    v: &[T],
    u: &[T],
    (ij, o0): (usize, usize),
    ci: usize,
    co: usize,
    m: &mut [T],
) {
    let mut acc = [[T::ZERO; LANES]; OB];
    for c in 0..ci {
        let at = (ij * ci + c) * LANES;
        let vc: &Lanes<T> = v[at..at + LANES].try_into().expect("a position");
        let w = &u[(ij * ci + c) * co + o0..][..OB];
        for (a, &k) in acc.iter_mut().zip(w) {
            *a = fma(k, vc, a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let at = ((o0 + r) * 36 + ij) * LANES;
        m[at..at + LANES].copy_from_slice(a);
    }
}

/// The outputs `Aᵀ m A` of one output's products `m` (`[ij][lane]`) for the tile at `(r0,
/// s0)`, through the act step `e` (`(a, b, relu)`), into the output plane `y`: only the
/// positions within it.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // a transposed write: the index picks a column
fn output_tile<T: Real>(
    m: &[T],
    p: &Shape,
    (r0, s0): (usize, usize),
    y: &mut [T],
    e: Option<(T, T, bool)>,
) {
    let zero = [T::ZERO; LANES];
    let mut rows = [[zero; 6]; 4];
    for j in 0..6 {
        let mut col = [zero; 6];
        for (i, c) in col.iter_mut().enumerate() {
            let at = (i * 6 + j) * LANES;
            c.copy_from_slice(&m[at..at + LANES]);
        }
        for (a, t) in at(&col).into_iter().enumerate() {
            rows[a][j] = t;
        }
    }
    for (a, row) in rows.iter().enumerate() {
        let r = r0 + a;
        if r >= p.oh {
            break;
        }
        for (b, mut t) in at(row).into_iter().enumerate() {
            let s = s0 + b;
            if s >= p.ow {
                break;
            }
            if let Some((ea, eb, relu)) = e {
                for v in &mut t {
                    *v = act::affine(*v, ea, eb, relu);
                }
            }
            let at = (r * p.ow + s) * LANES;
            y[at..at + LANES].copy_from_slice(&t);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
mod tests;
