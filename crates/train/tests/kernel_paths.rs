//! Every kernel path this CPU offers (portable, AVX2, AVX-512) trains bit-identically: 2 epochs
//! of attempt 3 on a subset of the real MNIST (fetched if missing), run once per path, give the
//! same history (timings aside) and the same checkpoint bytes.
//!
//! Its own test binary: the kernel path is process-wide, and no other test may switch it while
//! a run is in flight.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use under8k_mnist_data::Mnist;
use under8k_mnist_data::fetch::{self, FetchOptions};
use under8k_model::KernelPath;
use under8k_train::TrainConfig;
use under8k_train::run::{self, RunFiles, Start};

fn mnist() -> Mnist {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    fetch::fetch(&FetchOptions::new(&dir), &mut ()).expect("MNIST");
    Mnist::load(&dir).unwrap()
}

/// The history without its timings, which legitimately differ, and the checkpoint's bytes.
fn outcome(dir: &Path) -> (String, Vec<u8>) {
    let f = RunFiles {
        dir: dir.to_path_buf(),
    };
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.history_json()).unwrap()).unwrap();
    for e in v["epochs"].as_array_mut().unwrap() {
        for k in ["train_seconds", "eval_seconds", "train_img_per_s"] {
            e[k] = serde_json::Value::Null;
        }
    }
    (v.to_string(), std::fs::read(f.model()).unwrap())
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
fn every_kernel_path_trains_the_same_bits() {
    let data = mnist();
    let mut c = TrainConfig::attempt(3).unwrap();
    c.epochs = 2;
    c.train_limit = Some(512);
    c.test_limit = Some(200);
    c.fit_schedule(60_000);
    // Attempt 3, and the options research added on top: Nesterov momentum, label smoothing,
    // weight averaging, padding; and the same with AdamW.
    let mut more = c.clone();
    more.optimizer = under8k_train::Optimizer::Sgd {
        nesterov: true,
        dampening: 0.0,
    };
    more.label_smoothing = 0.1;
    more.ema = Some(under8k_train::EmaConfig::new(0.9).unwrap());
    for b in more.arch.blocks.iter_mut().take(2) {
        for l in b.layers.iter_mut() {
            if let under8k_model::Layer::Conv { padding, .. } = l {
                *padding = 1;
            }
        }
    }
    let mut adamw = more.clone();
    adamw.optimizer = under8k_train::Optimizer::Adam {
        betas: (0.9, 0.999),
        eps: 1e-8,
        decoupled: true,
        amsgrad: false,
    };
    adamw.weight_decay = 1e-4;
    for c in [c, more, adamw] {
        same_bits_on_every_path(&c, &data);
    }
}

#[allow(clippy::print_stderr)] // saying what was compared
fn same_bits_on_every_path(c: &TrainConfig, data: &Mnist) {
    let paths = KernelPath::available();
    assert_eq!(paths[0], KernelPath::Portable, "portable runs everywhere");
    assert_eq!(
        paths.len(),
        paths_this_cpu_has(),
        "paths offered: {paths:?}"
    );
    let mut first: Option<(KernelPath, (String, Vec<u8>))> = None;
    let mut compared = vec![];
    for &path in &paths {
        KernelPath::use_path(path).unwrap();
        assert_eq!(KernelPath::active(), path);
        let dir = tempfile::tempdir().unwrap();
        let out = run::train(
            c,
            data,
            dir.path(),
            Start::Fresh,
            &mut (),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(out.history.epochs.len(), 2);
        let got = outcome(dir.path());
        match &first {
            None => first = Some((path, got)),
            Some((p0, want)) => {
                assert_eq!(got.0, want.0, "history: {path} differs from {p0}");
                assert!(got.1 == want.1, "checkpoint: {path} differs from {p0}");
                compared.push(path);
            }
        }
    }
    KernelPath::use_path(KernelPath::best()).unwrap();
    assert_eq!(compared.len(), paths.len() - 1);
    match compared.len() {
        0 => eprintln!("skipped: this CPU has only the portable path (no AVX2 with FMA)"),
        _ => eprintln!("trained on portable and compared {compared:?} with it"),
    }
}
