//! Sweeps end to end on real engines: one tiny sweep (2 recipes × 2 seeds, 1 epoch on 2,000
//! images) run by `sweep run-all`, by a one-node Slurm cluster (`scripts/slurm-one-node.sh`,
//! which `.ci/run` starts) and by GNU parallel interrupted half way and resumed; every run
//! compared bit for bit. A Slurm task killed mid-run resumes bit-identically; a research round
//! submitted to Slurm writes the same report as a local one; bad input names what is wrong.
//!
//! Without Slurm or GNU parallel on the machine these tests say so and pass, except under CI
//! (`CI` set), which must have them.
#![allow(clippy::print_stderr)] // saying why a test did nothing

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{s, stderr, stdout, under8k};

const BIN: &str = env!("CARGO_BIN_EXE_under8k");

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    stdout(&o) + &stderr(&o)
}

/// Whether `tool` answers; under CI its absence fails the test.
fn have(tool: &str, probe: &[&str]) -> bool {
    let there = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !there {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {tool} (.ci/run installs and starts it)"
        );
        eprintln!("skipped: {tool} is not available here");
    }
    there
}

/// Whether the Slurm cluster `scripts/slurm-one-node.sh` started is up.
fn slurm() -> bool {
    let up = slurm_cmd("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have a Slurm cluster (.ci/run starts scripts/slurm-one-node.sh)"
        );
        eprintln!("skipped: no Slurm cluster here (scripts/slurm-one-node.sh start)");
    }
    up
}

/// A command with Slurm's config, wherever the cluster script put it.
fn slurm_cmd(tool: &str) -> Command {
    let mut c = Command::new(tool);
    if std::env::var_os("SLURM_CONF").is_none() {
        c.env("SLURM_CONF", "/tmp/under8k-slurm/slurm.conf");
    }
    c
}

/// Plans the tiny sweep into `dir` with extra `--set`s.
fn plan(dir: &Path, attempts: &[&str], seeds: &str, sets: &[&str]) {
    let data = data_dir();
    let mut args = vec![
        "sweep",
        "plan",
        s(dir),
        "--seeds",
        seeds,
        "--data",
        s(&data),
    ];
    for a in attempts {
        args.extend(["--attempt", a]);
    }
    for x in sets {
        args.extend(["--set", x]);
    }
    ok(under8k(&args));
}

const TINY: [&str; 3] = ["epochs=1", "train_limit=2000", "test_limit=500"];

/// The history's figures (not its times) and the checkpoint's bytes, per run of the sweep.
fn results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let manifest = std::fs::read_to_string(dir.join("sweep.jsonl")).unwrap();
    manifest
        .lines()
        .skip(1)
        .map(|l| {
            let job: serde_json::Value = serde_json::from_str(l).unwrap();
            let run = dir.join(job["dir"].as_str().unwrap());
            let mut h: serde_json::Value =
                serde_json::from_slice(&std::fs::read(run.join("history.json")).unwrap()).unwrap();
            for e in h["epochs"].as_array_mut().unwrap() {
                for k in ["train_seconds", "eval_seconds", "train_img_per_s"] {
                    e[k] = serde_json::Value::Null;
                }
            }
            (
                h.to_string(),
                std::fs::read(run.join("model.safetensors")).unwrap(),
            )
        })
        .collect()
}

fn status(dir: &Path) -> String {
    ok(under8k(&["sweep", "status", s(dir)]))
}

