//! SGD against `torch.optim.SGD` (torch 2.15, float64) on a tiny problem: parameters
//! w = [[0.5, −0.3], [0.8, 0.1]], b = [0.2, −0.4]; step i (0, 1, 2) minimises
//! (i + 1)·Σ(w·x + b − t)² with x = [1, 2], t = [0.3, −0.7]. Expected values printed by PyTorch
//! after three `opt.step()`s, as `w.flatten().tolist() + b.tolist()`.

use candle_core::{Device, Tensor, Var};
use under8k_train::sgd::{Sgd, SgdConfig, SgdError};

fn run(config: SgdConfig) -> Vec<f64> {
    let dev = Device::Cpu;
    let w = Var::from_vec(vec![0.5f64, -0.3, 0.8, 0.1], (2, 2), &dev).unwrap();
    let b = Var::from_vec(vec![0.2f64, -0.4], 2, &dev).unwrap();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], (2, 1), &dev).unwrap();
    let t = Tensor::from_vec(vec![0.3f64, -0.7], 2, &dev).unwrap();
    // Names given in the "wrong" order on purpose: state is keyed by name, not position.
    let mut opt = Sgd::new(
        vec![("z.bias".into(), b.clone()), ("a.weight".into(), w.clone())],
        config,
    )
    .unwrap();
    for i in 0..3 {
        let y = (w.as_tensor().matmul(&x).unwrap().squeeze(1).unwrap() + b.as_tensor()).unwrap();
        let loss = ((y - &t).unwrap().sqr().unwrap().sum_all().unwrap() * (i + 1) as f64).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let mut out = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    out.extend(b.to_vec1::<f64>().unwrap());
    out
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}

#[test]
fn matches_pytorch_sgd() {
    close(
        &run(SgdConfig::momentum(0.1, 0.9)),
        &[
            0.4820000000000001,
            -0.336,
            0.9170000000000003,
            0.3340000000000004,
            0.18199999999999997,
            -0.2829999999999998,
        ],
    );
    let nesterov = SgdConfig {
        nesterov: true,
        weight_decay: 0.01,
        ..SgdConfig::momentum(0.05, 0.9)
    };
    close(
        &run(nesterov),
        &[
            0.5167082396288125,
            -0.26135618972778757,
            0.6758528865716,
            -0.1422626910707375,
            0.21791454678602495,
            -0.51932188479955,
        ],
    );
    let damp = SgdConfig {
        dampening: 0.3,
        ..SgdConfig::momentum(0.05, 0.5)
    };
    close(
        &run(damp),
        &[
            0.541888,
            -0.216224,
            0.5277280000000001,
            -0.4445439999999999,
            0.241888,
            -0.672272,
        ],
    );
}

#[test]
fn config_validation() {
    assert!(SgdConfig::momentum(0.1, 0.9).validate().is_ok());
    assert!(SgdConfig::momentum(-0.1, 0.9).validate().is_err());
    assert!(
        SgdConfig {
            nesterov: true,
            ..SgdConfig::momentum(0.1, 0.0)
        }
        .validate()
        .is_err()
    );
    assert!(SgdConfig::momentum(f64::NAN, 0.9).validate().is_err());
    // The optimizer refuses what validate refuses.
    let bad = SgdConfig::momentum(0.1, -0.5);
    assert_eq!(Sgd::new(vec![], bad).err(), Some(SgdError::Values(bad)));
}
