//! The candle network built from an [`ArchSpec`].

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Result as CResult, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::engine::{Engine, Pass, StepTime};
use crate::pool;
use crate::spec::{ArchSpec, Layer, ResolvedLayer, SpecError};

pub use crate::layers::{BN_EPS, BN_MOMENTUM};

/// Building or running the model failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The fast path cannot run this net.
    #[error("the fast kernels cannot run this net: {0}")]
    Unsupported(String),
}

/// A BatchNorm layer's running statistics (buffers, not parameters).
#[derive(Debug, Clone)]
pub struct BnBuffers {
    /// Running mean per channel.
    pub running_mean: Tensor,
    /// Running (unbiased) variance per channel.
    pub running_var: Tensor,
    /// Training-mode forward passes so far.
    pub num_batches_tracked: i64,
}

enum Module {
    Conv {
        weight: Var,
        bias: Option<Var>,
        stride: usize,
        padding: usize,
    },
    BatchNorm {
        weight: Var,
        bias: Var,
        buffers: Mutex<BnBuffers>,
    },
    Dropout {
        p: f32,
    },
    Relu,
    MaxPool {
        k: usize,
        s: usize,
    },
    AvgPool {
        k: usize,
        s: usize,
    },
    Gap,
    LogSoftmax,
}

/// Which implementation runs the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The hand-written CPU engine: the whole stack as one candle op.
    #[default]
    Fast,
    /// candle's own ops, layer by layer (plus this crate's own pooling ops): the
    /// straightforward implementation the fast path is tested against.
    Reference,
}

/// The network: layers from a spec, parameters as candle [`Var`]s, BatchNorm buffers, and the
/// RNG its dropout layers draw masks from.
pub struct Net {
    spec: ArchSpec,
    layers: Vec<ResolvedLayer>,
    modules: Vec<Module>,
    dropout_rng: Mutex<ChaCha8Rng>,
    dtype: DType,
    engine: Option<Arc<Engine>>,
    kernels: Kernels,
}

/// A uniform `f32` in `[0, 1)` from the top 24 bits of one `u32` (written out so a seed's
/// stream never depends on `rand`'s distribution code).
pub(crate) fn unit_f32<R: RngCore + ?Sized>(rng: &mut R) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

fn uniform(rng: &mut dyn RngCore, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| -bound + 2.0 * bound * unit_f32(rng))
        .collect()
}

