//! `cargo xtask reproduce --quick` end to end (a 2-epoch smoke test on subsets): the report and
//! its PNGs are written, non-empty and decodable; re-running retrains every run and finds it
//! bit-identical, reports an altered history as different (and replaces it only with
//! `--accept`), `--skip-existing` keeps complete runs; and `cargo xtask report` rewrites the
//! report byte for byte from the saved histories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("xtask runs")
}

fn xtask(args: &[&str]) -> String {
    let out = output(args);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xtask {args:?} failed:\n{text}");
    text
}

/// Runs xtask expecting it to fail; returns its stderr.
fn xtask_fails(args: &[&str]) -> String {
    let out = output(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "xtask {args:?} should fail:\n{err}");
    err
}

/// `reproduce --quick` into `out`, with `extra` options.
fn quick(out: &str, extra: &[&str]) -> String {
    xtask(&quick_args(out, extra))
}

/// The arguments of `reproduce --quick` into `out`, with `extra` options.
fn quick_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["reproduce", "--quick", "--out", out, "--data", "data/mnist"];
    args.extend_from_slice(extra);
    args
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = [
        "README.md",
        "comparison.png",
        "curves_attempt1.png",
        "curves_attempt2.png",
        "curves_attempt3.png",
        "lr-find/lr_find.png",
        "lr-find/lr_find.csv",
        "lr-find/sweep.png",
        "lr-find/sweep.csv",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}")),
        )
    })
    .collect();
    v.sort();
    v
}

