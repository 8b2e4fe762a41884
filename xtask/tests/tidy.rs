//! `cargo xtask tidy` as part of the test suite, so CI enforces the crate boundaries that
//! `docs/ARCHITECTURE.md` states: the light builds' dependencies (an allowed list, at most 15
//! crates), their own tests, and the packaging of every library crate.

use std::process::Command;

#[test]
fn crate_boundaries_hold() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("tidy")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("xtask runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for light in ["under8k-model", "under8k-mnist-data", "under8k-sched"] {
        assert!(
            text.contains(&format!("{light} without default features: tests pass")),
            "{text}"
        );
    }
    assert!(text.contains("package"), "{text}");
}
