//! Adam, AdamW (with AMSGrad and coupled weight decay) and SGD (Nesterov, dampening) against
//! `torch.optim` over 25 steps: `tests/fixtures/optim_pytorch.json` holds the parameters PyTorch
//! printed after every step of the problem `scripts/optim_fixture.py` states (which made it):
//! w = [[0.5, −0.3], [0.8, 0.1]], b = [0.2, −0.4], step i minimising (i + 1)·Σ(w·x + b − t)²
//! with x = [1, 2], t = [0.3, −0.7], float64.

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
