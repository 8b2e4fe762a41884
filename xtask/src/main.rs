//! Repository automation; run as `cargo xtask <task>`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: printing is its job
//!
//! `reproduce` (train the three attempts and write `docs/report/`) lands with the training crates.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("reproduce") => anyhow::bail!(
            "`reproduce` needs the model and training crates, which are not built yet (see docs/ARCHITECTURE.md)"
        ),
        Some(other) => anyhow::bail!("unknown task `{other}`; tasks: reproduce"),
        None => anyhow::bail!("usage: cargo xtask <task>; tasks: reproduce"),
    }
}
