//! The RF/parameter calculator on its own (the light build, no candle): its receptive-field
//! arithmetic satisfies the closed form, and invalid specs are refused with the layer named.
//! `calculator_vs_net.rs` holds it against the real net.

use proptest::prelude::*;
use under8k_model::spec::{ArchSpec, Layer};
use under8k_model::summary::Summary;

mod common;
use common::{spec_of, window};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

    #[test]
    fn rf_arithmetic(n in 30usize..200, windows in proptest::collection::vec(window(true), 1..6)) {
        let spec = spec_of(1, n, windows.clone());
        let Ok(resolved) = spec.resolve() else { return Ok(()) };
        let s = Summary::of(&spec).unwrap();
        let (mut closed, mut prod, mut prev) = (1usize, 1usize, 1usize);
        prop_assert_eq!(s.rows.len(), resolved.len());
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
    // An overlapping pool is a valid geometry: the calculator describes it (AlexNet's 3×3
    // stride-2 pool on 8×8: ⌊(8 − 3)/2⌋ + 1 = 3, RF 3, jump 2).
    let pool = spec_of(
        1,
        8,
        vec![Layer::MaxPool {
            kernel: 3,
            stride: 2,
        }],
    );
    let row = &Summary::of(&pool).unwrap().rows[0];
    assert_eq!(
        (row.output_shape.clone(), row.rf, row.jump),
        (vec![-1, 1, 3, 3], 3, 2)
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