#[test]
fn quick_reproduce_writes_a_complete_regenerable_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let out_s = out.to_str().unwrap();
    quick(out_s, &["--extras"]);
    let first = files(&out);
    for (name, bytes) in &first {
        if name.ends_with(".csv") {
            // A header, then the range test's 16 steps (one quick epoch of 2,048 / 128
            // batches) or the sweep's 8 rates.
            let rows = if name.ends_with("sweep.csv") { 9 } else { 17 };
            assert_eq!(
                String::from_utf8_lossy(bytes).lines().count(),
                rows,
                "{name}"
            );
            continue;
        }
        assert!(
            bytes.len() > 1000,
            "{name} is suspiciously small ({} bytes)",
            bytes.len()
        );
        if name.ends_with(".png") && !name.starts_with("lr-find") {
            let img = image::load_from_memory(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                img.width() >= 1000 && img.height() >= 600,
                "{name}: {}x{}",
                img.width(),
                img.height()
            );
        }
    }
    let readme = String::from_utf8(
        first
            .iter()
            .find(|(n, _)| n == "README.md")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    for needle in [
        "First attempt",
        "Second attempt",
        "Third attempt",
        "7,684",
        "Quick mode",
        "--quick",
        "| 3 (write-up) | the write-up's own attempt 3: StepLR(1) from lr 0.07",
        "### Choosing the learning rate",
        "![range test](lr-find/lr_find.png)",
        "### What attempt 3 gets wrong",
        "![confusion matrix of attempt 3](eval/confusion.png)",
        "Not yet verified",
    ] {
        assert!(readme.contains(needle), "README lacks {needle:?}");
    }
    for a in 1..=3 {
        let h = out.join(format!("runs/attempt{a}/seed1/history.json"));
        let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap();
        assert_eq!(h["epochs"].as_array().unwrap().len(), 2);
    }
    for f in ["confusion.png", "misclassified.png", "misclassified.csv"] {
        assert!(out.join("eval").join(f).is_file(), "eval/{f}");
    }
    // Run again: every run is retrained and found bit-identical (3 attempts, the write-up's
    // attempt 3, 8 sweep rates), and so is the range test; the report now says so.
    let again = quick(out_s, &["--extras"]);
    assert_eq!(
        again
            .matches("bit-identical to the committed run (2/2 epochs, checkpoint equal)")
            .count(),
        12,
        "{again}"
    );
    assert!(
        again.contains("lr-find range test: bit-identical"),
        "{again}"
    );
    let verified = files(&out);
    let readme =
        String::from_utf8_lossy(&verified.iter().find(|(n, _)| n == "README.md").unwrap().1)
            .into_owned();
    assert!(
        readme.contains("**Verified bit for bit** on 20"),
        "{readme}"
    );
    assert!(
        readme.contains("retrained all 12 runs (24 epochs)"),
        "{readme}"
    );
    // A history altered by hand is reported as different, with the epoch, the figure and both
    // values; nothing is replaced and the report is not rewritten.
    let h = out.join("runs/attempt2/seed1/history.json");
    let original = std::fs::read_to_string(&h).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let real = v["epochs"][1]["test_acc"].as_f64().unwrap();
    v["epochs"][1]["test_acc"] = serde_json::json!(real + 0.01);
    let altered = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&h, &altered).unwrap();
    let o = output(&quick_args(out_s, &["--extras"]));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{text}");
    let want = format!(
        "attempt 2 seed 1: DIFFERS from the committed run: epoch 2 test_acc: committed {}, retrained {real}",
        real + 0.01
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("1 of 13 verified results differ"), "{text}");
    assert_eq!(std::fs::read_to_string(&h).unwrap(), altered);
    assert_eq!(files(&out), verified);
    // --accept replaces it with the retrained run (which is the original again).
    let accepted = quick(out_s, &["--extras", "--accept"]);
    assert!(
        accepted.contains("the retrained run replaces it (--accept)"),
        "{accepted}"
    );
    let restored: serde_json::Value = serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap();
    assert_eq!(restored["epochs"][1]["test_acc"].as_f64(), Some(real));
    // A replaced run is not a verified one: the other 11 runs and the range test are.
    let after_accept = files(&out);
    let readme = String::from_utf8_lossy(
        &after_accept
            .iter()
            .find(|(n, _)| n == "README.md")
            .unwrap()
            .1,
    )
    .into_owned();
    assert!(readme.contains("**Partly verified**"), "{readme}");
    assert!(
        readme.contains("retrained 12 of its 13 results"),
        "{readme}"
    );
    assert!(!readme.contains("attempt 2 seed 1, "), "{readme}");
    // --skip-existing keeps complete runs, and the report comes out the same.
    let kept = quick(out_s, &["--extras", "--skip-existing"]);
    assert_eq!(kept.matches("(kept)").count(), 12, "{kept}");
    assert_eq!(files(&out), after_accept);
    let first = after_accept;
    // `report` alone regenerates it byte for byte.
    for (name, _) in &first {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    xtask(&["report", "--out", out_s]);
    assert_eq!(files(&out), first);
    // Without --extras (the default), the attempts are verified and the extras kept as they
    // are, with their own last verification beside.
    let o = quick(out_s, &[]);
    assert!(o.contains("training or verifying 3 runs (6 epochs)"), "{o}");
    assert!(
        o.contains("are kept as committed; --extras verifies them too"),
        "{o}"
    );
    assert_eq!(
        o.matches("bit-identical to the committed run").count(),
        3,
        "{o}"
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("retrained the 3 runs (6 epochs)"),
        "{readme}"
    );
    assert!(
        readme.contains("were kept as committed by that command"),
        "{readme}"
    );
    assert!(
        readme.contains("### Choosing the learning rate"),
        "{readme}"
    );
}

#[test]
fn a_fresh_report_has_the_three_attempts_alone_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let o = quick(out.to_str().unwrap(), &[]);
    assert_eq!(o.matches(": training into").count(), 3, "{o}");
    assert!(!out.join("lr-find").exists() && !out.join("runs/write-up-attempt3").exists());
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.starts_with(
        "# Reproducing MNIST ≥ 99.4 % with a 7,684-parameter convnet in three attempts"
    ));
    assert!(!readme.contains("Choosing the learning rate"), "{readme}");
}

