//! The learning-rate range test: its rates, its suggestions on curves whose answer is known, and
//! real runs on a small subset of MNIST (fetched if missing): finite, deterministic, and stopped
//! when the loss diverges.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use under8k_mnist_data::Mnist;
use under8k_mnist_data::fetch::{self, FetchOptions};
use under8k_train::TrainConfig;
use under8k_train::lr_find::{
    LrFindError, RangeCurve, RangeEnd, RangePoint, RangeTest, range_test, sweep_config,
};

fn mnist() -> Mnist {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    fetch::fetch(&FetchOptions::new(&dir), &mut ()).expect("MNIST");
    Mnist::load(&dir).unwrap()
}

/// Attempt 2 (rotation, momentum 0.9) on 512 images in batches of 32: 16 batches an epoch.
fn small() -> TrainConfig {
    let mut c = TrainConfig::attempt(2).unwrap();
    c.train_limit = Some(512);
    c.batch_size = 32;
    c
}

proptest! {
    #[test]
    fn rates_are_geometric_from_start_to_end(
        start_exp in -7.0f64..-1.0,
        decades in 0.5f64..7.0,
        steps in 2usize..2000,
    ) {
        let (start, end) = (10f64.powf(start_exp), 10f64.powf(start_exp + decades));
        let t = RangeTest::new(start, end, steps).unwrap();
        prop_assert_eq!(t.lr(0), start);
        prop_assert_eq!(t.lr(steps - 1), end);
        // Every ratio of neighbours is the same: (end/start)^(1/(steps−1)).
        let ratio = (end / start).powf(1.0 / (steps - 1) as f64);
        for i in 0..steps - 1 {
            let r = t.lr(i + 1) / t.lr(i);
            prop_assert!((r / ratio - 1.0).abs() < 1e-12, "step {}: {} vs {}", i, r, ratio);
        }
    }
}

#[test]
fn bad_settings_are_refused() {
    assert!(matches!(
        RangeTest::new(0.0, 1.0, 10),
        Err(LrFindError::Range { .. })
    ));
    assert!(matches!(
        RangeTest::new(1.0, 0.1, 10),
        Err(LrFindError::Range { .. })
    ));
    assert!(matches!(
        RangeTest::new(1e-5, f64::NAN, 10),
        Err(LrFindError::Range { .. })
    ));
    assert_eq!(RangeTest::new(1e-5, 1.0, 1), Err(LrFindError::Steps(1)));
    let mut t = RangeTest::new(1e-5, 1.0, 10).unwrap();
    t.diverge_factor = 1.0;
    assert_eq!(t.validate(), Err(LrFindError::Factor(1.0)));
    assert!(sweep_config(&small(), -0.1, 2).is_err());
    let c = sweep_config(&small(), 0.05, 2).unwrap();
    assert_eq!(
        (c.schedule.lr(0, 0), c.schedule.lr(1, 99), c.epochs),
        (0.05, 0.05, 2)
    );
}

/// A synthetic curve over lr = 10^(−4 + i/10), i = 0..=50, with the smoothed loss `f(ln lr)`.
fn curve(f: impl Fn(f64) -> f64) -> RangeCurve {
    let test = RangeTest::new(1e-4, 10.0, 51).unwrap();
    let points = (0..51)
        .map(|i| {
            let lr = test.lr(i);
            RangePoint {
                step: i,
                lr,
                loss: f(lr.ln()),
                smoothed: f(lr.ln()),
            }
        })
        .collect();
    RangeCurve {
        test,
        points,
        end: RangeEnd::Completed,
    }
}

#[test]
fn suggestions_on_curves_with_known_answers() {
    // −tanh(ln lr − ln 0.01) falls fastest at lr = 0.01 (i = 20), its inflection; the central
    // differences there are symmetric, so the discrete rule finds it exactly.
    let c = curve(|x| -(x - 0.01f64.ln()).tanh());
    let s = c.steepest().unwrap();
    assert!((s / 0.01 - 1.0).abs() < 1e-9, "{s}");
    // (ln lr − ln 0.1)² is lowest at lr = 0.1 (i = 30): min/10 suggests 0.01.
    let c = curve(|x| (x - 0.1f64.ln()).powi(2));
    assert!((c.min_loss_lr().unwrap() / 0.1 - 1.0).abs() < 1e-9);
    assert!((c.min_over_ten().unwrap() / 0.01 - 1.0).abs() < 1e-9);
    // Too short a curve for the skipped ends has no steepest point.
    let mut short = c.clone();
    short.points.truncate(17);
    assert_eq!(short.steepest(), None);
}

#[test]
fn a_range_test_is_finite_inside_its_range_and_deterministic() {
    let data = mnist();
    // 40 steps: more than two epochs of 16 batches, so it crosses epoch boundaries.
    let test = RangeTest::new(1e-4, 0.5, 40).unwrap();
    let run = || range_test(&small(), &data, &test, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let a = run();
    assert_eq!(a.end, RangeEnd::Completed);
    assert_eq!(a.points.len(), 40);
    assert!(
        a.points
            .iter()
            .all(|p| p.loss.is_finite() && p.smoothed.is_finite())
    );
    for s in [a.steepest().unwrap(), a.min_loss_lr().unwrap()] {
        assert!((1e-4..=0.5).contains(&s), "{s}");
    }
    assert_eq!(
        a.to_csv(),
        run().to_csv(),
        "the same seed gives the same curve"
    );
    let mut other = small();
    other.seed = 2;
    let b = range_test(&other, &data, &test, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_ne!(a.to_csv(), b.to_csv(), "another seed gives another curve");
}

#[test]
fn divergence_stops_the_test_and_is_reported() {
    let data = mnist();
    // Rates up to 10⁶ blow any net up long before the 200th step.
    let test = RangeTest::new(1e-3, 1e6, 200).unwrap();
    let c = range_test(&small(), &data, &test, &AtomicBool::new(false), &mut |_| {}).unwrap();
    match c.end {
        RangeEnd::Diverged { step, lr } => {
            assert_eq!(step + 1, c.points.len());
            assert_eq!(lr, test.lr(step));
            let best = c
                .points
                .iter()
                .map(|p| p.smoothed)
                .fold(f64::INFINITY, f64::min);
            assert!(c.points[step].smoothed > 4.0 * best);
        }
        RangeEnd::NonFinite { step, .. } => assert_eq!(step, c.points.len()),
        e => panic!("expected a divergence, got {e:?}"),
    }
    assert!(c.points.len() < 200);
    // A stop flag set before the start ends it at once.
    let c = range_test(&small(), &data, &test, &AtomicBool::new(true), &mut |_| {}).unwrap();
    assert_eq!((c.end, c.points.len()), (RangeEnd::Interrupted, 0));
}
