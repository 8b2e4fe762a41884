//! BatchNorm → dropout → ReLU as one pass over the data, forward and backward.
//!
//! Forward: `z = a_c·y + b_c` (BatchNorm folded into a per-channel affine map), then
//! `z·m` with the dropout multiplier `m ∈ {0, 1/(1−p)}`, then `max(z, 0)`. Backward needs no
//! stored mask: after a ReLU, `out > 0` exactly where the mask kept a positive value, so
//! `∂out/∂z = m·[out > 0]` is read off the output; without a ReLU the mask is recomputed from
//! its key (see [`keep`]).

use super::ahead;
use super::real::Real;
use crate::layers::keep;

/// Dropout of one forward pass: the key, the hash threshold and the kept values' scale.
#[derive(Debug, Clone, Copy)]
pub struct Drop<T> {
    /// Mask key.
    pub key: u64,
    /// [`crate::layers::threshold`] of `p`.
    pub threshold: u32,
    /// `1/(1−p)`.
    pub scale: T,
}

fma_dispatch! {
/// Per-channel `(Σy, Σy²)` of one image's `c` planes of `hw` values, in f64 (lanes of `T`
/// folded in order).
pub fn plane_sums<T: Real>(y: &[T], c: usize, hw: usize, out: &mut [(f64, f64)]) {
    let mut ch = 0;
    while ch + 4 <= c {
        sums::<T, 4>(planes(y, ch, hw), None, &mut out[ch..]);
        ch += 4;
    }
    for ch in ch..c {
        sums::<T, 1>(planes(y, ch, hw), None, &mut out[ch..]);
    }
}
}

/// Lanes per channel of [`plane_sums`] and [`grad_sums`].
const L: usize = 8;

/// Channels `ch..ch + G` of planes of `hw` values.
#[inline(always)]
fn planes<T, const G: usize>(v: &[T], ch: usize, hw: usize) -> [&[T]; G] {
    std::array::from_fn(|g| &v[(ch + g) * hw..][..hw])
}

/// `G` channels' `y` and mean, for the second sum's `x·(y − mean)`.
type Centre<'a, T, const G: usize> = ([&'a [T]; G], [T; G]);

/// Each of `G` channels' `L` lane accumulators of `Σx` and `Σx·x` (or `Σx·(y − mean)`).
type Lanes<T, const G: usize> = ([[T; L]; G], [[T; L]; G]);

/// `(Σx, Σx²)`, or with `centre` `(Σx, Σx·(y − mean))`, of each of `G` channels `xs` into
/// `out[..G]`. Each channel's `L` lanes sum its chunks in order and are folded left to right in
/// f64, the remainder added after: the same bits whatever `G`. Several channels at once are
/// independent chains, so their adds and multiply-adds overlap instead of each waiting for the
/// one before (one channel alone is bound by their latency).
#[inline(always)]
fn sums<T: Real, const G: usize>(
    xs: [&[T]; G],
    centre: Option<Centre<'_, T, G>>,
    out: &mut [(f64, f64)],
) {
    let n = xs[0].len() / L;
    let (s1, s2) = lane_sums(xs, centre, n);
    let by = |g: usize, k: usize, v: T| match centre {
        Some((ys, m)) => ys[g][k] - m[g],
        None => v,
    };
    for (g, x) in xs.iter().enumerate() {
        let (mut t1, mut t2) = (0.0, 0.0);
        for j in 0..L {
            t1 += s1[g][j].to_f64();
            t2 += s2[g][j].to_f64();
        }
        for (k, &v) in x.iter().enumerate().skip(n * L) {
            t1 += v.to_f64();
            t2 += v.to_f64() * by(g, k, v).to_f64();
        }
        out[g] = (t1, t2);
    }
}

