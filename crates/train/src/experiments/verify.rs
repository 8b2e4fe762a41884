//! Is a retrained run the committed one, bit for bit? Every epoch's figures (not its wall-clock
//! times), every batch's loss and running accuracy, and `model.safetensors` byte for byte.

use std::path::Path;

use super::error::{Context, Result};
use crate::{EpochRecord, History};

use super::runs::{Verified, cpu_description};

/// What a comparison found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every figure and the checkpoint are equal.
    Identical {
        /// Epochs compared.
        epochs: usize,
    },
    /// The first difference, in words, with both values.
    Differs(String),
    /// The runs were trained with different numerics versions of the engine: their bits are not
    /// expected to agree, so their figures are set side by side instead.
    Numerics {
        /// The first run's version.
        committed: u32,
        /// The second run's.
        retrained: u32,
        /// Their figures side by side, in words.
        figures: String,
    },
}

/// The figures a reader compares across numerics versions: best, lowest of the last three, last.
fn side_by_side(old: &History, new: &History) -> String {
    let acc = |h: &History| -> Vec<f64> { h.epochs.iter().map(|e| e.test_acc).collect() };
    let (a, b) = (acc(old), acc(new));
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    format!(
        "max test acc {:.2} → {:.2} %, lowest of the last three {:.2} → {:.2} %, last epoch {:.2} → {:.2} %",
        max(&a),
        max(&b),
        super::runs::min_last3(&a),
        super::runs::min_last3(&b),
        last(&a),
        last(&b)
    )
}

fn read_history(dir: &Path) -> Result<History> {
    let path = dir.join("history.json");
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a history", path.display()))
}

/// The figures of an epoch that a deterministic run reproduces (its times are not among them).
fn figures(e: &EpochRecord) -> [(&'static str, f64); 7] {
    [
        ("lr", e.lr),
        ("train_loss", e.train_loss),
        ("train_acc", e.train_acc),
        ("test_loss", e.test_loss),
        ("test_acc", e.test_acc),
        ("test_correct", e.test_correct as f64),
        ("test_total", e.test_total as f64),
    ]
}

/// Compares the run in `fresh` with the committed run in `committed`.
pub fn compare(committed: &Path, fresh: &Path) -> Result<Verdict> {
    let (old, new) = (read_history(committed)?, read_history(fresh)?);
    if old.numerics != new.numerics {
        return Ok(Verdict::Numerics {
            committed: old.numerics,
            retrained: new.numerics,
            figures: side_by_side(&old, &new),
        });
    }
    if old.epochs.len() != new.epochs.len() {
        return Ok(Verdict::Differs(format!(
            "the committed run has {} epochs, the retrained one {}",
            old.epochs.len(),
            new.epochs.len()
        )));
    }
    let per_epoch = old.batch_loss.len() / old.epochs.len().max(1);
    for (a, b) in old.epochs.iter().zip(&new.epochs) {
        for ((name, x), (_, y)) in figures(a).into_iter().zip(figures(b)) {
            if x.to_bits() != y.to_bits() {
                return Ok(Verdict::Differs(format!(
                    "epoch {} {name}: committed {x}, retrained {y}",
                    a.epoch
                )));
            }
        }
    }
    for (name, x, y) in [
        ("loss", &old.batch_loss, &new.batch_loss),
        ("running accuracy", &old.batch_acc, &new.batch_acc),
    ] {
        if x.len() != y.len() {
            return Ok(Verdict::Differs(format!(
                "{} batch {name} values committed, {} retrained",
                x.len(),
                y.len()
            )));
        }
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
            return Ok(Verdict::Differs(format!(
                "batch {} (epoch {}) {name}: committed {}, retrained {}",
                i + 1,
                i / per_epoch.max(1) + 1,
                x[i],
                y[i]
            )));
        }
    }
    let model = |dir: &Path| {
        let path = dir.join("model.safetensors");
        std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let (a, b) = (model(committed)?, model(fresh)?);
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return Ok(Verdict::Differs(format!(
            "model.safetensors differs from byte {at} on ({} bytes committed, {} retrained)",
            a.len(),
            b.len()
        )));
    }
    Ok(Verdict::Identical {
        epochs: old.epochs.len(),
    })
}

/// What became of one result a command needs (a run, or the range test).
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Trained (or resumed) into place.
    Trained,
    /// Kept as it was (`--skip-existing`).
    Skipped,
    /// Retrained and identical; its epochs.
    Identical(usize),
    /// Retrained and different (reported; nothing replaced).
    Differs,
    /// Retrained, different, and replaced (`--accept`).
    Accepted,
}

/// Fails when any result differs from the committed one (each was reported as it was found).
pub fn refuse_differences(outcomes: &[(String, Outcome)]) -> Result<()> {
    let differs = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Differs)
        .count();
    crate::refuse_unless!(
        differs == 0,
        "{differs} of {} verified results differ from the committed ones (listed above); nothing was replaced and the report was not rewritten (--accept replaces them)",
        outcomes.len()
    );
    Ok(())
}

/// What a command's outcomes (each with its label) verified: all or some of its results
/// retrained identical now, or, when it kept everything, the previous verification.
pub fn verification(
    outcomes: &[(String, Outcome)],
    previous: Option<Verified>,
    minutes: f64,
) -> Option<Verified> {
    if outcomes.iter().all(|(_, o)| *o == Outcome::Skipped) {
        return previous;
    }
    let identical: Vec<(&String, usize)> = outcomes
        .iter()
        .filter_map(|(l, o)| match o {
            Outcome::Identical(e) => Some((l, *e)),
            _ => None,
        })
        .collect();
    if identical.is_empty() {
        return None;
    }
    let all = identical.len() == outcomes.len();
    Some(Verified {
        date: today(),
        cpu: cpu_description(),
        threads: rayon::current_num_threads(),
        // Runs, not the range test (which has no epochs).
        runs: identical.iter().filter(|(_, e)| *e > 0).count(),
        epochs: identical.iter().map(|(_, e)| e).sum(),
        total: outcomes.len(),
        of: match all {
            true => vec![],
            false => identical.iter().map(|(l, _)| l.to_string()).collect(),
        },
        minutes: Some((minutes * 10.0).round() / 10.0),
    })
}

/// Today's UTC date, `YYYY-MM-DD` (civil-from-days, H. Hinnant's algorithm).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    date(secs / 86_400)
}

fn date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // Independently: 1970-01-01 is day 0; 2000-03-01 is day 11,017 (30 years of 365 days
        // plus 7 leap days to 2000-01-01 = 10,957, + 31 + 29); 2026-11-29 is day 20,786
        // (`date -d 2026-11-29 +%s` / 86,400).
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(11_017), "2000-03-01");
        assert_eq!(date(11_016), "2000-02-29");
        assert_eq!(date(20_786), "2026-11-29");
    }
}