/// A PyTorch result file as `scripts/torch_reproduce.py` writes it, with the given learning rate
/// and test accuracy per epoch.
fn torch_json(attempt: u8, seed: u64, lrs: &[f64], test_acc: &[f64]) -> String {
    let epochs: Vec<serde_json::Value> = test_acc
        .iter()
        .zip(lrs)
        .enumerate()
        .map(|(i, (a, lr))| {
            serde_json::json!({"epoch": i + 1, "lr": lr, "train_loss": 0.1,
                "train_acc": 98.0, "test_acc": a, "seconds": 60.0})
        })
        .collect();
    serde_json::json!({"attempt": attempt, "seed": seed, "torch": "9.9.9", "threads": 2,
        "epochs": epochs})
    .to_string()
}

#[test]
fn report_sets_saved_pytorch_runs_beside_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let out_s = out.to_str().unwrap();
    quick(out_s, &["--attempts", "3"]);
    let before = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        !before.contains("recipe in PyTorch"),
        "no PyTorch files, no section"
    );
    assert!(
        before.contains("OneCycleLR") && before.contains("departs from the write-up"),
        "attempt 3 is the one-cycle schedule, said so: {before}"
    );
    // The PyTorch side must have run the learning rates our run recorded.
    let ours: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt3/seed1/history.json")).unwrap(),
    )
    .unwrap();
    let lrs: Vec<f64> = ours["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lr"].as_f64().unwrap())
        .collect();
    assert_eq!(lrs.len(), 2);
    let dir = out.join("pytorch/attempt3");
    std::fs::create_dir_all(&dir).unwrap();
    // Two 2-epoch runs. By hand: maxima 99.45 and 99.35 → mean 99.40, sample sd
    // sqrt(2·0.05²/1) = 0.0707 → "0.07"; the lowest of the last (at most three) epochs are
    // 99.41 and 99.20 → mean 99.305 → "99.31" (f64 rounding of 99.305 goes up here), sd 0.148 →
    // "0.15"; only the first run holds 99.4 in every epoch → "1 of 2".
    std::fs::write(
        dir.join("seed1.json"),
        torch_json(3, 1, &lrs, &[99.41, 99.45]),
    )
    .unwrap();
    std::fs::write(
        dir.join("seed2.json"),
        torch_json(3, 2, &lrs, &[99.35, 99.20]),
    )
    .unwrap();
    xtask(&["report", "--out", out_s]);
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("## The same recipe in PyTorch"), "{readme}");
    assert!(readme.contains("PyTorch 9.9.9"), "{readme}");
    assert!(
        readme.contains("`torch.optim.SGD` and `OneCycleLR`"),
        "{readme}"
    );
    assert!(
        readme.contains(
            "| **PyTorch, mean ± sd** | 2 runs | 99.40 ± 0.07 | | 99.31 ± 0.15 | 1 of 2 |"
        ),
        "{readme}"
    );
    assert!(readme.contains("| PyTorch | 2 | 99.35 | 99.35 / 99.20 | 99.20 | no |"));
    let png = std::fs::read(out.join("pytorch_attempt3.png")).unwrap();
    let img = image::load_from_memory(&png).unwrap();
    assert!(img.width() >= 1000 && img.height() >= 600);

    // A result that does not match its path is refused, naming the file.
    std::fs::write(
        dir.join("seed2.json"),
        torch_json(2, 2, &lrs, &[99.35, 99.20]),
    )
    .unwrap();
    let err = xtask_fails(&["report", "--out", out_s]);
    assert!(
        err.contains("seed2.json") && err.contains("not attempt 3 seed 2"),
        "{err}"
    );
    // So is one trained with another schedule (the write-up's StepLR starts at 0.07).
    std::fs::write(
        dir.join("seed2.json"),
        torch_json(
            3,
            2,
            &[0.07, 0.07 * (0.07 - 0.1 / 15.0) / 0.07],
            &[99.35, 99.20],
        ),
    )
    .unwrap();
    let err = xtask_fails(&["report", "--out", out_s]);
    assert!(
        err.contains("seed2.json") && err.contains("another schedule"),
        "{err}"
    );
    // So is an incomplete one.
    std::fs::write(dir.join("seed2.json"), torch_json(3, 2, &lrs, &[99.35])).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["report", "--out", out_s])
        .current_dir(workspace())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("has 1 epochs"),
        "{err}"
    );
}

