//! A sweep's manifest, `sweep.jsonl`: a header line, then one line per job (its stable index,
//! recipe, seed, run directory, config and the config's fingerprint). One job a line, so an
//! error names the line; the fingerprint tells a hand-edited config from a planned one.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use under8k_model::checkpoint::write_atomic;

use crate::TrainConfig;
use crate::config::DataRecord;
use crate::experiments::error::{ExperimentError, Result, io};
use crate::refuse as bail;

/// The manifest's file name inside a sweep directory.
pub const MANIFEST: &str = "sweep.jsonl";
/// The manifest format this build reads and writes.
pub const VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The format's version ([`VERSION`]).
    pub under8k_sweep: u32,
    /// How many jobs follow.
    pub jobs: usize,
    /// The data every job trains on.
    pub data: DataRecord,
}

/// One independent run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepJob {
    /// Its stable index (0, 1, …): a Slurm array task, an Indexed Job's completion index.
    pub index: usize,
    /// The recipe's name: runs of one recipe differ only by seed.
    pub recipe: String,
    /// The seed.
    pub seed: u64,
    /// The run directory, relative to the sweep directory.
    pub dir: PathBuf,
    /// The config's fingerprint, in hex ([`TrainConfig::fingerprint`]).
    pub fingerprint: String,
    /// The whole config.
    pub config: TrainConfig,
}

impl SweepJob {
    /// A job of `config` (whose seed it takes) in `dir`.
    pub fn new(index: usize, recipe: &str, config: TrainConfig, dir: PathBuf) -> Self {
        Self {
            index,
            recipe: recipe.to_string(),
            seed: config.seed,
            dir,
            fingerprint: format!("{:016x}", config.fingerprint()),
            config,
        }
    }

    /// A short name for logs: `recipe seed S (job I)`.
    pub fn label(&self) -> String {
        format!("{} seed {} (job {})", self.recipe, self.seed, self.index)
    }
}

/// A sweep: its header and jobs, in index order.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The first line.
    pub header: Header,
    /// One per index.
    pub jobs: Vec<SweepJob>,
}

impl Manifest {
    /// A manifest of `jobs` (their indices must be 0, 1, …) on `data`, checked as a read one is.
    pub fn new(data: DataRecord, jobs: Vec<SweepJob>) -> Result<Self> {
        let m = Self {
            header: Header {
                under8k_sweep: VERSION,
                jobs: jobs.len(),
                data,
            },
            jobs,
        };
        for (i, j) in m.jobs.iter().enumerate() {
            check_job(j, i, &m.header.data).map_err(|why| {
                ExperimentError::Refused(format!("job {i} ({}): {why}", j.recipe))
            })?;
        }
        check_unique_dirs(&m.jobs, |i| format!("job {i}"))?;
        Ok(m)
    }

    /// The manifest as its file holds it.
    pub fn to_jsonl(&self) -> String {
        let mut s = serde_json::to_string(&self.header).expect("a header serialises") + "\n";
        for j in &self.jobs {
            s += &(serde_json::to_string(j).expect("a job serialises") + "\n");
        }
        s
    }

