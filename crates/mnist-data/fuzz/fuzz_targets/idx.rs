//! Any byte string given to the IDX decoders yields `Ok` or a typed error, never a panic, and
//! whatever decodes is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use under8k_mnist_data::idx;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = idx::decode_images(data) {
        assert_eq!(img.pixels.len(), img.count * img.rows * img.cols);
        assert_eq!(idx::decode_images(&idx::encode_images(&img)).unwrap(), img);
    }
    if let Ok(labels) = idx::decode_labels(data) {
        assert!(labels.iter().all(|&l| l < 10));
    }
    let _ = under8k_mnist_data::pickle::decode_mnist(data);
});
