//! Compares [`under8k_mnist_data::augment::rotate`] with torchvision's output recorded by
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: printing is its job
//! `scripts/torchvision_rotation.py` (which needs torch; this project does not).
//!
//! ```text
//! python3 scripts/torchvision_rotation.py data/mnist /tmp/rot.bin 2000
//! cargo run --release -p under8k-mnist-data --example check_rotation -- /tmp/rot.bin
//! ```

use under8k_mnist_data::augment::rotate;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: check_rotation FILE")?;
    let bytes = std::fs::read(&path)?;
    let rec = 4 + 2 * 784;
    if bytes.len() % rec != 0 {
        return Err(format!("{path}: not a whole number of records").into());
    }
    let (mut images, mut differing, mut pixels) = (0, 0, 0);
    for r in bytes.chunks_exact(rec) {
        let angle = f32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        let ours = rotate(&r[4..788], 28, 28, angle);
        let diff = ours.iter().zip(&r[788..]).filter(|(a, b)| a != b).count();
        images += 1;
        pixels += diff;
        if diff > 0 {
            differing += 1;
            println!("angle {angle}: {diff} pixels differ");
        }
    }
    println!("{images} images, {differing} differ, {pixels} pixels differ in all");
    Ok(())
}
