//! Times training steps (forward + backward, batch 128) of the seed net on the fast engine,
//! with its per-step breakdown, and optionally (`--reference`) on candle's own ops. The steps
//! run on rayon's pool, as the training loop's do.
//! `--portable`, `--avx2` or `--avx512` force a kernel path (default: the widest available);
//! `--previous` runs the engine's previous numerics ([`under8k_model::PREVIOUS_NUMERICS`]).
//! `--eval` times inference instead (`Net::infer`, evaluation mode): 20 batches of 2,000
//! images after an untimed one, in img/s, without the test set's loading, loss and accuracy
//! that `cargo xtask bench` times around it.
#![allow(clippy::print_stdout)]
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::{ArchSpec, KernelPath, Kernels, Net};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let reference = std::env::args().any(|a| a == "--reference");
    for (flag, path) in [
        ("--portable", KernelPath::Portable),
        ("--avx2", KernelPath::Avx2),
        ("--avx512", KernelPath::Avx512),
    ] {
        if std::env::args().any(|a| a == flag) {
            KernelPath::use_path(path)?;
        }
    }
    println!("kernel path: {}", KernelPath::active());
    let kernels = if reference {
        Kernels::Reference
    } else {
        Kernels::Fast
    };
    let net = Net::new(
        &ArchSpec::seed(),
        &mut ChaCha8Rng::seed_from_u64(1),
        ChaCha8Rng::seed_from_u64(2),
        DType::F32,
        &dev,
    )?
    .with_kernels(kernels)?
    .with_numerics(if std::env::args().any(|a| a == "--previous") {
        under8k_model::PREVIOUS_NUMERICS
    } else {
        under8k_model::NUMERICS_VERSION
    })?;
    if std::env::args().any(|a| a == "--eval") {
        return time_inference(&net, kernels, &dev);
    }
    let x = images(128, &dev)?;
    let labels = Tensor::from_vec((0..128u32).map(|i| i % 10).collect::<Vec<_>>(), 128, &dev)?;
    let steps = if reference { 3 } else { 50 };
    for round in 0..2 {
        net.set_profiling(round == 1);
        let (mut f, mut b) = (0.0, 0.0);
        // The steps run on a thread of rayon's pool, as the training loop runs them: each
        // parallel layer is then a local fork, not a hand-over from this thread to a pool
        // thread that may be asleep (which cost 20–100 µs a layer and made the small passes'
        // rows read 2–3× their time; docs/PERFORMANCE.md, eighteenth pass).
        rayon::scope(|_| -> anyhow::Result<()> {
            for _ in 0..steps {
                let t = Instant::now();
                let y = net.forward_t(&x, true)?;
                let loss = candle_nn::loss::nll(&y, &labels)?;
                f += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _g = loss.backward()?;
                b += t.elapsed().as_secs_f64();
            }
            Ok(())
        })?;
        let per = |v: f64| v * 1e3 / steps as f64;
        println!(
            "{kernels:?}: forward {:.2} ms, backward {:.2} ms per batch of 128 → {:.0} img/s",
            per(f),
            per(b),
            128.0 * steps as f64 / (f + b)
        );
        if round == 1 {
            for s in net.profile() {
                println!(
                    "  {:>22} fwd {:6.2} ms  bwd {:6.2} ms",
                    s.name,
                    per(s.forward),
                    per(s.backward)
                );
            }
        }
    }
    Ok(())
}

/// `n` images of a fixed pattern, not candle's unseedable RNG: the timings do not depend on the
/// values.
fn images(n: usize, dev: &Device) -> anyhow::Result<Tensor> {
    let pattern = (0..n * 28 * 28).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5);
    Ok(Tensor::from_vec(
        pattern.collect::<Vec<_>>(),
        (n, 1, 28, 28),
        dev,
    )?)
}

/// `--eval`: inference of 20 batches of 2,000 images, after an untimed one.
fn time_inference(net: &Net, kernels: Kernels, dev: &Device) -> anyhow::Result<()> {
    let (n, reps) = (2000, 20);
    let x = images(n, dev)?;
    net.infer(&x)?;
    let t = Instant::now();
    for _ in 0..reps {
        net.infer(&x)?;
    }
    let s = t.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{kernels:?}: eval {:.0} img/s ({reps} batches of {n})",
        (n * reps) as f64 / s
    );
    Ok(())
}
