//! The experiments' logic, without training: choosing a recipe, the seed statistics, comparing
//! runs, a sweep's manifest (planning, parsing, the errors that name a line), recipes that
//! `extends` another; and one tiny sweep on real MNIST run twice at once on one index.
#![allow(clippy::result_large_err)] // errors cross threads as they are

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use under8k_train::experiments::sweep::{self, Busy, JobOptions, JobResult, Manifest, Recipe};
use under8k_train::experiments::{Mode, Outcome, Run, Verdict, choose, compare, mean_sd};
use under8k_train::{DataChoice, EpochRecord, History, TrainConfig, prepare, recipe};

fn epoch(n: usize, acc: f64) -> EpochRecord {
    EpochRecord {
        epoch: n,
        lr: 0.01,
        train_loss: 0.1,
        train_acc: 99.0,
        test_loss: 0.02,
        test_acc: acc,
        test_correct: (acc * 100.0) as usize,
        test_total: 10_000,
        train_seconds: 1.0,
        eval_seconds: 0.1,
        train_img_per_s: 1000.0,
        raw_test_acc: None,
        ema_test_acc: None,
    }
}

fn run(seed: u64, accs: &[f64]) -> Run {
    Run {
        seed,
        config: TrainConfig::attempt(1).unwrap(),
        history: History {
            epochs: accs
                .iter()
                .enumerate()
                .map(|(i, &a)| epoch(i + 1, a))
                .collect(),
            batch_loss: vec![0.5; accs.len() * 2],
            batch_acc: vec![90.0; accs.len() * 2],
            numerics: under8k_model::NUMERICS_VERSION,
        },
    }
}

#[test]
fn seed_statistics_are_the_sample_mean_and_sd() {
    // By hand: mean of 99.40, 99.50, 99.60 is 99.50; deviations ±0.10 and 0 give a sample
    // variance of (0.01 + 0 + 0.01) / 2 = 0.01, so sd 0.1.
    let (m, sd) = mean_sd(&[99.40, 99.50, 99.60]);
    assert!(
        (m - 99.50).abs() < 1e-12 && (sd - 0.1).abs() < 1e-12,
        "{m} {sd}"
    );
    assert_eq!(mean_sd(&[99.0]), (99.0, 0.0));
}

#[test]
fn a_recipe_is_chosen_by_the_mean_of_its_seeds_lowest_of_the_last_three() {
    // `a`: lows 99.30 and 99.50 → mean 99.40. `b`: one lucky seed (99.60) and one poor (99.10)
    // → mean 99.35, though its best seed beats all of `a`'s. `c`: 99.38 twice.
    let a = vec![
        run(1, &[99.0, 99.3, 99.4, 99.3]),
        run(2, &[99.0, 99.5, 99.6, 99.5]),
    ];
    let b = vec![
        run(1, &[99.0, 99.6, 99.7, 99.6]),
        run(2, &[99.0, 99.1, 99.2, 99.1]),
    ];
    let c = vec![
        run(1, &[99.38, 99.4, 99.38]),
        run(2, &[99.38, 99.38, 99.39]),
    ];
    assert_eq!(
        choose(&["a", "b", "c"], &[a.clone(), b.clone(), c.clone()]),
        Some(0)
    );
    // Equal means: the higher mean best epoch wins, then the first name.
    let a2 = vec![run(1, &[99.9, 99.4, 99.4, 99.4])];
    let b2 = vec![run(1, &[99.5, 99.4, 99.4, 99.4])];
    assert_eq!(choose(&["a", "b"], &[b2.clone(), a2.clone()]), Some(1));
    assert_eq!(choose(&["x", "y"], &[a2.clone(), a2]), Some(0));
    assert_eq!(choose(&["x"], &[vec![]]), None);
}

/// A run directory holding `history` and a checkpoint of `model` bytes.
fn run_dir(dir: &Path, history: &History, model: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("history.json"),
        serde_json::to_vec(history).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), model).unwrap();
}

