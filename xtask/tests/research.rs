//! `cargo xtask research` end to end on a toy goal (one-epoch runs on subsets): candidates are
//! trained on the validation split and never see the test set, the one holding the highest
//! validation accuracy is chosen and trained with every seed, the report says whether the goal
//! is met, a second run verifies every run bit for bit, and bad candidates are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("xtask runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Attempt 1's config (the seed's net), trained on 512 images for one epoch, validated on the
/// last 1,000 training images, at constant rate `lr`.
fn candidate(lr: f64) -> serde_json::Value {
    let mut c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("docs/report/runs/attempt1/seed1/config.json"))
            .unwrap(),
    )
    .unwrap();
    c["epochs"] = 1.into();
    c["train_limit"] = 512.into();
    c["test_limit"] = 300.into();
    c["validation"] = 1000.into();
    c["schedule"] = serde_json::json!({"kind": "constant", "lr": lr});
    c
}

fn write(path: &Path, v: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

#[test]
fn research_chooses_on_validation_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("goal");
    let out_s = out.to_str().unwrap();
    write(
        &out.join("goal.json"),
        &serde_json::json!({"title": "Toy goal", "max_params": 8000, "target": 50.0,
            "rule": {"at_least": 2}, "max_epochs": 15, "max_batch": 128}),
    );
    // A rate that learns in one epoch of 4 batches and one that barely moves.
    write(&out.join("candidates/fast.json"), &candidate(0.05));
    write(&out.join("candidates/slow.json"), &candidate(0.0001));
    let args = ["research", "--out", out_s, "--seeds", "2"];
    let o = xtask(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("chosen on validation: fast"),
        "{}",
        text(&o)
    );
    // The search runs evaluated on the 1,000 validation images, never on the test set.
    for name in ["fast", "slow"] {
        let h: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("search/{name}/history.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(h["epochs"][0]["test_total"], 1000, "{name}");
    }
    // The final runs: no validation split, tested on the test set's first 300 images.
    for seed in 1..=2 {
        let dir = out.join(format!("runs/seed{seed}"));
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert!(c.get("validation").is_none());
        assert_eq!(c["seed"], seed);
        let h: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("history.json")).unwrap()).unwrap();
        assert_eq!(h["epochs"][0]["test_total"], 300);
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for needle in [
        "# Toy goal",
        "| `fast` **(chosen)** |",
        "| `slow` |",
        "## Search log: every recipe tried",
        "Trained on",
    ] {
        assert!(
            readme.contains(needle),
            "README lacks {needle:?}:\n{readme}"
        );
    }
    assert!(readme.contains("**Outcome: met.**") || readme.contains("**Outcome: not met.**"));
    for f in ["spec.json", "summary.txt", "curves.png", "research.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Again: every run retrained and found identical; the report says so.
    let o = xtask(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o)
            .matches("bit-identical to the committed run")
            .count(),
        4,
        "{}",
        text(&o)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("Verified bit for bit on 20"), "{readme}");
    // A PyTorch result beside it gets its section.
    let epochs = serde_json::json!([{"epoch": 1, "lr": 0.05, "train_loss": 1.0, "train_acc": 60.0,
        "test_acc": 71.5, "seconds": 1.0}]);
    write(
        &out.join("pytorch/seed1.json"),
        &serde_json::json!({"attempt": 0, "seed": 1, "torch": "2.x", "threads": 2,
            "epochs": epochs}),
    );
    let o = xtask(&[
        "research",
        "--out",
        out_s,
        "--seeds",
        "2",
        "--skip-existing",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("## The same recipe in PyTorch") && readme.contains("| 1 | 71.50 |"),
        "{readme}"
    );
    assert!(
        readme.contains("Verified bit for bit"),
        "--skip-existing keeps the verification"
    );
    // After a change of the engine's numerics: runs recorded with version 1 (no "numerics"
    // field) are compared by their figures, not their bits. `--keep-search` leaves the search
    // as it is and re-accepts only the finals; the report says which version each part has.
    let as_version_1 = |dir: &Path| {
        let path = dir.join("history.json");
        let mut h: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        h.as_object_mut().unwrap().remove("numerics");
        write(&path, &h);
    };
    for dir in ["search/fast", "search/slow", "runs/seed1", "runs/seed2"] {
        as_version_1(&out.join(dir));
    }
    let keep = ["research", "--out", out_s, "--seeds", "2", "--keep-search"];
    let o = xtask(&keep);
    assert!(!o.status.success(), "{}", text(&o));
    let now = under8k_model::NUMERICS_VERSION;
    assert!(
        text(&o).contains(&format!(
            "numerics version 1, this engine computes version {now}"
        )) && !text(&o)
            .lines()
            .any(|l| l.contains("retraining to verify") && l.contains("search")),
        "{}",
        text(&o)
    );
    let o = xtask(&[&keep[..], &["--accept"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("the retrained run replaces it").count(),
        2,
        "{}",
        text(&o)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("numerics version 1 and kept as they are")
            && readme.contains(&format!("the final runs with version {now}")),
        "{readme}"
    );
    // A candidate over the budget, or without a validation split, is refused by name.
    let mut big = candidate(0.05);
    big["validation"] = serde_json::Value::Null;
    write(&out.join("candidates/novalidation.json"), &big);
    let o = xtask(&args);
    assert!(
        !o.status.success() && text(&o).contains("novalidation.json: has no validation split"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(out.join("candidates/novalidation.json")).unwrap();
    write(
        &out.join("goal.json"),
        &serde_json::json!({"title": "Toy goal", "max_params": 5000, "target": 50.0,
            "rule": "median", "max_epochs": 15, "max_batch": 128}),
    );
    let o = xtask(&args);
    assert!(
        !o.status.success() && text(&o).contains("has 7684 parameters, over 5000"),
        "{}",
        text(&o)
    );
}
