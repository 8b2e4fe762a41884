//! Every kernel path this CPU offers (portable, AVX2, AVX-512) gives the same bits on a spec that
//! uses every kind of step the engine has: padding, a stride-2 convolution, bias, BatchNorm,
//! dropout, ReLU, overlapping and 2×2 max pools, average pools, global average pooling and
//! log-softmax —
//! the training forward, its backward to the input and every parameter, and the inference
//! forward (itself the same bits as the eval forward of the batch path).
//!
//! Its own test binary: the kernel path is process-wide, and no other test may switch it while
//! one of these runs (they take turns). (`gradients.rs` checks the same kinds of steps against finite differences on
//! the default path; with this test, that covers every path.)

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use under8k_model::spec::{ArchSpec, Block, Layer};
use under8k_model::{KernelPath, NUMERICS_VERSION, Net, OLDEST_NUMERICS, PREVIOUS_NUMERICS};

/// Held by each test while it switches the process-wide kernel path.
static PATH: std::sync::Mutex<()> = std::sync::Mutex::new(());

mod common;
use common::conv;

fn spec() -> ArchSpec {
    let act = || {
        [
            Layer::BatchNorm { num_features: None },
            Layer::Dropout { p: 0.2 },
            Layer::Relu,
        ]
    };
    // 36 → 36 → 34 (unpadded, a large plane: run one image at a time where it lies) → 17 → 8
    // → 6 → 3 (a 2×2 max pool: its own inference kernel) → 2 → 1. The first three layers' planes
    // (38², 36², 36²) are large enough for training groups of one image: padded, unpadded and
    // stride 2; only the unpadded stride-1 one may be read where it lies. (A stride-2 layer with
    // groups of one once was, on every path alike; with that gate put back, this test fails.)
    let mut layers = vec![conv(6, 3, 1, 1, false)];
    layers.extend(act());
    layers.push(conv(6, 3, 1, 0, false));
    layers.extend(act());
    layers.push(conv(7, 3, 2, 1, true));
    layers.extend(act());
    layers.push(Layer::MaxPool {
        kernel: 3,
        stride: 2,
    });
    layers.push(conv(9, 3, 1, 0, false));
    layers.extend(act());
    layers.push(Layer::MaxPool {
        kernel: 2,
        stride: 2,
    });
    layers.push(Layer::AvgPool {
        kernel: 2,
        stride: 1,
    });
    layers.extend([
        Layer::GlobalAvgPool,
        conv(10, 1, 1, 0, false),
        Layer::LogSoftmax,
    ]);
    ArchSpec {
        name: "every-step".into(),
        input: [1, 36, 36],
        blocks: vec![Block {
            name: "b".into(),
            layers,
        }],
    }
}

/// [`spec`]'s net, initialised from seed 5, dropout from seed 6.
fn net() -> Net {
    net_of(&spec())
}

/// The net of `spec`, initialised from seed 5, dropout from seed 6.
fn net_of(spec: &ArchSpec) -> Net {
    Net::new(
        spec,
        &mut ChaCha8Rng::seed_from_u64(5),
        ChaCha8Rng::seed_from_u64(6),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// `n` single-channel `side × side` images of values in [−0.3, 0.7) from `seed`, tracking a
/// gradient.
fn images(n: usize, side: usize, seed: u64) -> Var {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * side * side)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.3)
        .collect();
    Var::from_vec(x, (n, 1, side, side), &Device::Cpu).unwrap()
}

/// The bits of a tensor's values.
fn bits(t: &Tensor) -> Vec<u32> {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.iter().map(|v| v.to_bits()).collect()
}

/// The bits of the training output, the gradients of the input and every parameter, and the
/// inference output, on the active kernel path, with the engine's numerics `version`.
fn run(version: u32) -> Vec<Vec<u32>> {
    // 37 images: several kernel groups of every layer's size and a partial last one.
    run_of(net(), version, &images(37, 36, 7))
}

/// [`run`] on [`large_planes_net`], 37 images of 28 × 28.
fn run_large(version: u32) -> Vec<Vec<u32>> {
    run_of(large_planes_net(), version, &images(37, 28, 7))
}