#[test]
fn runs_are_compared_figure_by_figure_batch_by_batch_and_byte_by_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let h = run(1, &[98.0, 99.0]).history;
    run_dir(&a, &h, b"weights");
    run_dir(&b, &h, b"weights");
    assert_eq!(compare(&a, &b).unwrap(), Verdict::Identical { epochs: 2 });
    // Times may differ: they are not figures a deterministic run reproduces.
    let mut timed = h.clone();
    timed.epochs[1].train_seconds = 7.0;
    run_dir(&b, &timed, b"weights");
    assert_eq!(compare(&a, &b).unwrap(), Verdict::Identical { epochs: 2 });
    let expect_differs = |h: &History, model: &[u8], needle: &str| {
        run_dir(&b, h, model);
        match compare(&a, &b).unwrap() {
            Verdict::Differs(why) => assert!(why.contains(needle), "{why}"),
            v => panic!("expected a difference about {needle}, got {v:?}"),
        }
    };
    let mut acc = h.clone();
    acc.epochs[1].test_acc = 99.01;
    expect_differs(
        &acc,
        b"weights",
        "epoch 2 test_acc: committed 99, retrained 99.01",
    );
    let mut batch = h.clone();
    batch.batch_loss[3] = 0.25;
    expect_differs(&batch, b"weights", "batch 4 (epoch 2) loss");
    let mut short = h.clone();
    short.batch_acc.pop();
    expect_differs(
        &short,
        b"weights",
        "4 batch running accuracy values committed, 3 retrained",
    );
    expect_differs(&h, b"weighTs", "differs from byte 5 on");
    let mut fewer = h.clone();
    fewer.epochs.pop();
    expect_differs(
        &fewer,
        b"weights",
        "the committed run has 2 epochs, the retrained one 1",
    );
    // Another numerics version: the bits are not compared, the figures are set side by side.
    let mut other = h.clone();
    other.numerics += 1;
    other.epochs[1].test_acc = 99.5;
    run_dir(&b, &other, b"other weights");
    match compare(&a, &b).unwrap() {
        Verdict::Numerics {
            committed,
            retrained,
            figures,
        } => {
            assert_eq!((committed, retrained), (h.numerics, h.numerics + 1));
            assert!(
                figures.contains("max test acc 99.00 → 99.50 %"),
                "{figures}"
            );
            assert!(figures.contains("last epoch 99.00 → 99.50 %"), "{figures}");
        }
        v => panic!("expected another numerics version, got {v:?}"),
    }
}

#[test]
fn a_history_of_the_first_numerics_version_reads_and_writes_as_before() {
    // Histories written before the field (version 1, like the research searches' runs kept by
    // `--keep-search`) read as version 1 and write without it, so they keep their bytes and
    // fingerprints. Made here from a committed run of this version by dropping the field.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/report/runs/attempt1/seed1/history.json");
    let bytes = std::fs::read(&path).unwrap();
    let now: History = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(now.numerics, under8k_model::NUMERICS_VERSION);
    let mut old: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(old.as_object_mut().unwrap().remove("numerics").is_some());
    let h: History = serde_json::from_value(old).unwrap();
    assert_eq!(h.numerics, 1);
    assert!(!serde_json::to_string(&h).unwrap().contains("numerics"));
    let mut v2 = h;
    v2.numerics = 2;
    assert!(
        serde_json::to_string(&v2)
            .unwrap()
            .contains("\"numerics\":2")
    );
}

fn mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn prepared() -> under8k_train::Prepared {
    let choice = DataChoice::Known(under8k_mnist_data::Dataset::Mnist);
    prepare(choice, &mnist_dir(), &mut ()).expect("MNIST")
}

/// Two recipes (attempt 1 and 3) × seeds 1 and 2, one epoch on 300 images.
fn tiny_recipes() -> Vec<Recipe> {
    let overrides = ["epochs=1", "train_limit=300", "test_limit=200"].map(String::from);
    ["attempt1", "attempt3"]
        .iter()
        .map(|n| Recipe {
            name: n.to_string(),
            config: recipe::preset_with(n, &overrides).unwrap(),
        })
        .collect()
}

