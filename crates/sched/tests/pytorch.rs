//! Sequences equal to PyTorch's, to the bit. The expected values were printed by torch 2.15.0
//! (`torch.optim.lr_scheduler.*` on an SGD optimizer, reading `param_groups[0]["lr"]` before each
//! `scheduler.step()`), in short:
//!
//! ```text
//! g = (0.07 - 0.1/15)/0.07
//! StepLR(opt(lr=0.07), step_size=1, gamma=g)            15 epochs  → LINEAR
//! StepLR(opt(lr=0.07), step_size=3, gamma=0.5)          10 epochs  → STEP3
//! MultiStepLR(opt(lr=0.07), milestones=[2,5,5], gamma=0.1) 8 epochs → MULTI
//! ExponentialLR(opt(lr=0.07), gamma=0.9)                 6 epochs  → EXP
//! OneCycleLR(opt(lr=0.1), max_lr=0.1, total_steps=20)   20 steps   → ONECYCLE
//! ```

use proptest::prelude::*;
use under8k_sched::{Schedule, Scheduler};

const LINEAR: [f64; 15] = [
    0.07,
    0.06333333333333334,
    0.057301587301587305,
    0.0518442932728647,
    0.046906741532591875,
    0.042439432815202176,
    0.038397582070897204,
    0.034740669492716515,
    0.03143203430293399,
    0.028438507226464085,
    0.025730077966800838,
    0.023279594350915044,
    0.021062490127018375,
    0.019056538686349957,
    0.017241630240030913,
];
const STEP3: [f64; 10] = [
    0.07, 0.07, 0.07, 0.035, 0.035, 0.035, 0.0175, 0.0175, 0.0175, 0.00875,
];
const MULTI: [f64; 8] = [
    0.07,
    0.07,
    0.007000000000000001,
    0.007000000000000001,
    0.007000000000000001,
    7.000000000000002e-05,
    7.000000000000002e-05,
    7.000000000000002e-05,
];
const EXP: [f64; 6] = [
    0.07,
    0.06300000000000001,
    0.056700000000000014,
    0.05103000000000001,
    0.04592700000000001,
    0.04133430000000001,
];
const ONECYCLE: [f64; 20] = [
    0.0040000000000000036,
    0.013167184270002533,
    0.037167184270002526,
    0.06683281572999747,
    0.09083281572999748,
    0.1,
    0.09874640062350874,
    0.09504846320134738,
    0.089091617757105,
    0.0811745653949763,
    0.07169430017913009,
    0.06112620219362893,
    0.0500002,
    0.03887419780637107,
    0.028306099820869922,
    0.0188258346050237,
    0.010908782242895003,
    0.004951936798652629,
    0.0012539993764912555,
    4e-07,
];

fn epochs(s: Schedule, n: usize) -> Vec<f64> {
    let mut sc = Scheduler::new(s);
    (0..n)
        .map(|_| {
            let lr = sc.lr();
            sc.end_epoch();
            lr
        })
        .collect()
}

#[test]
fn epoch_schedules_match_pytorch_bit_for_bit() {
    assert_eq!(
        epochs(
            Schedule::geometric_from_decrement(0.07, 0.1, 15).unwrap(),
            15
        ),
        LINEAR
    );
    assert_eq!(epochs(Schedule::step(0.07, 3, 0.5).unwrap(), 10), STEP3);
    assert_eq!(
        epochs(Schedule::multi_step(0.07, vec![2, 5, 5], 0.1).unwrap(), 8),
        MULTI
    );
    assert_eq!(epochs(Schedule::exponential(0.07, 0.9).unwrap(), 6), EXP);
    assert_eq!(epochs(Schedule::constant(0.01).unwrap(), 3), [0.01; 3]);
}

