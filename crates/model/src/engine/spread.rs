//! A layer's images shared out among the pool's threads, each thread keeping its own share.
//!
//! rayon's parallel iterators split a layer's images into a tree of halves: the thread that
//! stole a half splits it again, and waits inside it for any piece the other thread took back.
//! A thread waiting there soon sleeps, and the layer then ends only once the operating system
//! has woken it. [`each`] instead runs one worker a thread. The items are cut into one share
//! per worker, in order, and worker `j` takes its own share's items from the front, one at a
//! time, then the other shares' from their backs, so that no thread waits for more than the
//! last item. There is one join, and a worker that finds nothing left returns at once.
//!
//! Worker 0 runs on the calling thread, so in every layer of a pass, forward and backward, the
//! same thread computes the same images (but those taken from another share at the end): each
//! image's planes stay in the caches of the core that wrote them. That is what a virtual
//! machine whose two cores lie on different dies needs, where a line written by one core and
//! read by the other crosses between their caches: with images taken from a shared counter,
//! a step there took 1.2–1.3× its time on one die (docs/PERFORMANCE.md, forty-eighth pass).
//! Which thread runs an item never changes what it computes, and the results come back in the
//! items' order. Every parallel loop of the engine, in training and in inference, runs through
//! [`each`], down to the small layers' (a global average pool, BatchNorm's input gradient
//! after the last convolution), whose images then stay on the core that computed them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// [`each`] without a worker's state: `f(k, item)` for every item `k`, the results in the
/// items' order.
pub(super) fn all<I, R>(items: Vec<I>, f: impl Fn(usize, I) -> R + Sync) -> Vec<R>
where
    I: Send,
    R: Send,
{
    each(items, || (), |_, k, item| f(k, item))
}

/// `f(state, k, item)` for every item `k`, on every thread of the current rayon pool, each
/// worker taking its own share's items and then the others' left over ([`Shares`]), with its
/// own `state` (made by `init` when it takes its first item); the results in the items' order.
pub(super) fn each<I, S, R>(
    items: Vec<I>,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, I) -> R + Sync,
) -> Vec<R>
where
    I: Send,
    R: Send,
{
    let n = items.len();
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let workers = rayon::current_num_threads().clamp(1, n.max(1));
    let shares = Shares::new(n, workers);
    let work = |me: usize| {
        let (mut state, mut got) = (None, vec![]);
        while let Some(k) = shares.next(me) {
            let item = slots[k]
                .lock()
                .expect("an item's lock")
                .take()
                .expect("each item is taken once");
            got.push((k, f(state.get_or_insert_with(&init), k, item)));
        }
        got
    };
    let mut parts: Vec<Vec<(usize, R)>> = (0..workers).map(|_| vec![]).collect();
    rayon::scope(|s| {
        let (mine, theirs) = parts.split_first_mut().expect("one worker at least");
        let work = &work;
        for (j, part) in theirs.iter_mut().enumerate() {
            s.spawn(move |_| *part = work(j + 1));
        }
        *mine = work(0);
    });
    let mut all: Vec<(usize, R)> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|&(k, _)| k);
    debug_assert!(all.iter().enumerate().all(|(i, &(k, _))| i == k));
    all.into_iter().map(|(_, r)| r).collect()
}

/// `n` items cut into one share per worker, in order (share `j` from `⌊n·j/w⌋` to
/// `⌊n·(j+1)/w⌋`), each share's items not yet taken counted by its own cache line.
struct Shares(Vec<Share>);

/// The items of one share not yet taken, `front..back`, packed into one word so that either
/// end is taken by one compare-and-swap; a line of its own, so that the owner's takes do not
/// pull the line to the other core before the other comes for what is left.
#[repr(align(64))]
struct Share(AtomicU64);

impl Shares {
    fn new(n: usize, workers: usize) -> Self {
        assert!(
            workers > 0 && n <= u32::MAX as usize,
            "shares: {n} items, {workers} workers"
        );
        let cut = |j: usize| n * j / workers;
        Shares(
            (0..workers)
                .map(|j| Share(AtomicU64::new(pack(cut(j), cut(j + 1)))))
                .collect(),
        )
    }

    /// The next item for worker `me`: the first left of its own share, else the last left of
    /// the shares after it in turn; `None` once every item is taken.
    fn next(&self, me: usize) -> Option<usize> {
        let w = self.0.len();
        self.take(me % w, End::Front)
            .or_else(|| (1..w).find_map(|d| self.take((me + d) % w, End::Back)))
    }

