//! The attempts' presets: the project's three, the write-up's three, and how a one-cycle
//! schedule is stretched over a run whose length changes.

use proptest::prelude::*;
use under8k_sched::Schedule;
use under8k_train::TrainConfig;

#[test]
fn attempts_1_and_2_are_the_write_ups_and_3_replaces_its_step_lr_by_one_cycle() {
    for n in [1, 2] {
        assert_eq!(
            TrainConfig::attempt(n).unwrap(),
            TrainConfig::write_up(n).unwrap()
        );
    }
    let ours = TrainConfig::attempt(3).unwrap();
    let theirs = TrainConfig::write_up(3).unwrap();
    // 15 epochs × ⌈60,000 / 128⌉ = 15 × 469 batches, PyTorch's OneCycleLR defaults.
    assert_eq!(
        ours.schedule,
        Schedule::OneCycle {
            max_lr: 0.1,
            total_steps: 7035,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            momentum: Some((0.85, 0.95)),
        }
    );
    // The write-up: StepLR(1) from 0.07, γ written out as the write-up gives it.
    assert_eq!(
        theirs.schedule,
        Schedule::Step {
            lr: 0.07,
            step_size: 1,
            gamma: (0.07 - 0.1 / 15.0) / 0.07
        }
    );
    // Everything else is the same recipe.
    let same_but_schedule = TrainConfig {
        schedule: theirs.schedule.clone(),
        ..ours.clone()
    };
    assert_eq!(same_but_schedule, theirs);
    assert_eq!(ours.rotation_degrees, Some(7.0));
    assert!(TrainConfig::attempt(4).is_err() && TrainConfig::write_up(0).is_err());
}

proptest! {
    /// After `fit_schedule(n)`, a one-cycle schedule has exactly the run's steps on `n`
    /// training images: epochs × ⌈min(limit, n) / batch⌉; a per-epoch schedule is untouched.
    #[test]
    fn fit_schedule_spans_the_run(
        epochs in 1usize..40,
        batch in 1usize..600,
        limit in proptest::option::of(1usize..80_000),
        n in prop_oneof![Just(60_000usize), 1usize..100_000],
    ) {
        let mut c = TrainConfig::attempt(3).unwrap();
        c.epochs = epochs;
        c.batch_size = batch;
        c.train_limit = limit;
        c.fit_schedule(n);
        prop_assert_eq!(c.steps_per_epoch(n), limit.unwrap_or(n).min(n).div_ceil(batch));
        let images = limit.unwrap_or(n).min(n);
        let steps = epochs * images.div_ceil(batch);
        let Schedule::OneCycle { total_steps, max_lr, .. } = c.schedule else {
            panic!("one-cycle")
        };
        prop_assert_eq!(total_steps, steps.max(2));
        prop_assert_eq!(max_lr, 0.1);

        let mut w = TrainConfig::write_up(3).unwrap();
        let before = w.schedule.clone();
        w.epochs = epochs;
        w.train_limit = limit;
        w.fit_schedule(n);
        prop_assert_eq!(w.schedule, before);
    }
}