/// Waits (at most `limit`) until Slurm has no job `id` left.
fn wait_for(id: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let o = slurm_cmd("squeue").args(["-h", "-j", id]).output().unwrap();
        if o.status.success() && stdout(&o).trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "Slurm job {id} still queued: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Submits the sweep in `dir` as an array; returns its id.
fn submit(dir: &Path) -> String {
    let out = ok(slurm_run(&[
        "sweep",
        "slurm",
        s(dir),
        "--cpus-per-task",
        "1",
        "--max-running",
        "2",
        "--submit",
        "--binary",
        BIN,
        "--data",
        s(&data_dir()),
    ]));
    out.lines()
        .find_map(|l| l.strip_prefix("submitted job array "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {out}"))
        .to_string()
}

fn slurm_run(args: &[&str]) -> Output {
    let mut c = slurm_cmd(BIN);
    c.args(args).output().unwrap()
}

#[test]
fn run_all_slurm_and_gnu_parallel_make_the_same_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    plan(&local, &["1", "3"], "2", &TINY);
    let o = ok(under8k(&[
        "sweep",
        "run-all",
        s(&local),
        "--jobs",
        "2",
        "--threads",
        "1",
    ]));
    assert!(o.contains("4 of 4 jobs done (4 run now, 0 kept)"), "{o}");
    assert!(
        status(&local).starts_with("4 jobs: 4 done, 0 running, 0 partial, 0 failed, 0 missing")
    );
    let expected = results(&local);
    // Idempotent: a second run-all keeps everything.
    let o = ok(under8k(&[
        "sweep",
        "run-all",
        s(&local),
        "--jobs",
        "2",
        "--threads",
        "1",
    ]));
    assert!(o.contains("4 of 4 jobs done (0 run now, 4 kept)"), "{o}");
    // The report: one row per recipe over its 2 seeds.
    let o = ok(under8k(&["sweep", "report", s(&local)]));
    assert!(
        o.contains("| `attempt1` | 2 of 2 |") && o.contains("| `attempt3` | 2 of 2 |"),
        "{o}"
    );
    let csv = std::fs::read_to_string(local.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    if have("parallel", &["--version"]) {
        let par = tmp.path().join("parallel");
        plan(&par, &["1", "3"], "2", &TINY);
        let log = tmp.path().join("joblog");
        let line = |extra: &str| {
            format!(
                "'{BIN}' sweep list '{d}' | parallel --joblog '{log}' {extra} '{BIN}' sweep run '{d}' --threads 1 --index {{}}",
                d = par.display(),
                log = log.display()
            )
        };
        // Interrupted half way: parallel stops once two jobs have succeeded.
        let _ = Command::new("sh")
            .args(["-c", &line("-j1 --halt now,success=2")])
            .output();
        let half = status(&par);
        assert!(
            half.starts_with("4 jobs: 2 done, 0 running, 0 partial, 0 failed, 2 missing"),
            "{half}"
        );
        ok(Command::new("sh")
            .args(["-c", &line("-j2 --resume")])
            .output()
            .unwrap());
        assert!(status(&par).starts_with("4 jobs: 4 done"));
        assert!(
            results(&par) == expected,
            "GNU parallel's runs differ from run-all's"
        );
    }

    if slurm() {
        let sl = tmp.path().join("slurm");
        plan(&sl, &["1", "3"], "2", &TINY);
        let id = submit(&sl);
        wait_for(&id, Duration::from_secs(300));
        let st = status(&sl);
        assert!(st.starts_with("4 jobs: 4 done"), "{st}");
        let script = std::fs::read_to_string(sl.join("sweep.sbatch")).unwrap();
        for needle in [
            "#SBATCH --array=0-3%2",
            "#SBATCH --requeue",
            "--threads \"${SLURM_CPUS_PER_TASK",
        ] {
            assert!(script.contains(needle), "{needle} missing from\n{script}");
        }
        assert!(
            results(&sl) == expected,
            "Slurm's runs differ from run-all's"
        );
    }
}

#[test]
fn a_killed_slurm_task_resumes_bit_identically() {
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["epochs=4", "train_limit=6000", "test_limit=500"];
    let reference = tmp.path().join("reference");
    plan(&reference, &["3"], "1", &sets);
    ok(under8k(&[
        "sweep",
        "run-all",
        s(&reference),
        "--threads",
        "1",
    ]));
    let dir = tmp.path().join("killed");
    plan(&dir, &["3"], "1", &sets);
    let id = submit(&dir);
    let history = dir.join("runs/attempt3/seed1/history.json");
    let start = Instant::now();
    let epochs = |p: &Path| -> usize {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(0, |h| h["epochs"].as_array().map_or(0, Vec::len))
    };
    while epochs(&history) == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "no epoch saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(slurm_cmd("scancel")
        .args(["--signal=KILL", &format!("{id}_0")])
        .output()
        .unwrap());
    wait_for(&id, Duration::from_secs(60));
    let saved = epochs(&history);
    assert!(
        saved < 4,
        "the task finished before it was killed: make the run longer"
    );
    assert!(status(&dir).contains("1 partial"), "{}", status(&dir));
    let o = ok(under8k(&[
        "sweep",
        "run",
        s(&dir),
        "--index",
        "0",
        "--threads",
        "2",
        "--data",
        s(&data_dir()),
    ]));
    assert!(o.contains("(resuming)"), "{o}");
    assert!(
        results(&dir) == results(&reference),
        "resumed after a kill at epoch {saved}, the run differs"
    );
}

/// A research round's files: a goal and two candidates that extend attempt 1.
fn research_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("candidates")).unwrap();
    std::fs::write(
        dir.join("goal.json"),
        r#"{"title": "Tiny", "max_params": 8000, "target": 90.0, "rule": "median", "max_epochs": 15, "max_batch": 128}"#,
    )
    .unwrap();
    for (name, lr) in [("slow", 0.005), ("fast", 0.05)] {
        let c = serde_json::json!({
            "extends": "attempt1", "epochs": 1, "train_limit": 2000, "test_limit": 500,
            "validation": 1000, "schedule": {"kind": "constant", "lr": lr}
        });
        std::fs::write(dir.join(format!("candidates/{name}.json")), c.to_string()).unwrap();
    }
}

