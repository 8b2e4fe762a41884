//! Moving up to 16 images' values into the vector lanes and out of them: the lanes layout
//! ([`lanes`](super::lanes)) holds one position of every image in a vector. With AVX-512 and
//! `f32`, 16 positions at a time: 16 loads, a 16 × 16 transpose in registers, 16 stores; else
//! one value at a time. Only moves (and BatchNorm's input gradient, the same multiply-adds as
//! [`act::bn_input_value`](super::act::bn_input_value)): the same bits on every path.

use super::act;
use super::real::Real;

/// Images a vector holds.
pub const LANES: usize = 16;

/// BatchNorm's input gradient as it is applied on the way in: `y` with the source's indexing,
/// and the channel's mean and coefficients `(k1, k2, k3)`: `g·k1 + ((y − mean)·k2 + k3)`.
#[derive(Clone, Copy)]
pub struct Bn<'a, T> {
    pub y: &'a [T],
    pub mean: T,
    pub k: (T, T, T),
}

/// `dst[to(p) + i] = src[i·stride + p]` (through `bn` when given) for positions `p < n` and
/// images `i < m ≤ LANES`; lanes `i ≥ m` are zero.
pub fn into_lanes<T: Real>(
    src: &[T],
    stride: usize,
    m: usize,
    n: usize,
    to: impl Fn(usize) -> usize,
    bn: Option<Bn<'_, T>>,
    dst: &mut [T],
) {
    assert!(m <= LANES);
    assert!(m == 0 || n == 0 || (m - 1) * stride + n <= src.len());
    assert!(bn.is_none_or(|b| m == 0 || n == 0 || (m - 1) * stride + n <= b.y.len()));
    for p in 0..n {
        assert!(
            to(p) + LANES <= dst.len(),
            "into_lanes: destination too short"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if simd::into_lanes(src, stride, m, n, &to, bn, dst) {
        return;
    }
    for p in 0..n {
        let d = &mut dst[to(p)..][..LANES];
        for (i, v) in d.iter_mut().enumerate() {
            *v = match (i < m, bn) {
                (false, _) => T::ZERO,
                (true, None) => src[i * stride + p],
                (true, Some(b)) => bn_value(src[i * stride + p], b.y[i * stride + p], b),
            };
        }
    }
}

/// `dst[i·stride + p] = src[from(p) + i]` for positions `p < n` and images `i < m ≤ LANES`.
pub fn out_of_lanes<T: Real>(
    src: &[T],
    from: impl Fn(usize) -> usize,
    m: usize,
    n: usize,
    stride: usize,
    dst: &mut [T],
) {
    assert!(m <= LANES);
    assert!(m == 0 || n == 0 || (m - 1) * stride + n <= dst.len());
    for p in 0..n {
        assert!(
            from(p) + LANES <= src.len(),
            "out_of_lanes: source too short"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if simd::out_of_lanes(src, &from, m, n, stride, dst) {
        return;
    }
    for p in 0..n {
        let s = &src[from(p)..][..LANES];
        for (i, &v) in s[..m].iter().enumerate() {
            dst[i * stride + p] = v;
        }
    }
}

/// BatchNorm's input gradient of one value, by its one definition.
#[inline(always)]
fn bn_value<T: Real>(g: T, y: T, b: Bn<'_, T>) -> T {
    act::bn_input_value(g, y, b.mean, b.k)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
mod tests;
