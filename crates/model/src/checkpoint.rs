//! Checkpoints as safetensors files laid out exactly like the PyTorch `state_dict` of the same
//! module: `<block>.<index>.weight|bias` for convs and BatchNorms, plus BatchNorm's
//! `running_mean`, `running_var` (`f32`) and `num_batches_tracked` (`i64`, a 0-dim tensor).
//! The names, shapes and dtypes all come from the spec ([`expected_entries`]); save and load are
//! written once, for any spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::net::{BnBuffers, Net};
use crate::spec::{ArchSpec, Layer, SpecError};

/// A checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tensors could not be serialised (safetensors refused them).
    #[error("{}: cannot serialise the tensors: {source}", path.display())]
    Serialize {
        /// The file they were for.
        path: PathBuf,
        /// safetensors' error.
        source: safetensors::SafeTensorError,
    },
    /// A tensor operation failed while saving or loading.
    #[error("{}: {source}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// candle's error.
        source: candle_core::Error,
    },
    /// The file is not a safetensors file.
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// The file's tensors do not match the architecture.
    #[error("{}: does not match architecture `{arch}`:{}", path.display(), problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The spec's name.
        arch: String,
        /// Every missing, unexpected or mis-shaped entry.
        problems: Vec<String>,
    },
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Every `state_dict` entry the spec implies: name, shape, dtype, in PyTorch's order.
pub fn expected_entries(spec: &ArchSpec) -> Result<Vec<(String, Vec<usize>, DType)>, SpecError> {
    let mut out = Vec::new();
    for l in spec.resolve()? {
        let p = l.prefix();
        match l.layer {
            Layer::Conv {
                out_channels,
                kernel,
                bias,
                ..
            } => {
                out.push((
                    format!("{p}.weight"),
                    vec![out_channels, l.input.c, kernel, kernel],
                    DType::F32,
                ));
                if bias {
                    out.push((format!("{p}.bias"), vec![out_channels], DType::F32));
                }
            }
            Layer::BatchNorm { .. } => {
                for n in ["weight", "bias", "running_mean", "running_var"] {
                    out.push((format!("{p}.{n}"), vec![l.input.c], DType::F32));
                }
                out.push((format!("{p}.num_batches_tracked"), vec![], DType::I64));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The net's `state_dict`: parameters and buffers, `f32` (and `i64` counters), by name.
pub fn state_dict(net: &Net) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, v) in net.named_params() {
        out.insert(name, v.as_tensor().detach().to_dtype(DType::F32)?);
    }
    for (prefix, b) in net.bn_buffers() {
        out.insert(
            format!("{prefix}.running_mean"),
            b.running_mean.to_dtype(DType::F32)?,
        );
        out.insert(
            format!("{prefix}.running_var"),
            b.running_var.to_dtype(DType::F32)?,
        );
        let dev = b.running_mean.device();
        out.insert(
            format!("{prefix}.num_batches_tracked"),
            Tensor::new(b.num_batches_tracked, dev)?,
        );
    }
    Ok(out)
}

/// Serialises tensors as safetensors bytes, with optional metadata.
pub fn to_bytes(
    tensors: &HashMap<String, Tensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    safetensors::tensor::serialize(views, metadata)
}

/// Saves the net's `state_dict` to `path`, atomically (temporary file, sync, rename).
pub fn save(net: &Net, path: &Path) -> Result<(), CheckpointError> {
    let tensors = state_dict(net).map_err(|source| CheckpointError::Tensor {
        path: path.into(),
        source,
    })?;
    let bytes = to_bytes(&tensors, None).map_err(|source| CheckpointError::Serialize {
        path: path.into(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    let io = |source: std::io::Error| CheckpointError::Io {
        path: path.into(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.into(),
        source,
    })?;
    let format = |message: String| CheckpointError::Format {
        path: path.into(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)
            .map_err(|e| format(format!("{name}: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Checks `tensors` against the spec: every expected name present with its shape and dtype,
/// nothing else. Returns all problems at once.
pub fn check(spec: &ArchSpec, tensors: &HashMap<String, Tensor>) -> Result<Vec<String>, SpecError> {
    let expected = expected_entries(spec)?;
    let mut problems = Vec::new();
    for (name, shape, dtype) in &expected {
        match tensors.get(name) {
            None => problems.push(format!("missing `{name}` ({dtype:?} {shape:?})")),
            Some(t) if t.dims() != shape.as_slice() => problems.push(format!(
                "`{name}` has shape {:?}, expected {shape:?}",
                t.dims()
            )),
            Some(t) if t.dtype() != *dtype => problems.push(format!(
                "`{name}` has dtype {:?}, expected {dtype:?}",
                t.dtype()
            )),
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<&String> = tensors
        .keys()
        .filter(|k| !expected.iter().any(|(n, _, _)| n == *k))
        .collect();
    unexpected.sort();
    problems.extend(unexpected.into_iter().map(|k| format!("unexpected `{k}`")));
    Ok(problems)
}

/// Loads a checkpoint into `net` after checking it against the net's spec. On any mismatch the
/// net is left untouched and every problem is reported.
pub fn load(net: &Net, path: &Path) -> Result<(), CheckpointError> {
    load_from(net, &read_tensors(path)?, path)
}

/// [`load`] from tensors already in memory; `path` only names them in errors.
pub fn load_from(
    net: &Net,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let problems = check(net.spec(), tensors)?;
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.into(),
            arch: net.spec().name.clone(),
            problems,
        });
    }
    let io = |source: candle_core::Error| CheckpointError::Tensor {
        path: path.into(),
        source,
    };
    for (name, v) in net.named_params() {
        let t = tensors[&name]
            .to_device(v.device())
            .and_then(|t| t.to_dtype(v.dtype()))
            .map_err(io)?;
        v.set(&t).map_err(io)?;
    }
    for (prefix, old) in net.bn_buffers() {
        let get = |n: &str| {
            tensors[&format!("{prefix}.{n}")]
                .to_device(old.running_mean.device())
                .and_then(|t| t.to_dtype(old.running_mean.dtype()))
        };
        let count = tensors[&format!("{prefix}.num_batches_tracked")]
            .to_scalar::<i64>()
            .map_err(io)?;
        let new = BnBuffers {
            running_mean: get("running_mean").map_err(io)?,
            running_var: get("running_var").map_err(io)?,
            num_batches_tracked: count,
        };
        net.set_bn_buffers(&prefix, new);
    }
    Ok(())
}
