//! What the machine did with its cores while the bench measured: the share of their time the
//! hypervisor gave to someone else (steal) and the share they idled, from the first line of
//! Linux's `/proc/stat`. On a shared virtual machine a descheduled core stops its thread in the
//! middle of a layer, and the engine's other thread then idles at the layer's end: two loops of
//! one thread lose only the stolen time, 2 threads of one loop lose it and the wait.

use anyhow::{Context, Result, bail};

/// The cores' time in the kernel's ticks, all cores together, since boot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuTimes {
    /// user, nice, system, idle, iowait, irq, softirq and steal together (guest time is
    /// counted in user and nice already).
    total: u64,
    idle: u64,
    steal: u64,
}

/// Shares of the cores' time between two readings, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shares {
    pub steal: f64,
    pub idle: f64,
}

impl CpuTimes {
    /// The aggregate `cpu` line of `/proc/stat`'s text `stat`: its first eight numbers.
    pub fn parse(stat: &str) -> Result<Self> {
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some("cpu"))
            .context("/proc/stat: no aggregate `cpu` line")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("/proc/stat: a field of {line:?} is not a count"))?;
        if v.len() < 8 {
            bail!(
                "/proc/stat: {line:?} has {} of the 8 fields up to steal",
                v.len()
            );
        }
        Ok(CpuTimes {
            total: v.iter().sum(),
            idle: v[3] + v[4],
            steal: v[7],
        })
    }

    /// This machine's reading, `None` where there is no readable `/proc/stat` (not Linux).
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?).ok()
    }

    /// The shares of the time from `self` to `later`; `None` when no tick passed.
    pub fn until(self, later: CpuTimes) -> Option<Shares> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)? as f64;
        let of = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / total;
        Some(Shares {
            steal: of(self.steal, later.steal),
            idle: of(self.idle, later.idle),
        })
    }
}

/// The shares of each measured stretch (`None` where it was not measured), as the bench's line
/// lists them: `steal 9.2 / 0.4 %, idle 8.6 / 1.0 %`.
pub fn line(each: &[Option<Shares>]) -> String {
    let list = |f: fn(&Shares) -> f64| {
        each.iter()
            .map(|s| {
                s.as_ref()
                    .map_or("–".to_string(), |s| format!("{:.1}", f(s)))
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    format!("steal {} %, idle {} %", list(|s| s.steal), list(|s| s.idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two readings of a 2-core Zen 4 around three `step_profile` runs. By hand, the deltas:
    /// user 4742, nice 0, system 160, idle 511, iowait 0, irq 0, softirq 0, steal 551: 5964
    /// ticks, of which steal 551 (9.239 %) and idle 511 (8.568 %).
    const BEFORE: &str =
        "cpu  3591635 0 193409 664117 6237 0 1036 4199 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
    const AFTER: &str = "cpu  3596377 0 193569 664628 6237 0 1036 4750 0 0\n";

    #[test]
    fn shares_of_the_ticks_between_two_readings() {
        let (a, b) = (
            CpuTimes::parse(BEFORE).unwrap(),
            CpuTimes::parse(AFTER).unwrap(),
        );
        let s = a.until(b).unwrap();
        assert!((s.steal - 9.239).abs() < 1e-3, "{s:?}");
        assert!((s.idle - 8.568).abs() < 1e-3, "{s:?}");
        assert_eq!(line(&[Some(s), None]), "steal 9.2 / – %, idle 8.6 / – %");
    }

    /// Every field moves: user 100, nice 10, system 20, idle 200, iowait 20, irq 5, softirq 6,
    /// steal 70, and guest and guest_nice 10 each, which user and nice count already. By hand:
    /// 431 ticks; steal 70 (16.241 %), idle with iowait 220 (51.044 %).
    #[test]
    fn idle_counts_iowait_and_the_total_leaves_guest_time_out() {
        let a = CpuTimes::parse("cpu  100 10 20 300 40 5 6 70 9 9\n").unwrap();
        let b = CpuTimes::parse("cpu  200 20 40 500 60 10 12 140 19 19\n").unwrap();
        let s = a.until(b).unwrap();
        assert!((s.steal - 16.241).abs() < 1e-3, "{s:?}");
        assert!((s.idle - 51.044).abs() < 1e-3, "{s:?}");
    }

    #[test]
    fn no_tick_between_readings_is_no_share() {
        let a = CpuTimes::parse(BEFORE).unwrap();
        assert_eq!(a.until(a), None);
    }

    #[test]
    fn a_malformed_stat_says_what_is_wrong() {
        for (text, says) in [
            ("intr 1 2 3\n", "no aggregate `cpu` line"),
            ("cpu  1 2 3 4\n", "has 4 of the 8 fields"),
            ("cpu  1 2 x 4 5 6 7 8\n", "is not a count"),
        ] {
            let e = format!("{:#}", CpuTimes::parse(text).unwrap_err());
            assert!(e.contains(says), "{e}");
        }
    }
}
