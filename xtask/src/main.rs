//! Repository automation; run as `cargo xtask <task>`.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("no tasks yet")
}