/// [`run`]'s tensors for `net` and images `x` (ten classes).
fn run_of(net: Net, version: u32, x: &Var) -> Vec<Vec<u32>> {
    let dev = Device::Cpu;
    let net = net.with_numerics(version).unwrap();
    let labels = Tensor::from_vec((0..37u32).map(|i| i * 7 % 10).collect(), 37, &dev).unwrap();
    let y = net.forward_t(x, true).unwrap();
    let grads = candle_nn::loss::nll(&y, &labels)
        .unwrap()
        .backward()
        .unwrap();
    let mut out = vec![bits(&y), bits(grads.get(x).expect("input gradient"))];
    for (name, v) in net.named_params() {
        let g = grads
            .get(&v)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        out.push(bits(g));
    }
    // The inference path (a few images at a time through the whole stack, nothing kept)
    // against the eval forward that keeps what backward needs (the batch path), and against
    // each image inferred alone (a group of one everywhere): the same bits.
    let inferred = bits(&net.infer(x).unwrap());
    assert!(inferred == bits(&net.forward_t(x, false).unwrap()));
    for i in [0, 16, 36] {
        let alone = bits(&net.infer(&x.narrow(0, i, 1).unwrap()).unwrap());
        assert!(alone == inferred[i * 10..(i + 1) * 10], "image {i} alone");
    }
    out.push(inferred);
    out
}

/// How many kernel paths this CPU must offer, from its features (read here, not from the
/// engine): portable, plus AVX2 with FMA, plus AVX-512 F and VL. On a CPU with the portable
/// path alone nothing can be compared, and the test says so.
fn paths_this_cpu_has() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        1 + usize::from(avx2) + usize::from(avx2 && has!("avx512f") && has!("avx512vl"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1
    }
}

#[test]
#[allow(clippy::print_stderr)] // saying what was compared
fn every_kernel_path_gives_the_same_bits_on_every_kind_of_step() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    let paths = KernelPath::available();
    assert_eq!(
        paths.len(),
        paths_this_cpu_has(),
        "paths offered: {paths:?}"
    );
    KernelPath::use_path(paths[0]).unwrap();
    let want = run(NUMERICS_VERSION);
    assert!(want.iter().all(|v| !v.is_empty()));
    let mut compared = 0;
    for &path in &paths[1..] {
        KernelPath::use_path(path).unwrap();
        let got = run(NUMERICS_VERSION);
        assert_eq!(got.len(), want.len(), "{path}: tensors");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "tensor {i}: {path} differs from {}", paths[0]);
        }
        compared += 1;
    }
    KernelPath::use_path(KernelPath::best()).unwrap();
    assert_eq!(compared, paths.len() - 1);
    match compared {
        0 => eprintln!("skipped: this CPU has only the portable path (no AVX2 with FMA)"),
        n => eprintln!("compared {n} kernel paths with portable: {:?}", &paths[1..]),
    }
}

/// The engine's oldest numerics ([`OLDEST_NUMERICS`]: version 2, the direct kernels where
/// version 3 runs Winograd kernels in training, here for the unpadded 36×36 convolution whose
/// last image of the batch has no room after it where it lies) give the same bits on every
/// kernel path and on 1 and 2 threads, and differ from version 3 in every training output and
/// gradient. (Inference runs version 2's kernels in both; its output here differs too, through
/// the BatchNorm running statistics the training forward updated.)
#[test]
fn the_oldest_numerics_give_the_same_bits_on_every_path_and_thread_count() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    let paths = KernelPath::available();
    let want = on_every_path_and_thread_count(run, OLDEST_NUMERICS);
    KernelPath::use_path(paths[0]).unwrap();
    // The training output and every gradient differ from the next version's.
    let next = run(OLDEST_NUMERICS + 1);
    for (i, (a, b)) in want.iter().zip(&next).take(want.len() - 1).enumerate() {
        assert!(a != b, "tensor {i}: the numerics change changes training");
    }
    KernelPath::use_path(KernelPath::best()).unwrap();
}

/// `Net::with_numerics` takes every version from [`OLDEST_NUMERICS`] to [`NUMERICS_VERSION`]
/// and refuses the one before and the one after, naming the range.
#[test]
fn numerics_outside_the_engine_are_refused() {
    for v in OLDEST_NUMERICS..=NUMERICS_VERSION {
        assert!(net().with_numerics(v).is_ok(), "version {v}");
    }
    for v in [OLDEST_NUMERICS - 1, NUMERICS_VERSION + 1] {
        let err = net().with_numerics(v).err().expect("refused").to_string();
        let range = format!("versions {OLDEST_NUMERICS} to {NUMERICS_VERSION}, not {v}");
        assert!(err.contains(&range), "version {v}: {err}");
    }
}

