//! The calculator against reality: for random specs, the input pixels that influence one output
//! pixel (found through the gradient, with positive weights and inputs so nothing cancels) span
//! exactly the receptive field the calculator states, and the real forward pass produces the
//! shapes it states. Inputs come from a seeded ChaCha8 stream (never candle's unseeded RNG), so
//! a failing case replays.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use under8k_model::Net;
use under8k_model::spec::{ArchSpec, Layer};
use under8k_model::summary::Summary;

mod common;
use common::{spec_of, window};

fn net(spec: &ArchSpec) -> Net {
    Net::new(
        spec,
        &mut ChaCha8Rng::seed_from_u64(0),
        ChaCha8Rng::seed_from_u64(1),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// `dims` uniform values in `[0, 1)` from a ChaCha8 stream seeded with `seed` (24-bit draws).
fn uniform(seed: u64, dims: (usize, usize, usize, usize)) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.0 * dims.1 * dims.2 * dims.3;
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

    #[test]
    fn gradient_support_is_the_receptive_field(
        c in 1usize..3,
        n in 8usize..36,
        windows in proptest::collection::vec(window(false), 1..5),
        seed in any::<u64>(),
    ) {
        let layers: Vec<Layer> = windows.into_iter().flat_map(|w| [w, Layer::Relu]).collect();
        let spec = spec_of(c, n, layers);
        prop_assume!(spec.resolve().is_ok());
        let net = net(&spec);
        for (_, v) in net.named_params() {
            v.set(&(v.as_tensor().abs().unwrap() + 0.05).unwrap()).unwrap();
        }
        let x = Var::from_tensor(&(uniform(seed, (1, c, n, n)) + 0.1).unwrap()).unwrap();
        let y = net.forward_t(&x, false).unwrap();
        let g = y.narrow(1, 0, 1).unwrap().narrow(2, 0, 1).unwrap().narrow(3, 0, 1).unwrap()
            .sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap().sum(1).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let rows: Vec<usize> = (0..n).filter(|&i| g[i].iter().any(|&v| v != 0.0)).collect();
        let cols: Vec<usize> = (0..n).filter(|&j| g.iter().any(|r| r[j] != 0.0)).collect();
        let rf = Summary::of(&spec).unwrap().rows.last().unwrap().rf;
        prop_assert_eq!(rows.first().copied(), Some(0));
        prop_assert_eq!(cols.first().copied(), Some(0));
        prop_assert_eq!(rows.last().unwrap() + 1, rf);
        prop_assert_eq!(cols.last().unwrap() + 1, rf);
    }

    #[test]
    fn forward_shapes_are_the_calculators(
        n in 10usize..40,
        windows in proptest::collection::vec(window(true), 1..4),
        pool_first in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut layers = vec![];
        if pool_first { layers.push(Layer::MaxPool { kernel: 2, stride: 2 }); }
        for w in windows {
            layers.extend([w, Layer::BatchNorm { num_features: None }, Layer::Dropout { p: 0.1 }, Layer::Relu]);
        }
        layers.push(Layer::GlobalAvgPool);
        let spec = spec_of(1, n, layers);
        let Ok(resolved) = spec.resolve() else { return Ok(()) };
        let net = net(&spec);
        let x = uniform(seed, (2, 1, n, n));
        let summary = Summary::of(&spec).unwrap();
        for (i, row) in summary.rows.iter().enumerate() {
            let y = net.forward_upto(&x, true, i + 1).unwrap();
            let o = resolved[i].output;
            prop_assert_eq!(y.dims(), &[2, o.c, o.h, o.w]);
            prop_assert_eq!(&row.output_shape, &vec![-1, o.c as i64, o.h as i64, o.w as i64]);
        }
    }
}

#[test]
fn an_overlapping_pool_is_described_and_runs_on_both_paths() {
    let spec = spec_of(
        1,
        12,
        vec![Layer::MaxPool {
            kernel: 3,
            stride: 2,
        }],
    );
    // ⌊(12 − 3)/2⌋ + 1 = 5.
    assert_eq!(
        Summary::of(&spec).unwrap().rows[0].output_shape,
        [-1, 1, 5, 5]
    );
    let x = uniform(3, (2, 1, 12, 12));
    let fast = net(&spec).forward_t(&x, true).unwrap();
    let reference = net(&spec)
        .with_kernels(under8k_model::Kernels::Reference)
        .unwrap()
        .forward_t(&x, true)
        .unwrap();
    assert_eq!(fast.dims(), &[2, 1, 5, 5]);
    // A max picks one input: both paths give exactly the same values.
    assert_eq!(
        fast.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        reference.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}
