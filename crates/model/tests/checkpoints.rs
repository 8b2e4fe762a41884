//! Checkpoints against PyTorch: `fixtures/` was written by `scripts/seed_net.py fixture` with
//! torch 2.15 (`safetensors.torch.save_file(model.state_dict())` of the seed's module with
//! non-trivial BatchNorm state), together with an input batch and PyTorch's outputs for it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::Net;
use under8k_model::checkpoint::{self, CheckpointError};
use under8k_model::spec::{ArchSpec, Layer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn net(spec: &ArchSpec, seed: u64) -> Net {
    Net::new(
        spec,
        &mut ChaCha8Rng::seed_from_u64(seed),
        ChaCha8Rng::seed_from_u64(0),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn pytorch_checkpoint_loads_and_computes_the_same_outputs() {
    let io = checkpoint::read_tensors(&fixture("seed_torch_io.safetensors")).unwrap();
    let n = net(&ArchSpec::seed(), 1);
    checkpoint::load(&n, &fixture("seed_torch.safetensors")).unwrap();
    let y = n.forward_t(&io["input"], false).unwrap();
    assert!(
        max_abs_diff(&y, &io["out_eval"]) < 1e-5,
        "eval output differs from PyTorch's"
    );

    // Training mode with dropout off: BatchNorm on batch statistics, and its running-stat update.
    let mut spec = ArchSpec::seed();
    for b in &mut spec.blocks {
        for l in &mut b.layers {
            if let Layer::Dropout { p } = l {
                *p = 0.0;
            }
        }
    }
    let n = net(&spec, 1);
    checkpoint::load(&n, &fixture("seed_torch.safetensors")).unwrap();
    let y = n.forward_t(&io["input"], true).unwrap();
    assert!(
        max_abs_diff(&y, &io["out_train"]) < 1e-4,
        "train output differs from PyTorch's"
    );
    let sd = checkpoint::state_dict(&n).unwrap();
    for b in ["convblock1.1", "convblock7.1"] {
        for s in ["running_mean", "running_var"] {
            let k = format!("{b}.{s}");
            assert!(
                max_abs_diff(&sd[&k], &io[&k]) < 1e-5,
                "{k} differs from PyTorch's"
            );
        }
        let k = format!("{b}.num_batches_tracked");
        assert_eq!(
            sd[&k].to_scalar::<i64>().unwrap(),
            io[&k].to_scalar::<i64>().unwrap()
        );
    }
}

#[test]
fn save_load_round_trip_is_exact_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let a = net(&ArchSpec::seed(), 5);
    let x = Tensor::randn(0f32, 1.0, (3, 1, 28, 28), &Device::Cpu).unwrap();
    a.forward_t(&x, true).unwrap(); // moves the running statistics
    checkpoint::save(&a, &path).unwrap();
    let b = net(&ArchSpec::seed(), 6);
    checkpoint::load(&b, &path).unwrap();
    let (sa, sb) = (
        checkpoint::state_dict(&a).unwrap(),
        checkpoint::state_dict(&b).unwrap(),
    );
    assert_eq!(sa.len(), 7 * 5 + 8);
    for (k, v) in &sa {
        assert_eq!(
            v.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            sb[k]
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            "{k}"
        );
    }
    // Saving again gives the same bytes; no temporary file is left behind.
    let again = dir.path().join("again.safetensors");
    checkpoint::save(&b, &again).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

fn load_err(n: &Net, path: &Path) -> String {
    match checkpoint::load(n, path) {
        Ok(()) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Another architecture: 16 channels in the first block.
    let mut other = ArchSpec::seed();
    other.name = "wider".into();
    if let Layer::Conv { out_channels, .. } = &mut other.blocks[0].layers[0] {
        *out_channels = 16;
    }
    let wide = dir.path().join("wide.safetensors");
    checkpoint::save(&net(&other, 1), &wide).unwrap();
    let seed = net(&ArchSpec::seed(), 1);
    let before = checkpoint::state_dict(&seed).unwrap()["convblock2.0.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e = load_err(&seed, &wide);
    assert!(
        e.contains("`convblock1.0.weight` has shape [16, 1, 3, 3], expected [10, 1, 3, 3]"),
        "{e}"
    );
    assert!(e.contains("convblock1.1.running_mean"), "{e}");
    assert_eq!(
        checkpoint::state_dict(&seed).unwrap()["convblock2.0.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        before
    );

    // Missing and unexpected entries.
    let mut t = checkpoint::read_tensors(&fixture("seed_torch.safetensors")).unwrap();
    t.remove("convblock8.0.weight");
    t.insert(
        "fc.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let p = dir.path().join("edited.safetensors");
    std::fs::write(&p, checkpoint::to_bytes(&t, None).unwrap()).unwrap();
    let e = load_err(&seed, &p);
    assert!(
        e.contains("missing `convblock8.0.weight`") && e.contains("unexpected `fc.weight`"),
        "{e}"
    );

    // Wrong dtype.
    let mut t = checkpoint::read_tensors(&fixture("seed_torch.safetensors")).unwrap();
    let w = t["convblock1.0.weight"].to_dtype(DType::F64).unwrap();
    t.insert("convblock1.0.weight".into(), w);
    std::fs::write(&p, checkpoint::to_bytes(&t, None).unwrap()).unwrap();
    assert!(load_err(&seed, &p).contains("dtype F64, expected F32"));

    // Not a safetensors file; truncated; missing.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}").unwrap();
    assert!(matches!(
        checkpoint::load(&seed, &junk),
        Err(CheckpointError::Format { .. })
    ));
    let bytes = std::fs::read(fixture("seed_torch.safetensors")).unwrap();
    std::fs::write(&junk, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_err(&seed, &junk).contains("junk.safetensors"));
    let e = load_err(&seed, &dir.path().join("absent.safetensors"));
    assert!(e.contains("absent.safetensors"), "{e}");
}

#[test]
fn write_atomic_replaces_whole_files_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    checkpoint::write_atomic(&p, b"first").unwrap();
    checkpoint::write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"]);
    // A directory that does not exist: an error naming the file, nothing written.
    let e = checkpoint::write_atomic(&dir.path().join("no/such/f"), b"x").unwrap_err();
    assert!(e.to_string().contains("no/such/f"), "{e}");
}
