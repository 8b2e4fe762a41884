//! What the net's two paths (the fast engine and the reference on candle's ops) must agree on:
//! BatchNorm's constants and the dropout mask. A leaf, so that neither path imports the other.

/// BatchNorm's momentum for the running statistics (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
/// BatchNorm's epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// The dropout decision for element `index` of a tensor whose mask key is `key`: true keeps
/// it. Two rounds of a 32-bit integer hash (Wellons' `lowbias32`) of the index mixed with the
/// key's halves; the element is dropped when the hash is below `threshold(p)`. Counter-based,
/// so any element's decision is computed independently (in parallel, and again in backward).
#[inline(always)]
pub(crate) fn keep(key: u64, index: u32, threshold: u32) -> bool {
    let h = lowbias32(lowbias32(index ^ key as u32) ^ (key >> 32) as u32);
    h >= threshold
}

/// The hash threshold for drop probability `p`: `round(p·2³²)`, so `P(drop) = threshold/2³²`.
pub(crate) fn threshold(p: f32) -> u32 {
    ((p as f64) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}
