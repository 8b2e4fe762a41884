//! Times one training step of the seed net (batch 128) layer by layer: forward, backward.
#![allow(clippy::print_stdout)]
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::{ArchSpec, Net};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let net = Net::new(
        &ArchSpec::seed(),
        &mut ChaCha8Rng::seed_from_u64(1),
        ChaCha8Rng::seed_from_u64(2),
        DType::F32,
        &dev,
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1.0, (128, 1, 28, 28), &dev)?;
    let labels = Tensor::from_vec((0..128u32).map(|i| i % 10).collect::<Vec<_>>(), 128, &dev)?;
    let n = net.layers().len();
    for _ in 0..2 {
        let mut prev = x.clone();
        let mut times = vec![];
        for i in 0..n {
            let t = Instant::now();
            let y = net.forward_upto(&prev, true, i + 1)?; // cumulative; subtract
            let _ = y;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            prev = x.clone();
        }
        let mut last = 0.0;
        for (i, t) in times.iter().enumerate() {
            println!(
                "{:>16} fwd {:7.2} ms",
                net.layers()[i].layer.kind(),
                t - last
            );
            last = *t;
        }
        let t = Instant::now();
        let y = net.forward_t(&x, true)?;
        let loss = candle_nn::loss::nll(&y, &labels)?;
        let f = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let _g = loss.backward()?;
        println!(
            "forward {f:.1} ms, backward {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
