//! Saves a freshly initialised seed net (seed 3, after one training-mode forward) and prints its
//! eval-mode output on the PyTorch fixture's input, for `scripts/seed_net.py load` to compare:
//!
//! ```text
//! cargo run -p under8k-model --example save_checkpoint -- /tmp/ours.safetensors
//! python3 scripts/seed_net.py load /tmp/ours.safetensors
//! ```
#![allow(clippy::print_stdout)]

use candle_core::{DType, Device};
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::{ArchSpec, Net, checkpoint};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: save_checkpoint OUT.safetensors")?;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let io = checkpoint::read_tensors(&fixtures.join("seed_torch_io.safetensors"))?;
    let net = Net::new(
        &ArchSpec::seed(),
        &mut ChaCha8Rng::seed_from_u64(3),
        ChaCha8Rng::seed_from_u64(4),
        DType::F32,
        &Device::Cpu,
    )?;
    net.forward_t(&io["input"], true)?;
    checkpoint::save(&net, std::path::Path::new(&out))?;
    println!(
        "{:?}",
        net.forward_t(&io["input"], false)?.to_vec2::<f32>()?
    );
    Ok(())
}
