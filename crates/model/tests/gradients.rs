//! Finite-difference checks (f64, central differences) of every gradient the model relies on:
//! each layer type alone, and the seed net's NLL loss end to end, on the reference path and on
//! every kernel path of the fast one.

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use under8k_model::spec::{ArchSpec, Block, Layer};
use under8k_model::{KernelPath, Kernels, NUMERICS_VERSION, Net, OLDEST_NUMERICS};

mod common;
use common::conv;

fn spec(input: [usize; 3], layers: Vec<Layer>) -> ArchSpec {
    ArchSpec {
        name: "t".into(),
        input,
        blocks: vec![Block {
            name: "b".into(),
            layers,
        }],
    }
}

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    // Uniform in [-1, 1) from the top 24 bits of a u32.
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0)
        .collect()
}

/// The loss whose gradient is checked: NLL of random labels when the net ends in log-softmax,
/// else a fixed random linear functional of the output (which tests the whole Jacobian).
fn loss(
    net: &Net,
    x: &Tensor,
    train: bool,
    probe: &Tensor,
    labels: &Tensor,
    rng0: &ChaCha8Rng,
) -> Tensor {
    net.set_dropout_rng(rng0.clone()); // the same dropout mask on every evaluation
    let y = net.forward_t(x, train).unwrap();
    if y.rank() == 2
        && net
            .layers()
            .last()
            .is_some_and(|l| l.layer == Layer::LogSoftmax)
    {
        candle_nn::loss::nll(&y, labels).unwrap()
    } else {
        (y * probe).unwrap().sum_all().unwrap()
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

/// The kernel path is process-wide: the tests of this file set it one at a time.
static PATH: Mutex<()> = Mutex::new(());

/// Checks d loss / d (input and every parameter) against central differences, on at most
/// `max_per_tensor` evenly spread elements per tensor: on the reference path, and on the fast
/// path with each kernel path this CPU has (portable, AVX2, AVX-512).
fn check(spec: &ArchSpec, batch: usize, train: bool, max_per_tensor: usize) {
    check_versions(spec, batch, train, max_per_tensor, &[NUMERICS_VERSION]);
}

/// [`check`] on every numerics version the engine computes
/// ([`under8k_model::OLDEST_NUMERICS`] to [`NUMERICS_VERSION`]).
fn check_all(spec: &ArchSpec, batch: usize, train: bool, max_per_tensor: usize) {
    let versions: Vec<u32> = (OLDEST_NUMERICS..=NUMERICS_VERSION).collect();
    check_versions(spec, batch, train, max_per_tensor, &versions);
}

/// [`check`] with the fast path on each of the engine's numerics `versions`.
fn check_versions(spec: &ArchSpec, batch: usize, train: bool, most: usize, versions: &[u32]) {
    check_numerics(
        spec,
        batch,
        train,
        most,
        Kernels::Reference,
        NUMERICS_VERSION,
    );
    for path in KernelPath::available() {
        let _one_at_a_time = PATH.lock().unwrap_or_else(|e| e.into_inner());
        KernelPath::use_path(path).unwrap();
        for &v in versions {
            check_numerics(spec, batch, train, most, Kernels::Fast, v);
        }
    }
}

fn check_numerics(
    spec: &ArchSpec,
    batch: usize,
    train: bool,
    max_per_tensor: usize,
    kernels: Kernels,
    numerics: u32,
) {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let net = Net::new(
        spec,
        &mut rng,
        ChaCha8Rng::seed_from_u64(7),
        DType::F64,
        &dev,
    )
    .unwrap()
    .with_kernels(kernels)
    .unwrap()
    .with_numerics(numerics)
    .unwrap();
    // Non-trivial BatchNorm affine parameters and running stats, so eval mode is tested too.
    for (name, v) in net.named_params() {
        if !name.ends_with("weight") || v.rank() == 1 {
            let vals = random(&mut rng, v.elem_count());
            v.set(&Tensor::from_vec(vals, v.shape(), &dev).unwrap())
                .unwrap();
        }
    }
    for (prefix, mut b) in net.bn_buffers() {
        let c = b.running_mean.elem_count();
        b.running_mean = Tensor::from_vec(random(&mut rng, c), c, &dev).unwrap();
        b.running_var = Tensor::from_vec(
            random(&mut rng, c).iter().map(|v| v + 1.5).collect(),
            c,
            &dev,
        )
        .unwrap();
        net.set_bn_buffers(&prefix, b);
    }
    let [c, h, w] = spec.input;
    let x = Var::from_vec(random(&mut rng, batch * c * h * w), (batch, c, h, w), &dev).unwrap();
    let out_shape = net.forward_t(&x, false).unwrap().shape().clone();
    let probe =
        Tensor::from_vec(random(&mut rng, out_shape.elem_count()), out_shape, &dev).unwrap();
    let labels = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(),
        batch,
        &dev,
    )
    .unwrap();
    let rng0 = net.dropout_rng();

    let l = loss(&net, &x, train, &probe, &labels, &rng0);
    let grads = l.backward().unwrap();
    let mut vars = vec![("input".to_string(), x.clone())];
    vars.extend(net.named_params());
    let eps = 1e-6;
    let mut checked = 0;
    for (name, v) in vars {
        let analytic = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = v.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let step = (base.len() / max_per_tensor).max(1);
        for i in (0..base.len()).step_by(step) {
            let at = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                v.set(&Tensor::from_vec(p, v.shape(), &dev).unwrap())
                    .unwrap();
                scalar(&loss(&net, &x, train, &probe, &labels, &rng0))
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            v.set(&Tensor::from_vec(base.clone(), v.shape(), &dev).unwrap())
                .unwrap();
            let tol = 1e-6 + 1e-5 * numeric.abs().max(analytic[i].abs());
            assert!(
                (analytic[i] - numeric).abs() <= tol,
                "{name}[{i}]: analytic {} vs numeric {numeric} (train={train}, {kernels:?}, {} kernels, numerics {numerics})",
                analytic[i],
                KernelPath::active()
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn conv_gradients() {
    check(
        &spec([2, 6, 6], vec![conv(3, 3, 1, 0, false)]),
        2,
        true,
        1000,
    );
    // Strides 2 and 3, with and without padding, on sides they do and do not divide.
    check(
        &spec([2, 7, 7], vec![conv(3, 3, 2, 1, true)]),
        2,
        true,
        1000,
    );
    check(
        &spec([2, 8, 9], vec![conv(5, 3, 2, 0, false)]),
        2,
        true,
        1000,
    );
    check(
        &spec([3, 10, 10], vec![conv(2, 5, 3, 2, true)]),
        2,
        true,
        1000,
    );
    check(
        &spec([3, 5, 5], vec![conv(2, 1, 1, 0, false)]),
        2,
        true,
        1000,
    );
    // Padding and bias on the fast path, and 5 input channels (blocks of 4 and 1 outputs).
    check(
        &spec([5, 6, 7], vec![conv(5, 3, 1, 1, true)]),
        2,
        true,
        1000,
    );
    check(
        &spec([2, 4, 4], vec![conv(3, 1, 1, 2, true)]),
        2,
        true,
        1000,
    );
    // 19 images on small planes: the engine's kernel groups (16 images here) with a partial
    // last one, with padding and bias, and with a stride.
    check(
        &spec([2, 5, 5], vec![conv(3, 3, 1, 1, true)]),
        19,
        true,
        1000,
    );
    check(
        &spec([2, 6, 6], vec![conv(3, 3, 2, 0, false)]),
        19,
        true,
        1000,
    );
    // The Winograd kernels of training (version 3 on): 3×3, stride 1, unpadded, no bias, on
    // planes of 24×24 (3 images a group, so 4 images make a partial last group), with an odd
    // output count (a weight-gradient row paired with a copy of itself on the vector paths).
    check_all(
        &spec([3, 24, 24], vec![conv(5, 3, 1, 0, false)]),
        4,
        true,
        1000,
    );
}

/// The backward with the images in the lanes (version 4 on: unpadded stride-1 convolutions on
/// planes small enough for groups of 16): 19 images make a partial last group. Its output
/// gradient comes through BatchNorm's input gradient (applied as it moves into the lanes), its
/// input gradient goes on to an act step's first backward pass (run on it per image), and the
/// last layer, a 1×1 convolution with a bias, ends the net.
#[test]
fn lanes_backward_gradients() {
    let act = [
        Layer::BatchNorm { num_features: None },
        Layer::Dropout { p: 0.3 },
        Layer::Relu,
    ];
    let mut layers = vec![conv(3, 3, 1, 1, false)];
    layers.extend(act.clone());
    layers.push(conv(4, 3, 1, 0, false));
    layers.extend(act);
    layers.push(conv(2, 1, 1, 0, true));
    let s = spec([2, 6, 6], layers);
    check(&s, 19, true, 1000);
    check(&s, 2, false, 1000);
}

#[test]
fn batch_norm_gradients_train_and_eval() {
    let s = spec([3, 4, 4], vec![Layer::BatchNorm { num_features: None }]);
    check(&s, 3, true, 1000);
    check(&s, 3, false, 1000);
}

#[test]
fn dropout_relu_gradients() {
    let s = spec(
        [2, 5, 5],
        vec![
            conv(3, 1, 1, 0, true),
            Layer::Dropout { p: 0.3 },
            Layer::Relu,
        ],
    );
    check(&s, 2, true, 1000);
    check(&s, 2, false, 1000);
}

#[test]
fn act_steps_before_a_convolution_or_pool_gradients() {
    // A convolution after an act step runs that step's first backward pass (∂L/∂z, BatchNorm's
    // sums) on its own input gradient: every kind of act step before one, with and without
    // padding, through the finite differences. 17 images in training: a 6×6 layer takes 16 per
    // group, so the second group's images carry their own dropout counters.
    let acts = [
        vec![
            Layer::BatchNorm { num_features: None },
            Layer::Dropout { p: 0.3 },
        ],
        vec![Layer::Relu],
        vec![Layer::Dropout { p: 0.3 }],
        vec![Layer::BatchNorm { num_features: None }, Layer::Relu],
        vec![
            Layer::BatchNorm { num_features: None },
            Layer::Dropout { p: 0.3 },
            Layer::Relu,
        ],
    ];
    for (i, act) in acts.iter().enumerate() {
        let mut layers = vec![conv(3, 3, 1, 1, false)];
        layers.extend(act.clone());
        layers.push(conv(2, 3, 1, i % 2, true));
        let s = spec([2, 6, 6], layers);
        check(&s, 17, true, 1000);
        check(&s, 2, false, 1000);
    }
    // BatchNorm's input gradient is applied by the convolution before it, as that convolution's
    // backward copies its output gradient into its padded layout (above); after a convolution
    // with a bias or a stride, it is a pass of its own.
    for before in [conv(3, 3, 1, 1, true), conv(3, 3, 2, 1, false)] {
        let mut layers = vec![before];
        layers.extend(acts[4].clone());
        layers.push(conv(2, 3, 1, 1, true));
        let s = spec([2, 6, 6], layers);
        check(&s, 17, true, 1000);
        check(&s, 2, false, 1000);
    }
    // Before an unpadded convolution on large planes (24×24: one image per forward call,
    // groups of 3 in the backward), a training pass folds the act step into the convolution:
    // its output is recomputed from its input, forward and backward, never stored. 5 images:
    // a partial last group, and dropout counters past the first group. Before a max pool
    // (overlapping windows too), which runs the act step's first backward pass per image.
    for (i, act) in acts.into_iter().enumerate() {
        let mut layers = vec![conv(3, 3, 1, 1, false)];
        layers.extend(act.clone());
        layers.push(conv(2, 3, 1, 0, true));
        check(&spec([2, 24, 24], layers), 5, true, 200);
        let mut layers = vec![conv(3, 3, 1, 1, false)];
        layers.extend(act);
        let (kernel, stride) = [(2, 2), (3, 2)][i % 2];
        layers.push(Layer::MaxPool { kernel, stride });
        check(&spec([2, 7, 7], layers), 5, true, 1000);
    }
}

#[test]
fn pooling_gradients() {
    check(
        &spec(
            [2, 6, 6],
            vec![Layer::MaxPool {
                kernel: 2,
                stride: 2,
            }],
        ),
        2,
        true,
        1000,
    );
    check(
        &spec(
            [2, 7, 7],
            vec![Layer::MaxPool {
                kernel: 3,
                stride: 3,
            }],
        ),
        2,
        true,
        1000,
    );
    check(
        &spec(
            [2, 6, 6],
            vec![Layer::AvgPool {
                kernel: 2,
                stride: 2,
            }],
        ),
        2,
        true,
        1000,
    );
    // Overlapping windows (3×3 stride 2, 2×2 stride 1): gradients add where windows share
    // pixels; a stride above the kernel skips pixels.
    for (kernel, stride) in [(3, 2), (2, 1), (2, 3)] {
        for pool in [
            Layer::MaxPool { kernel, stride },
            Layer::AvgPool { kernel, stride },
        ] {
            check(&spec([2, 7, 7], vec![pool]), 2, true, 1000);
        }
    }
    check(&spec([2, 5, 5], vec![Layer::GlobalAvgPool]), 2, true, 1000);
}

#[test]
fn log_softmax_nll_gradients() {
    check(
        &spec([2, 3, 3], vec![conv(4, 3, 1, 0, true), Layer::LogSoftmax]),
        4,
        true,
        1000,
    );
}

#[test]
fn seed_net_loss_gradients() {
    // The whole 7,684-parameter net, NLL on log-softmax, in both modes; ~60 elements per tensor.
    check_all(&ArchSpec::seed(), 3, true, 60);
    check(&ArchSpec::seed(), 2, false, 60);
}
