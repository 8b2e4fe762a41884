//! The step compiler: a spec's resolved layers become the engine's steps (convolutions, fused
//! BatchNorm → Dropout → ReLU, pools, log-softmax), with their sizes and parameter offsets.

use std::sync::Mutex;

use super::buffers::BufferPool;
use super::conv;
use crate::spec::{Layer, ResolvedLayer};

#[derive(Debug, Clone)]
pub(super) struct ConvStep {
    pub(super) ci: usize,
    pub(super) co: usize,
    pub(super) pad: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) hp: usize,
    pub(super) wp: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) weight: usize,
    pub(super) bias: Option<usize>,
    /// Tap offsets `kh·wp + kw`.
    pub(super) off: Vec<usize>,
    /// Wide forward length: `oh·wp` rounded up to a chunk.
    pub(super) lw: usize,
    /// Wide input-gradient length: `hp·wp` rounded up to a chunk.
    pub(super) lq: usize,
    /// Zero rows/columns in front of the output gradient: `(k−1)·wp + k−1`.
    pub(super) front: usize,
}

#[derive(Debug, Clone)]
pub(super) struct ActStep {
    pub(super) c: usize,
    pub(super) hw: usize,
    /// `(gamma offset, beta offset, BatchNorm index)`.
    pub(super) bn: Option<(usize, usize, usize)>,
    /// `(p, dropout index)`.
    pub(super) dropout: Option<(f32, usize)>,
    pub(super) relu: bool,
    /// Layers fused into this step (for per-layer timing names).
    pub(super) layers: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    Conv(ConvStep),
    Act(ActStep),
    MaxPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
    AvgPool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
    Gap {
        hw: usize,
    },
    LogSoftmax,
}

/// A compiled layer stack.
pub(crate) struct Engine {
    pub(super) steps: Vec<Step>,
    pub(super) names: Vec<String>,
    /// Per-image element count of each activation (`sizes[0]`: the input).
    pub(super) sizes: Vec<usize>,
    /// Per-image output dims (`[classes]` after a log-softmax, else `[c, h, w]`).
    pub(super) out_dims: Vec<usize>,
    pub(super) n_params: usize,
    pub(super) profile: Mutex<Option<Vec<(f64, f64)>>>,
    pub(super) pool32: BufferPool<f32>,
    pub(super) pool64: BufferPool<f64>,
}

/// Why a spec cannot run on the engine (it then runs on the reference path only).
pub(crate) fn unsupported(layers: &[ResolvedLayer]) -> Option<String> {
    for l in layers {
        if let Layer::Conv { stride, .. } = l.layer
            && stride != 1
        {
            return Some(format!(
                "{}: stride {stride} (the fast path does stride 1)",
                l.prefix()
            ));
        }
    }
    None
}

impl Engine {
    /// Compiles resolved layers; parameters are expected flattened in `named_params` order.
    pub(crate) fn new(layers: &[ResolvedLayer]) -> Option<Self> {
        if unsupported(layers).is_some() {
            return None;
        }
        let mut steps = Vec::new();
        let mut names = Vec::new();
        let mut sizes = vec![layers.first()?.input.c * layers[0].input.h * layers[0].input.w];
        let mut offset = 0;
        let (mut n_bn, mut n_drop) = (0, 0);
        let mut i = 0;
        let mut out_dims = vec![];
        while i < layers.len() {
            let l = &layers[i];
            let (c, h, w) = (l.input.c, l.input.h, l.input.w);
            let o = &l.output;
            let step = match l.layer {
                Layer::Conv {
                    out_channels: co,
                    kernel: k,
                    padding: pad,
                    bias,
                    ..
                } => {
                    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
                    let weight = offset;
                    offset += co * c * k * k;
                    let bias = bias.then(|| {
                        offset += co;
                        offset - co
                    });
                    names.push(format!("conv {c}→{co} {k}x{k}"));
                    let round = |v: usize| v.div_ceil(conv::CHUNK) * conv::CHUNK;
                    Step::Conv(ConvStep {
                        ci: c,
                        co,
                        pad,
                        h,
                        w,
                        hp,
                        wp,
                        oh: o.h,
                        ow: o.w,
                        weight,
                        bias,
                        off: (0..k * k).map(|t| (t / k) * wp + t % k).collect(),
                        lw: round(o.h * wp),
                        lq: round(hp * wp),
                        front: (k - 1) * wp + k - 1,
                    })
                }
                Layer::BatchNorm { .. } | Layer::Dropout { .. } | Layer::Relu => {
                    let mut a = ActStep {
                        c,
                        hw: h * w,
                        bn: None,
                        dropout: None,
                        relu: false,
                        layers: 0,
                    };
                    let mut parts = vec![];
                    if let Layer::BatchNorm { .. } = l.layer {
                        a.bn = Some((offset, offset + c, n_bn));
                        offset += 2 * c;
                        n_bn += 1;
                        a.layers = 1;
                        parts.push("bn");
                    }
                    while let Some(next) = layers.get(i + a.layers) {
                        match next.layer {
                            Layer::Dropout { p } if a.dropout.is_none() => {
                                a.dropout = Some((p, n_drop));
                                n_drop += 1;
                                parts.push("dropout");
                            }
                            Layer::Relu if !a.relu => {
                                a.relu = true;
                                parts.push("relu");
                            }
                            _ => break,
                        }
                        a.layers += 1;
                    }
                    names.push(parts.join("+"));
                    i += a.layers - 1;
                    Step::Act(a)
                }
                Layer::MaxPool { kernel, .. } => {
                    names.push(format!("max pool {kernel}x{kernel}"));
                    Step::MaxPool { c, h, w, k: kernel }
                }
                Layer::AvgPool { kernel, .. } => {
                    names.push(format!("avg pool {kernel}x{kernel}"));
                    Step::AvgPool { c, h, w, k: kernel }
                }
                Layer::GlobalAvgPool => {
                    names.push("global avg pool".into());
                    Step::Gap { hw: h * w }
                }
                Layer::LogSoftmax => {
                    names.push("log-softmax".into());
                    Step::LogSoftmax
                }
            };
            let last = &layers[i];
            let od = &last.output;
            sizes.push(od.c * od.h * od.w);
            out_dims = match last.layer {
                Layer::LogSoftmax => vec![od.c * od.h * od.w],
                _ => vec![od.c, od.h, od.w],
            };
            steps.push(step);
            i += 1;
        }
        Some(Self {
            steps,
            names,
            sizes,
            out_dims,
            n_params: offset,
            profile: Mutex::new(None),
            pool32: BufferPool::default(),
            pool64: BufferPool::default(),
        })
    }
}
