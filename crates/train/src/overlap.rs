//! Making the next batch while the current one trains, on the engine's own threads.
//!
//! The training and evaluation loops used to make their batches on a thread of their own (the
//! range test, between its steps). With the engine's threads busy on every core, that made one
//! thread more than there are cores, and the operating system switched between them about 140
//! times per training batch; each time it took a core from the engine, the engine's other
//! thread waited for it at the end of a layer. Now the batch is made as the second half of a
//! `rayon::join` whose first half is the step: both run on rayon's pool, whose idle threads
//! steal the batch's work between the engine's own, and the step runs on a pool thread (each
//! of its parallel layers a local fork, not a hand-over from the calling thread). The items
//! and their order are the iterator's own.

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
    /// Runs `work` and, beside it on rayon's pool, makes the next item (unless it is made
    /// already); returns what `work` returned.
    pub(crate) fn beside<R: Send>(&mut self, work: impl FnOnce() -> R + Send) -> R {
        if self.made.is_some() {
            return work();
        }
        let items = &mut self.items;
        let (out, next) = rayon::join(work, || items.next());
        self.made = Some(next);
        out
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
