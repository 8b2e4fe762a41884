//! A group's output gradient into its padded layout, BatchNorm's input gradient applied on the
//! way ([`act::bn_input_value`](super::act::bn_input_value)), with explicit vectors: a row in
//! one or two vectors, a partial one masked, the gap before it zeroed with one (masked) store
//! (AVX2 masks only partial vectors: its masked stores are slow on AMD cores). The compiled loop
//! that the portable path and `f64` keep (`drivers::grad_into`, in pieces of 8) spent more of
//! its time finding each row than copying it (docs/PERFORMANCE.md, fortieth pass). The same
//! values in the same places, each through the same subtraction and two multiply-adds: the same
//! bits on every path.

use super::KernelPath;
use super::real::{Real, as_f32, as_f32_mut};

/// BatchNorm's input gradient as a group's backward applies it to its output gradient (here,
/// or into the lanes, [`transpose`](super::transpose)): the group's images' `y`, with the
/// per-channel mean and coefficients ([`act::bn_input_value`](super::act::bn_input_value)).
#[derive(Clone, Copy)]
pub(super) struct BnRows<'a, T> {
    pub(super) y: &'a [T],
    pub(super) mean: &'a [T],
    pub(super) k: &'a [(T, T, T)],
}

/// Where a group's output rows lie in its padded layout: `co` channels `gs` apart, each
/// starting `front` values in; `n` images `plane` apart; `oh` rows of `ow` values, `wp` apart.
/// The rows come from the group's gradient, `n × co × oh × ow` values one after another.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub(super) co: usize,
    pub(super) n: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) wp: usize,
    pub(super) front: usize,
    pub(super) plane: usize,
    pub(super) gs: usize,
}

impl Layout {
    /// Where row `r` of image `b`'s channel `c` starts in the padded layout.
    fn dst(&self, c: usize, b: usize, r: usize) -> usize {
        c * self.gs + self.front + b * self.plane + r * self.wp
    }
}

