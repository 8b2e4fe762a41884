//! Dropout masks kept as bits. An act step folded into the convolution after it is computed
//! twice: by that convolution's forward and again by its backward (its output is never
//! stored). The forward hashes each value's counter and records the mask as it applies it
//! ([`Mask::Record`]); the backward reads those bits instead of hashing again
//! ([`Mask::Replay`]). Bit `j % 32` of a plane's word `j / 32` says whether its value `j` is
//! kept ([`keep`]), and the values are [`act::forward`](super::act::forward)'s, bit for bit,
//! on every kernel path.

use super::KernelPath;
use super::act;
use super::real::Real;
use crate::layers::keep;

/// Values per word.
const W: usize = 32;

/// Words of the mask of a plane of `hw` values.
pub fn words(hw: usize) -> usize {
    hw.div_ceil(W)
}

/// Where [`forward`] takes a plane's dropout mask from.
#[derive(Debug)]
pub enum Mask<'a> {
    /// Hashed from the counters starting at `first` ([`keep`]) and written to
    /// `bits[..words(hw)]` (the last word's bits past the plane 0).
    Record {
        key: u64,
        threshold: u32,
        first: u32,
        bits: &'a mut [u32],
    },
    /// Read from what a `Record` wrote.
    Replay(&'a [u32]),
}

fma_dispatch! {
/// [`act::forward`](super::act::forward) of one plane with dropout: `out = relu((a·y +
/// b)·m)`, `m = scale` where the plane's `mask` keeps the value, else 0.
pub fn forward<T: Real>(y: &[T], out: &mut [T], a: T, b: T, scale: T, relu: bool, mask: Mask<'_>) {
    let hw = y.len();
    let n = words(hw);
    let bits_len = match &mask {
        Mask::Record { bits, .. } => bits.len(),
        Mask::Replay(bits) => bits.len(),
    };
    assert!(out.len() == hw && bits_len >= n, "mask: lengths");
    #[cfg(target_arch = "x86_64")]
    let Some(mask) = vectors::forward(y, out, (a, b, scale), relu, mask) else {
        return;
    };
    let word = |mask: &mut Mask<'_>, c: usize| match mask {
        Mask::Record { key, threshold, first, bits } => {
            let values = (c * W)..hw.min((c + 1) * W);
            bits[c] = values.fold(0, |w, j| {
                let kept = keep(*key, first.wrapping_add(j as u32), *threshold);
                w | (u32::from(kept) << (j % W))
            });
            bits[c]
        }
        Mask::Replay(bits) => bits[c],
    };
    let mut mask = mask;
    for (c, (o, y)) in out.chunks_mut(W).zip(y.chunks(W)).enumerate() {
        let w = word(&mut mask, c);
        for (l, (o, &v)) in o.iter_mut().zip(y).enumerate() {
            *o = value(v, a, b, scale, relu, w >> l & 1 != 0);
        }
    }
}
}

/// One value of [`forward`]: [`act::dropped`] with `scale` where it is `kept`, else 0.
#[inline(always)]
fn value<T: Real>(v: T, a: T, b: T, scale: T, relu: bool, kept: bool) -> T {
    act::dropped(v, a, b, if kept { scale } else { T::ZERO }, relu)
}