impl Net {
    /// Builds the net for `spec`, with PyTorch's default initialisation drawn from `init_rng`
    /// (conv weight and bias: `U(±1/√fan_in)`, i.e. kaiming-uniform with a = √5; BatchNorm
    /// weight 1, bias 0, running mean 0, running variance 1), in spec order. Dropout masks come
    /// from `dropout_rng`.
    pub fn new(
        spec: &ArchSpec,
        init_rng: &mut dyn RngCore,
        dropout_rng: ChaCha8Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let layers = spec.resolve()?;
        let var = |v: Vec<f32>, shape: &[usize]| -> CResult<Var> {
            Var::from_tensor(&Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
        };
        let mut modules = Vec::with_capacity(layers.len());
        for l in &layers {
            let c = l.input.c;
            modules.push(match l.layer {
                Layer::Conv {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    bias,
                    ..
                } => {
                    let fan_in = c * kernel * kernel;
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let n = out_channels * fan_in;
                    let weight = var(
                        uniform(init_rng, n, bound),
                        &[out_channels, c, kernel, kernel],
                    )?;
                    let bias = match bias {
                        true => Some(var(
                            uniform(init_rng, out_channels, bound),
                            &[out_channels],
                        )?),
                        false => None,
                    };
                    Module::Conv {
                        weight,
                        bias,
                        stride,
                        padding,
                    }
                }
                Layer::BatchNorm { .. } => Module::BatchNorm {
                    weight: var(vec![1.0; c], &[c])?,
                    bias: var(vec![0.0; c], &[c])?,
                    buffers: Mutex::new(BnBuffers {
                        running_mean: Tensor::zeros(c, dtype, device)?,
                        running_var: Tensor::ones(c, dtype, device)?,
                        num_batches_tracked: 0,
                    }),
                },
                Layer::Dropout { p } => Module::Dropout { p },
                Layer::Relu => Module::Relu,
                Layer::MaxPool { kernel, stride } => Module::MaxPool {
                    k: kernel,
                    s: stride,
                },
                Layer::AvgPool { kernel, stride } => Module::AvgPool {
                    k: kernel,
                    s: stride,
                },
                Layer::GlobalAvgPool => Module::Gap,
                Layer::LogSoftmax => Module::LogSoftmax,
            });
        }
        let engine = match (dtype, device) {
            (DType::F32 | DType::F64, Device::Cpu) => {
                Engine::new(&layers, crate::NUMERICS_VERSION).map(Arc::new)
            }
            _ => None,
        };
        let kernels = match engine {
            Some(_) => Kernels::Fast,
            None => Kernels::Reference,
        };
        Ok(Self {
            spec: spec.clone(),
            layers,
            modules,
            dropout_rng: Mutex::new(dropout_rng),
            dtype,
            engine,
            kernels,
        })
    }

    /// Chooses the implementation. [`Kernels::Fast`] (the default where it applies) needs a
    /// CPU net in `f32` or `f64`; it runs every spec the calculator accepts.
    pub fn with_kernels(mut self, kernels: Kernels) -> Result<Self, ModelError> {
        if kernels == Kernels::Fast && self.engine.is_none() {
            return Err(ModelError::Unsupported(
                "it runs on CPU in f32 or f64 only".to_string(),
            ));
        }
        self.kernels = kernels;
        Ok(self)
    }

    /// Makes the fast engine compute numerics `version`: [`NUMERICS_VERSION`](crate::NUMERICS_VERSION)
    /// (the default, what runs train with), an older one down to
    /// [`OLDEST_NUMERICS`](crate::OLDEST_NUMERICS) ([`PREVIOUS_NUMERICS`](crate::PREVIOUS_NUMERICS)
    /// is the version before), for measurements and tests. Nothing else is kept of the engine's
    /// state: call it before training.
    pub fn with_numerics(mut self, version: u32) -> Result<Self, ModelError> {
        let (oldest, now) = (crate::OLDEST_NUMERICS, crate::NUMERICS_VERSION);
        if !(oldest..=now).contains(&version) {
            return Err(ModelError::Unsupported(format!(
                "the engine computes numerics versions {oldest} to {now}, not {version}"
            )));
        }
        if self.engine.is_some() {
            self.engine = Engine::new(&self.layers, version).map(Arc::new);
        }
        Ok(self)
    }

    /// The implementation in use.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Starts (or, with `false`, stops) timing the fast engine's steps; `false` when the net
    /// does not run on the engine (the reference path has no per-step timing).
    pub fn set_profiling(&self, on: bool) -> bool {
        match &self.engine {
            Some(e) => {
                e.set_profiling(on);
                true
            }
            None => false,
        }
    }

    /// The fast engine's time per step since profiling started (empty when it is off).
    pub fn profile(&self) -> Vec<StepTime> {
        self.engine.as_ref().map_or_else(Vec::new, |e| e.profile())
    }

    /// The spec the net was built from.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// The resolved layers (with shapes).
    pub fn layers(&self) -> &[ResolvedLayer] {
        &self.layers
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Forward pass. `train`: BatchNorm uses (and updates) batch statistics and dropout is on;
    /// otherwise BatchNorm uses the running statistics and dropout is the identity. Each
    /// dropout layer draws one mask key from the dropout RNG per call, on either path, so both
    /// paths drop the same elements.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
    /// use under8k_model::{ArchSpec, Net};
    ///
    /// let rng = |s| ChaCha8Rng::seed_from_u64(s);
    /// let net = Net::new(&ArchSpec::seed(), &mut rng(1), rng(2), DType::F32, &Device::Cpu)?;
    /// let x = Tensor::ones((4, 1, 28, 28), DType::F32, &Device::Cpu)?;
    /// // Eval mode is deterministic; log-probabilities sum to 1 per image.
    /// let a = net.forward_t(&x, false)?;
    /// assert_eq!(a.to_vec2::<f32>()?, net.forward_t(&x, false)?.to_vec2::<f32>()?);
    /// let total: f32 = a.exp()?.sum_all()?.to_scalar()?;
    /// assert!((total - 4.0).abs() < 1e-5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_t(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        match (&self.engine, self.kernels) {
            (Some(e), Kernels::Fast) => self.forward_fast(e, x, train, true),
            _ => self.forward_upto(x, train, self.modules.len()),
        }
    }