#[test]
fn a_manifest_round_trips_and_names_the_line_of_any_damage() {
    let data = prepared();
    let m = sweep::plan(&tiny_recipes(), &[1, 2], &data).unwrap();
    assert_eq!(m.jobs.len(), 4);
    // Recipe-major, stable indices; every config takes its seed and the data's record.
    let order: Vec<(String, u64)> = m.jobs.iter().map(|j| (j.recipe.clone(), j.seed)).collect();
    assert_eq!(order[1], ("attempt1".into(), 2));
    assert_eq!(order[2], ("attempt3".into(), 1));
    assert!(
        m.jobs
            .iter()
            .all(|j| j.config.seed == j.seed && j.config.data == data.record)
    );
    let path = Path::new("sweep.jsonl");
    let text = m.to_jsonl();
    assert_eq!(Manifest::parse(&text, path).unwrap(), m);
    let lines: Vec<&str> = text.lines().collect();
    let with = |n: usize, line: &str| {
        let mut l = lines.clone();
        l[n - 1] = line;
        l.join("\n")
    };
    let err = |t: &str| Manifest::parse(t, path).unwrap_err().to_string();
    // A corrupt line.
    assert!(err(&with(3, "{not json")).starts_with("sweep.jsonl:3: not a job"));
    // A hand-edited config: its fingerprint no longer matches.
    let edited = lines[4].replacen("\"epochs\":1", "\"epochs\":2", 1);
    assert_ne!(edited, lines[4]);
    let e = err(&with(5, &edited));
    assert!(
        e.starts_with("sweep.jsonl:5: the config was changed after planning"),
        "{e}"
    );
    // Jobs out of order, a job missing, another version.
    let swapped = [lines[0], lines[2], lines[1], lines[3], lines[4]].join("\n");
    assert!(err(&swapped).starts_with("sweep.jsonl:2: index 1 where 0 was expected"));
    let e = err(&lines[..4].join("\n"));
    assert!(
        e.contains("sweep.jsonl:1: the header says 4 jobs, the file has 3"),
        "{e}"
    );
    let v2 = lines[0].replace("\"under8k_sweep\":1", "\"under8k_sweep\":2");
    assert!(err(&with(1, &v2)).contains("manifest version 2, this build reads version 1"));
    // An index out of range names the job count.
    let e = m.job(4).unwrap_err().to_string();
    assert!(
        e.contains("out of range: the sweep has 4 jobs (indices 0–3)"),
        "{e}"
    );
}

#[test]
fn planning_twice_is_harmless_but_another_sweep_is_never_written_over() {
    let data = prepared();
    let tmp = tempfile::tempdir().unwrap();
    let m = sweep::plan(&tiny_recipes(), &[1, 2], &data).unwrap();
    m.write_new(tmp.path()).unwrap();
    m.write_new(tmp.path()).unwrap();
    let before = std::fs::read(tmp.path().join(sweep::MANIFEST)).unwrap();
    let other = sweep::plan(&tiny_recipes(), &[1], &data).unwrap();
    let e = other.write_new(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("already holds another sweep (4 jobs)"), "{e}");
    assert_eq!(
        std::fs::read(tmp.path().join(sweep::MANIFEST)).unwrap(),
        before
    );
    let bad = [Recipe {
        name: "../up".into(),
        config: TrainConfig::attempt(1).unwrap(),
    }];
    assert!(sweep::plan(&bad, &[1], &data).is_err());
}

/// The history without its timings.
fn figures(dir: &Path) -> String {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("history.json")).unwrap()).unwrap();
    for e in v["epochs"].as_array_mut().unwrap() {
        for k in ["train_seconds", "eval_seconds", "train_img_per_s"] {
            e[k] = serde_json::Value::Null;
        }
    }
    v.to_string()
}