/// The values of `bits` as `f64`.
fn values(bits: &[u32]) -> Vec<f64> {
    bits.iter().map(|&b| f32::from_bits(b) as f64).collect()
}

/// Asserts that `a` and `b` differ, by no more than `f32` rounding: at most `1e-5` of `b`'s
/// largest magnitude.
fn differ_by_rounding(name: &str, a: &[u32], b: &[u32]) {
    assert!(a != b, "{name}: the numerics change leaves it as it was");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-5 * scale, "{name}: moved by {worst} of {scale}");
}

/// The engine's previous numerics ([`PREVIOUS_NUMERICS`]: version 4, before evaluation ran on
/// Winograd tiles with the images in the lanes and the backward took large planes one image a
/// group) give the same bits on every kernel path and on 1 and 2 threads. On [`spec`]'s net,
/// whose large planes made groups of one image already, training is the same bits in both (the
/// output and every gradient) and the inference differs, by no more than `f32` rounding
/// through the tiles' transforms.
#[test]
fn the_previous_numerics_give_the_same_bits_on_every_path_and_thread_count() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    let versions = [PREVIOUS_NUMERICS, NUMERICS_VERSION];
    against(run, &names(), &["inferred"], versions, PREVIOUS_NUMERICS);
}

/// `run` with numerics `new` against `old`, tensor by tensor (`names`, in order): those in
/// `changed` differ by no more than `f32` rounding, every other one is the same bits. Version
/// `every` (one of the two) runs on every kernel path and thread count first (the same bits
/// everywhere, asserted).
fn against(
    run: fn(u32) -> Vec<Vec<u32>>,
    names: &[String],
    changed: &[&str],
    [old, new]: [u32; 2],
    every: u32,
) {
    assert!([old, new].contains(&every));
    let checked = on_every_path_and_thread_count(run, every);
    let (now, before) = match every == new {
        true => (checked, run(old)),
        false => (run(new), checked),
    };
    KernelPath::use_path(KernelPath::best()).unwrap();
    assert_eq!(names.len(), now.len());
    for ((name, a), b) in names.iter().zip(&now).zip(&before) {
        match changed.contains(&name.as_str()) {
            true => differ_by_rounding(name, a, b),
            false => assert!(a == b, "{name}: the numerics change changes it"),
        }
    }
}

/// On a net whose large planes made training groups of 2 and 3 images (28² and 26², where
/// [`spec`]'s planes make groups of one), the numerics take them one image a group in the
/// backward: the same bits on every kernel path and on 1 and 2 threads, and against the
/// previous version exactly the two convolutions' weight gradients differ (their sums
/// reordered, by no more than `f32` rounding) with the inference (the tiles); the output and
/// every other gradient are the same bits.
#[test]
fn large_planes_train_in_groups_of_one_image() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    let names = names_of(&large_planes_net());
    let changed = ["b.0.weight", "b.2.weight", "inferred"];
    let versions = [PREVIOUS_NUMERICS, NUMERICS_VERSION];
    against(run_large, &names, &changed, versions, NUMERICS_VERSION);
}

/// A net whose convolutions all have planes too large for groups of 16 (so inference keeps its
/// groups out of the lanes): 28² → 26² → 24², then the global average pool. Its second
/// convolution runs on the tiles from version 5.
fn large_planes_net() -> Net {
    let layers = vec![
        conv(4, 3, 1, 0, false),
        Layer::Relu,
        conv(10, 3, 1, 0, false),
        Layer::BatchNorm { num_features: None },
        Layer::Relu,
        Layer::GlobalAvgPool,
        Layer::LogSoftmax,
    ];
    net_of(&ArchSpec {
        name: "large-planes".into(),
        input: [1, 28, 28],
        blocks: vec![Block {
            name: "b".into(),
            layers,
        }],
    })
}

