//! The README's generated tables (results, goals), rewritten from the committed reports by
//! `cargo xtask report` and after `reproduce` and `research` write into `docs/`.

use std::path::Path;

use anyhow::Result;
use under8k_model::checkpoint::write_atomic;
use under8k_train::experiments::readme;

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Rewrites the README's tables; says whether they changed.
pub fn update() -> Result<bool> {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path)?;
    let new = readme::refresh(&text, &root().join("docs"))?;
    if new == text {
        return Ok(false);
    }
    write_atomic(&path, new.as_bytes())?;
    Ok(true)
}

/// Whether `out` is one of the reports the README quotes.
pub fn quotes(out: &Path) -> bool {
    readme::QUOTED.iter().any(|name| {
        let d = Path::new("docs").join(name);
        out == d || out.ends_with(&d)
    })
}
