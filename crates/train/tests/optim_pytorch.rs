//! Adam, AdamW (with AMSGrad and coupled weight decay) and SGD (Nesterov, dampening) against
//! `torch.optim` over 25 steps: `tests/fixtures/optim_pytorch.json` holds the parameters PyTorch
//! printed after every step of the problem `scripts/optim_fixture.py` states (which made it):
//! w = [[0.5, −0.3], [0.8, 0.1]], b = [0.2, −0.4], step i minimising (i + 1)·Σ(w·x + b − t)²
//! with x = [1, 2], t = [0.3, −0.7], float64. The same script recorded Adam under `OneCycleLR`
//! (β₁ cycled) and `AveragedModel`'s moving average of a small net, which the last tests read.

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer;
use under8k_train::adam::{Adam, AdamConfig};
use under8k_train::sgd::{Sgd, SgdConfig};

/// The parameters after each of `steps` steps of `opt`, as `w.flatten() + b`.
fn run<O: Optimizer>(config: O::Config, steps: usize) -> Vec<Vec<f64>> {
    let dev = Device::Cpu;
    let w = Var::from_vec(vec![0.5f64, -0.3, 0.8, 0.1], (2, 2), &dev).unwrap();
    let b = Var::from_vec(vec![0.2f64, -0.4], 2, &dev).unwrap();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], (2, 1), &dev).unwrap();
    let t = Tensor::from_vec(vec![0.3f64, -0.7], 2, &dev).unwrap();
    let mut opt = O::new(vec![w.clone(), b.clone()], config).unwrap();
    (0..steps)
        .map(|i| {
            let y =
                (w.as_tensor().matmul(&x).unwrap().squeeze(1).unwrap() + b.as_tensor()).unwrap();
            let loss =
                ((y - &t).unwrap().sqr().unwrap().sum_all().unwrap() * (i + 1) as f64).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            let mut v = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            v.extend(b.to_vec1::<f64>().unwrap());
            v
        })
        .collect()
}

fn fixture(case: &str) -> Vec<Vec<f64>> {
    let text = include_str!("fixtures/optim_pytorch.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    serde_json::from_value(v["cases"][case].clone()).unwrap()
}

/// Every step's parameters within 1e-12 of PyTorch's, relative to the value's size where it is
/// above 1 (the same formulas in float64; operation order may differ in the last bits, which a
/// growing trajectory scales up).
fn close(case: &str, got: &[Vec<f64>]) {
    let want = fixture(case);
    assert!(
        want.len() >= 20,
        "{case}: the fixture has {} steps",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "{case}: steps");
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{case} step {step}: values");
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{case} step {}: {g:?} vs PyTorch's {w:?}",
                step + 1
            );
        }
    }
}

#[test]
fn adam_and_adamw_match_pytorch_over_25_steps() {
    close("adam", &run::<Adam>(AdamConfig::adam(0.05), 25));
    let amsgrad = AdamConfig {
        betas: (0.8, 0.99),
        eps: 1e-6,
        weight_decay: 0.05,
        amsgrad: true,
        ..AdamConfig::adam(0.02)
    };
    close("adam_l2_amsgrad", &run::<Adam>(amsgrad, 25));
    let adamw = AdamConfig {
        weight_decay: 0.1,
        ..AdamConfig::adamw(0.05)
    };
    close("adamw", &run::<Adam>(adamw, 25));
}

#[test]
fn sgd_with_nesterov_and_dampening_matches_pytorch_over_25_steps() {
    let nesterov = SgdConfig {
        nesterov: true,
        weight_decay: 5e-5,
        ..SgdConfig::momentum(0.01, 0.98)
    };
    close("sgd_nesterov", &run::<Sgd>(nesterov, 25));
    let damp = SgdConfig {
        dampening: 0.5,
        ..SgdConfig::momentum(0.01, 0.9)
    };
    close("sgd_dampening", &run::<Sgd>(damp, 25));
}

#[test]
fn adam_state_round_trips_through_its_named_buffers() {
    // Ten steps, the state saved and loaded into a fresh optimizer, ten more: the same bits as
    // twenty in one go (as a resumed run needs).
    let dev = Device::Cpu;
    let config = AdamConfig {
        amsgrad: true,
        ..AdamConfig::adamw(0.05)
    };
    let fresh = |w: &Var| Adam::new(vec![("w".into(), w.clone())], config).unwrap();
    let step = |w: &Var, opt: &mut Adam, i: usize| {
        let d = (w.as_tensor() - 0.25).unwrap();
        let loss = (d.sqr().unwrap().sum_all().unwrap() * (i + 1) as f64).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    };
    let w1 = Var::from_vec(vec![0.5f64, -0.3], 2, &dev).unwrap();
    let mut a = fresh(&w1);
    for i in 0..20 {
        step(&w1, &mut a, i);
    }
    let w2 = Var::from_vec(vec![0.5f64, -0.3], 2, &dev).unwrap();
    let mut b = fresh(&w2);
    for i in 0..10 {
        step(&w2, &mut b, i);
    }
    let saved = b.buffers().unwrap();
    let names: Vec<&String> = saved.keys().collect();
    assert_eq!(
        names,
        ["w.exp_avg", "w.exp_avg_sq", "w.max_exp_avg_sq", "w.step"]
    );
    let mut c = fresh(&w2);
    c.set_buffers(&saved).unwrap();
    for i in 10..20 {
        step(&w2, &mut c, i);
    }
    assert_eq!(w1.to_vec1::<f64>().unwrap(), w2.to_vec1::<f64>().unwrap());
}

