//! The engine's buffer pool: activation buffers kept between passes.

use std::sync::Mutex;

/// Activation (or max-pool arg-max) buffers kept between passes: every pass needs the same
/// sizes again, and reusing them saves zero-filling fresh memory (and the page faults behind
/// it) on every batch.
#[derive(Default)]
pub(crate) struct BufferPool<T>(Mutex<Vec<Vec<T>>>);

impl<T: Copy + Default> BufferPool<T> {
    /// A buffer of `n` values whose contents are unspecified (stale values from an earlier
    /// pass, or zeros): callers overwrite every element before reading any.
    pub(super) fn take(&self, n: usize) -> Vec<T> {
        let mut pool = self.0.lock().expect("pool lock");
        let pick = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut v = match pick {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(n),
        };
        v.resize(n, T::default());
        v.truncate(n);
        v
    }

    /// Returns buffers for reuse (at most a few dozen are kept; empty ones are dropped).
    pub(super) fn give(&self, bufs: impl IntoIterator<Item = Vec<T>>) {
        let mut pool = self.0.lock().expect("pool lock");
        pool.extend(bufs.into_iter().filter(|v| v.capacity() > 0));
        if pool.len() > 64 {
            pool.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
            pool.truncate(64);
        }
    }
}