#[test]
fn write_up_trains_the_write_ups_own_attempt_3() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("write-up");
    let out_s = out.to_str().unwrap();
    quick(out_s, &["--attempts", "3", "--write-up"]);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt3/seed1/config.json")).unwrap(),
    )
    .unwrap();
    // The write-up's γ = (0.07 − 0.1/15)/0.07, evaluated here independently of `sched`.
    assert_eq!(config["schedule"]["kind"], "step");
    assert_eq!(config["schedule"]["lr"], 0.07);
    assert_eq!(
        config["schedule"]["gamma"].as_f64().unwrap(),
        (0.07 - 0.1 / 15.0) / 0.07
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "StepLR(1) from lr 0.07",
        "--attempts 3 --quick --write-up --out",
        "Recipes: the seed write-up's own",
    ] {
        assert!(
            readme.contains(needle),
            "README lacks {needle:?}:\n{readme}"
        );
    }
    assert!(!readme.contains("OneCycleLR"), "{readme}");
    // PyTorch runs of the project's attempt 3 would not match these runs: refused up front
    // (before PyTorch is even looked for), naming the directory and the way out.
    let err = xtask_fails(&["pytorch", "--out", out_s, "--seeds", "1"]);
    assert!(
        err.contains("the write-up's exact recipes") && err.contains("add --write-up"),
        "{err}"
    );
    // The project's attempt 3 is another recipe: without --write-up, reproduce refuses to
    // replace these runs unless told to (--force), and then retrains them.
    let err = xtask_fails(&[
        "reproduce",
        "--quick",
        "--out",
        out_s,
        "--data",
        "data/mnist",
        "--attempts",
        "3",
    ]);
    assert!(
        err.contains("the write-up's exact recipes")
            && err.contains("add --write-up")
            && err.contains("--force"),
        "{err}"
    );
    let again = quick(out_s, &["--attempts", "3", "--force"]);
    assert!(
        !again.contains("(kept)") && !again.contains("retraining to verify"),
        "{again}"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt3/seed1/config.json")).unwrap(),
    )
    .unwrap();
    // 2 epochs × ⌈2048 / 128⌉ batches.
    assert_eq!(config["schedule"]["kind"], "one_cycle");
    assert_eq!(config["schedule"]["total_steps"], 32);
}

/// A directory of the real MNIST files (hard links), test labels replaced by `labels`.
fn mnist_with_labels(labels: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = workspace().join("data/mnist");
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
    ] {
        std::fs::hard_link(real.join(name), dir.path().join(name))
            .or_else(|_| std::fs::copy(real.join(name), dir.path().join(name)).map(drop))
            .unwrap();
    }
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels).unwrap();
    dir
}

