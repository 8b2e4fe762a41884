//! Where a sweep stands, from its files alone: each job done, running (its lock is held),
//! partial (some epochs saved, nobody working on it), failed (it left an error) or missing; and
//! the table of results per recipe, mean ± sd over seeds.

use std::fmt::Write as _;
use std::path::Path;

use under8k_model::checkpoint::write_atomic;

use super::exec::{failed_path, is_locked};
use super::manifest::Manifest;
use crate::experiments::error::Result;
use crate::experiments::reproduce::{RunState, run_state};
use crate::experiments::runs::{Run, load_run_in, mean_sd};

/// One job's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Every epoch saved.
    Done,
    /// Another process holds its lock now.
    Running,
    /// Some epochs saved; nobody works on it: running it again resumes.
    Partial,
    /// It failed, and says why.
    Failed(String),
    /// Not started, or its directory holds another config's run.
    Missing,
}

/// Every job's state, by index.
pub fn states(dir: &Path, m: &Manifest) -> Vec<JobState> {
    m.jobs
        .iter()
        .map(|j| {
            let run_dir = dir.join(&j.dir);
            let state = run_state(&run_dir, &j.config);
            if state == RunState::Complete {
                JobState::Done
            } else if is_locked(&run_dir) {
                JobState::Running
            } else if let Ok(why) = std::fs::read_to_string(failed_path(&run_dir)) {
                JobState::Failed(why.trim().to_string())
            } else if state == RunState::Partial {
                JobState::Partial
            } else {
                JobState::Missing
            }
        })
        .collect()
}

/// Counts of each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Complete.
    pub done: usize,
    /// Being worked on.
    pub running: usize,
    /// Resumable.
    pub partial: usize,
    /// Failed: index and error.
    pub failed: Vec<(usize, String)>,
    /// Not started.
    pub missing: usize,
}

impl Counts {
    /// Counts `states`.
    pub fn of(states: &[JobState]) -> Self {
        let mut c = Self::default();
        for (i, s) in states.iter().enumerate() {
            match s {
                JobState::Done => c.done += 1,
                JobState::Running => c.running += 1,
                JobState::Partial => c.partial += 1,
                JobState::Failed(why) => c.failed.push((i, why.clone())),
                JobState::Missing => c.missing += 1,
            }
        }
        c
    }

    /// Whether every job is done.
    pub fn complete(&self) -> bool {
        self.running + self.partial + self.missing + self.failed.len() == 0
    }
}

/// One recipe's results over its complete seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeRow {
    /// The recipe.
    pub recipe: String,
    /// Seeds planned.
    pub planned: usize,
    /// Seeds complete (the statistics are over these).
    pub seeds: Vec<u64>,
    /// Best epoch's accuracy: mean and sd.
    pub max: (f64, f64),
    /// Lowest of the last three epochs: mean and sd.
    pub min_last3: (f64, f64),
    /// Last epoch: mean and sd.
    pub last: (f64, f64),
}

/// The table of results: one row per recipe (in the manifest's order) over its complete runs.
pub fn table(dir: &Path, m: &Manifest) -> Result<Vec<RecipeRow>> {
    let states = states(dir, m);
    let mut rows: Vec<(RecipeRow, Vec<Run>)> = vec![];
    for (j, s) in m.jobs.iter().zip(&states) {
        let at = match rows.iter().position(|(r, _)| r.recipe == j.recipe) {
            Some(at) => at,
            None => {
                rows.push((
                    RecipeRow {
                        recipe: j.recipe.clone(),
                        planned: 0,
                        seeds: vec![],
                        max: (0.0, 0.0),
                        min_last3: (0.0, 0.0),
                        last: (0.0, 0.0),
                    },
                    vec![],
                ));
                rows.len() - 1
            }
        };
        rows[at].0.planned += 1;
        if *s == JobState::Done {
            rows[at].1.push(load_run_in(&dir.join(&j.dir), j.seed)?);
        }
    }
    Ok(rows
        .into_iter()
        .map(|(mut row, runs)| {
            let stat = |f: fn(&Run) -> f64| mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
            row.seeds = runs.iter().map(|r| r.seed).collect();
            row.max = stat(Run::max_test);
            row.min_last3 = stat(Run::min_last3);
            row.last = stat(Run::final_acc);
            row
        })
        .collect())
}

fn ms((m, sd): (f64, f64), n: usize) -> String {
    match n {
        0 => "–".into(),
        1 => format!("{m:.2}"),
        _ => format!("{m:.2} ± {sd:.2}"),
    }
}

/// The table as Markdown (accuracies in %, over the split each run evaluates on: its validation
/// split if it has one, else the test set).
pub fn markdown(rows: &[RecipeRow]) -> String {
    let mut s = String::from(
        "| recipe | seeds done | max acc | lowest of the last three | last epoch |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let n = r.seeds.len();
        writeln!(
            s,
            "| `{}` | {n} of {} | {} | {} | {} |",
            r.recipe,
            r.planned,
            ms(r.max, n),
            ms(r.min_last3, n),
            ms(r.last, n)
        )
        .expect("a String takes any text");
    }
    s
}

/// The table as CSV, one row per recipe.
pub fn csv(rows: &[RecipeRow]) -> String {
    let mut s = String::from(
        "recipe,planned,done,max_mean,max_sd,min_last3_mean,min_last3_sd,last_mean,last_sd\n",
    );
    for r in rows {
        writeln!(
            s,
            "{},{},{},{},{},{},{},{},{}",
            r.recipe,
            r.planned,
            r.seeds.len(),
            r.max.0,
            r.max.1,
            r.min_last3.0,
            r.min_last3.1,
            r.last.0,
            r.last.1
        )
        .expect("a String takes any text");
    }
    s
}

/// Writes `report.md` and `report.csv` into the sweep directory; returns the rows.
pub fn write_report(dir: &Path, m: &Manifest) -> Result<Vec<RecipeRow>> {
    let rows = table(dir, m)?;
    let md = format!(
        "# Sweep: {} jobs\n\nMean ± sd over each recipe's complete seeds; accuracies in % on the split each run evaluates on (its validation split when it has one, else the test set).\n\n{}",
        m.jobs.len(),
        markdown(&rows)
    );
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    write_atomic(&dir.join("report.csv"), csv(&rows).as_bytes())?;
    Ok(rows)
}
