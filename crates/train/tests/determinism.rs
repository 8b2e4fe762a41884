//! Determinism and resume on a small subset of the real MNIST (fetched if missing): two runs of
//! the same config give byte-identical histories and weights; a run stopped after one epoch and
//! resumed ends byte-identical to an uninterrupted one; a NaN stops the run and keeps the last
//! good checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use under8k_mnist_data::Mnist;
use under8k_mnist_data::fetch::{self, FetchOptions};
use under8k_sched::Schedule;
use under8k_train::run::{self, BatchStats, Observer, RunFiles, Start};
use under8k_train::{TrainConfig, TrainError};

fn mnist() -> Mnist {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    fetch::fetch(&FetchOptions::new(&dir), &mut ()).expect("MNIST");
    Mnist::load(&dir).unwrap()
}

fn small() -> TrainConfig {
    let mut c = TrainConfig::attempt(3).unwrap();
    c.epochs = 2;
    c.train_limit = Some(512);
    c.test_limit = Some(200);
    c.fit_schedule(60_000);
    c
}

fn bytes(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let f = RunFiles {
        dir: dir.to_path_buf(),
    };
    (
        std::fs::read(f.history_json()).unwrap(),
        std::fs::read(f.model()).unwrap(),
        std::fs::read(f.state()).unwrap(),
    )
}

/// Strips the timings, which legitimately differ between runs.
fn without_times(h: &[u8]) -> String {
    let mut v: serde_json::Value = serde_json::from_slice(h).unwrap();
    for e in v["epochs"].as_array_mut().unwrap() {
        for k in ["train_seconds", "eval_seconds", "train_img_per_s"] {
            e[k] = serde_json::Value::Null;
        }
    }
    v.to_string()
}

/// Sets the stop flag once `after` batches have been seen.
struct StopAfter<'a> {
    after: usize,
    seen: usize,
    stop: &'a AtomicBool,
}

impl Observer for StopAfter<'_> {
    fn batch(&mut self, _: &BatchStats) {
        self.seen += 1;
        if self.seen == self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn runs_are_reproducible_and_resume_bit_identically() {
    let data = mnist();
    let config = small();
    let go = AtomicBool::new(false);
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let full = run::train(&config, &data, a.path(), Start::Fresh, &mut (), &go).unwrap();
    assert_eq!(full.history.epochs.len(), 2);
    run::train(&config, &data, b.path(), Start::Fresh, &mut (), &go).unwrap();
    let (ha, ma, _) = bytes(a.path());
    let (hb, mb, _) = bytes(b.path());
    assert_eq!(
        without_times(&ha),
        without_times(&hb),
        "same config, same history"
    );
    assert_eq!(ma, mb, "same config, same weights, byte for byte");

    // Stop in the middle of epoch 2 (512/128 = 4 batches an epoch): epoch 1 is saved.
    let stop = AtomicBool::new(false);
    let out = run::train(
        &config,
        &data,
        c.path(),
        Start::Fresh,
        &mut StopAfter {
            after: 6,
            seen: 0,
            stop: &stop,
        },
        &stop,
    )
    .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.history.epochs.len(), 1);
    let resumed = run::train(&config, &data, c.path(), Start::Resume, &mut (), &go).unwrap();
    assert!(!resumed.interrupted);
    let (hc, mc, _) = bytes(c.path());
    assert_eq!(
        without_times(&ha),
        without_times(&hc),
        "resumed history equals the uninterrupted one"
    );
    assert_eq!(
        ma, mc,
        "resumed weights equal the uninterrupted ones, byte for byte"
    );

    // Resuming with another config is refused, naming the state file.
    let mut other = small();
    other.seed = 2;
    let e = run::train(&other, &data, c.path(), Start::Resume, &mut (), &go).unwrap_err();
    assert!(
        matches!(e, TrainError::Resume { .. }) && e.to_string().contains("state.safetensors"),
        "{e}"
    );
}