#[test]
fn adam_config_validation() {
    assert!(AdamConfig::adam(1e-3).validate().is_ok());
    for bad in [
        AdamConfig::adam(-1.0),
        AdamConfig::adam(f64::NAN),
        AdamConfig {
            betas: (1.0, 0.999),
            ..AdamConfig::adam(1e-3)
        },
        AdamConfig {
            eps: -1e-8,
            ..AdamConfig::adam(1e-3)
        },
    ] {
        assert!(Adam::new(vec![], bad).is_err(), "{bad:?}");
    }
}

#[test]
fn label_smoothing_matches_pytorchs_cross_entropy() {
    // The fixture's logits through our log-softmax, then our loss, against
    // torch.nn.CrossEntropyLoss(label_smoothing=ε) on the same logits.
    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/optim_pytorch.json")).unwrap();
    let s = &v["label_smoothing"];
    let logits: Vec<Vec<f64>> = serde_json::from_value(s["logits"].clone()).unwrap();
    let labels: Vec<u32> = serde_json::from_value(s["labels"].clone()).unwrap();
    let dev = Device::Cpu;
    let x = Tensor::new(logits, &dev).unwrap();
    let logp = candle_nn::ops::log_softmax(&x, candle_core::D::Minus1).unwrap();
    let y = Tensor::new(labels.as_slice(), &dev).unwrap();
    let losses = s["losses"].as_object().unwrap();
    assert_eq!(losses.len(), 3);
    for (e, want) in losses {
        let e: f64 = e.parse().unwrap();
        let got = under8k_train::run::loss(&logp, &y, e)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = want.as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-12,
            "ε {e}: {got} vs PyTorch's {want}"
        );
    }
}

fn fixture_value(key: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/optim_pytorch.json")).unwrap();
    v[key].clone()
}

#[test]
fn adam_under_one_cycle_cycles_lr_and_beta1_as_pytorch_does() {
    // Our scheduler sets the rate and β₁ before each step, as the training loop does; PyTorch's
    // OneCycleLR(max_lr=0.05, total_steps=25) with cycle_momentum (0.85–0.95) did the same.
    let v = fixture_value("one_cycle_adam");
    let rates: Vec<(f64, f64)> = serde_json::from_value(v["rates"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(v["params"].clone()).unwrap();
    assert!(rates.len() >= 20 && rates.len() == want.len());
    let mut sched = under8k_sched::Scheduler::new(
        under8k_sched::Schedule::one_cycle(0.05, rates.len()).unwrap(),
    );
    let dev = Device::Cpu;
    let w = Var::from_vec(vec![0.5f64, -0.3, 0.8, 0.1], (2, 2), &dev).unwrap();
    let b = Var::from_vec(vec![0.2f64, -0.4], 2, &dev).unwrap();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], (2, 1), &dev).unwrap();
    let t = Tensor::from_vec(vec![0.3f64, -0.7], 2, &dev).unwrap();
    let config = AdamConfig::adam(0.0);
    let mut opt = <Adam as Optimizer>::new(vec![w.clone(), b.clone()], config).unwrap();
    let mut got = vec![];
    for (i, &(lr, beta1)) in rates.iter().enumerate() {
        opt.config.lr = sched.lr();
        opt.config.betas.0 = sched.momentum().expect("one-cycle cycles momentum");
        assert!(
            (opt.config.lr - lr).abs() < 1e-12,
            "step {i}: lr {} vs {lr}",
            opt.config.lr
        );
        assert!(
            (opt.config.betas.0 - beta1).abs() < 1e-12,
            "step {i}: β₁ {}",
            opt.config.betas.0
        );
        let y = (w.as_tensor().matmul(&x).unwrap().squeeze(1).unwrap() + b.as_tensor()).unwrap();
        let loss = ((y - &t).unwrap().sqr().unwrap().sum_all().unwrap() * (i + 1) as f64).unwrap();
        Adam::step(&mut opt, &loss.backward().unwrap()).unwrap();
        sched.end_step();
        let mut p = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        p.extend(b.to_vec1::<f64>().unwrap());
        got.push(p);
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "step {i}: {g:?} vs {w:?}"
            );
        }
    }
}

#[test]
fn weight_averaging_matches_pytorchs_averaged_model() {
    // The model's weights and BatchNorm buffers after each of PyTorch's steps go into our
    // average; after each, it holds what AveragedModel(get_ema_multi_avg_fn(0.8),
    // use_buffers=True) held, to float32 rounding (torch's vectorised lerp may fuse).
    let v = fixture_value("ema");
    let decay = v["decay"].as_f64().unwrap();
    type States = Vec<std::collections::BTreeMap<String, Vec<f32>>>;
    let model: States = serde_json::from_value(v["model"].clone()).unwrap();
    let averaged: States = serde_json::from_value(v["averaged"].clone()).unwrap();
    assert!(model.len() >= 20 && model.len() == averaged.len());
    let mut ema = under8k_train::Ema::new(decay).unwrap();
    for (step, (m, want)) in model.iter().zip(&averaged).enumerate() {
        ema.update(m.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        assert_eq!(ema.values().len(), 6, "weights, biases and both buffers");
        for (name, want) in want {
            let got = &ema.values()[name];
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 2e-6 * b.abs().max(1.0),
                    "step {} {name}: {got:?} vs PyTorch's {want:?}",
                    step + 1
                );
            }
        }
    }
    // The average is not the model (the test would pass trivially otherwise).
    let last = model.len() - 1;
    assert!(averaged[last]["0.weight"] != model[last]["0.weight"]);
}