    /// Parses a manifest's text; `path` names it in errors, each with its line.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let at = |line: usize, why: String| {
            ExperimentError::Refused(format!("{}:{line}: {why}", path.display()))
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let Some((_, first)) = lines.next() else {
            bail!("{}: empty, not a sweep manifest", path.display());
        };
        let header: Header = serde_json::from_str(first)
            .map_err(|e| at(1, format!("not a sweep manifest's header: {e}")))?;
        if header.under8k_sweep != VERSION {
            return Err(at(
                1,
                format!(
                    "manifest version {}, this build reads version {VERSION}",
                    header.under8k_sweep
                ),
            ));
        }
        let mut jobs = vec![];
        for (n, line) in lines {
            if line.trim().is_empty() {
                return Err(at(n, "an empty line".into()));
            }
            let job: SweepJob =
                serde_json::from_str(line).map_err(|e| at(n, format!("not a job: {e}")))?;
            check_job(&job, jobs.len(), &header.data).map_err(|why| at(n, why))?;
            jobs.push(job);
        }
        if jobs.len() != header.jobs {
            return Err(at(
                1,
                format!(
                    "the header says {} jobs, the file has {}",
                    header.jobs,
                    jobs.len()
                ),
            ));
        }
        check_unique_dirs(&jobs, |i| format!("{}:{}", path.display(), i + 2))?;
        Ok(Self { header, jobs })
    }

    /// The manifest of the sweep in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ExperimentError::Refused(format!(
                "{}: no sweep manifest (plan the sweep first)",
                path.display()
            )),
            _ => io(&path)(e),
        })?;
        Self::parse(&text, &path)
    }

    /// The sweep in `dir`, if it has a manifest.
    pub fn existing(dir: &Path) -> Result<Option<Self>> {
        match dir.join(MANIFEST).exists() {
            true => Self::read(dir).map(Some),
            false => Ok(None),
        }
    }

    /// Writes the manifest into `dir`, unless another sweep's is there (the same one is kept
    /// as it is: planning twice is harmless).
    pub fn write_new(&self, dir: &Path) -> Result<()> {
        if let Some(old) = Self::existing(dir)? {
            if old == *self {
                return Ok(());
            }
            bail!(
                "{} already holds another sweep ({} jobs): give another directory",
                dir.display(),
                old.jobs.len()
            );
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_atomic(&dir.join(MANIFEST), self.to_jsonl().as_bytes())?;
        Ok(())
    }

    /// Writes the manifest into `dir`, replacing one that differs: for sweeps derived from
    /// other files (a research round's), whose runs are still checked against their configs.
    pub fn write_over(&self, dir: &Path) -> Result<()> {
        if Self::existing(dir).ok().flatten().as_ref() == Some(self) {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_atomic(&dir.join(MANIFEST), self.to_jsonl().as_bytes())?;
        Ok(())
    }

    /// The job of `index`, or an error that names the job count.
    pub fn job(&self, index: usize) -> Result<&SweepJob> {
        self.jobs.get(index).ok_or_else(|| {
            ExperimentError::Refused(match self.jobs.len() {
                0 => format!("job index {index}: the sweep has no jobs"),
                n => format!(
                    "job index {index} is out of range: the sweep has {n} jobs (indices 0–{})",
                    n - 1
                ),
            })
        })
    }
}

/// Why a job cannot be run as it stands, if it cannot.
fn check_job(job: &SweepJob, index: usize, data: &DataRecord) -> Result<(), String> {
    if job.index != index {
        return Err(format!(
            "index {} where {index} was expected (jobs are numbered 0, 1, … in order)",
            job.index
        ));
    }
    let fingerprint = format!("{:016x}", job.config.fingerprint());
    if job.fingerprint != fingerprint {
        return Err(format!(
            "the config was changed after planning (its fingerprint is {fingerprint}, the line says {}): plan the sweep again instead of editing it",
            job.fingerprint
        ));
    }
    if job.seed != job.config.seed {
        return Err(format!(
            "seed {} but the config's seed is {}",
            job.seed, job.config.seed
        ));
    }
    if job.config.data != *data {
        return Err("trains on other data than the header names".into());
    }
    let plain = job.dir.components().count() > 0
        && job
            .dir
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "run directory `{}` is not a plain path inside the sweep",
            job.dir.display()
        ));
    }
    job.config.validate().map_err(|e| e.to_string())
}

/// Refuses two jobs in one run directory.
fn check_unique_dirs(jobs: &[SweepJob], name: impl Fn(usize) -> String) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Some(first) = seen.insert(&j.dir, i) {
            bail!(
                "{}: run directory `{}` is also job {first}'s",
                name(i),
                j.dir.display()
            );
        }
    }
    Ok(())
}