#[test]
fn two_processes_on_one_index_make_one_run_and_threads_do_not_change_the_bits() {
    let data = prepared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = sweep::plan(&tiny_recipes(), &[1, 2], &data).unwrap();
    m.write_new(dir).unwrap();
    let stop = AtomicBool::new(false);
    let opts = |threads, busy| JobOptions {
        mode: Mode::SkipExisting,
        busy,
        threads,
    };
    // Job 2 twice at once: whichever starts second waits, then finds the run complete.
    let results: Vec<JobResult> = std::thread::scope(|s| {
        let a =
            s.spawn(|| sweep::run_index(dir, &m, 2, &data, opts(1, Busy::Wait), &stop, &|_| {}));
        let b =
            s.spawn(|| sweep::run_index(dir, &m, 2, &data, opts(2, Busy::Wait), &stop, &|_| {}));
        [a.join().unwrap().unwrap(), b.join().unwrap().unwrap()].into()
    });
    let trained = results
        .iter()
        .filter(|r| **r == JobResult::Done(Outcome::Trained))
        .count();
    let kept = results
        .iter()
        .filter(|r| **r == JobResult::Done(Outcome::Skipped))
        .count();
    assert_eq!((trained, kept), (1, 1), "{results:?}");
    // The same job in another sweep with the other thread count: the same bits.
    let other = tempfile::tempdir().unwrap();
    m.write_new(other.path()).unwrap();
    let r = sweep::run_index(
        other.path(),
        &m,
        2,
        &data,
        opts(2, Busy::Skip),
        &stop,
        &|_| {},
    );
    assert_eq!(r.unwrap(), JobResult::Done(Outcome::Trained));
    let (x, y) = (dir.join(&m.jobs[2].dir), other.path().join(&m.jobs[2].dir));
    assert_eq!(figures(&x), figures(&y));
    assert_eq!(
        std::fs::read(x.join("model.safetensors")).unwrap(),
        std::fs::read(y.join("model.safetensors")).unwrap()
    );
    let states = sweep::states(dir, &m);
    let c = sweep::Counts::of(&states);
    assert_eq!((c.done, c.missing), (1, 3), "{states:?}");
    // A run directory that holds another config's run is refused and left as it was.
    let foreign = dir.join(&m.jobs[0].dir);
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::copy(x.join("config.json"), foreign.join("config.json")).unwrap();
    let e = sweep::run_index(dir, &m, 0, &data, opts(1, Busy::Skip), &stop, &|_| {});
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("holds a run of another config; nothing was changed"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(foreign.join("config.json")).unwrap(),
        std::fs::read(x.join("config.json")).unwrap()
    );
    let c = sweep::Counts::of(&sweep::states(dir, &m));
    assert_eq!(c.failed.len(), 1, "the failure is recorded: {c:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A recipe that `extends` a preset and gives some fields resolves to the same config as
    /// the full file with those fields changed.
    #[test]
    fn extends_resolves_to_the_full_config(
        preset in 1u8..=3,
        epochs in 1usize..40,
        batch in 1usize..512,
        momentum in 0.0f64..0.99,
        seed in any::<u64>(),
        rotation in proptest::option::of(0.0f32..20.0),
        give_momentum in any::<bool>(),
    ) {
        let mut full = TrainConfig::attempt(preset).unwrap();
        full.epochs = epochs;
        full.batch_size = batch;
        full.seed = seed;
        full.rotation_degrees = rotation;
        let mut short = serde_json::json!({
            "extends": format!("attempt{preset}"),
            "epochs": epochs,
            "batch_size": batch,
            "seed": seed,
            "rotation_degrees": rotation,
        });
        if give_momentum {
            full.momentum = momentum;
            short["momentum"] = serde_json::json!(momentum);
        }
        let resolved = recipe::resolve(short, Path::new(".")).unwrap();
        prop_assert_eq!(resolved.fingerprint(), full.fingerprint());
        prop_assert_eq!(resolved, full);
    }
}

#[test]
fn extends_follows_files_and_refuses_a_circle() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.json");
    std::fs::write(&base, r#"{"extends": "attempt3", "epochs": 9}"#).unwrap();
    let child = tmp.path().join("child.json");
    std::fs::write(&child, r#"{"extends": "base.json", "momentum": 0.95}"#).unwrap();
    let c = recipe::load(&child, &["batch_size=64".into()]).unwrap();
    let mut want = TrainConfig::attempt(3).unwrap();
    (want.epochs, want.momentum, want.batch_size) = (9, 0.95, 64);
    assert_eq!(c, want);
    std::fs::write(&base, r#"{"extends": "child.json"}"#).unwrap();
    let e = recipe::load(&child, &[]).unwrap_err().to_string();
    assert!(e.contains("`extends` goes round in a circle"), "{e}");
    std::fs::write(&base, r#"{"extends": "attempt9"}"#).unwrap();
    let e = recipe::load(&child, &[]).unwrap_err().to_string();
    assert!(e.contains("neither a preset"), "{e}");
    let e = recipe::preset_with("attempt1", &["epochs".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected KEY=VALUE"), "{e}");
}