/// [`forward`] for `f32` in explicit vectors on the AVX2 and AVX-512 paths: the same hash
/// (integers), and per value the same multiply-add, product and select.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vectors {
    use std::arch::x86_64::*;

    use super::{KernelPath, Mask, Real, W, value, words};
    use crate::engine::real::{as_f32, as_f32_mut};
    use crate::layers::keep;

    /// `lowbias32` of every lane ([`keep`]'s hash, twice, with the key's halves).
    macro_rules! hash {
        ($x:expr, $key:expr, $srli:ident, $xor:ident, $mul:ident, $set1:ident) => {{
            let round = |mut x| {
                x = $xor(x, $srli::<16>(x));
                x = $mul(x, $set1(0x7feb_352d_u32 as i32));
                x = $xor(x, $srli::<15>(x));
                x = $mul(x, $set1(0x846c_a68b_u32 as i32));
                $xor(x, $srli::<16>(x))
            };
            let (k0, k1) = ($key as u32 as i32, ($key >> 32) as u32 as i32);
            round($xor(round($xor($x, $set1(k0))), $set1(k1)))
        }};
    }

    /// The mask back when it did not run (not `f32`, or the portable path).
    pub(super) fn forward<'m, T: Real>(
        y: &[T],
        out: &mut [T],
        (a, b, scale): (T, T, T),
        relu: bool,
        mask: Mask<'m>,
    ) -> Option<Mask<'m>> {
        let path = KernelPath::active();
        let (Some(y), Some(out)) = (as_f32(y), as_f32_mut(out)) else {
            return Some(mask);
        };
        let [a, b, scale] = [a, b, scale].map(|v| v.to_f64() as f32);
        // SAFETY: the path is active only on a CPU with its features; the caller checked the
        // lengths.
        unsafe {
            match path {
                KernelPath::Avx512 => forward512(y, out, (a, b, scale), relu, mask),
                KernelPath::Avx2 => forward256(y, out, (a, b, scale), relu, mask),
                KernelPath::Portable => return Some(mask),
            }
        }
        None
    }

    /// # Safety
    /// AVX-512F; `out` as long as `y`, the mask's bits at least `words(y.len())` long.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    unsafe fn forward512(
        y: &[f32],
        out: &mut [f32],
        (a, b, scale): (f32, f32, f32),
        relu: bool,
        mask: Mask<'_>,
    ) {
        let hw = y.len();
        let (va, vb, vs, zero) = (
            _mm512_set1_ps(a),
            _mm512_set1_ps(b),
            _mm512_set1_ps(scale),
            _mm512_setzero_ps(),
        );
        // Chunks of 16 values, two to a word.
        const H: usize = 16;
        let lanes = |c: usize| -> __mmask16 {
            match hw - c * H {
                r if r >= H => !0,
                r => (1 << r) - 1,
            }
        };
        let (from, to) = (y.as_ptr(), out.as_mut_ptr());
        // Chunk `c`'s 16 values with mask word `word` (masked loads and stores only for a last
        // partial chunk: they are slow on some cores).
        let apply = |c: usize, word: __mmask16| {
            let part = lanes(c);
            // SAFETY (the loads and the stores): only the lanes within `y` and `out`.
            let v = match part {
                0xffff => unsafe { _mm512_loadu_ps(from.add(c * H)) },
                _ => unsafe { _mm512_maskz_loadu_ps(part, from.add(c * H)) },
            };
            let z = _mm512_mul_ps(_mm512_fmadd_ps(v, va, vb), _mm512_maskz_mov_ps(word, vs));
            // max(0, z) is `0 > z ? 0 : z`: z where it is NaN or −0, as the select keeps them.
            let z = match relu {
                true => _mm512_max_ps(zero, z),
                false => z,
            };
            match part {
                0xffff => unsafe { _mm512_storeu_ps(to.add(c * H), z) },
                _ => unsafe { _mm512_mask_storeu_ps(to.add(c * H), part, z) },
            }
        };
        match mask {
            Mask::Record {
                key,
                threshold,
                first,
                bits,
            } => {
                let steps = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let (t, next) = (
                    _mm512_set1_epi32(threshold as i32),
                    _mm512_set1_epi32(H as i32),
                );
                let mut x = _mm512_add_epi32(_mm512_set1_epi32(first as i32), steps);
                let (chunks, whole) = (hw.div_ceil(H), hw / H);
                // The chunks' masks, two to a word.
                let mut chunk = |c: usize| {
                    let h = hash!(
                        x,
                        key,
                        _mm512_srli_epi32,
                        _mm512_xor_si512,
                        _mm512_mullo_epi32,
                        _mm512_set1_epi32
                    );
                    x = _mm512_add_epi32(x, next);
                    let k = match c < whole {
                        true => _mm512_cmpge_epu32_mask(h, t),
                        false => _mm512_cmpge_epu32_mask(h, t) & lanes(c),
                    };
                    apply(c, k);
                    u32::from(k)
                };
                for (w, word) in bits[..words(hw)].iter_mut().enumerate() {
                    let low = chunk(2 * w);
                    *word = match 2 * w + 1 < chunks {
                        true => low | chunk(2 * w + 1) << H,
                        false => low,
                    };
                }
            }
            Mask::Replay(bits) => {
                for c in 0..hw.div_ceil(H) {
                    apply(c, (bits[c / 2] >> (H * (c % 2))) as __mmask16);
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA; `out` as long as `y`, the mask's bits at least `words(y.len())` long.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward256(
        y: &[f32],
        out: &mut [f32],
        (a, b, scale): (f32, f32, f32),
        relu: bool,
        mask: Mask<'_>,
    ) {
        let (va, vb, vs, zero) = (
            _mm256_set1_ps(a),
            _mm256_set1_ps(b),
            _mm256_set1_ps(scale),
            _mm256_setzero_ps(),
        );
        let (from, to) = (y.as_ptr(), out.as_mut_ptr());
        // Values `8k..8k + 8`, kept where `keep`'s lanes are all ones.
        let apply = |k: usize, keep: __m256| {
            // SAFETY (the load and the store): `8k + 8 ≤ len`.
            let v = unsafe { _mm256_loadu_ps(from.add(8 * k)) };
            let z = _mm256_mul_ps(_mm256_fmadd_ps(v, va, vb), _mm256_and_ps(keep, vs));
            let z = match relu {
                true => _mm256_max_ps(zero, z),
                false => z,
            };
            unsafe { _mm256_storeu_ps(to.add(8 * k), z) };
        };
        let (hw, whole) = (y.len(), y.len() / 8);
        match mask {
            Mask::Record {
                key,
                threshold,
                first,
                bits,
            } => {
                let bits = &mut bits[..words(hw)];
                bits.fill(0);
                let steps = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let t = _mm256_set1_epi32(threshold as i32);
                for k in 0..whole {
                    let at = first.wrapping_add((8 * k) as u32) as i32;
                    let x = _mm256_add_epi32(_mm256_set1_epi32(at), steps);
                    let h = hash!(
                        x,
                        key,
                        _mm256_srli_epi32,
                        _mm256_xor_si256,
                        _mm256_mullo_epi32,
                        _mm256_set1_epi32
                    );
                    // h ≥ t, unsigned: max(h, t) = h.
                    let ge = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(h, t), h));
                    bits[k / 4] |= (_mm256_movemask_ps(ge) as u32) << (8 * (k % 4));
                    apply(k, ge);
                }
                for j in 8 * whole..hw {
                    let kept = keep(key, first.wrapping_add(j as u32), threshold);
                    bits[j / W] |= u32::from(kept) << (j % W);
                    out[j] = value(y[j], a, b, scale, relu, kept);
                }
            }
            Mask::Replay(bits) => {
                let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
                for k in 0..whole {
                    let byte = (bits[k / 4] >> (8 * (k % 4))) as i32 & 0xff;
                    let set = _mm256_and_si256(_mm256_set1_epi32(byte), lane_bits);
                    apply(k, _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bits)));
                }
                for j in 8 * whole..hw {
                    out[j] = value(y[j], a, b, scale, relu, bits[j / W] >> (j % W) & 1 != 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::act;
    use proptest::prelude::*;

    proptest! {
        /// On every kernel path: the plane through a recorded mask, and through the same mask
        /// replayed, is [`act::forward`]'s with the hash, bit for bit (values drawn with signed
        /// zeros, infinities and NaN), and the recorded bits are [`keep`] of each counter (0
        /// past the plane; no word after the plane's written).
        #[test]
        fn masked_forward_is_the_hashed_one(
            pick in proptest::collection::vec((0usize..8, -4.0f32..4.0), 1..70),
            first in 0u32..u32::MAX - 128,
            key in any::<u64>(),
            threshold in prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
            (a, b) in (-2.0f32..2.0, -1.0f32..1.0),
            relu in any::<bool>(),
        ) {
            let odd = [0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
            let y: Vec<f32> = pick.iter().map(|&(k, v)| odd.get(k).copied().unwrap_or(v)).collect();
            let hw = y.len();
            let drop = act::Drop { key, threshold, scale: 1.25f32 };
            let runs = crate::engine::on_every_path(|| {
                let mut want = vec![0f32; hw];
                act::forward(&y, &mut want, 1, hw, &[a], &[b], Some(drop), relu, first);
                let mut words_of = vec![u32::MAX; words(hw) + 1];
                let mut got = vec![0f32; hw];
                let record = Mask::Record { key, threshold, first, bits: &mut words_of };
                forward(&y, &mut got, a, b, drop.scale, relu, record);
                let mut again = vec![0f32; hw];
                forward(&y, &mut again, a, b, drop.scale, relu, Mask::Replay(&words_of));
                (want, words_of, got, again)
            });
            for (path, (want, words_of, got, again)) in runs {
                for j in 0..words(hw) * W {
                    let kept = j < hw && keep(key, first.wrapping_add(j as u32), threshold);
                    prop_assert_eq!(words_of[j / W] >> (j % W) & 1 != 0, kept, "bit {} ({})", j, path);
                }
                prop_assert_eq!(words_of[words(hw)], u32::MAX, "a word past the plane written ({})", path);
                for j in 0..hw {
                    prop_assert_eq!(got[j].to_bits(), want[j].to_bits(), "value {} ({})", j, path);
                    prop_assert_eq!(again[j].to_bits(), want[j].to_bits(), "replayed {} ({})", j, path);
                }
            }
        }
    }
}
