//! The fast engine against the reference path (candle's own ops) on the seed net: same initial
//! weights and dropout keys ⇒ the same outputs, gradients, BatchNorm running statistics and,
//! after several momentum-SGD steps, the same weights — up to float rounding (the paths sum in
//! different orders, so bit equality is not expected).
//!
//! The yardstick is the reference path in `f64`. The fast path is compared with it in `f64`
//! (its own arithmetic, the generic kernels) and in `f32` (the training dtype, with the AVX2
//! kernels where the CPU has them). For scale: the reference path in `f32` is itself off by up
//! to 4e-3 on the first layer's weight gradient (candle sums BatchNorm statistics in `f32`),
//! where the fast `f32` path stays within 1e-6.

use candle_core::{DType, Device, Tensor};
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use under8k_model::{ArchSpec, Kernels, NUMERICS_VERSION, Net, OLDEST_NUMERICS};
use under8k_train::sgd::{Sgd, SgdConfig};

fn net(kernels: Kernels, dtype: DType) -> Net {
    Net::new(
        &ArchSpec::seed(),
        &mut ChaCha8Rng::seed_from_u64(3),
        ChaCha8Rng::seed_from_u64(4),
        dtype,
        &Device::Cpu,
    )
    .unwrap()
    .with_kernels(kernels)
    .unwrap()
}

fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// max |a − b| / max(1e-3, max |a|): the error relative to the tensor's scale.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// (dtype, tolerance) of the fast path against the `f64` reference.
const CASES: [(DType, f64); 2] = [(DType::F64, 1e-7), (DType::F32, 2e-5)];

fn batch(seed: u64, n: usize) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * 784)
        // Uniform in [-0.5, 2.5) from the top 24 bits of a u32.
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 3.0 - 0.5)
        .collect();
    let y: Vec<u32> = (0..n as u32).map(|i| (i * 7 + seed as u32) % 10).collect();
    (
        Tensor::from_vec(x, (n, 1, 28, 28), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
    )
}

#[test]
fn fast_path_matches_reference_outputs_gradients_and_buffers() {
    // Every numerics version the engine computes (2: direct kernels; 3: Winograd kernels in
    // training; 4: the small convolutions' backward with the images in the lanes), each in both
    // dtypes.
    let cases = (OLDEST_NUMERICS..=NUMERICS_VERSION).flat_map(|v| CASES.map(|c| (v, c)));
    for (version, (dtype, tol)) in cases {
        let (fast, reference) = (
            net(Kernels::Fast, dtype).with_numerics(version).unwrap(),
            net(Kernels::Reference, DType::F64),
        );
        let (x, y) = batch(1, 24);
        let (lf, lr) = (
            fast.forward_t(&x.to_dtype(dtype).unwrap(), true).unwrap(),
            reference
                .forward_t(&x.to_dtype(DType::F64).unwrap(), true)
                .unwrap(),
        );
        assert_eq!(lf.dims(), lr.dims());
        let e = rel_err(&vec(&lr), &vec(&lf));
        assert!(
            e < tol,
            "{dtype:?}, numerics {version}: train-mode log-probs differ: {e}"
        );
        let (gf, gr) = (
            candle_nn::loss::nll(&lf, &y).unwrap().backward().unwrap(),
            candle_nn::loss::nll(&lr, &y).unwrap().backward().unwrap(),
        );
        assert_eq!(fast.named_params().len(), reference.named_params().len());
        for ((name, vf), (_, vr)) in fast.named_params().iter().zip(reference.named_params()) {
            let (a, b) = (vec(gr.get(&vr).unwrap()), vec(gf.get(vf).unwrap()));
            let e = rel_err(&a, &b);
            assert!(
                e < tol,
                "{dtype:?}, numerics {version}: gradient of {name} differs: {e}"
            );
        }
        assert_eq!(fast.bn_buffers().len(), reference.bn_buffers().len());
        for ((p, bf), (_, br)) in fast.bn_buffers().iter().zip(reference.bn_buffers()) {
            assert_eq!(bf.num_batches_tracked, br.num_batches_tracked);
            for (a, b) in [
                (&br.running_mean, &bf.running_mean),
                (&br.running_var, &bf.running_var),
            ] {
                let e = rel_err(&vec(a), &vec(b));
                assert!(
                    e < tol,
                    "{dtype:?}, numerics {version}: running stats of {p} differ: {e}"
                );
            }
        }
        let e = rel_err(
            &vec(&reference.infer(&x.to_dtype(DType::F64).unwrap()).unwrap()),
            &vec(&fast.infer(&x.to_dtype(dtype).unwrap()).unwrap()),
        );
        assert!(
            e < tol,
            "{dtype:?}, numerics {version}: eval-mode log-probs differ: {e}"
        );
    }
}

#[test]
fn fast_path_matches_reference_over_sgd_steps() {
    for (dtype, tol) in CASES {
        let (fast, reference) = (
            net(Kernels::Fast, dtype),
            net(Kernels::Reference, DType::F64),
        );
        let cfg = SgdConfig::momentum(0.05, 0.9);
        let mut opts = [
            Sgd::new(fast.named_params(), cfg).unwrap(),
            Sgd::new(reference.named_params(), cfg).unwrap(),
        ];
        for step in 0..6 {
            let (x, y) = batch(10 + step, 32);
            let mut losses = vec![];
            for ((net, opt), dt) in [&fast, &reference]
                .into_iter()
                .zip(opts.iter_mut())
                .zip([dtype, DType::F64])
            {
                let logp = net.forward_t(&x.to_dtype(dt).unwrap(), true).unwrap();
                let loss = candle_nn::loss::nll(&logp, &y).unwrap();
                losses.push(vec(&loss)[0]);
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            let e = (losses[0] - losses[1]).abs() / losses[1];
            assert!(e < 10.0 * tol, "{dtype:?} step {step}: loss {losses:?}");
        }
        assert_eq!(fast.named_params().len(), reference.named_params().len());
        for ((name, vf), (_, vr)) in fast.named_params().iter().zip(reference.named_params()) {
            let e = rel_err(&vec(&vr), &vec(vf));
            assert!(
                e < 10.0 * tol,
                "{dtype:?}: {name} after 6 SGD steps differs: {e}"
            );
        }
    }
}
