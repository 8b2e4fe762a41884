//! `cargo xtask reproduce --quick` end to end (a 2-epoch smoke test on subsets): the report and
//! its PNGs are written, non-empty and decodable; re-running skips the complete runs; and
//! `cargo xtask report` rewrites the report byte for byte from the saved histories.

use std::path::{Path, PathBuf};
use std::process::Command;

fn xtask(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("xtask runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xtask {args:?} failed:\n{text}");
    text
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
    xtask(&[
        "reproduce",
        "--quick",
        "--out",
        out_s,
        "--data",
        "data/mnist",
    ]);
    let first = files(&out);
    for (name, bytes) in &first {
        assert!(
            bytes.len() > 1000,
            "{name} is suspiciously small ({} bytes)",
            bytes.len()
        );
        if name.ends_with(".png") {
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
    ] {
        assert!(readme.contains(needle), "README lacks {needle:?}");
    }
    for a in 1..=3 {
        let h = out.join(format!("runs/attempt{a}/seed1/history.json"));
        let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap();
        assert_eq!(h["epochs"].as_array().unwrap().len(), 2);
    }
    // Complete runs are skipped, and the report comes out the same.
    let again = xtask(&[
        "reproduce",
        "--quick",
        "--out",
        out_s,
        "--data",
        "data/mnist",
    ]);
    assert_eq!(again.matches("skipped").count(), 3, "{again}");
    assert_eq!(files(&out), first);
    // `report` alone regenerates it byte for byte.
    for (name, _) in &first {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    xtask(&["report", "--out", out_s]);
    assert_eq!(files(&out), first);
}