/// [`sums`]' lane accumulators over the first `n` chunks.
#[inline(always)]
fn lane_sums<T: Real, const G: usize>(
    xs: [&[T]; G],
    centre: Option<Centre<'_, T, G>>,
    n: usize,
) -> Lanes<T, G> {
    #[cfg(target_arch = "x86_64")]
    if let Some(lanes) = vectors::lane_sums(xs, centre, n) {
        return lanes;
    }
    let (mut s1, mut s2) = ([[T::ZERO; L]; G], [[T::ZERO; L]; G]);
    for i in 0..n {
        for (g, x) in xs.iter().enumerate() {
            let xv: &[T; L] = x[i * L..][..L].try_into().expect("a chunk");
            let by: [T; L] = match centre {
                Some((ys, m)) => std::array::from_fn(|j| ys[g][i * L + j] - m[g]),
                None => *xv,
            };
            for j in 0..L {
                s1[g][j] += xv[j];
                s2[g][j] = xv[j].mul_add(by[j], s2[g][j]);
            }
        }
    }
    (s1, s2)
}

/// [`lane_sums`] for `f32` with explicit 256-bit vectors on the AVX2 and AVX-512 paths: the
/// compiler's own code for several channels at once moved lanes between registers on the
/// AVX-512 path. Each lane is the same add and multiply-add (and `y − mean`) in the same order,
/// so the same bits.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vectors {
    use std::arch::x86_64::*;

    use super::{Centre, L, Lanes};
    use crate::engine::KernelPath;
    use crate::engine::real::{Real, as_f32};

    /// `None` where it does not apply (not `f32`, or the portable path).
    #[inline(always)]
    pub(super) fn lane_sums<T: Real, const G: usize>(
        xs: [&[T]; G],
        centre: Option<Centre<'_, T, G>>,
        n: usize,
    ) -> Option<Lanes<T, G>> {
        if KernelPath::active() == KernelPath::Portable {
            return None;
        }
        let xs = f32s(xs)?;
        let centre = match centre {
            Some((ys, m)) => Some((f32s(ys)?, m.map(|v| v.to_f64() as f32))),
            None => None,
        };
        for g in 0..G {
            assert!(xs[g].len() >= n * L && centre.is_none_or(|(ys, _)| ys[g].len() >= n * L));
        }
        // SAFETY: the lengths are checked above, and both paths' CPUs have AVX2 and FMA.
        let (s1, s2) = unsafe { lanes256(xs, centre, n) };
        let back = |s: [[f32; L]; G]| s.map(|a| a.map(|v| T::from_f64(v as f64)));
        Some((back(s1), back(s2)))
    }

    /// The slices as `f32` when `T` is.
    fn f32s<T: Real, const G: usize>(v: [&[T]; G]) -> Option<[&[f32]; G]> {
        let v = v.map(as_f32);
        v.iter()
            .all(Option::is_some)
            .then(|| v.map(|s| s.expect("checked")))
    }

    /// # Safety
    /// Every `xs[g]` (and `ys[g]`) holds `n·L` values; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes256<const G: usize>(
        xs: [&[f32]; G],
        centre: Option<([&[f32]; G], [f32; G])>,
        n: usize,
    ) -> ([[f32; L]; G], [[f32; L]; G]) {
        let (mut s1, mut s2) = ([_mm256_setzero_ps(); G], [_mm256_setzero_ps(); G]);
        // SAFETY (every load): `i < n`, within the lengths the caller checked.
        let load = |v: &[f32], i: usize| unsafe { _mm256_loadu_ps(v.as_ptr().add(i * L)) };
        match centre {
            None => {
                for i in 0..n {
                    for g in 0..G {
                        let x = load(xs[g], i);
                        s1[g] = _mm256_add_ps(s1[g], x);
                        s2[g] = _mm256_fmadd_ps(x, x, s2[g]);
                    }
                }
            }
            Some((ys, m)) => {
                let m = m.map(|v| _mm256_set1_ps(v));
                for i in 0..n {
                    for g in 0..G {
                        let x = load(xs[g], i);
                        let by = _mm256_sub_ps(load(ys[g], i), m[g]);
                        s1[g] = _mm256_add_ps(s1[g], x);
                        s2[g] = _mm256_fmadd_ps(x, by, s2[g]);
                    }
                }
            }
        }
        let out = |v: [__m256; G]| {
            v.map(|r| {
                let mut a = [0f32; L];
                // SAFETY: `a` holds L = 8 floats.
                unsafe { _mm256_storeu_ps(a.as_mut_ptr(), r) };
                a
            })
        };
        (out(s1), out(s2))
    }
}

