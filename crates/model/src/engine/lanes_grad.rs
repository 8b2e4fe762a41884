//! The weight gradient with the images in the vector lanes (numerics version 4): each
//! (output, input channel, tap) sums its products lane by lane over the positions kept, one
//! image per lane, then folds its [`LANES`] lanes.
//!
//! Each lane sums from zero, one rounding per multiply-add, in the order of the places listed;
//! the lanes fold as a tree, `(l, l + 8)`, then `(l, l + 4)`, `(l, l + 2)` and `(l, l + 1)`.
//! The explicit-vector kernels for `f32` keep a lane's sum in one vector lane (AVX-512: all
//! [`LANES`] in a zmm, folded there with the same adds; AVX2: the low and high 8 lanes in two
//! sweeps, folded by the portable code): the same bits everywhere.

use super::real::Real;

/// Images per vector: lanes of each accumulator.
pub const LANES: usize = 16;

fma_dispatch! {
/// For `k = i·nt + t` (`nt = off.len()` taps): `gw[o·nk + k] +=` the fold of `Σ_{(a, b) ∈
/// places} g[o·gs + b + l] · x[i·xs + a + off[t] + l]` over lanes `l < LANES`.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad_at<T: Real>(
    g: &[T],
    gs: usize,
    no: usize,
    x: &[T],
    xs: usize,
    ni: usize,
    off: &[usize],
    places: &[(usize, usize)],
    gw: &mut [T],
) {
    let runs: Vec<usize> = (0..ni)
        .flat_map(|i| off.iter().map(move |d| i * xs + d))
        .collect();
    let nk = runs.len();
    assert!(gw.len() >= no * nk, "weight_grad_at: gradient too short");
    let (ra, rb) = places.iter().fold((0, 0), |(a, b), &(pa, pb)| (a.max(pa), b.max(pb)));
    let top = runs.iter().max().copied().unwrap_or(0);
    assert!(places.is_empty() || nk == 0 || top + ra + LANES <= x.len(), "weight_grad_at: input too short");
    assert!(places.is_empty() || no == 0 || (no - 1) * gs + rb + LANES <= g.len(), "weight_grad_at: output gradient too short");
    #[cfg(target_arch = "x86_64")]
    if simd::weight_grad(g, gs, no, x, &runs, places, gw) {
        return;
    }
    for o in 0..no {
        for (k, &r) in runs.iter().enumerate() {
            let mut a = [T::ZERO; LANES];
            for &(pa, pb) in places {
                let (gv, xv) = (&g[o * gs + pb..][..LANES], &x[r + pa..][..LANES]);
                for l in 0..LANES {
                    a[l] = gv[l].mul_add(xv[l], a[l]);
                }
            }
            gw[o * nk + k] += fold(&a);
        }
    }
}
}

/// The lanes of one sum folded as a tree: `(l, l + 8)`, `(l, l + 4)`, `(l, l + 2)`, `(l, l + 1)`.
#[inline(always)]
pub(super) fn fold<T: Real>(a: &[T; LANES]) -> T {
    let s8: [T; 8] = std::array::from_fn(|l| a[l] + a[l + 8]);
    let s4: [T; 4] = std::array::from_fn(|l| s8[l] + s8[l + 4]);
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
mod tests;