#[test]
fn a_research_round_on_slurm_writes_the_local_report_byte_for_byte() {
    if !slurm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = std::path::absolute(tmp.path().join("round")).unwrap();
    research_dir(&out);
    let data = data_dir();
    let args = [
        "research",
        "--out",
        s(&out),
        "--seeds",
        "2",
        "--candidate-seeds",
        "2",
    ];
    let mut local = args.to_vec();
    local.extend(["--jobs", "2", "--threads", "1", "--data", s(&data)]);
    let log = ok(under8k(&local));
    assert!(log.contains("chosen on validation:"), "{log}");
    let files = [
        "README.md",
        "research.json",
        "curves.png",
        "spec.json",
        "summary.txt",
    ];
    let read = |d: &Path| -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| std::fs::read(d.join(f)).unwrap())
            .collect()
    };
    let first = read(&out);
    std::fs::rename(&out, tmp.path().join("local")).unwrap();
    research_dir(&out);
    let mut remote = args.to_vec();
    remote.extend([
        "--slurm-submit",
        "--cpus-per-task",
        "1",
        "--binary",
        BIN,
        "--data",
        s(&data),
    ]);
    let o = ok(slurm_run(&remote));
    assert!(o.contains("submitted as Slurm array"), "{o}");
    let start = Instant::now();
    while !out.join("README.md").exists() {
        let failed = std::fs::read_dir(out.join("slurm"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("error:")));
        assert!(
            !failed && start.elapsed() < Duration::from_secs(300),
            "the round did not finish"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let q = slurm_cmd("squeue").args(["-h"]).output().unwrap();
    assert!(stdout(&q).trim().is_empty() || out.join("README.md").exists());
    assert!(
        read(&out) == first,
        "the Slurm round's report differs from the local one"
    );
}

#[test]
fn bad_sweep_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    plan(&dir, &["1"], "2", &TINY);
    let o = under8k(&[
        "sweep",
        "run",
        s(&dir),
        "--index",
        "7",
        "--data",
        s(&data_dir()),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the sweep has 2 jobs (indices 0–1)"),
        "{}",
        stderr(&o)
    );
    let o = under8k(&[
        "sweep",
        "run",
        s(&dir),
        "--index",
        "0",
        "--data",
        "/nonexistent/mnist",
    ]);
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains("on node ")
            && e.contains("/nonexistent/mnist does not exist"),
        "{e}"
    );
    let path = dir.join("sweep.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"batch_size\":128", "\"batch_size\":64", 1),
    )
    .unwrap();
    let o = under8k(&["sweep", "status", s(&dir)]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("sweep.jsonl:2: the config was changed after planning"),
        "{e}"
    );
    // Planning another sweep over it is refused; the hand-edited file stays.
    let o = under8k(&[
        "sweep",
        "plan",
        s(&dir),
        "--attempt",
        "2",
        "--data",
        s(&data_dir()),
    ]);
    assert!(!o.status.success());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"batch_size\":64")
    );
    // A missing binary on a node: the script names the node and the path.
    std::fs::write(&path, text).unwrap();
    let o = ok(under8k(&[
        "sweep",
        "slurm",
        s(&dir),
        "--binary",
        "/nonexistent/under8k",
        "--data",
        s(&data_dir()),
    ]));
    let script = o.lines().next().unwrap().to_string();
    let r = Command::new("bash")
        .arg(&script)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .unwrap();
    let e = stderr(&r);
    assert!(
        !r.status.success()
            && e.contains("on node ")
            && e.contains("/nonexistent/under8k is missing"),
        "{e}"
    );
}

