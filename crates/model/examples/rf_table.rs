//! The summary of a spec file (or of the seed's net): shapes, parameters, receptive field, jump
//! and start per layer. Uses only the light build: `cargo run -p under8k-model
//! --no-default-features --example rf_table -- [SPEC.json]`.
#![allow(clippy::print_stdout)] // an example program: printing is its job

use under8k_model::{ArchSpec, Summary};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = match std::env::args().nth(1) {
        Some(path) => ArchSpec::from_file(path.as_ref())?,
        None => ArchSpec::seed(),
    };
    print!("{}", Summary::of(&spec)?.to_table());
    Ok(())
}
