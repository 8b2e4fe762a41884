//! Weight averaging: with decay 0 the average is the model itself, bit for bit, whether it is
//! folded by hand or trained with (then the run evaluates and saves exactly what it would
//! without averaging). Parity with PyTorch's `AveragedModel` is in `optim_pytorch.rs`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use under8k_mnist_data::Mnist;
use under8k_mnist_data::fetch::{self, FetchOptions};
use under8k_train::run::{self, Start};
use under8k_train::{Ema, EmaConfig, EmaModel, TrainConfig};

fn mnist() -> &'static Mnist {
    static DATA: std::sync::OnceLock<Mnist> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
        fetch::fetch(&FetchOptions::new(&dir), &mut ()).expect("MNIST");
        Mnist::load(&dir).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Decay 0: after any sequence of updates the average holds the last values exactly.
    #[test]
    fn decay_zero_holds_the_last_values(
        steps in proptest::collection::vec(proptest::collection::vec(-1e3f32..1e3, 5), 1..8),
    ) {
        let mut ema = Ema::new(0.0).unwrap();
        for s in &steps {
            ema.update([("p", s.as_slice())]);
        }
        prop_assert_eq!(&ema.values()["p"], steps.last().unwrap());
        prop_assert_eq!(ema.n_averaged(), steps.len() as u64);
    }
}

proptest! {
    // Each case trains two small runs.
    #![proptest_config(ProptestConfig::with_cases(3))]

    /// A config with averaging at decay 0 evaluates and saves exactly the raw model: the same
    /// accuracies, losses and `model.safetensors` as the run without averaging.
    #[test]
    fn decay_zero_evaluates_exactly_the_raw_model(seed in 1u64..1000, epochs in 1usize..3) {
        let mut plain = TrainConfig::attempt(3).unwrap();
        (plain.epochs, plain.seed) = (epochs, seed);
        (plain.train_limit, plain.test_limit) = (Some(256), Some(300));
        plain.fit_schedule(60_000);
        let mut averaged = plain.clone();
        averaged.ema = Some(EmaConfig { decay: 0.0, model: EmaModel::Averaged });
        let go = AtomicBool::new(false);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ha = run::train(&plain, mnist(), a.path(), Start::Fresh, &mut (), &go).unwrap().history;
        let hb = run::train(&averaged, mnist(), b.path(), Start::Fresh, &mut (), &go).unwrap().history;
        for (x, y) in ha.epochs.iter().zip(&hb.epochs) {
            prop_assert_eq!((x.test_acc, x.test_loss), (y.test_acc, y.test_loss));
            prop_assert_eq!(y.ema_test_acc, Some(x.test_acc));
            prop_assert_eq!(y.raw_test_acc, Some(x.test_acc));
        }
        let model = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
        prop_assert!(model(a.path()) == model(b.path()), "the saved model differs");
    }
}

#[test]
fn averaging_changes_what_is_saved_and_raw_saves_the_model() {
    // The counterpart of decay 0: at 0.9 the averaged model is another model, and choosing
    // `raw` saves the trained one, whose accuracy is then the run's.
    let mut c = TrainConfig::attempt(3).unwrap();
    (c.epochs, c.train_limit, c.test_limit) = (1, Some(256), Some(300));
    c.fit_schedule(60_000);
    let go = AtomicBool::new(false);
    let train = |c: &TrainConfig| {
        let d = tempfile::tempdir().unwrap();
        let h = run::train(c, mnist(), d.path(), Start::Fresh, &mut (), &go)
            .unwrap()
            .history;
        (
            h,
            std::fs::read(d.path().join("model.safetensors")).unwrap(),
        )
    };
    let (plain, plain_model) = train(&c);
    c.ema = Some(EmaConfig::new(0.9).unwrap());
    let (avg, avg_model) = train(&c);
    c.ema = Some(EmaConfig {
        decay: 0.9,
        model: EmaModel::Raw,
    });
    let (raw, raw_model) = train(&c);
    assert!(avg_model != plain_model, "the averaged model was not saved");
    assert!(raw_model == plain_model, "`raw` saves the trained model");
    let (e, r) = (&avg.epochs[0], &raw.epochs[0]);
    assert_eq!(
        (r.test_acc, e.test_acc),
        (plain.epochs[0].test_acc, e.ema_test_acc.unwrap())
    );
    assert_eq!(
        (e.raw_test_acc, r.ema_test_acc),
        (Some(r.test_acc), e.ema_test_acc)
    );
    c.ema = Some(EmaConfig {
        decay: 1.5,
        model: EmaModel::Raw,
    });
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("decay 1.5 is not in [0, 1]"), "{e}");
}
