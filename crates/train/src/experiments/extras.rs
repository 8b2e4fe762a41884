//! What the main report adds beyond the three attempts (`Manifest::extras`): the write-up's own
//! attempt 3 beside the project's, how a learning rate is chosen (the range test and the
//! write-up's short-run sweep), and what attempt 3 gets wrong. Loaded from the saved runs and
//! files alone, like the rest of the report.

use std::fmt::Write as _;
use std::path::Path;

use super::error::{Context, Result};
use crate::lr_find::{RangeCurve, RangeEnd, SweepPoint, sweep_csv};
use crate::plots;
use under8k_model::checkpoint::write_atomic;

use super::runs::{
    Manifest, Run, SWEEP_EPOCHS, SWEEP_LRS, load_run_in, lr_find_dir, sweep_dir, write_up_dir,
};

/// The write-up's starting rate for its attempt 3.
const WRITE_UP_LR: f64 = 0.07;

pub struct Extras {
    /// The write-up's attempt 3, one run per seed.
    pub write_up: Vec<Run>,
    /// The range test.
    pub curve: RangeCurve,
    /// The sweep: one run per rate.
    pub sweep: Vec<Run>,
    /// Attempt 3's errors as `(true, predicted)`, from `eval/misclassified.csv`, when there.
    pub errors: Option<Vec<(u32, u32)>>,
}