    /// The item at `end` of share `j`, if any is left.
    fn take(&self, j: usize, end: End) -> Option<usize> {
        let cell = &self.0[j].0;
        let mut now = cell.load(Ordering::Relaxed);
        loop {
            let (front, back) = unpack(now);
            if front >= back {
                return None;
            }
            let (left, k) = match end {
                End::Front => (pack(front + 1, back), front),
                End::Back => (pack(front, back - 1), back - 1),
            };
            match cell.compare_exchange_weak(now, left, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(k),
                Err(seen) => now = seen,
            }
        }
    }
}

/// Which end of a share an item is taken from: the owner's or another worker's.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

fn pack(front: usize, back: usize) -> u64 {
    front as u64 | (back as u64) << 32
}

fn unpack(v: u64) -> (usize, usize) {
    ((v & 0xffff_ffff) as usize, (v >> 32) as usize)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proptest::prelude::*;

    use super::{Shares, each};

    /// One worker alone, of two and of three: its own share from the front, then the others'
    /// from their backs in turn. Worked by hand: 10 items in two shares are 0–4 and 5–9; in
    /// three, 0–2, 3–5 and 6–9 (⌊10·j/3⌋ = 0, 3, 6, 10).
    #[test]
    fn own_share_first_then_the_others_from_their_ends() {
        let order = |workers: usize, me: usize| -> Vec<usize> {
            let shares = Shares::new(10, workers);
            std::iter::from_fn(|| shares.next(me)).collect()
        };
        assert_eq!(order(2, 0), [0, 1, 2, 3, 4, 9, 8, 7, 6, 5]);
        assert_eq!(order(2, 1), [5, 6, 7, 8, 9, 4, 3, 2, 1, 0]);
        assert_eq!(order(3, 1), [3, 4, 5, 9, 8, 7, 6, 2, 1, 0]);
        assert_eq!(order(3, 2), [6, 7, 8, 9, 2, 1, 0, 5, 4, 3]);
        // Fewer items than workers: the empty shares give nothing and the rest is found.
        let shares = Shares::new(1, 3);
        assert_eq!((shares.next(0), shares.next(0)), (Some(0), None));
    }

    /// Two workers in turn, as two threads finishing items at the same pace would take them:
    /// each its own share from the front; the one whose share ends first then takes the last
    /// item of the other's, and the other then finds nothing left.
    #[test]
    fn two_workers_keep_their_halves() {
        let shares = Shares::new(7, 2);
        // Share 0 is 0–2, share 1 is 3–6 (⌊7/2⌋ = 3).
        let mut taken = vec![];
        for _ in 0..4 {
            taken.extend([shares.next(0), shares.next(1)]);
        }
        let want = [0, 3, 1, 4, 2, 5, 6].map(Some);
        assert_eq!(taken[..7], want);
        assert_eq!(taken[7], None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the pool's size and however long each item takes (nested parallel work
        /// included), every item is run once with its own index and the results come back in
        /// the items' order: what a plain loop gives.
        #[test]
        fn every_item_once_in_order(
            threads in 1usize..5,
            spins in proptest::collection::vec(0u64..3000, 0..40),
        ) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let items: Vec<(usize, u64)> = spins.iter().copied().enumerate().collect();
            let got = pool.install(|| {
                each(items.clone(), || (), |_, k, (i, spin)| {
                    // Uneven work, long enough that every worker takes some, part of it
                    // parallel itself.
                    std::thread::sleep(std::time::Duration::from_micros(spin / 20));
                    let inner: u64 = rayon::iter::ParallelIterator::sum(
                        rayon::iter::IntoParallelIterator::into_par_iter(0..spin),
                    );
                    (k, i, inner)
                })
            });
            // 0 + 1 + … + (spin − 1), by Gauss's formula.
            let want: Vec<_> = items
                .iter()
                .map(|&(i, spin)| (i, i, spin * spin.saturating_sub(1) / 2))
                .collect();
            prop_assert_eq!(got, want);
        }

        /// Each worker makes its state once, on its first item, and never more than the pool
        /// has threads.
        #[test]
        fn a_worker_makes_its_state_once(threads in 1usize..5, n in 0usize..200) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let made = AtomicUsize::new(0);
            let got = pool.install(|| {
                each(
                    vec![(); n],
                    || made.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    |_, k, ()| k,
                )
            });
            prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
            let made = made.into_inner();
            prop_assert!(made <= threads.min(n) && (n == 0) == (made == 0));
        }
    }
}