fma_dispatch! {
/// Forward of one image: `out = relu(drop(a_c·y + b_c))`; `base` is the image's first element
/// index in the batch tensor (the dropout counter).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    y: &[T],
    out: &mut [T],
    c: usize,
    hw: usize,
    a: &[T],
    b: &[T],
    drop: Option<Drop<T>>,
    relu: bool,
    base: u32,
) {
    for ch in 0..c {
        let (ys, os) = (&y[ch * hw..(ch + 1) * hw], &mut out[ch * hw..(ch + 1) * hw]);
        let (ac, bc) = (a[ch], b[ch]);
        let first = base + (ch * hw) as u32;
        // ReLU as a select in the same pass ([`affine`]); a separate pass compiles to slow
        // masked stores.
        match drop {
            Some(d) => {
                for (j, (o, &v)) in os.iter_mut().zip(ys).enumerate() {
                    let m = if keep(d.key, first + j as u32, d.threshold) {
                        d.scale
                    } else {
                        T::ZERO
                    };
                    *o = dropped(v, ac, bc, m, relu);
                }
            }
            None => {
                for (o, &v) in os.iter_mut().zip(ys) {
                    *o = affine(v, ac, bc, relu);
                }
            }
        }
    }
}
}

/// One value of [`forward`] without dropout: `relu(a·y + b)`, the multiply-add rounded once and
/// the ReLU a select (`z < 0 → 0`, so NaN and −0 pass through as PyTorch's ReLU passes them).
/// The one definition that [`forward`], [`forward_wide`] and the convolutions' act step before
/// their stores ([`Epilogue`](super::places::Epilogue): `conv`'s and `tiles`' portable code)
/// use, so their bits agree.
#[inline(always)]
pub fn affine<T: Real>(y: T, a: T, b: T, relu: bool) -> T {
    let z = y.mul_add(a, b);
    if relu && z < T::ZERO { T::ZERO } else { z }
}

/// One value of [`forward`] with dropout: `relu((a·y + b)·m)`, `m` the dropout multiplier. The
/// ReLU is a select (`z < 0 → 0`), so NaN and −0 pass through. The one definition that
/// [`forward`] and the recorded masks' forward (`mask::forward`) both use, so their bits agree.
#[inline(always)]
pub fn dropped<T: Real>(y: T, a: T, b: T, m: T, relu: bool) -> T {
    let z = y.mul_add(a, b) * m;
    if relu && z < T::ZERO { T::ZERO } else { z }
}

fma_dispatch! {
/// [`forward`] without dropout (inference) on rows read from a convolution's wide output:
/// image `i`'s channel `ch`, row `r` starts at `src[ch·lw + i·plane + r·wp]` and its `len`
/// values go to `out` densely (images, channels, rows in order): the crop and the act step in
/// one pass, each value through the same operations as [`forward`]'s.
#[allow(clippy::too_many_arguments)]
pub fn forward_wide<T: Real>(
    src: &[T],
    out: &mut [T],
    n: usize,
    c: usize,
    rows: usize,
    len: usize,
    lw: usize,
    plane: usize,
    wp: usize,
    a: &[T],
    b: &[T],
    relu: bool,
) {
    let mut dst = out.chunks_exact_mut(len);
    for i in 0..n {
        for ch in 0..c {
            let (ac, bc) = (a[ch], b[ch]);
            for r in 0..rows {
                let at = ch * lw + i * plane + r * wp;
                let o = dst.next().expect("an output row");
                for (o, &v) in o.iter_mut().zip(&src[at..at + len]) {
                    *o = affine(v, ac, bc, relu);
                }
            }
        }
    }
}
}

fma_dispatch! {
/// `∂L/∂z` of one image into `gz`, from the output gradient `g` (or, when `None`, the output
/// gradient already in `gz`, replaced in place) and the forward's output.
#[allow(clippy::too_many_arguments)]
pub fn grad_z<T: Real>(
    g: Option<&[T]>,
    out: &[T],
    gz: &mut [T],
    drop: Option<Drop<T>>,
    relu: bool,
    base: u32,
) {
    match g {
        Some(g) => grad_z_pairs(gz.iter_mut().zip(g.iter().copied()), out, drop, relu, base),
        None => {
            let pairs = gz.iter_mut().map(|z| {
                let v = *z;
                (z, v)
            });
            grad_z_pairs(pairs, out, drop, relu, base)
        }
    }
}
}