#[test]
fn nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint() {
    let data = mnist();
    let mut config = small();
    config.schedule = Schedule::constant(1e30).unwrap(); // diverges at once
    let dir = tempfile::tempdir().unwrap();
    let e = run::train(
        &config,
        &data,
        dir.path(),
        Start::Fresh,
        &mut (),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    let TrainError::NonFinite { epoch, batch, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(epoch, 1);
    assert!(batch >= 2, "the first batch runs with the initial weights");
    assert!(
        !RunFiles {
            dir: dir.path().to_path_buf()
        }
        .state()
        .exists(),
        "no half-trained checkpoint"
    );
}

#[test]
fn a_one_cycle_schedule_shorter_than_the_run_is_refused_before_anything_is_written() {
    let mnist = mnist();
    // 2 epochs × ⌈512 / 128⌉ batches = 8 steps; a schedule of 7 would run off its end.
    let mut c = small();
    let Schedule::OneCycle { total_steps, .. } = &mut c.schedule else {
        panic!("attempt 3 is one-cycle")
    };
    assert_eq!(*total_steps, 8, "fit_schedule spans the run");
    *total_steps = 7;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let err = run::train(
        &c,
        &mnist,
        &dir,
        Start::Fresh,
        &mut (),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("7 steps but the run takes 8"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing is written");
}

#[test]
fn one_thread_and_two_threads_train_the_same_bits() {
    let data = mnist();
    // With weight averaging on, so that it is checked too.
    let mut c = small();
    c.ema = Some(under8k_train::EmaConfig::new(0.9).unwrap());
    let train_in = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let out = pool.install(|| {
            assert_eq!(rayon::current_num_threads(), threads);
            run::train(
                &c,
                &data,
                dir.path(),
                Start::Fresh,
                &mut (),
                &AtomicBool::new(false),
            )
        });
        assert_eq!(out.unwrap().history.epochs.len(), 2);
        let (h, model, _) = bytes(dir.path());
        (without_times(&h), model)
    };
    let (one, two) = (train_in(1), train_in(2));
    assert_eq!(one.0, two.0, "history: 1 thread against 2");
    assert!(one.1 == two.1, "checkpoint: 1 thread against 2");
}

#[test]
fn an_adamw_run_with_label_smoothing_and_averaging_resumes_bit_identically() {
    let data = mnist();
    let mut c = small();
    c.optimizer = under8k_train::Optimizer::Adam {
        betas: (0.9, 0.999),
        eps: 1e-8,
        decoupled: true,
        amsgrad: false,
    };
    c.weight_decay = 1e-4;
    c.label_smoothing = 0.1;
    c.ema = Some(under8k_train::EmaConfig::new(0.9).unwrap());
    c.schedule = Schedule::one_cycle(3e-3, c.epochs * c.steps_per_epoch(60_000)).unwrap();
    let go = AtomicBool::new(false);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run::train(&c, &data, a.path(), Start::Fresh, &mut (), &go).unwrap();
    let stop = AtomicBool::new(false);
    let mut observer = StopAfter {
        after: 6,
        seen: 0,
        stop: &stop,
    };
    let out = run::train(&c, &data, b.path(), Start::Fresh, &mut observer, &stop).unwrap();
    assert!(out.interrupted && out.history.epochs.len() == 1);
    run::train(&c, &data, b.path(), Start::Resume, &mut (), &go).unwrap();
    let ((ha, ma, _), (hb, mb, _)) = (bytes(a.path()), bytes(b.path()));
    assert_eq!(
        without_times(&ha),
        without_times(&hb),
        "resumed AdamW history"
    );
    assert!(ma == mb, "resumed AdamW weights");
    // Both models' accuracies are recorded; the averaged one is the run's (the default).
    let h: under8k_train::History = serde_json::from_slice(&ha).unwrap();
    for e in &h.epochs {
        let (raw, avg) = (e.raw_test_acc.unwrap(), e.ema_test_acc.unwrap());
        assert_eq!(e.test_acc, avg, "epoch {}: raw {raw}", e.epoch);
    }
    let csv = std::fs::read_to_string(a.path().join("history.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",raw_test_acc,ema_test_acc")
    );
    // The optimizer is in the config (SGD's default is not), and it changes the run.
    let saved = std::fs::read_to_string(a.path().join("config.json")).unwrap();
    assert!(saved.contains("\"kind\": \"adam\""), "{saved}");
    assert!(saved.contains("\"label_smoothing\": 0.1"), "{saved}");
    let sgd = tempfile::tempdir().unwrap();
    let mut plain = c.clone();
    plain.optimizer = under8k_train::Optimizer::default();
    plain.label_smoothing = 0.0;
    plain.ema = None;
    run::train(&plain, &data, sgd.path(), Start::Fresh, &mut (), &go).unwrap();
    assert!(
        bytes(sgd.path()).1 != ma,
        "AdamW trained the same weights as SGD"
    );
    assert!(
        !std::fs::read_to_string(sgd.path().join("config.json"))
            .unwrap()
            .contains("optimizer")
    );
}

#[test]
fn invalid_adam_settings_are_refused_before_anything_is_written() {
    let data = mnist();
    let mut c = small();
    c.optimizer = under8k_train::Optimizer::Adam {
        betas: (1.5, 0.999),
        eps: 1e-8,
        decoupled: false,
        amsgrad: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let e = run::train(
        &c,
        &data,
        &out,
        Start::Fresh,
        &mut (),
        &AtomicBool::new(false),
    );
    let e = e.unwrap_err().to_string();
    assert!(e.contains("invalid Adam settings"), "{e}");
    assert!(!out.exists());
}
