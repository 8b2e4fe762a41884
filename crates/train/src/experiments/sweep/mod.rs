//! Sweeps: a directory whose manifest (`sweep.jsonl`) lists independent runs, recipes × seeds,
//! each addressed by a stable index. [`plan`] writes it; [`run_index`] runs one job (safe to
//! run twice at once, idempotent, resumable); [`run_all`] runs them on this machine; [`states`]
//! and [`write_report`] read where it stands; [`slurm`] hands it to a Slurm cluster as one job
//! array, [`k8s`] as one Indexed Job. GNU parallel needs nothing more than [`run_index`].

mod exec;
pub mod k8s;
mod manifest;
pub mod slurm;
mod status;

use std::path::{Path, PathBuf};

pub use exec::{Busy, JobOptions, JobResult, Summary, failed_path, is_locked, run_all, run_index};
pub use manifest::{Header, MANIFEST, Manifest, SweepJob, VERSION};
pub use status::{Counts, JobState, RecipeRow, csv, markdown, states, table, write_report};

use crate::TrainConfig;
use crate::data::Prepared;
use crate::experiments::error::Result;
use crate::refuse as bail;

/// A recipe of a sweep: a name (its runs' directory) and a config (whose seed each job replaces).
#[derive(Debug, Clone)]
pub struct Recipe {
    /// A plain name: letters, digits, `.`, `-`, `_`.
    pub name: String,
    /// The config.
    pub config: TrainConfig,
}

/// The run directory of (recipe, seed), relative to the sweep.
pub fn run_dir(recipe: &str, seed: u64) -> PathBuf {
    Path::new("runs").join(recipe).join(format!("seed{seed}"))
}

/// The manifest of `recipes` × `seeds` on `data` (recipe-major: index = recipe × seeds + seed's
/// position): each config takes the data's record and normalisation, the seed, and its
/// one-cycle schedule fitted to the data; each is validated.
pub fn plan(recipes: &[Recipe], seeds: &[u64], data: &Prepared) -> Result<Manifest> {
    if recipes.is_empty() || seeds.is_empty() {
        bail!("nothing to plan: give at least one recipe and one seed");
    }
    let mut jobs = vec![];
    for (i, r) in recipes.iter().enumerate() {
        let plain = !r.name.is_empty()
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !r.name.starts_with('.');
        if !plain {
            bail!(
                "recipe name `{}`: use letters, digits, `.`, `-` and `_` only",
                r.name
            );
        }
        if recipes[..i].iter().any(|o| o.name == r.name) {
            bail!("two recipes are named `{}`", r.name);
        }
        for &seed in seeds {
            let mut c = r.config.clone();
            c.seed = seed;
            c.data = data.record.clone();
            c.mean = data.normalization.mean;
            c.std = data.normalization.std;
            c.fit_schedule(data.data.train.len());
            c.validate()?;
            crate::run::check_fit(&c.arch, &data.data)?;
            c.check_splits(&data.data)?;
            let index = jobs.len();
            jobs.push(SweepJob::new(index, &r.name, c, run_dir(&r.name, seed)));
        }
    }
    Manifest::new(data.record.clone(), jobs)
}