/// [`grad_z`] over `(where ∂L/∂z goes, ∂L/∂out)` pairs.
#[inline(always)]
fn grad_z_pairs<'a, T: Real + 'a>(
    pairs: impl Iterator<Item = (&'a mut T, T)>,
    out: &[T],
    drop: Option<Drop<T>>,
    relu: bool,
    base: u32,
) {
    // The case chosen outside each loop, so that every loop is straight-line code.
    match (drop, relu) {
        (Some(d), true) => {
            for ((z, gv), &o) in pairs.zip(out) {
                *z = grad_z_one(gv, o, Some(d), true, 0);
            }
        }
        (None, true) => {
            for ((z, gv), &o) in pairs.zip(out) {
                *z = grad_z_one(gv, o, None, true, 0);
            }
        }
        (Some(d), false) => {
            for (j, (z, gv)) in pairs.enumerate() {
                *z = grad_z_one(gv, T::ZERO, Some(d), false, base + j as u32);
            }
        }
        (None, false) => {
            for (z, gv) in pairs {
                *z = grad_z_one(gv, T::ZERO, None, false, 0);
            }
        }
    }
}

/// `∂L/∂z` of one value (what [`grad_z`] computes for each): from the output gradient `gv`
/// and the forward's output `out` (read only with a ReLU), at dropout counter `index` (read
/// only with dropout and no ReLU, where the output cannot tell the mask).
#[inline(always)]
pub fn grad_z_one<T: Real>(gv: T, out: T, drop: Option<Drop<T>>, relu: bool, index: u32) -> T {
    match (drop, relu) {
        (Some(d), true) => {
            if out > T::ZERO {
                gv * d.scale
            } else {
                T::ZERO
            }
        }
        (None, true) => {
            if out > T::ZERO {
                gv
            } else {
                T::ZERO
            }
        }
        (Some(d), false) => {
            if keep(d.key, index, d.threshold) {
                gv * d.scale
            } else {
                T::ZERO
            }
        }
        (None, false) => gv,
    }
}

fma_dispatch! {
/// Per-channel `(Σgz, Σgz·(y−mean))` of one image, in f64; asks for the next image's `y` as
/// it goes ([`ahead`]).
pub fn grad_sums<T: Real>(gz: &[T], y: &[T], c: usize, hw: usize, mean: &[T], out: &mut [(f64, f64)]) {
    let mut ch = 0;
    while ch + 4 <= c {
        ahead::lines(y.as_ptr(), (c + ch) * hw, 4 * hw);
        let centre = (planes(y, ch, hw), std::array::from_fn(|g| mean[ch + g]));
        sums::<T, 4>(planes(gz, ch, hw), Some(centre), &mut out[ch..]);
        ch += 4;
    }
    for ch in ch..c {
        ahead::lines(y.as_ptr(), (c + ch) * hw, hw);
        let centre = (planes(y, ch, hw), [mean[ch]]);
        sums::<T, 1>(planes(gz, ch, hw), Some(centre), &mut out[ch..]);
    }
}
}

/// BatchNorm's input gradient of one value, `k1·g + (k2·(y − mean) + k3)` as two multiply-adds:
/// the one definition that [`bn_input_grad`] and the convolution's backward
/// (`drivers::grad_into`, which applies it as it copies) both use, so their bits agree.
#[inline(always)]
pub fn bn_input_value<T: Real>(g: T, y: T, mean: T, (k1, k2, k3): (T, T, T)) -> T {
    g.mul_add(k1, (y - mean).mul_add(k2, k3))
}

fma_dispatch! {
/// BatchNorm input gradient of one image in place of `gz`:
/// `gy = k1_c·gz + k2_c·(y − mean_c) + k3_c` ([`bn_input_value`]).
pub fn bn_input_grad<T: Real>(
    gz: &mut [T],
    y: &[T],
    c: usize,
    hw: usize,
    mean: &[T],
    k: &[(T, T, T)],
) {
    for ch in 0..c {
        for (g, &v) in gz[ch * hw..(ch + 1) * hw].iter_mut().zip(&y[ch * hw..(ch + 1) * hw]) {
            *g = bn_input_value(*g, v, mean[ch], k[ch]);
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One channel's `(Σx, Σx·f(k))` as [`plane_sums`] and [`grad_sums`] define it, written
    /// out independently: 8 lanes each summing its values in order (`+` and a multiply-add in
    /// `f32`), the lanes folded left to right in f64, then the remainder added in f64.
    fn one_channel(x: &[f32], f: impl Fn(usize) -> f32) -> (f64, f64) {
        let n = x.len() / 8 * 8;
        let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
        for k in 0..n {
            s1[k % 8] += x[k];
            s2[k % 8] = x[k].mul_add(f(k), s2[k % 8]);
        }
        let mut t = s1
            .iter()
            .zip(&s2)
            .fold((0.0, 0.0), |(a, b), (&p, &q)| (a + p as f64, b + q as f64));
        for (k, &v) in x.iter().enumerate().skip(n) {
            t = (t.0 + v as f64, t.1 + v as f64 * f(k) as f64);
        }
        t
    }

    proptest! {
        /// [`plane_sums`] and [`grad_sums`] give every channel the bits of [`one_channel`],
        /// whatever the channel count (four channels at a time, then one at a time).
        #[test]
        fn sums_are_each_channels_own(
            c in 1usize..10,
            hw in 1usize..40,
            v in proptest::collection::vec(-3.0f32..3.0, 2 * 9 * 40),
            mean in proptest::collection::vec(-1.0f32..1.0, 9),
        ) {
            let (x, y) = (&v[..c * hw], &v[9 * 40..][..c * hw]);
            // Every kernel path of this CPU (the vectors of `f32` on the AVX paths).
            let runs = crate::engine::on_every_path(|| {
                let (mut squares, mut centred) = (vec![(0.0, 0.0); c], vec![(0.0, 0.0); c]);
                plane_sums(x, c, hw, &mut squares);
                grad_sums(x, y, c, hw, &mean, &mut centred);
                (squares, centred)
            });
            for (path, (squares, centred)) in runs {
                for ch in 0..c {
                    let (xc, yc) = (&x[ch * hw..][..hw], &y[ch * hw..][..hw]);
                    let bits = |t: (f64, f64)| (t.0.to_bits(), t.1.to_bits());
                    let want = one_channel(xc, |k| xc[k]);
                    prop_assert_eq!(bits(squares[ch]), bits(want), "Σx² of channel {} ({})", ch, path);
                    let want = one_channel(xc, |k| yc[k] - mean[ch]);
                    prop_assert_eq!(bits(centred[ch]), bits(want), "Σg(y−m) of channel {} ({})", ch, path);
                }
            }
        }

        /// [`grad_z_one`] gives each value's bits as [`grad_z`] does over the whole run, in all
        /// four dropout/ReLU cases (outputs drawn with signed zeros and NaN; the dropout
        /// counters from `base`).
        #[test]
        fn grad_z_one_is_grad_z(
            g in proptest::collection::vec(-2.0f32..2.0, 1..40),
            pick in proptest::collection::vec(0usize..5, 40),
            base in 0u32..1000,
            key in any::<u64>(),
            case in 0usize..4,
        ) {
            let outs = [0.0f32, -0.0, 1.5, -1.5, f32::NAN];
            let out: Vec<f32> = g.iter().zip(&pick).map(|(_, &k)| outs[k]).collect();
            let drop = (case < 2).then_some(Drop { key, threshold: 1 << 31, scale: 2.0 });
            let relu = case % 2 == 0;
            let mut gz = vec![0f32; g.len()];
            grad_z(Some(&g), &out, &mut gz, drop, relu, base);
            for (j, (&gv, &o)) in g.iter().zip(&out).enumerate() {
                let one = grad_z_one(gv, o, drop, relu, base + j as u32);
                prop_assert_eq!(one.to_bits(), gz[j].to_bits(), "value {}", j);
            }
        }
    }
}