#[test]
fn one_cycle_matches_pytorch_per_step() {
    let mut sc = Scheduler::new(Schedule::one_cycle(0.1, 20).unwrap());
    let got: Vec<f64> = (0..20)
        .map(|_| {
            let lr = sc.lr();
            sc.end_step();
            lr
        })
        .collect();
    // Cosine terms go through libm's cos: allow a few ulps.
    assert_eq!(got.len(), ONECYCLE.len());
    for (g, w) in got.iter().zip(ONECYCLE) {
        assert!((g - w).abs() <= 4.0 * f64::EPSILON * w.abs(), "{g} vs {w}");
    }
    // Momentum moves opposite to the rate: 0.95 at the start, 0.85 at the peak, back to 0.95.
    let s = Schedule::one_cycle(0.1, 20).unwrap();
    assert_eq!(s.momentum(0), Some(0.95));
    assert!((s.momentum(5).unwrap() - 0.85).abs() < 1e-15);
    assert!((s.momentum(19).unwrap() - 0.95).abs() < 1e-15);
}

#[test]
fn constructors_validate() {
    assert!(Schedule::step(0.1, 0, 0.5).is_err());
    assert!(Schedule::step(0.1, 1, 0.0).is_err());
    assert!(Schedule::step(0.1, 1, -1.0).is_err());
    assert!(Schedule::constant(0.0).is_err());
    assert!(Schedule::constant(f64::NAN).is_err());
    assert!(Schedule::multi_step(0.1, vec![], 0.1).is_err());
    assert!(Schedule::multi_step(0.1, vec![5, 2], 0.1).is_err());
    assert!(Schedule::one_cycle(0.1, 1).is_err());
    assert!(Schedule::geometric_from_decrement(0.07, 0.1, 0).is_err());
}

fn any_schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        (1e-4f64..1.0).prop_map(|lr| Schedule::constant(lr).unwrap()),
        (1e-4f64..1.0, 1usize..5, 0.05f64..1.0)
            .prop_map(|(lr, s, g)| Schedule::step(lr, s, g).unwrap()),
        (
            1e-4f64..1.0,
            proptest::collection::vec(1usize..30, 1..4),
            0.05f64..1.0
        )
            .prop_map(|(lr, mut m, g)| {
                m.sort_unstable();
                Schedule::multi_step(lr, m, g).unwrap()
            }),
        (1e-4f64..1.0, 0.05f64..1.0).prop_map(|(lr, g)| Schedule::exponential(lr, g).unwrap()),
        (1e-4f64..1.0, 0.0f64..0.066).prop_map(|(lr, d)| Schedule::geometric_from_decrement(
            lr,
            d.min(lr * 14.0),
            15
        )
        .unwrap()),
    ]
}

proptest! {
    #[test]
    fn never_negative_and_non_increasing_when_gamma_below_one(s in any_schedule()) {
        let lrs = epochs(s, 30);
        prop_assert!(lrs.iter().all(|&lr| lr >= 0.0 && lr.is_finite()));
        prop_assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn epoch_schedules_change_only_at_epoch_boundaries(s in any_schedule(), e in 0usize..20, steps in 0usize..1000) {
        prop_assert_eq!(s.lr(e, 0), s.lr(e, steps));
    }

    #[test]
    fn step_lr_changes_only_at_multiples_of_step_size(lr in 1e-3f64..1.0, step in 1usize..6, g in 0.1f64..0.99, e in 1usize..40) {
        let s = Schedule::step(lr, step, g).unwrap();
        prop_assert_eq!(s.lr(e, 0) != s.lr(e - 1, 0), e % step == 0);
    }

    #[test]
    fn saved_state_continues_the_same_sequence(s in any_schedule(), cut in 0usize..20) {
        let full = epochs(s.clone(), 25);
        let mut a = Scheduler::new(s.clone());
        for _ in 0..cut { a.end_epoch(); }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: Scheduler = serde_json::from_str(&json).unwrap();
        let rest: Vec<f64> = (cut..25).map(|_| { let lr = b.lr(); b.end_epoch(); lr }).collect();
        prop_assert_eq!(&rest[..], &full[cut..]);
    }

    #[test]
    fn one_cycle_stays_between_min_and_max(max_lr in 1e-3f64..1.0, total in 2usize..500) {
        let s = Schedule::one_cycle(max_lr, total).unwrap();
        for step in 0..total {
            let lr = s.lr(0, step);
            prop_assert!(lr > 0.0 && lr <= max_lr * (1.0 + 1e-12), "{lr}");
        }
    }
}