    /// Eval-mode forward that records no graph (no gradient can flow back): evaluation and
    /// prediction.
    pub fn infer(&self, x: &Tensor) -> CResult<Tensor> {
        match (&self.engine, self.kernels) {
            (Some(e), Kernels::Fast) => self.forward_fast(e, &x.detach(), false, false),
            _ => Ok(self
                .forward_upto(&x.detach(), false, self.modules.len())?
                .detach()),
        }
    }

    fn forward_fast(
        &self,
        e: &Arc<Engine>,
        x: &Tensor,
        train: bool,
        grad: bool,
    ) -> CResult<Tensor> {
        let params = self
            .named_params()
            .into_iter()
            .map(|(_, v)| match grad {
                true => v.as_tensor().flatten_all(),
                false => v.as_tensor().detach().flatten_all(),
            })
            .collect::<CResult<Vec<_>>>()?;
        let flat = match params.is_empty() {
            true => Tensor::zeros(0, self.dtype, x.device())?,
            false => Tensor::cat(&params, 0)?,
        };
        let mut keys = vec![];
        let mut running = vec![];
        for m in &self.modules {
            match m {
                Module::Dropout { .. } if train => keys.push(
                    self.dropout_rng
                        .lock()
                        .expect("dropout RNG lock")
                        .next_u64(),
                ),
                Module::Dropout { .. } => keys.push(0),
                // Running statistics are read only in eval mode; training uses batch statistics.
                Module::BatchNorm { buffers, .. } if !train => {
                    let b = buffers.lock().expect("bn lock");
                    running.push((
                        b.running_mean.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                        b.running_var.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                    ));
                }
                _ => {}
            }
        }
        let save = x.track_op() || flat.track_op();
        let pass = Pass::new(e.clone(), train, keys, running, save, x.track_op());
        let stats = pass.batch_stats();
        let y = x
            .contiguous()?
            .apply_op2_arc(&flat, Arc::new(Box::new(pass)))?;
        if train {
            let stats = stats.lock().expect("stats lock");
            let bns = self.modules.iter().filter_map(|m| match m {
                Module::BatchNorm { buffers, .. } => Some(buffers),
                _ => None,
            });
            for (buffers, s) in bns.zip(stats.iter()) {
                let mut buf = buffers.lock().expect("bn lock");
                let n = s.count as f64;
                let unbiased = |v: f64| if n > 1.0 { v * n / (n - 1.0) } else { v };
                let (mean, var) = (s.mean.iter().copied(), s.var.iter().map(|&v| unbiased(v)));
                buf.running_mean = updated(&buf.running_mean, mean, self.dtype)?;
                buf.running_var = updated(&buf.running_var, var, self.dtype)?;
                buf.num_batches_tracked += 1;
            }
        }
        Ok(y)
    }

    /// Forward through the first `n` layers only, on the reference path (shape checks, tests,
    /// per-layer timing).
    pub fn forward_upto(&self, x: &Tensor, train: bool, n: usize) -> CResult<Tensor> {
        let mut x = x.clone();
        for m in &self.modules[..n.min(self.modules.len())] {
            x = self.apply(m, &x, train)?;
        }
        Ok(x)
    }