#[test]
fn reproduce_keeps_a_foreign_file_trains_on_it_as_idx_and_never_mixes_datasets() {
    // MNIST's test labels, each moved on by one: a valid IDX file that is not MNIST's.
    let real = std::fs::read(workspace().join("data/mnist/t10k-labels-idx1-ubyte")).unwrap();
    let mut mine = real.clone();
    mine[8..].iter_mut().for_each(|l| *l = (*l + 1) % 10);
    let data = mnist_with_labels(&mine);
    let data_s = data.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let out_s = out.to_str().unwrap();

    // As MNIST: refused, the file named and kept, both ways out given, nothing trained.
    let err = xtask_fails(&["reproduce", "--quick", "--out", out_s, "--data", data_s]);
    assert!(
        err.contains("t10k-labels-idx1-ubyte: not MNIST: a valid IDX file, but its MD5 is")
            && err.contains("fetch --repair")
            && err.contains("--dataset idx"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(data.path().join("t10k-labels-idx1-ubyte")).unwrap(),
        mine
    );
    assert!(!out.exists());

    // As an IDX dataset: trained and reported as measured, with no MNIST target.
    let base = ["reproduce", "--quick", "--attempts", "1", "--out", out_s];
    let log = xtask(&[&base[..], &["--dataset", "idx", "--data", data_s]].concat());
    assert!(log.contains("attempt 1 seed 1: training"), "{log}");
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.starts_with("# The seed's attempts on an IDX dataset"),
        "{readme}"
    );
    assert!(
        readme.contains("not MNIST") && !readme.contains("99.4"),
        "{readme}"
    );
    assert!(
        readme.contains(&format!("--dataset idx --data {data_s}")),
        "{readme}"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt1/seed1/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["data"]["dataset"], "idx");
    // The normalisation is computed from the training images, which are MNIST's: 0.1307/0.3081
    // to 4 places (`Normalization::from_pixels`, checked against the constants in mnist-data).
    assert!(
        (config["mean"].as_f64().unwrap() - 0.1307).abs() < 5e-5,
        "{config}"
    );
    // The model, right on MNIST's labels, is wrong on these (each off by one): under 20 %.
    let history: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt1/seed1/history.json")).unwrap(),
    )
    .unwrap();
    assert!(history["epochs"][1]["test_acc"].as_f64().unwrap() < 20.0);

    // The same report directory with MNIST: refused before anything is trained or removed.
    let err = xtask_fails(&[&base[..], &["--data", "data/mnist"]].concat());
    assert!(
        err.contains("holds runs on idx") && err.contains("not mnist"),
        "{err}"
    );
    assert!(out.join("runs/attempt1/seed1/model.safetensors").is_file());
    assert_eq!(
        std::fs::read(data.path().join("t10k-labels-idx1-ubyte")).unwrap(),
        mine
    );
}

#[test]
fn reproduce_trains_another_net_with_arch_and_keeps_report_directories_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let out_s = out.to_str().unwrap();
    // The seed's net with 8 channels in its first conv: 72 + 720 weights instead of 90 + 900.
    let seed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("docs/report/runs/attempt1/seed1/config.json")).unwrap(),
    )
    .unwrap();
    let mut arch = seed["arch"].clone();
    arch["name"] = "narrow-first".into();
    arch["blocks"][0]["layers"][0]["out_channels"] = 8.into();
    let arch_path = tmp.path().join("narrow.json");
    std::fs::write(&arch_path, serde_json::to_string(&arch).unwrap()).unwrap();
    let arch_s = arch_path.to_str().unwrap();
    quick(out_s, &["--attempts", "1", "--arch", arch_s]);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("runs/attempt1/seed1/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["arch"]["name"], "narrow-first");
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    // 7,684 − 18 − 180 − 4 (BatchNorm) = 7,482 parameters.
    assert!(readme.contains("7,482-parameter convnet"), "{readme}");
    assert!(
        readme.contains("`narrow-first`, given with `--arch`"),
        "{readme}"
    );
    // The same directory without --arch: refused, naming both nets.
    let err = xtask_fails(&[
        "reproduce",
        "--quick",
        "--attempts",
        "1",
        "--out",
        out_s,
        "--data",
        "data/mnist",
    ]);
    assert!(
        err.contains("holds runs of the net `narrow-first`") && err.contains("not the seed's net"),
        "{err}"
    );
    // A net that does not fit MNIST: a clear error before anything is trained.
    arch["input"] = serde_json::json!([1, 32, 32]);
    std::fs::write(&arch_path, serde_json::to_string(&arch).unwrap()).unwrap();
    let other = tmp.path().join("other");
    let err = xtask_fails(&[
        "reproduce",
        "--quick",
        "--attempts",
        "1",
        "--out",
        other.to_str().unwrap(),
        "--data",
        "data/mnist",
        "--arch",
        arch_s,
    ]);
    assert!(
        err.contains("takes 1x32x32 inputs but the data's images are 1x28x28"),
        "{err}"
    );
    assert!(!other.exists());
}
