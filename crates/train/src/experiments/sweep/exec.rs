//! Running a sweep's jobs: one by index (what a Slurm array task or an Indexed Job does), or
//! all of them on this machine. A job holds a lock on its run directory while it works, so
//! two processes never write one run: the second waits, or says the job is busy. A complete run
//! is kept, a partial one resumes bit for bit, a missing one trains; the bits do not depend on
//! the thread count.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use under8k_model::checkpoint::write_atomic;

use super::manifest::{Manifest, SweepJob};
use crate::data::Prepared;
use crate::experiments::Log;
use crate::experiments::error::{ExperimentError, Result, io};
use crate::experiments::reproduce::{Job, Mode, RunState, run_job, run_state};
use crate::experiments::verify::Outcome;
use crate::refuse as bail;

/// What a second process does when a job's lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Wait for the first to finish (then, usually, find the run complete).
    Wait,
    /// Return [`JobResult::Busy`] at once.
    Skip,
}

/// How one job ended.
#[derive(Debug, PartialEq)]
pub enum JobResult {
    /// It ran (trained, resumed, kept or verified).
    Done(Outcome),
    /// Another process holds its lock.
    Busy,
    /// Stopped at a batch boundary (the last complete epoch is saved).
    Interrupted,
}

/// Where a failed job leaves its error: `<dir>.failed`, beside it.
pub fn failed_path(run_dir: &Path) -> PathBuf {
    let mut name = run_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".failed");
    run_dir.with_file_name(name)
}

/// The run directory opened for locking (made first if need be): the lock is the
/// directory's own, so a sweep leaves no lock files behind.
pub(crate) fn open_lock(run_dir: &Path) -> Result<File> {
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    File::open(run_dir).map_err(io(run_dir))
}

/// Whether another process holds the run directory's lock now.
pub fn is_locked(run_dir: &Path) -> bool {
    File::open(run_dir)
        .map(|f| matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)))
        .unwrap_or(false)
}

/// How a job runs: how complete runs are treated and what to do when it is busy.
#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    /// Complete runs: kept ([`Mode::SkipExisting`]) or verified.
    pub mode: Mode,
    /// When another process holds the job.
    pub busy: Busy,
    /// Rayon threads for this job's training (the bits do not depend on it).
    pub threads: usize,
}

/// Runs job `index` of the sweep in `dir` (manifest `m`) on `data`.
pub fn run_index(
    dir: &Path,
    m: &Manifest,
    index: usize,
    data: &Prepared,
    opts: JobOptions,
    stop: &AtomicBool,
    log: Log,
) -> Result<JobResult> {
    let job = m.job(index)?;
    let run_dir = dir.join(&job.dir);
    let lock = open_lock(&run_dir)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) if opts.busy == Busy::Wait => {
            log(&format!(
                "{}: busy (another process holds {}); waiting for it",
                job.label(),
                run_dir.display()
            ));
            lock.lock().map_err(io(&run_dir))?;
        }
        Err(TryLockError::WouldBlock) => {
            log(&format!(
                "{}: busy (another process holds {})",
                job.label(),
                run_dir.display()
            ));
            return Ok(JobResult::Busy);
        }
        Err(TryLockError::Error(e)) => return Err(io(&run_dir)(e)),
    }
    let result = with_pool(opts.threads, || {
        locked(job, &run_dir, data, opts.mode, stop, log)
    });
    let failed = failed_path(&run_dir);
    match &result {
        Err(e) => {
            write_atomic(&failed, format!("{e}\n").as_bytes())?;
        }
        Ok(_) if failed.exists() => std::fs::remove_file(&failed).map_err(io(&failed))?,
        Ok(_) => {}
    }
    drop(lock);
    result
}

/// The job's work, under its lock.
fn locked(
    job: &SweepJob,
    run_dir: &Path,
    data: &Prepared,
    mode: Mode,
    stop: &AtomicBool,
    log: Log,
) -> Result<JobResult> {
    match run_state(run_dir, &job.config) {
        RunState::Other => bail!(
            "{}: {} holds a run of another config; nothing was changed (move it away, or plan the sweep into another directory)",
            job.label(),
            run_dir.display()
        ),
        RunState::Missing if has_files(run_dir)? => bail!(
            "{}: {} is not empty and holds no run; nothing was changed",
            job.label(),
            run_dir.display()
        ),
        _ => {}
    }
    let j = Job {
        label: job.label(),
        config: job.config.clone(),
        dir: run_dir.to_path_buf(),
    };
    match run_job(&j, data, mode, stop, log) {
        Ok(o) => Ok(JobResult::Done(o)),
        Err(_) if stop.load(Ordering::Relaxed) => Ok(JobResult::Interrupted),
        Err(e) => Err(e),
    }
}

fn has_files(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// What [`run_all`] did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Jobs that ran to the end (trained, resumed, kept or verified).
    pub done: Vec<(usize, Outcome)>,
    /// Jobs another process held.
    pub busy: Vec<usize>,
    /// Jobs that failed, with their errors.
    pub failed: Vec<(usize, ExperimentError)>,
    /// Jobs stopped by the stop flag.
    pub interrupted: Vec<usize>,
}

/// Runs every job of the sweep in `dir` on this machine, `jobs` at a time, each on its own pool
/// of `opts.threads` threads (jobs another process holds are left to it). One job's failure does
/// not stop the others.
pub fn run_all(
    dir: &Path,
    m: &Manifest,
    data: &Prepared,
    jobs: usize,
    opts: JobOptions,
    stop: &AtomicBool,
    log: Log,
) -> Summary {
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Summary::default());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, m.jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= m.jobs.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = run_index(dir, m, i, data, opts, stop, log);
                    let mut sum = results.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(JobResult::Done(o)) => sum.done.push((i, o)),
                        Ok(JobResult::Busy) => sum.busy.push(i),
                        Ok(JobResult::Interrupted) => sum.interrupted.push(i),
                        Err(e) => {
                            log(&format!("{}: FAILED: {e}", m.jobs[i].label()));
                            sum.failed.push((i, e));
                        }
                    }
                }
            });
        }
    });
    let mut sum = results.into_inner().unwrap_or_else(|e| e.into_inner());
    sum.done.sort_by_key(|(i, _)| *i);
    sum.busy.sort_unstable();
    sum.failed.sort_by_key(|(i, _)| *i);
    sum.interrupted.sort_unstable();
    sum
}
