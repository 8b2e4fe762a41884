//! Helpers shared by the crate's tests.
#![allow(dead_code)] // each test file uses its own part

use under8k_mnist_data::dataset::Split;
use under8k_mnist_data::idx::Images;

/// `n` 28×28 images of a fixed pattern, labels `i % 10`.
pub fn toy_split(n: usize) -> Split {
    let pixels = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
    Split::new(
        Images {
            count: n,
            rows: 28,
            cols: 28,
            pixels,
        },
        (0..n).map(|i| (i % 10) as u8).collect(),
    )
    .unwrap()
}
