//! What an IDX file holds (raw or gzip): its kind, dimensions, and for labels the class counts.
//! Uses only the light build: `cargo run -p under8k-mnist-data --no-default-features --example
//! idx_info -- FILE`.
#![allow(clippy::print_stdout)] // an example program: printing is its job

use under8k_mnist_data::idx;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: idx_info FILE")?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    if let Ok(images) = idx::decode_images(&bytes) {
        println!(
            "{path}: {} images of {}x{}",
            images.count, images.rows, images.cols
        );
        return Ok(());
    }
    let labels = idx::decode_labels_any(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut counts = [0usize; 256];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    println!("{path}: {} labels, {classes} classes", labels.len());
    for (class, n) in counts[..classes].iter().enumerate() {
        println!("  {class}: {n}");
    }
    Ok(())
}