#[test]
fn a_kubernetes_indexed_job_has_the_sweeps_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    plan(&dir, &["1", "2"], "3", &TINY);
    let o = ok(under8k(&[
        "sweep",
        "k8s",
        s(&dir),
        "--image",
        "example/under8k:1",
        "--parallelism",
        "4",
        "--sweep-claim",
        "sweeps",
        "--data-claim",
        "mnist",
    ]));
    let yaml = std::fs::read_to_string(o.lines().next().unwrap()).unwrap();
    for needle in [
        "kind: Job",
        "completionMode: Indexed",
        "completions: 6",
        "parallelism: 4",
        "image: example/under8k:1",
        r#"command: ["under8k", "sweep", "run", "/sweep", "--data", "/data", "--threads", "1"]"#,
        "claimName: sweeps",
        "claimName: mnist",
    ] {
        assert!(yaml.contains(needle), "{needle} missing from\n{yaml}");
    }
    // Only spaces indent YAML, and every line of the spec is indented by an even number.
    assert!(
        yaml.lines()
            .all(|l| !l.starts_with('\t') && (l.len() - l.trim_start().len()) % 2 == 0)
    );
    // `sweep run` takes the index Kubernetes gives each pod.
    let data = data_dir();
    let r = Command::new(BIN)
        .args([
            "sweep",
            "run",
            s(&dir),
            "--data",
            s(&data),
            "--threads",
            "1",
        ])
        .env("JOB_COMPLETION_INDEX", "5")
        .output()
        .unwrap();
    assert!(ok(r).contains("attempt2 seed 3 (job 5): training"));
}

#[test]
fn two_processes_on_one_index_make_one_uncorrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, reference) = (tmp.path().join("twice"), tmp.path().join("once"));
    let sets = ["epochs=2", "train_limit=3000", "test_limit=500"];
    plan(&dir, &["3"], "1", &sets);
    plan(&reference, &["3"], "1", &sets);
    let data = data_dir();
    let start = |d: &Path| {
        Command::new(BIN)
            .args([
                "sweep",
                "run",
                s(d),
                "--index",
                "0",
                "--threads",
                "1",
                "--data",
                s(&data),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(&dir), start(&dir));
    let logs: Vec<String> = [a, b]
        .into_iter()
        .map(|c| ok(c.wait_with_output().unwrap()))
        .collect();
    let trained = logs
        .iter()
        .filter(|l| l.contains("(job 0): training into"))
        .count();
    assert_eq!(trained, 1, "{logs:?}");
    // The other waited (or came after) and kept the complete run.
    assert!(logs.iter().any(|l| l.contains("(kept)")), "{logs:?}");
    ok(under8k(&[
        "sweep",
        "run",
        s(&reference),
        "--index",
        "0",
        "--threads",
        "2",
        "--data",
        s(&data),
    ]));
    assert!(
        results(&dir) == results(&reference),
        "the run written while another process waited differs"
    );
    // While another process holds the run directory's lock, --no-wait says the job is busy and
    // exits with 75 (EX_TEMPFAIL), writing nothing.
    let busy = tmp.path().join("busy");
    plan(&busy, &["3"], "1", &sets);
    let run_dir = busy.join("runs/attempt3/seed1");
    std::fs::create_dir_all(&run_dir).unwrap();
    let lock = std::fs::File::open(&run_dir).unwrap();
    lock.lock().unwrap();
    let o = Command::new(BIN)
        .args([
            "sweep",
            "run",
            s(&busy),
            "--index",
            "0",
            "--no-wait",
            "--data",
            s(&data),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("busy (another process holds"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);
    assert!(status(&busy).contains("1 running"), "{}", status(&busy));
    drop(lock);
}