impl Extras {
    pub fn load(out: &Path, m: &Manifest) -> Result<Self> {
        let write_up = (1..=m.seeds)
            .map(|s| load_run_in(&write_up_dir(out, s), s))
            .collect::<Result<Vec<_>>>()?;
        let path = lr_find_dir(out).join("lr_find.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: missing; run `cargo xtask reproduce`", path.display()))?;
        let curve = RangeCurve::from_json(&text)
            .with_context(|| format!("{}: not a range test", path.display()))?;
        let sweep = SWEEP_LRS
            .iter()
            .map(|&lr| load_run_in(&sweep_dir(out, lr), 1))
            .collect::<Result<Vec<_>>>()?;
        let errors = std::fs::read_to_string(out.join("eval/misclassified.csv"))
            .ok()
            .map(|csv| {
                csv.lines()
                    .skip(1)
                    .filter_map(|l| {
                        let mut f = l.split(',').skip(1).map(str::parse::<u32>);
                        Some((f.next()?.ok()?, f.next()?.ok()?))
                    })
                    .collect()
            });
        Ok(Self {
            write_up,
            curve,
            sweep,
            errors,
        })
    }

    fn points(&self) -> Vec<SweepPoint> {
        SWEEP_LRS
            .iter()
            .zip(&self.sweep)
            .map(|(&lr, r)| SweepPoint::of(lr, &r.history))
            .collect()
    }

    /// Writes `lr-find/lr_find.{csv,png}` and `lr-find/sweep.{csv,png}`.
    pub fn draw(&self, out: &Path) -> Result<()> {
        let dir = lr_find_dir(out);
        write_atomic(&dir.join("lr_find.csv"), self.curve.to_csv().as_bytes())?;
        let title = "Range test: the write-up's attempt 3 (rotation ±7°, momentum 0.9), seed 1";
        write_atomic(
            &dir.join("lr_find.png"),
            &plots::range_test(&self.curve, title)?,
        )?;
        let points = self.points();
        write_atomic(&dir.join("sweep.csv"), sweep_csv(&points).as_bytes())?;
        let title = format!(
            "Sweep: {SWEEP_EPOCHS} epochs at each constant rate (the write-up's attempt 3 otherwise), seed 1"
        );
        write_atomic(&dir.join("sweep.png"), &plots::sweep(&points, &title)?)?;
        Ok(())
    }

    /// The attempt-3 subsections: choosing the rate, and what the net gets wrong.
    pub fn section(&self, s: &mut String) -> Result<()> {
        writeln!(s, "### Choosing the learning rate\n")?;
        writeln!(
            s,
            "The write-up chose its attempt 3's starting rate of {WRITE_UP_LR} by hand: \"one learning rate region below 0.07 'flashed' a better accuracy\". `under8k lr-find` makes both ways of asking a command; `cargo xtask reproduce` runs them on the write-up's attempt 3 (the seed's net, rotation ±7°, SGD momentum 0.9, batch 128, seed 1).\n"
        )?;
        let c = &self.curve;
        let t = &c.test;
        let end = match c.end {
            RangeEnd::Completed => "it ran to the end".to_string(),
            RangeEnd::Diverged { step, lr } => format!(
                "it stopped at batch {} (rate {lr:.3}), where the smoothed loss passed {}× its best",
                step + 1,
                t.diverge_factor
            ),
            RangeEnd::NonFinite { step, lr } => format!(
                "it stopped at batch {} (rate {lr:.3}), where the loss was not finite",
                step + 1
            ),
            RangeEnd::Interrupted => "it was interrupted".to_string(),
        };
        let (steep, min10, lowest) = (c.steepest(), c.min_over_ten(), c.min_loss_lr());
        writeln!(
            s,
            "**Range test** (`under8k lr-find --write-up`): a fresh net trains one batch per rate, the rate rising geometrically from {:.0e} to {} over {} batches (one epoch); {end}. The loss is smoothed as fastai does (β = 0.98).\n",
            t.start_lr, t.end_lr, t.steps
        )?;
        writeln!(s, "| rule | suggested rate | against {WRITE_UP_LR} |")?;
        writeln!(s, "|---|---|---|")?;
        for (rule, lr) in [
            ("steepest descent of the smoothed loss", steep),
            ("lowest smoothed loss / 10 (fastai's `lr_min`)", min10),
            ("lowest smoothed loss", lowest),
        ] {
            match lr {
                Some(lr) => writeln!(s, "| {rule} | {lr:.4} | {} |", factor(lr))?,
                None => writeln!(s, "| {rule} | none (too few points) | |")?,
            }
        }
        writeln!(s, "\n![range test](lr-find/lr_find.png)\n")?;
        let points = self.points();
        let best = points
            .iter()
            .max_by(|a, b| a.last_acc.total_cmp(&b.last_acc))
            .expect("the sweep has rates");
        let at = |lr: f64| points.iter().find(|p| p.lr == lr);
        writeln!(
            s,
            "**Sweep** (`under8k lr-find --write-up --lrs {} --epochs-per-lr {SWEEP_EPOCHS}`): what the write-up did, one short run per constant rate, everything else its attempt 3's, read by test accuracy.\n",
            SWEEP_LRS.map(|v| v.to_string()).join(",")
        )?;
        writeln!(
            s,
            "| rate | test acc after epoch {SWEEP_EPOCHS} | best epoch |"
        )?;
        writeln!(s, "|---|---|---|")?;
        for p in &points {
            let mark = if p.lr == best.lr { " **(best)**" } else { "" };
            writeln!(
                s,
                "| {} | {:.2} %{mark} | {:.2} % |",
                p.lr, p.last_acc, p.max_acc
            )?;
        }
        writeln!(s, "\n![sweep](lr-find/sweep.png)\n")?;
        let spread = points
            .iter()
            .map(|p| p.last_acc)
            .fold(f64::NEG_INFINITY, f64::max)
            - points
                .iter()
                .map(|p| p.last_acc)
                .fold(f64::INFINITY, f64::min);
        let mut outcome = String::new();
        match (steep, min10) {
            (Some(a), Some(b)) => write!(
                outcome,
                "The range test's two rules suggest {a:.3} and {b:.3}: {} {WRITE_UP_LR}",
                if (a.min(b)..=a.max(b)).contains(&WRITE_UP_LR) {
                    "they bracket"
                } else if within(a, 2.0) && within(b, 2.0) {
                    "both within a factor of 2 of"
                } else {
                    "not close to"
                }
            )?,
            (None, Some(b)) => write!(
                outcome,
                "The range test's minimum/10 rule suggests {b:.3} ({} {WRITE_UP_LR}; too few points for the steepest-descent rule)",
                factor(b)
            )?,
            (Some(a), None) => write!(
                outcome,
                "The range test suggests {a:.3} ({} {WRITE_UP_LR})",
                factor(a)
            )?,
            (None, None) => write!(outcome, "The range test gives no suggestion")?,
        }
        write!(
            outcome,
            ". The sweep's best rate after {SWEEP_EPOCHS} epochs is {} ({:.2} %)",
            best.lr, best.last_acc
        )?;
        if let Some(p) = at(WRITE_UP_LR).filter(|p| p.lr != best.lr) {
            write!(outcome, "; {WRITE_UP_LR} gives {:.2} %", p.last_acc)?;
        }
        write!(
            outcome,
            ", and the {} rates span {spread:.2} points. ",
            points.len()
        )?;
        outcome += if best.lr < WRITE_UP_LR {
            "So a region below 0.07 does come out ahead here, as the write-up saw"
        } else if best.lr == WRITE_UP_LR {
            "So 0.07 itself comes out ahead here"
        } else {
            "So the region below 0.07 does not come out ahead here, unlike what the write-up saw"
        };
        let wobble = if spread < 1.0 {
            ", and differences of a few tenths of a point, the size of one epoch's wobble"
        } else {
            ""
        };
        writeln!(
            s,
            "{outcome}. One short run per rate is a noisy instrument: a single seed, {SWEEP_EPOCHS} epochs{wobble}. The sweep also reads the test set, as the write-up did, so it describes the write-up's method rather than choosing a recipe cleanly (a validation split held out of the training set would); this section reports what the tools say and picked nothing in this report.\n"
        )?;
        if let Some(errors) = &self.errors {
            self.errors_section(s, errors)?;
        }
        Ok(())
    }

    fn errors_section(&self, s: &mut String, errors: &[(u32, u32)]) -> Result<()> {
        writeln!(s, "### What attempt 3 gets wrong\n")?;
        let mut pairs: Vec<((u32, u32), usize)> = vec![];
        for &e in errors {
            match pairs.iter_mut().find(|(p, _)| *p == e) {
                Some((_, n)) => *n += 1,
                None => pairs.push((e, 1)),
            }
        }
        // Most frequent first; ties in (true, predicted) order.
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<String> = pairs
            .iter()
            .take(5)
            .map(|((t, p), n)| format!("{t} read as {p} ({n})"))
            .collect();
        writeln!(
            s,
            "`under8k eval --checkpoint runs/attempt3/seed1/model.safetensors --out eval` on seed 1's final checkpoint: {} test images are misclassified. The most frequent confusions: {}. `eval/misclassified.csv` lists every error with both probabilities.\n",
            errors.len(),
            top.join(", ")
        )?;
        writeln!(s, "![confusion matrix of attempt 3](eval/confusion.png)\n")?;
        writeln!(
            s,
            "![misclassified test images of attempt 3](eval/misclassified.png)\n"
        )?;
        Ok(())
    }
}

fn within(lr: f64, f: f64) -> bool {
    lr / WRITE_UP_LR <= f && WRITE_UP_LR / lr <= f
}

/// `lr` against 0.07, as a factor.
fn factor(lr: f64) -> String {
    let r = lr / WRITE_UP_LR;
    if r >= 1.0 {
        format!("{r:.2}× 0.07")
    } else {
        format!("0.07 / {:.2}", 1.0 / r)
    }
}
