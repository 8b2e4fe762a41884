//! Making the next batch while the current one trains, on the engine's own threads.
//!
//! The training and evaluation loops used to make their batches on a thread of their own (the
//! range test, between its steps). With the engine's threads busy on every core, that made one
//! thread more than there are cores, and the operating system switched between them about 140
//! times per training batch; each time it took a core from the engine, the engine's other
//! thread waited for it at the end of a layer. Now the batch is made as the second half of a
//! `rayon::join` whose first half is the step: both run on rayon's pool, whose idle threads
//! steal the batch's work between the engine's own, and the step runs on a pool thread (each
//! of its parallel layers a local fork, not a hand-over from the calling thread). The thread
//! that made the batch then stays awake for the rest of the step, taking the engine's work as
//! it comes, instead of going to sleep between two layers ([`Awake`]). The items and their
//! order are the iterator's own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An iterator whose next item is made, on request, beside some other work.
pub(crate) struct Overlapped<I: Iterator> {
    items: I,
    /// The next item when it has been made already ([`Overlapped::beside`]).
    made: Option<Option<I::Item>>,
}

impl<I: Iterator> Overlapped<I> {
    pub(crate) fn new(items: I) -> Self {
        Overlapped { items, made: None }
    }
}

impl<I> Overlapped<I>
where
    I: Iterator + Send,
    I::Item: Send,
{
    /// Runs `work` on rayon's pool and, beside it, makes the next item (unless it is made
    /// already); the thread that makes it then stays awake for `work` ([`Awake`]). Returns
    /// what `work` returned.
    pub(crate) fn beside<R: Send>(&mut self, work: impl FnOnce() -> R + Send) -> R {
        let (items, made) = (&mut self.items, &mut self.made);
        let awake = Awake::default();
        let (out, ()) = rayon::join(
            || awake.run(work),
            || {
                if made.is_none() {
                    *made = Some(items.next());
                }
                awake.keep();
            },
        );
        out
    }
}

/// Work that another thread of the pool stays awake for. A rayon thread with nothing to do
/// soon sleeps, and the engine's next parallel layer then waits for the operating system to
/// wake it: on 2 cores of a virtual machine a training step woke a thread about 20 times, and
/// a run used 174 % of its 2 cores. The thread that made the next item instead runs
/// [`Awake::keep`], taking whatever work the pool has until the work is done. That changes
/// which thread runs a piece of the work, never what is computed or in what order (the
/// engine's sums do not depend on the thread).
#[derive(Default)]
struct Awake {
    done: AtomicBool,
    /// The pool thread that runs the work (`usize::MAX` until it starts).
    thread: AtomicUsize,
}

/// How long [`Awake::keep`] waits with nothing to do before it gives up: longer than the gaps
/// between a step's parallel layers, short against a step.
const IDLE: Duration = Duration::from_micros(500);

impl Awake {
    fn run<R>(&self, work: impl FnOnce() -> R) -> R {
        /// Marks the work done however it ends, a panic included, so that no thread keeps on
        /// waiting for it.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let index = rayon::current_thread_index().unwrap_or(usize::MAX);
        self.thread.store(index, Ordering::Release);
        let _done = Done(&self.done);
        work()
    }

    /// Runs the pool's pending work, or spins, until the work is done or there has been
    /// nothing to do for [`IDLE`]. That bound makes it safe wherever rayon runs it: a thread
    /// may take it while it waits inside a piece of the work, which cannot go on until this
    /// returns. On the thread that runs the work it returns at once.
    fn keep(&self) {
        if rayon::current_thread_index() == Some(self.thread.load(Ordering::Acquire)) {
            return;
        }
        let mut idle = None;
        while !self.done.load(Ordering::Acquire) {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => idle = None,
                _ if idle.get_or_insert_with(Instant::now).elapsed() > IDLE => return,
                _ => std::hint::spin_loop(),
            }
        }
    }
}

impl<I: Iterator> Iterator for Overlapped<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        match self.made.take() {
            Some(item) => item,
            None => self.items.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Overlapped;

    proptest! {
        /// Whatever the caller does between items (work beside the next one, once, twice or not
        /// at all), it gets the iterator's items in order, each once, and each work's result.
        #[test]
        fn items_come_in_order_whatever_runs_beside(
            n in 0usize..40,
            besides in proptest::collection::vec(0usize..3, 0..45),
        ) {
            let mut items = Overlapped::new(0..n);
            let mut got = vec![];
            for (k, &b) in besides.iter().enumerate() {
                let Some(item) = items.next() else { break };
                got.push(item);
                for j in 0..b {
                    prop_assert_eq!(items.beside(|| k * 10 + j), k * 10 + j);
                }
            }
            got.extend(items.by_ref());
            prop_assert_eq!(got, (0..n).collect::<Vec<_>>());
            prop_assert_eq!(items.next(), None);
        }
    }

    /// Work that is itself parallel and nested (threads wait inside its pieces for other
    /// pieces), made beside items that take a while to make, on pools of 1 to 4 threads (more
    /// threads than this machine's cores), each call coming from outside the pool as the
    /// training loop's do: every run ends (within a minute, or the test fails) with every
    /// result right (each also computed in closed form here).
    #[test]
    fn nested_parallel_work_beside_ends_on_any_pool() {
        use rayon::prelude::*;
        fn busy(micros: u64) {
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_micros(micros) {}
        }
        // Pieces of 10 µs: the work lasts longer than making an item.
        fn nested(i: u64) -> u64 {
            (0..300u64)
                .into_par_iter()
                .map(|k| {
                    busy(10);
                    (0..40u64).into_par_iter().map(|j| k * j + i).sum::<u64>()
                })
                .sum()
        }
        // Σ_k Σ_j (k·j + i) = (Σk)(Σj) + 300·40·i.
        let want = |i: u64| (299 * 300 / 2) * (39 * 40 / 2) + 300 * 40 * i;
        for threads in 1..=4 {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a pool");
                // Each item takes a while to make, as a batch does, so that the work's pieces
                // are under way on other threads before the item is made.
                let slow = (0..100u64).inspect(|_| busy(300));
                let mut items = Overlapped::new(slow);
                let mut got = vec![];
                while let Some(i) = items.next() {
                    got.push(pool.install(|| items.beside(|| nested(i))));
                }
                tx.send(got).ok();
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{threads} threads: still running after 60 s"));
            assert_eq!(
                got,
                (0..100).map(want).collect::<Vec<_>>(),
                "{threads} threads"
            );
        }
    }

    /// The next item is made by the time `beside` returns, not later: the iterator is not
    /// touched by the `next` that follows.
    #[test]
    fn beside_makes_the_next_item() {
        let pulled = std::sync::atomic::AtomicUsize::new(0);
        let counting = (0..3).inspect(|_| {
            pulled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut items = Overlapped::new(counting);
        assert_eq!(items.next(), Some(0));
        assert_eq!(items.beside(|| "work"), "work");
        assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(items.next(), Some(1));
        assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
