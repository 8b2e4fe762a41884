//! `cargo xtask bench --pairs N`: end to end, a whole `under8k train --attempt 3` run (data
//! check, every epoch, every evaluation, checkpoints) against the same recipe in PyTorch
//! (`scripts/torch_reproduce.py`), the two alternating on the same cores; the median of the
//! pairs' ratios and our run's peak resident set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use under8k_train::data::Prepared;
use under8k_train::experiments as ex;

/// One pair: wall seconds of ours and of PyTorch's, and our run's peak resident set (MiB; where
/// `/proc` tells).
pub struct Pair {
    pub ours: f64,
    pub torch: f64,
    pub rss_mib: Option<f64>,
}

/// Runs `cmd` to its end: wall seconds and the highest `VmHWM` read while it ran.
fn timed(cmd: &mut Command, what: &str) -> Result<(f64, Option<f64>)> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut hwm = None;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        }) {
            hwm = Some(kib / 1024.0);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(status.success(), "{what} failed ({status})");
    Ok((start.elapsed().as_secs_f64(), hwm))
}

/// Builds the `under8k` binary from this checkout, in the profile this xtask was built in, and
/// returns its path: the pairs must time the engine of the tree they sit in, never an older
/// binary left in `target/`.
pub fn build_cli() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = match exe
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
    {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "under8k-cli", "--bin", "under8k"])
        .args(["--profile", profile])
        .status()
        .context("running cargo build -p under8k-cli")?;
    ensure!(
        status.success(),
        "cargo build -p under8k-cli failed ({status})"
    );
    let under8k = exe.with_file_name("under8k");
    ensure!(
        under8k.exists(),
        "{} is missing after the build",
        under8k.display()
    );
    Ok(under8k)
}

/// `n` alternating pairs of `epochs`-epoch runs of attempt 3, seed 1, on `threads` threads each,
/// with the binary `under8k` ([`build_cli`]) on the data in `data` (already loaded and checked
/// as `mnist`).
pub fn pairs(
    under8k: &Path,
    data: &Path,
    mnist: &Prepared,
    n: usize,
    epochs: usize,
    threads: usize,
) -> Result<Vec<Pair>> {
    let recipe = ex::Recipe {
        write_up: false,
        quick: false,
        epochs: Some(epochs),
        data: mnist,
        arch: None,
    };
    let config = ex::config(3, 1, &recipe)?;
    let scratch = tempfile::tempdir()?;
    let mut out = vec![];
    for i in 0..n {
        let run = scratch.path().join(format!("run{i}"));
        let (ours, rss_mib) = timed(
            Command::new(under8k)
                .args(["train", "--attempt", "3", "--seed", "1"])
                .args(["--epochs", &epochs.to_string()])
                .arg("--data")
                .arg(data)
                .arg("--out")
                .arg(&run)
                .env("RAYON_NUM_THREADS", threads.to_string()),
            "under8k train",
        )?;
        let (torch, _) = timed(
            Command::new("python3")
                .arg("scripts/torch_reproduce.py")
                .arg(data)
                .args(["3", "1", &threads.to_string()])
                .arg(scratch.path().join(format!("torch{i}.json")))
                .arg(epochs.to_string())
                .arg(serde_json::to_string(&config.schedule)?)
                .arg(config.mean.to_string())
                .arg(config.std.to_string()),
            "scripts/torch_reproduce.py",
        )?;
        println!(
            "pair {}: under8k {ours:.1} s, PyTorch {torch:.1} s: {:.2}×",
            i + 1,
            torch / ours
        );
        out.push(Pair {
            ours,
            torch,
            rss_mib,
        });
    }
    Ok(out)
}
