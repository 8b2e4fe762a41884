//! The engine's buffer pool: activation buffers kept between passes.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Activation (or max-pool arg-max) buffers kept between passes: every pass needs the same
/// sizes again, and reusing them saves zero-filling fresh memory (and the page faults behind
/// it) on every batch.
#[derive(Default)]
pub(crate) struct BufferPool<T>(Mutex<Vec<Buf<T>>>);

/// A buffer from a [`BufferPool`]: its first `n` values, over a vector whose every value is
/// initialised. Taking it for a shorter length and then a longer one writes nothing: a plain
/// `Vec` cut to the shorter length would be zero-filled back up to the longer (4.6 MB a step).
#[derive(Default)]
pub(crate) struct Buf<T> {
    v: Vec<T>,
    n: usize,
}

impl<T> Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[..self.n]
    }
}

impl<T> DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[..self.n]
    }
}

impl<T> Buf<T> {
    /// Its `n` values as a `Vec`, without a copy (the values past them are dropped).
    pub(super) fn into_vec(self) -> Vec<T> {
        let mut v = self.v;
        v.truncate(self.n);
        v
    }
}

impl<T: Copy + Default> BufferPool<T> {
    /// A buffer of `n` values whose contents are unspecified (stale values from an earlier
    /// pass, or zeros): callers overwrite every element before reading any.
    pub(super) fn take(&self, n: usize) -> Buf<T> {
        let mut pool = self.0.lock().expect("pool lock");
        let pick = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.v.len() >= n)
            .min_by_key(|(_, b)| b.v.len())
            .map(|(i, _)| i);
        let v = match pick {
            Some(i) => pool.swap_remove(i).v,
            None => vec![T::default(); n],
        };
        Buf { v, n }
    }

    /// Returns buffers for reuse (at most a few dozen are kept; empty ones are dropped).
    pub(super) fn give(&self, bufs: impl IntoIterator<Item = Buf<T>>) {
        let mut pool = self.0.lock().expect("pool lock");
        pool.extend(bufs.into_iter().filter(|b| !b.v.is_empty()));
        if pool.len() > 64 {
            pool.sort_by_key(|b| std::cmp::Reverse(b.v.len()));
            pool.truncate(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer taken for a shorter length and then for a longer one comes back whole: the
    /// values past the shorter length are still the ones written before (a `Vec` cut to the
    /// shorter length would have been zero-filled back), and each take has its length.
    #[test]
    fn a_shorter_take_keeps_the_whole_buffer() {
        let pool = BufferPool::<f32>::default();
        let mut a = pool.take(100);
        a.fill(7.0);
        pool.give([a]);
        let b = pool.take(40);
        assert_eq!((b.len(), b[39]), (40, 7.0));
        pool.give([b]);
        let c = pool.take(100);
        assert_eq!(c.len(), 100);
        assert!(c.iter().all(|&v| v == 7.0), "the buffer was refilled");
        // A longer one than any kept is new (zeros), and the smallest that fits is picked.
        let d = pool.take(101);
        assert!(d.len() == 101 && d.iter().all(|&v| v == 0.0));
        pool.give([c, d, Buf::default()]);
        assert_eq!(pool.take(60).len(), 60);
        let kept: Vec<usize> = pool
            .0
            .lock()
            .expect("pool")
            .iter()
            .map(|b| b.v.len())
            .collect();
        assert_eq!(
            kept,
            [101],
            "the 100 was taken for 60, and the empty one dropped"
        );
    }
}
