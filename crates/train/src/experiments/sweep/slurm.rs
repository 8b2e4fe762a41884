//! Slurm: a sweep becomes one job array, one run per task (`--array=0-(N-1)%K`, `--requeue`,
//! threads from `SLURM_CPUS_PER_TASK`); a script checks on its node that the binary and the
//! data are there and names the node and the path when they are not. `sbatch` does the rest.

use std::path::{Path, PathBuf};
use std::process::Command;

use under8k_model::checkpoint::write_atomic;

use crate::experiments::error::{ExperimentError, Result, io};
use crate::refuse as bail;

/// The first line after the shebang of every script written here: such a file may be
/// rewritten; any other file of the same name is left alone.
pub const MARK: &str = "# Written by under8k; rewritten when the sweep is submitted again.";

/// Where and how the array runs.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--time`, if any (Slurm's format, e.g. `0:30:00`).
    pub time: Option<String>,
    /// At most this many tasks at once (`%K`).
    pub max_running: Option<usize>,
    /// `--cpus-per-task` (and each run's threads).
    pub cpus_per_task: usize,
    /// The `under8k` binary the nodes run (an absolute path they can see).
    pub binary: PathBuf,
    /// The data directory the nodes read (an absolute path they can see).
    pub data: PathBuf,
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The lines every script starts with: the `#SBATCH` options and the node's checks.
fn head(name: &str, out: &Path, opts: &SlurmOptions, array: Option<String>) -> String {
    let mut s = format!("#!/bin/bash\n{MARK}\n#SBATCH --job-name={name}\n");
    if let Some(a) = array {
        s += &format!("#SBATCH --array={a}\n#SBATCH --requeue\n");
    }
    s += &format!("#SBATCH --cpus-per-task={}\n", opts.cpus_per_task.max(1));
    if let Some(p) = &opts.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &opts.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    s += &format!(
        "#SBATCH --output={}\nset -u\nBIN={}\nDATA={}\nnode=$(hostname)\n",
        out.display(),
        quote(&opts.binary),
        quote(&opts.data)
    );
    s += "[ -x \"$BIN\" ] || { echo \"error: on node $node: the under8k binary $BIN is missing or not executable\" >&2; exit 127; }\n";
    s += "[ -d \"$DATA\" ] || { echo \"error: on node $node: the data directory $DATA does not exist\" >&2; exit 66; }\n";
    s
}

/// The job-array script of the sweep in `dir` (absolute) with `jobs` jobs.
pub fn array_script(dir: &Path, jobs: usize, opts: &SlurmOptions) -> Result<String> {
    if jobs == 0 {
        bail!("{}: the sweep has no jobs", dir.display());
    }
    let mut array = format!("0-{}", jobs - 1);
    if let Some(k) = opts.max_running {
        array += &format!("%{}", k.max(1));
    }
    let mut s = head(
        "under8k-sweep",
        &dir.join("slurm").join("%A_%a.out"),
        opts,
        Some(array),
    );
    s += &format!(
        "exec \"$BIN\" sweep run {} --data \"$DATA\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
        quote(dir)
    );
    Ok(s)
}

/// A one-task script that runs `args` of the binary (a research round's next step).
pub fn step_script(name: &str, dir: &Path, args: &[String], opts: &SlurmOptions) -> String {
    let mut s = head(name, &dir.join("slurm").join("%j.out"), opts, None);
    s += "exec \"$BIN\"";
    for a in args {
        s += &format!(" '{}'", a.replace('\'', r"'\''"));
    }
    s + "\n"
}

/// Writes a file under8k generates (a script, a manifest for another engine), unless a file
/// of that name that it did not write is there.
pub fn write_generated(path: &Path, text: &str) -> Result<()> {
    if let Ok(old) = std::fs::read_to_string(path)
        && !old
            .lines()
            .take(2)
            .any(|l| l.starts_with("# Written by under8k"))
    {
        bail!(
            "{}: there is a file of that name that under8k did not write; nothing was changed",
            path.display()
        );
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Writes `script` to `path` (and makes `slurm/` beside it for the logs), unless a file that
/// is not one of ours is there.
pub fn write_script(path: &Path, script: &str) -> Result<()> {
    if let Ok(old) = std::fs::read_to_string(path)
        && old.lines().nth(1) != Some(MARK)
    {
        bail!(
            "{}: there is a file of that name that under8k did not write; nothing was changed",
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let logs = dir.join("slurm");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    write_atomic(path, script.as_bytes())?;
    Ok(())
}

/// Submits `script` with `sbatch` (after `after` succeeds, when given); returns the job id.
pub fn submit(script: &Path, after: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(id) = after {
        cmd.arg(format!("--dependency=afterok:{id}"));
    }
    cmd.arg(script);
    let out = cmd.output().map_err(|e| {
        ExperimentError::Refused(format!(
            "cannot run sbatch ({e}): is this a Slurm submit host?"
        ))
    })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = text.split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        bail!("sbatch {}: unexpected answer `{text}`", script.display());
    }
    Ok(id)
}
