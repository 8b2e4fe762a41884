//! Helpers shared by the model's tests (each test binary uses some of them).
#![allow(dead_code)]

use proptest::prelude::*;
use under8k_model::spec::{ArchSpec, Block, Layer};

/// A window layer: conv (k 1–4, stride 1–2, no padding), an average pool (k 2–3, stride 1–3:
/// overlapping, tiling or skipping), or with `overlapping`, also a max pool whose stride may be
/// below its kernel (left out where only the arg-max would get gradient).
pub fn window(overlapping: bool) -> impl Strategy<Value = Layer> {
    let conv_or_avg = prop_oneof![
        (1usize..5, 1usize..3, 1usize..4).prop_map(|(kernel, stride, out_channels)| Layer::Conv {
            in_channels: None,
            out_channels,
            kernel,
            stride,
            padding: 0,
            bias: false
        }),
        (2usize..4, 1usize..4).prop_map(|(kernel, stride)| Layer::AvgPool { kernel, stride }),
    ];
    let pool =
        (2usize..4, 1usize..3).prop_map(|(kernel, stride)| Layer::MaxPool { kernel, stride });
    match overlapping {
        true => prop_oneof![2 => conv_or_avg, 1 => pool].boxed(),
        false => conv_or_avg.boxed(),
    }
}

/// A one-block spec of `layers` on a `c×n×n` input.
pub fn spec_of(c: usize, n: usize, layers: Vec<Layer>) -> ArchSpec {
    ArchSpec {
        name: "random".into(),
        input: [c, n, n],
        blocks: vec![Block {
            name: "b".into(),
            layers,
        }],
    }
}

/// A square convolution layer with inferred input channels.
pub fn conv(
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> Layer {
    Layer::Conv {
        in_channels: None,
        out_channels,
        kernel,
        stride,
        padding,
        bias,
    }
}