/// Where inference's groups stay out of the lanes, the numerics move them in and out for the
/// tiles as the batch path's evaluation does: inference is the eval forward's bits on every
/// kernel path, and it differs from the previous version's (the tiles ran).
#[test]
fn the_numerics_infer_as_they_evaluate_outside_the_lanes() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    // 21 images: a group of 16 moved into the lanes and a partial one.
    let x = images(21, 28, 9);
    let mut each = vec![];
    for path in KernelPath::available() {
        KernelPath::use_path(path).unwrap();
        let now = large_planes_net().with_numerics(NUMERICS_VERSION).unwrap();
        let inferred = bits(&now.infer(&x).unwrap());
        assert!(
            inferred == bits(&now.forward_t(&x, false).unwrap()),
            "{path:?}"
        );
        let before = large_planes_net().with_numerics(PREVIOUS_NUMERICS).unwrap();
        assert!(
            inferred != bits(&before.infer(&x).unwrap()),
            "{path:?}: no tiles ran"
        );
        each.push(inferred);
    }
    KernelPath::use_path(KernelPath::best()).unwrap();
    assert!(each.iter().all(|b| b == &each[0]), "the paths differ");
}

/// What [`run`]'s tensors are, in order: the training output, the input's gradient, each
/// parameter's gradient by name, the inference output.
fn names() -> Vec<String> {
    names_of(&net())
}

/// [`names`] for `net`.
fn names_of(net: &Net) -> Vec<String> {
    let params = net.named_params().into_iter().map(|(name, _)| name);
    ["output".to_string(), "input gradient".to_string()]
        .into_iter()
        .chain(params)
        .chain(["inferred".to_string()])
        .collect()
}

/// Version 3 (before the backward of the small unpadded convolutions ran with the images in
/// the lanes) gives the same bits on every kernel path and on 1 and 2 threads. Against version
/// 4 it differs in exactly the weight gradients of the two layers that run so (the 3×3
/// convolution on 8×8 planes, groups of 16 images, and the 1×1 after the global average pool),
/// by no more than `f32` rounding: their input gradients are the same bits, so every other
/// gradient, the outputs and the inference are too.
#[test]
fn version_3_against_4_differs_in_the_lanes_weight_gradients() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    against(run, &names(), &["b.13.weight", "b.20.weight"], [3, 4], 3);
}

/// `run` ([`run`] or [`run_large`]) with numerics `version` on every kernel path, on 1 and 2
/// threads: the same bits everywhere (asserted), returned.
fn on_every_path_and_thread_count(run: fn(u32) -> Vec<Vec<u32>>, version: u32) -> Vec<Vec<u32>> {
    let paths = KernelPath::available();
    let on = |path: KernelPath, threads: usize| {
        KernelPath::use_path(path).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(version))
    };
    let want = on(paths[0], 1);
    for &path in &paths {
        for threads in [1, 2] {
            let got = on(path, threads);
            assert!(
                got == want,
                "numerics {version}: {path} on {threads} threads differs from {} on 1",
                paths[0]
            );
        }
    }
    want
}

/// The backward reads the forward's input where it lies (the engine keeps no copy of it): a
/// batch that is a view into a larger tensor (images 3 to 39 of 40, so its values start past
/// the storage's first) gives the bits of the same images in a tensor of their own, in the
/// output and in every gradient. Read from the storage's start instead, the first layer's
/// weight gradient would be that of images 0 to 36.
#[test]
fn a_batch_read_where_it_lies_in_a_larger_tensor_trains_as_its_own_copy() {
    let _turn = PATH.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::Cpu;
    let labels = Tensor::from_vec((0..37u32).map(|i| i * 7 % 10).collect(), 37, &dev).unwrap();
    let all = images(40, 36, 7);
    let own = Var::from_tensor(&all.narrow(0, 3, 37).unwrap().copy().unwrap()).unwrap();
    // The output, the input's gradient (candle keeps the gradients of variables alone: for the
    // view, the larger tensor's from image 3 on) and every parameter's.
    let train = |x: &Tensor, var: &Var, from: usize| {
        let net = net();
        let y = net.forward_t(x, true).unwrap();
        let grads = candle_nn::loss::nll(&y, &labels)
            .unwrap()
            .backward()
            .unwrap();
        let gx = grads.get(var).expect("input gradient").narrow(0, from, 37);
        let mut out = vec![bits(&y), bits(&gx.unwrap())];
        out.extend(
            net.named_params()
                .iter()
                .map(|(_, v)| bits(grads.get(v).unwrap())),
        );
        out
    };
    let from_view = train(&all.narrow(0, 3, 37).unwrap(), &all, 3);
    let from_own = train(own.as_tensor(), &own, 0);
    assert_eq!(from_view.len(), 2 + net().named_params().len());
    for (k, (a, b)) in from_view.iter().zip(&from_own).enumerate() {
        assert!(
            a == b,
            "tensor {k} of the output, input gradient and parameter gradients"
        );
    }
}