/// `gpad` from the gradient `g`: each row where [`Layout`] puts it (through BatchNorm's input
/// gradient when `bn` is given), every other value of `gpad` zero. Returns whether it ran: on
/// `path` AVX2 or AVX-512, where the CPU has it, with `f32` only. The caller names the active
/// path, the tests each one (other tests switch the active path while they run).
#[allow(unsafe_code)]
pub(super) fn grad_rows<T: Real>(
    path: KernelPath,
    l: Layout,
    g: &[T],
    bn: Option<BnRows<'_, T>>,
    gpad: &mut [T],
) -> bool {
    if !path.runs_vectors::<T>() {
        return false;
    }
    let size = l.n * l.co * l.oh * l.ow;
    if size == 0 {
        // No rows: every value zero (the kernels below would still walk empty rows).
        gpad.fill(T::ZERO);
        return true;
    }
    assert!(g.len() >= size && bn.is_none_or(|b| b.y.len() >= size && b.k.len() >= l.co));
    assert!(bn.is_none_or(|b| b.mean.len() >= l.co));
    // The rows in memory order, each channel's before the next one's, inside `gpad`.
    let span = (l.n - 1) * l.plane + (l.oh - 1) * l.wp + l.ow;
    assert!(l.ow <= l.wp && (l.oh - 1) * l.wp + l.ow <= l.plane && span <= l.gs);
    assert!(
        l.dst(l.co - 1, l.n - 1, l.oh - 1) + l.ow <= gpad.len(),
        "grad_rows: too short"
    );
    let (g, gpad) = (as_f32(g).expect("f32"), as_f32_mut(gpad).expect("f32"));
    // `T` is `f32`: through `f64` and back is exact.
    let f = |v: T| v.to_f64() as f32;
    let bn = bn.map(|b| {
        let each = (0..l.co).map(|c| [f(b.mean[c]), f(b.k[c].0), f(b.k[c].1), f(b.k[c].2)]);
        (as_f32(b.y).expect("f32"), each.collect::<Vec<_>>())
    });
    let bn = bn.as_ref().map(|(y, k)| (*y, &k[..]));
    // SAFETY: the path's features are the CPU's (`KernelPath::active`); the asserts above
    // bound every row read and written, and the rows lie in memory order (each channel's
    // images and rows after the one before, and its last row before the next channel's front).
    #[cfg(target_arch = "x86_64")]
    match path {
        KernelPath::Avx512 => unsafe { simd::rows512(l, g, bn, gpad) },
        _ => unsafe { simd::rows256(l, g, bn, gpad) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (path, l, g, bn, gpad);
    true
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::*;

    use super::super::ahead;
    use super::super::simd::{lanes, load256, store256};
    use super::Layout;

    /// BatchNorm's `y` and, per channel, `[mean, k1, k2, k3]`.
    type Bn<'a> = Option<(&'a [f32], &'a [[f32; 4]])>;

    /// The body of [`rows512`] and [`rows256`]: `$w` values a vector, loads and stores of a
    /// vector's first `k` lanes (all of them from `$w` on) as `$load(k, from)` and `$store(to,
    /// k, values)`. Each row in vectors of `$w`, the last partial; the gap before it (at most a
    /// vector's values within a plane's rows, more between planes) zeroed first. Each vector
    /// also asks for the next group's values at its place ([`ahead`]): the gradient and `y` of
    /// a layer's backward come back from far in the caches (docs/PERFORMANCE.md, fiftieth
    /// pass).
    macro_rules! rows {
        ($l:ident, $g:ident, $bn:ident, $gpad:ident, $w:literal,
         $load:ident, $store:ident, $set1:ident, $sub:ident, $fmadd:ident) => {{
            let (out, zero) = ($gpad.as_mut_ptr(), $set1(0.0));
            // The group's values: the next group's lie this far on in `g` and `y`.
            let group = $l.n * $l.co * $l.oh * $l.ow;
            let mut at = 0;
            for c in 0..$l.co {
                let [mean, k1, k2, k3] = $bn.map_or([0.0; 4], |(_, k)| k[c]).map(|v| $set1(v));
                for b in 0..$l.n {
                    let mut src = (b * $l.co + c) * $l.oh * $l.ow;
                    for r in 0..$l.oh {
                        let dst = $l.dst(c, b, r);
                        // SAFETY: `at ≤ dst`, and every index is below `g`'s, `y`'s or
                        // `gpad`'s length (the caller's asserts); masked lanes are not touched.
                        unsafe {
                            match dst - at {
                                gap @ 0..=$w => $store(out.add(at), gap, zero),
                                gap => out.add(at).write_bytes(0, gap),
                            }
                            for i in (0..$l.ow).step_by($w) {
                                let k = $l.ow - i;
                                // The next group's values at this place: its gradient and
                                // `y`, on their way while this group's are written.
                                let next = src + i + group;
                                ahead::lines($g.as_ptr(), next, $w);
                                if let Some((y, _)) = $bn {
                                    ahead::lines(y.as_ptr(), next, $w);
                                }
                                let gv = $load(k, $g.as_ptr().add(src + i));
                                let v = match $bn {
                                    None => gv,
                                    Some((y, _)) => {
                                        let yv = $load(k, y.as_ptr().add(src + i));
                                        $fmadd(gv, k1, $fmadd($sub(yv, mean), k2, k3))
                                    }
                                };
                                $store(out.add(dst + i), k, v);
                            }
                        }
                        (at, src) = (dst + $l.ow, src + $l.ow);
                    }
                }
            }
            $gpad[at..].fill(0.0);
        }};
    }

    /// The rows in vectors of 16 (AVX-512's masked loads and stores).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows512(l: Layout, g: &[f32], bn: Bn<'_>, gpad: &mut [f32]) {
        // SAFETY (both): the caller's, as above.
        let load = |k, from| unsafe { _mm512_maskz_loadu_ps(lanes(k), from) };
        let store = |to, k, v| unsafe { _mm512_mask_storeu_ps(to, lanes(k), v) };
        rows!(
            l,
            g,
            bn,
            gpad,
            16,
            load,
            store,
            _mm512_set1_ps,
            _mm512_sub_ps,
            _mm512_fmadd_ps
        );
    }

    /// The rows in vectors of 8 (AVX2): whole vectors plain, partial ones masked (`vmaskmovps`
    /// stores are slow on some cores, so only where a vector is partial).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows256(l: Layout, g: &[f32], bn: Bn<'_>, gpad: &mut [f32]) {
        // SAFETY (both): the caller's, as above.
        let load = |k, from| unsafe { load256(k, from) };
        let store = |to, k, v| unsafe { store256(k, to, v) };
        rows!(
            l,
            g,
            bn,
            gpad,
            8,
            load,
            store,
            _mm256_set1_ps,
            _mm256_sub_ps,
            _mm256_fmadd_ps
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of no values: where a vector path runs, every value of `gpad` is +0 and nothing
    /// else is checked against the layout (here a layout far longer than `gpad`); the portable
    /// path leaves the work to its caller. (The rows themselves: `drivers`' proptest
    /// `padded_gradient_is_the_definition_on_every_path`.)
    #[test]
    fn empty_rows_only_zero_the_buffer() {
        let l = Layout {
            co: 2,
            n: 2,
            oh: 3,
            ow: 0,
            wp: 5,
            front: 7,
            plane: 20,
            gs: 50,
        };
        for path in KernelPath::available() {
            let mut gpad = vec![f32::NAN; 9];
            let ran = grad_rows(path, l, &[], None, &mut gpad);
            assert_eq!(ran, path != KernelPath::Portable, "{path}");
            if ran {
                assert!(gpad.iter().all(|v| v.to_bits() == 0), "{path}");
            }
        }
    }

    /// A last row that ends where `gpad` ends: the rows and the zeros in place, and nothing
    /// written past `gpad` (here the rest of a longer buffer, which must keep its NaNs), for
    /// rows of 1 to 33 values (every length of a last piece on both widths). Two rows, 2 apart,
    /// from 3 on; the values written out by hand.
    #[test]
    fn a_row_at_the_end_writes_nothing_past_it() {
        for ow in 1..=33 {
            let wp = ow + 2;
            let l = Layout {
                co: 1,
                n: 1,
                oh: 2,
                ow,
                wp,
                front: 3,
                plane: wp + ow,
                gs: wp + ow,
            };
            let len = 3 + wp + ow;
            let g: Vec<f32> = (1..=2 * ow).map(|v| v as f32).collect();
            let mut want = vec![0.0f32; len];
            want[3..3 + ow].copy_from_slice(&g[..ow]);
            want[3 + wp..].copy_from_slice(&g[ow..]);
            for path in KernelPath::available() {
                let mut buf = vec![f32::NAN; len + 16];
                let ran = grad_rows(path, l, &g, None, &mut buf[..len]);
                assert_eq!(ran, path != KernelPath::Portable, "{path}");
                if !ran {
                    continue;
                }
                assert_eq!(buf[..len], want[..], "{path}, rows of {ow}");
                let past = buf[len..].iter().all(|v| v.is_nan());
                assert!(past, "{path}, rows of {ow}: written past gpad");
            }
        }
    }
}
