//! A layer's images shared out among the pool's threads in shrinking runs.
//!
//! rayon's parallel iterators split a layer's images into a tree of halves: the thread that
//! stole a half splits it again, and waits inside it for any piece the other thread took back.
//! A thread waiting there soon sleeps, and the layer then ends only once the operating system
//! has woken it. [`each`] instead runs one worker a thread, each taking the next run of items
//! from a shared counter until none is left. A run is the items left over twice the workers,
//! at least one: long runs first, each thread on neighbouring images, and single images at the
//! end, so that no thread waits for more than the last one. There is one join, and a worker
//! that finds nothing left returns at once. Which thread runs an item never changes what it
//! computes, and the results come back in the items' order (docs/PERFORMANCE.md, forty-fifth
//! pass).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f(state, k, item)` for every item `k`, on every thread of the current rayon pool, each
/// worker taking the next run of items as it finishes one, with its own `state` (made by
/// `init` when it takes its first item); the results in the items' order.
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
    let next = AtomicUsize::new(0);
    let work = || {
        let (mut state, mut got) = (None, vec![]);
        while let Some(run) = take_run(&next, n, workers) {
            for k in run {
                let item = slots[k]
                    .lock()
                    .expect("an item's lock")
                    .take()
                    .expect("each item is taken once");
                got.push((k, f(state.get_or_insert_with(&init), k, item)));
            }
        }
        got
    };
    let mut parts: Vec<Vec<(usize, R)>> = (0..workers).map(|_| vec![]).collect();
    rayon::scope(|s| {
        let (mine, theirs) = parts.split_first_mut().expect("one worker at least");
        for part in theirs {
            s.spawn(|_| *part = work());
        }
        *mine = work();
    });
    let mut all: Vec<(usize, R)> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|&(k, _)| k);
    debug_assert!(all.iter().enumerate().all(|(i, &(k, _))| i == k));
    all.into_iter().map(|(_, r)| r).collect()
}

/// The next run of the `n` items that `next` counts out to `workers` workers: what is left
/// over `2·workers`, at least one; `None` once every item is taken.
fn take_run(next: &AtomicUsize, n: usize, workers: usize) -> Option<std::ops::Range<usize>> {
    let mut at = next.load(Ordering::Relaxed);
    loop {
        if at >= n {
            return None;
        }
        let end = at + ((n - at) / (2 * workers)).max(1);
        match next.compare_exchange_weak(at, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(at..end),
            Err(now) => at = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proptest::prelude::*;

    use super::{each, take_run};

    /// 128 items counted out to 2 workers, in the runs worked by hand: ⌊left / 4⌋ with 128,
    /// 96, 72, 54, 41, 31, 24, 18, 14, 11 and 9 left, then single items for the last 7.
    #[test]
    fn runs_shrink_to_single_items() {
        let next = AtomicUsize::new(0);
        let lens: Vec<usize> = std::iter::from_fn(|| take_run(&next, 128, 2))
            .map(|r| r.len())
            .collect();
        let mut want = vec![32, 24, 18, 13, 10, 7, 6, 4, 3, 2, 2, 1, 1, 1];
        want.extend([1; 4]);
        assert_eq!(lens, want);
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
