//! Software prefetch: asks the caches for values a pass will read soon, while it works on what
//! it holds. A prefetch reads nothing into the program and never faults, whatever the address:
//! it changes only when the lines arrive, never a value, so the bits stay what they were.
//!
//! A layer's pass over one image reads what an earlier layer stored for the whole batch (its
//! output, kept for the backward), which by then lies in the last-level cache or in memory,
//! and the cores' own prefetchers did not run far enough ahead of the short rows. So the
//! passes that read those values back ask for the next image's as they go: BatchNorm's input
//! gradient as the convolution's backward copies its output gradient (`padded`), the act step
//! recomputed into a convolution's input (`drivers::PreAct`), and BatchNorm's gradient sums
//! (`act::grad_sums`). A step ran 1.04–1.06× as fast (docs/PERFORMANCE.md, fiftieth pass).

/// Asks for the cache lines of `len` values of `T` that start `skip` values past `from` (into
/// the second-level cache): for a pass over one image, the same values of the next image. The
/// address is only formed (wrapping), never dereferenced, so it may lie past `from`'s slice
/// and past its buffer (where a prefetch does nothing).
#[inline(always)]
pub(super) fn lines<T>(from: *const T, skip: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let at = from.wrapping_add(skip).cast::<i8>();
        for off in (0..len * size_of::<T>()).step_by(64) {
            // SAFETY: a prefetch is a hint that reads nothing and never faults (SSE, which
            // every x86-64 CPU has).
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(off));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (from, skip, len);
}

#[cfg(test)]
mod tests {
    use super::lines;

    /// Addresses a read would fault on (past the end of a small buffer by far, near the top of
    /// the address space, the null page) are asked for without a fault, and the buffer keeps
    /// its values: a prefetch only forms the address. Were `lines` to read what it asks for,
    /// this test would crash.
    #[test]
    fn asks_past_any_buffer_without_reading() {
        let v: Vec<f32> = (0..40).map(|i| i as f32 * 0.5).collect();
        let before = v.clone();
        lines(v.as_ptr(), v.len(), v.len());
        lines(v.as_ptr(), 1 << 40, 1000);
        lines(v.as_ptr(), usize::MAX / 8, 64);
        lines(std::ptr::null::<f32>(), 0, 256);
        lines(v.as_ptr(), 0, 0);
        assert_eq!(v, before);
    }
}
