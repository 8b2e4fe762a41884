//! The calculator against reality: for random specs, the input pixels that influence one output
//! pixel (found through the gradient, with positive weights and inputs so nothing cancels) span
//! exactly the receptive field the calculator states; the real forward pass produces the shapes
//! it states; and the RF arithmetic satisfies its closed form.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::Net;
use under8k_model::spec::{ArchSpec, Block, Layer};
use under8k_model::summary::Summary;

/// A window layer: conv (k 1–4, stride 1–2, no padding) or an average pool (k = s, 2–3).
fn window() -> impl Strategy<Value = Layer> {
    prop_oneof![
        (1usize..5, 1usize..3, 1usize..4).prop_map(|(kernel, stride, out_channels)| Layer::Conv {
            in_channels: None,
            out_channels,
            kernel,
            stride,
            padding: 0,
            bias: false
        }),
        (2usize..4).prop_map(|k| Layer::AvgPool {
            kernel: k,
            stride: k
        }),
    ]
}

fn spec_of(c: usize, n: usize, layers: Vec<Layer>) -> ArchSpec {
    ArchSpec {
        name: "random".into(),
        input: [c, n, n],
        blocks: vec![Block {
            name: "b".into(),
            layers,
        }],
    }
}

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn gradient_support_is_the_receptive_field(
        c in 1usize..3,
        n in 8usize..36,
        windows in proptest::collection::vec(window(), 1..5),
    ) {
        let layers: Vec<Layer> = windows.into_iter().flat_map(|w| [w, Layer::Relu]).collect();
        let spec = spec_of(c, n, layers);
        prop_assume!(spec.resolve().is_ok());
        let net = net(&spec);
        for (_, v) in net.named_params() {
            v.set(&(v.as_tensor().abs().unwrap() + 0.05).unwrap()).unwrap();
        }
        let x = Var::from_tensor(&(Tensor::rand(0f32, 1.0, (1, c, n, n), &Device::Cpu).unwrap() + 0.1).unwrap()).unwrap();
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
        windows in proptest::collection::vec(window(), 1..4),
        pool_first in any::<bool>(),
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
        let x = Tensor::rand(0f32, 1.0, (2, 1, n, n), &Device::Cpu).unwrap();
        let summary = Summary::of(&spec).unwrap();
        for (i, row) in summary.rows.iter().enumerate() {
            let y = net.forward_upto(&x, true, i + 1).unwrap();
            let o = resolved[i].output;
            prop_assert_eq!(y.dims(), &[2, o.c, o.h, o.w]);
            prop_assert_eq!(&row.output_shape, &vec![-1, o.c as i64, o.h as i64, o.w as i64]);
        }
    }

    #[test]
    fn rf_arithmetic(n in 30usize..200, windows in proptest::collection::vec(window(), 1..6)) {
        let spec = spec_of(1, n, windows.clone());
        let Ok(resolved) = spec.resolve() else { return Ok(()) };
        let s = Summary::of(&spec).unwrap();
        let (mut closed, mut prod, mut prev) = (1usize, 1usize, 1usize);
        for (row, l) in s.rows.iter().zip(&resolved) {
            let (k, st, _) = l.layer.window(l.input.h).unwrap();
            closed += (k - 1) * prod; // Σ (k_l − 1)·∏_{i<l} s_i + 1
            prod *= st;
            prop_assert_eq!(row.rf, closed);
            prop_assert_eq!(row.jump, prod);
            prop_assert!(row.rf >= prev);
            prev = row.rf;
        }
    }
}

#[test]
fn invalid_specs_name_the_layer() {
    let err = |layers: Vec<Layer>| spec_of(1, 8, layers).resolve().unwrap_err().to_string();
    let conv = |in_channels, kernel| Layer::Conv {
        in_channels,
        out_channels: 4,
        kernel,
        stride: 1,
        padding: 0,
        bias: false,
    };
    assert_eq!(
        err(vec![conv(Some(3), 3)]),
        "block `b`, layer 0 (Conv2d): in_channels is 3 but its input has 1 channels"
    );
    assert!(err(vec![conv(None, 9)]).contains("kernel 9 is larger than its 8x8 input"));
    assert!(err(vec![conv(None, 0)]).contains("must be at least 1"));
    assert!(
        err(vec![Layer::MaxPool {
            kernel: 3,
            stride: 2
        }])
        .contains("kernel 3 != stride 2")
    );
    assert!(err(vec![Layer::Dropout { p: 1.0 }]).contains("p = 1"));
    assert!(err(vec![Layer::LogSoftmax]).contains("needs a Cx1x1 input"));
    assert!(
        err(vec![
            conv(None, 3),
            Layer::BatchNorm {
                num_features: Some(5)
            }
        ])
        .contains("layer 1 (BatchNorm2d): num_features is 5")
    );
    assert!(
        err(vec![Layer::GlobalAvgPool, Layer::LogSoftmax, Layer::Relu])
            .contains("must be the last layer")
    );
    let e = ArchSpec::from_json(r#"{"name":"x","input":[1,8,8],"blocks":[{"name":"b","layers":[{"type":"conv","out_channels":-2,"kernel":3}]}]}"#)
        .unwrap_err().to_string();
    assert!(e.contains("blocks[0].layers[0]") && e.contains("-2"), "{e}");
    let e = ArchSpec::from_json(
        r#"{"name":"x","input":[1,8,8],"blocks":[{"name":"b","layers":[{"type":"conv2"}]}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("blocks[0].layers[0]") && e.contains("conv2"),
        "{e}"
    );
}

#[test]
fn seed_spec_json_round_trips() {
    let s = ArchSpec::seed();
    assert_eq!(ArchSpec::from_json(&s.to_json()).unwrap(), s);
}
