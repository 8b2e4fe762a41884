//! A probe for the next numerics version (`docs/PERFORMANCE.md`, round three, thirty-third
//! pass): the big convolutions' forward, input gradient and weight gradient on 2D Winograd
//! F(4×4, 3×3) tiles with the images in the vector lanes (16 with AVX-512, 8 with AVX2), on
//! their training shapes, one thread: what numerics version 5 could gain in training. The
//! engine runs the forward's arithmetic in version 5's evaluation (`engine/tiles.rs`); the
//! probe's kernels stand alone, and also time the two backward kernels it does not have yet.
//! Inside the training step the tiles do not pay (the thirty-fourth pass: sixteen images'
//! planes outgrow the L2 that the row-wise kernels' one image stays in).
//!
//! Each case is checked once against a direct convolution in `f64`, then timed; it prints µs
//! per image, to set beside the per-layer rows of `RAYON_NUM_THREADS=1 cargo run --release -p
//! under8k-train --example step_profile` (with `--avx2` for the AVX2 table).
//!
//! ```text
//! cargo run --release -p under8k-model --example winograd_probe
//! ```
//!
//! The transforms are Lavin and Gray's for F(4, 3) (points 0, ±1, ±2, ∞): a tile of 6 × 6
//! inputs `d` gives 4 × 4 outputs `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, 36 multiplies per input channel
//! where the engine's row-wise F(2, 3) makes 96 (6 per output) and a direct kernel 144. The
//! weight gradient is `Gᵀ [Σ (Bᵀ d B) ⊙ (A dy Aᵀ)] G`, summed over tiles and then lanes.
#![allow(unsafe_code, clippy::print_stdout)]

#[cfg(target_arch = "x86_64")]
mod kernels;
#[cfg(target_arch = "x86_64")]
mod probe;

#[cfg(target_arch = "x86_64")]
fn main() -> Result<(), String> {
    probe::run()
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("this probe needs an x86-64 CPU with AVX-512 or AVX2");
}