    fn apply(&self, m: &Module, x: &Tensor, train: bool) -> CResult<Tensor> {
        match m {
            Module::Conv {
                weight,
                bias,
                stride,
                padding,
            } => {
                // candle 0.11's conv2d backward with a stride that does not divide
                // `side + 2·padding − kernel` returns a gradient of the wrong shape; so stride 1,
                // then every `stride`-th row and column (index_select routes the gradient back).
                let mut y = x.conv2d(weight.as_tensor(), *padding, 1, 1, 1)?;
                if *stride > 1 {
                    for dim in [2, 3] {
                        let keep: Vec<u32> = (0..y.dim(dim)? as u32).step_by(*stride).collect();
                        let n = keep.len();
                        y = y.index_select(&Tensor::from_vec(keep, n, y.device())?, dim)?;
                    }
                }
                match bias {
                    Some(b) => y.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?),
                    None => Ok(y),
                }
            }
            Module::BatchNorm {
                weight,
                bias,
                buffers,
            } => batch_norm(x, weight, bias, buffers, train),
            Module::Dropout { p } if train => {
                let key = self
                    .dropout_rng
                    .lock()
                    .expect("dropout RNG lock")
                    .next_u64();
                if *p <= 0.0 {
                    return Ok(x.clone());
                }
                let mask = dropout_mask(key, x.elem_count(), *p);
                let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
                x.mul(&mask)
            }
            Module::Dropout { .. } => Ok(x.clone()),
            Module::Relu => x.relu(),
            Module::MaxPool { k, s } => pool::max_pool2d(x, *k, *s),
            Module::AvgPool { k, s } => pool::avg_pool2d(x, *k, *s),
            Module::Gap => x.mean_keepdim(3)?.mean_keepdim(2),
            Module::LogSoftmax => candle_nn::ops::log_softmax(&x.flatten_from(1)?, D::Minus1),
        }
    }

    /// The trainable parameters with their PyTorch names (`convblock1.0.weight`), in spec order.
    pub fn named_params(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (l, m) in self.layers.iter().zip(&self.modules) {
            match m {
                Module::Conv { weight, bias, .. } => {
                    out.push((format!("{}.weight", l.prefix()), weight.clone()));
                    if let Some(b) = bias {
                        out.push((format!("{}.bias", l.prefix()), b.clone()));
                    }
                }
                Module::BatchNorm { weight, bias, .. } => {
                    out.push((format!("{}.weight", l.prefix()), weight.clone()));
                    out.push((format!("{}.bias", l.prefix()), bias.clone()));
                }
                _ => {}
            }
        }
        out
    }

    /// BatchNorm buffers by layer prefix (`convblock1.1`), in spec order.
    pub fn bn_buffers(&self) -> Vec<(String, BnBuffers)> {
        self.layers
            .iter()
            .zip(&self.modules)
            .filter_map(|(l, m)| match m {
                Module::BatchNorm { buffers, .. } => {
                    Some((l.prefix(), buffers.lock().expect("bn lock").clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Replaces the buffers of the BatchNorm layer at `prefix`; false if there is none.
    pub fn set_bn_buffers(&self, prefix: &str, new: BnBuffers) -> bool {
        for (l, m) in self.layers.iter().zip(&self.modules) {
            if let Module::BatchNorm { buffers, .. } = m
                && l.prefix() == prefix
            {
                *buffers.lock().expect("bn lock") = new;
                return true;
            }
        }
        false
    }

    /// The dropout RNG's current state (to checkpoint and resume).
    pub fn dropout_rng(&self) -> ChaCha8Rng {
        self.dropout_rng.lock().expect("dropout RNG lock").clone()
    }

    /// Restores the dropout RNG.
    pub fn set_dropout_rng(&self, rng: ChaCha8Rng) {
        *self.dropout_rng.lock().expect("dropout RNG lock") = rng;
    }

    /// Total trainable parameters.
    pub fn num_params(&self) -> usize {
        self.named_params()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }
}

/// `Net` drops into other candle code as a [`candle_nn::ModuleT`]: `forward_t(x, train)` is
/// [`Net::forward_t`]. (Not `Module`: candle's blanket `ModuleT` for a `Module` would ignore
/// `train`.)
impl candle_nn::ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> CResult<Tensor> {
        Net::forward_t(self, xs, train)
    }
}

/// Inverted-dropout multipliers for the `n` elements of a tensor whose mask key is `key`:
/// `1/(1−p)` where the dropout hash keeps the element, else 0 (the same decisions the
/// fast path makes).
pub fn dropout_mask(key: u64, n: usize, p: f32) -> Vec<f32> {
    let scale = (1.0 / (1.0 - p as f64)) as f32;
    let t = crate::layers::threshold(p);
    (0..n)
        .map(|i| {
            if crate::layers::keep(key, i as u32, t) {
                scale
            } else {
                0.0
            }
        })
        .collect()
}

/// A BatchNorm running value after a training step, `old·(1 − m) + new·m` in `f64` rounded to
/// `dtype`. `f32` values go straight to `f64` and back (`as`, as candle's conversions do: the
/// same bits without four tensors a value, 17 µs a step of the seed net); other types go
/// through candle's conversions.
fn updated(old: &Tensor, new: impl Iterator<Item = f64>, dtype: DType) -> CResult<Tensor> {
    let mix = |o: f64, b: f64| o * (1.0 - BN_MOMENTUM) + b * BN_MOMENTUM;
    let (n, dev) = (old.elem_count(), old.device());
    if (old.dtype(), dtype) == (DType::F32, DType::F32) {
        let old = old.flatten_all()?.to_vec1::<f32>()?;
        let v = old.iter().zip(new).map(|(&o, b)| mix(o as f64, b) as f32);
        return Tensor::from_vec(v.collect(), n, dev);
    }
    let old = old.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let v: Vec<f64> = old.iter().zip(new).map(|(&o, b)| mix(o, b)).collect();
    Tensor::from_vec(v, n, dev)?.to_dtype(dtype)
}

fn batch_norm(
    x: &Tensor,
    weight: &Var,
    bias: &Var,
    buffers: &Mutex<BnBuffers>,
    train: bool,
) -> CResult<Tensor> {
    let c = x.dim(1)?;
    let shape = (1, c, 1, 1);
    let (mean, var) = if train {
        let (b, _, h, w) = x.dims4()?;
        let n = (b * h * w) as f64;
        let mean = (x.sum_keepdim((0, 2, 3))? / n)?;
        let var = (x.broadcast_sub(&mean)?.sqr()?.sum_keepdim((0, 2, 3))? / n)?;
        let mut buf = buffers.lock().expect("bn lock");
        let unbiased = if n > 1.0 {
            (var.detach() * (n / (n - 1.0)))?
        } else {
            var.detach()
        };
        buf.running_mean = ((&buf.running_mean * (1.0 - BN_MOMENTUM))?
            + (mean.detach().flatten_all()? * BN_MOMENTUM)?)?;
        buf.running_var =
            ((&buf.running_var * (1.0 - BN_MOMENTUM))? + (unbiased.flatten_all()? * BN_MOMENTUM)?)?;
        buf.num_batches_tracked += 1;
        (mean, var)
    } else {
        let buf = buffers.lock().expect("bn lock");
        (
            buf.running_mean.reshape(shape)?,
            buf.running_var.reshape(shape)?,
        )
    };
    let xhat = x
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
    xhat.broadcast_mul(&weight.as_tensor().reshape(shape)?)?
        .broadcast_add(&bias.as_tensor().reshape(shape)?)
}
