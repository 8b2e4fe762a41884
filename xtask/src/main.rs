//! Repository automation; run as `cargo xtask <task>`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: printing is its job
//!
//! `reproduce` (train the three attempts and write `docs/report/`) is not implemented yet.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("reproduce") => anyhow::bail!(
            "`reproduce` (train the three attempts, write docs/report/) is not implemented yet; \
             `cargo run --release -p under8k-cli -- train --attempt N` trains one attempt"
        ),
        Some(other) => anyhow::bail!("unknown task `{other}`; tasks: reproduce"),
        None => anyhow::bail!("usage: cargo xtask <task>; tasks: reproduce"),
    }
}
