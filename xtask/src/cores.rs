//! How far apart the machine's cores are: the time a cache line takes to go from one thread to
//! another and back. On a virtual machine the hypervisor may put the two cores on one die, where
//! the line moves through a cache they share, or on two, where it crosses between their caches
//! (on a 2-core Zen 4, 50–85 ns against 325–385 ns), and it moves them between the two for
//! stretches of seconds. A layer that reads what the other core wrote takes longer on two dies,
//! so the bench shows the placement each of its rounds began and ended in (docs/PERFORMANCE.md,
//! forty-eighth and forty-ninth passes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The line the two threads hand back and forth, alone on its cache line.
#[repr(align(64))]
struct Line(AtomicU64);

/// Tells the other thread to return.
const STOP: u64 = u64::MAX;

/// Round trips between two reads of the clock.
const BETWEEN_CLOCKS: u64 = 256;

/// The mean round trip in ns of a cache line between this thread and one it starts, over about
/// `time`: this thread writes an odd count, the other answers with the next even one. `None`
/// with fewer than two CPUs to run on (the two would take turns on one, a time slice a trip)
/// or where no second thread starts.
pub fn round_trip(time: Duration) -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let line = Line(AtomicU64::new(0));
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .spawn_scoped(s, || answer(&line))
            .ok()?;
        // The first trip waits for the other thread to start: not timed.
        ask(&line, 1);
        let (start, mut trips) = (Instant::now(), 0u64);
        while trips % BETWEEN_CLOCKS != 0 || start.elapsed() < time {
            trips += 1;
            ask(&line, 2 * trips + 1);
        }
        let took = start.elapsed();
        line.0.store(STOP, Ordering::Release);
        other.join().ok()?;
        Some(took.as_secs_f64() * 1e9 / trips.max(1) as f64)
    })
}

/// Writes the odd `count` and waits for the other thread's `count + 1`.
fn ask(line: &Line, count: u64) {
    line.0.store(count, Ordering::Release);
    let mut spins = 0u32;
    while line.0.load(Ordering::Acquire) != count + 1 {
        wait(&mut spins);
    }
}

/// Answers each odd count with the next even one, until [`STOP`].
fn answer(line: &Line) {
    let mut spins = 0u32;
    loop {
        match line.0.load(Ordering::Acquire) {
            STOP => return,
            odd if odd % 2 == 1 => {
                line.0.store(odd + 1, Ordering::Release);
                spins = 0;
            }
            _ => wait(&mut spins),
        }
    }
}

/// Spins, and every [`YIELD_AFTER`] spins gives the core up: where the two threads find
/// themselves on one core (another busy thread on the other), the one waiting lets the one it
/// waits for run rather than spin out its time slice.
fn wait(spins: &mut u32) {
    *spins += 1;
    match *spins % YIELD_AFTER {
        0 => std::thread::yield_now(),
        _ => std::hint::spin_loop(),
    }
}

/// Spins between yields: far more than a round trip between dies takes (a few hundred ns).
const YIELD_AFTER: u32 = 1 << 14;

/// Round trips as the bench lists them: `62 / 348 / – ns` (`–` where none was measured).
pub fn line(each: &[Option<f64>]) -> String {
    let each: Vec<String> = each
        .iter()
        .map(|v| v.map_or("–".to_string(), |v| format!("{v:.0}")))
        .collect();
    format!("{} ns", each.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine of two CPUs or more (CI's has two) a round trip is measured, a time and
    /// not a division by no trips; with one CPU, none. How long it takes is the bench's to
    /// show, not a test's (tests time nothing: docs/ARCHITECTURE.md).
    #[test]
    fn a_round_trip_between_two_threads() {
        let trip = round_trip(Duration::from_millis(5));
        match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            1 => assert_eq!(trip, None),
            _ => {
                let ns = trip.expect("two CPUs");
                assert!(ns.is_finite() && ns > 0.0, "{ns} ns");
            }
        }
    }

    #[test]
    fn the_line_lists_each_reading() {
        assert_eq!(line(&[Some(61.6), None, Some(348.4)]), "62 / – / 348 ns");
    }
}
