//! The step compiler: a spec's resolved layers become the engine's steps (convolutions, fused
//! BatchNorm → Dropout → ReLU, pools, log-softmax), with their sizes and parameter offsets.

use std::sync::Mutex;

use super::buffers::BufferPool;
use super::misc;
use super::real::Real;
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
    /// The stride: the kernels compute every stride-1 position (`hp − k + 1` rows) and the
    /// drivers keep every `stride`-th row and column (backward: scatter the gradient there).
    pub(super) stride: usize,
    /// Rows of the stride-1 output: `hp − k + 1`.
    pub(super) rows: usize,
    pub(super) weight: usize,
    pub(super) bias: Option<usize>,
    /// Tap offsets `kh·wp + kw`.
    pub(super) off: Vec<usize>,
    /// Zero rows/columns in front of the output gradient: `(k−1)·wp + k−1`.
    pub(super) front: usize,
    /// Images per kernel call in training ([`GROUP_SPAN`] positions' worth of planes, 1 to 16),
    /// a function of the layer's shape alone: the forward's and inference's groups, and the
    /// backward's up to numerics version 4 ([`grad_group`](Self::grad_group) from then on).
    pub(super) group: usize,
    /// Images per group of the training backward, whose weight gradient sums over a group and
    /// then over groups in order ([`grad_group`]): [`group`](Self::group), or one image for
    /// large planes from numerics version 5.
    pub(super) grad_group: usize,
    /// Whether training runs it with the row-wise Winograd kernels ([`winograd`](super::winograd);
    /// numerics version 3): 3×3, [`direct`](Self::direct), without bias, with rows of even
    /// length.
    pub(super) winograd: bool,
    /// Whether training runs its backward with the images in the vector lanes
    /// ([`lanes::Backward`](super::lanes::Backward); numerics version 4): unpadded, stride 1,
    /// in groups of 16 images (small planes).
    pub(super) lanes_grad: bool,
    /// Whether evaluation runs it on 2D Winograd tiles with the images in the lanes
    /// ([`tiles`](super::tiles); numerics version 5 on): the convolutions version 3
    /// trains on row-wise Winograd, unpadded at stride 1, with more than one input channel.
    pub(super) tiles: bool,
}

/// About how many wide positions one training kernel call covers: small planes are grouped
/// until their images fill it.
pub(super) const GROUP_SPAN: usize = 2048;

/// Images per group of the training backward of a convolution whose training groups hold
/// `group` images ([`GROUP_SPAN`]'s), in numerics `version`. From version 5, large planes
/// (groups of 4 images or fewer: [`ConvStep::direct`] where unpadded at stride 1) take one
/// image a group: a layer's parallel loop then ends on one image's work rather than two or
/// three, which the other thread waited out at the layer's end (`docs/PERFORMANCE.md`,
/// thirty-sixth pass). Small planes keep their groups of up to 16, which fill the vector lanes.
fn grad_group(group: usize, version: u32) -> usize {
    match group {
        few if version >= 5 && few <= 4 => 1,
        n => n,
    }
}

impl ConvStep {
    /// Whether the forward runs this convolution one image at a time on its input where it lies
    /// ([`conv_direct`](super::drivers::conv_direct)): unpadded, stride 1, and planes large
    /// enough that the training groups hold few images anyway (small planes are grouped to fill
    /// the vectors).
    pub(super) fn direct(&self) -> bool {
        self.unpadded_stride1() && self.group <= 4
    }

    /// Unpadded at stride 1: each output position reads a whole window of the input where it
    /// lies (what [`direct`](Self::direct) and the lanes layout, [`lanes`](super::lanes), need).
    pub(super) fn unpadded_stride1(&self) -> bool {
        self.pad == 0 && self.stride == 1
    }

    /// The convolution's weights (`co × ci × k²`) and bias among the flattened parameters.
    pub(super) fn weights<'p, T>(&self, params: &'p [T]) -> (&'p [T], Option<&'p [T]>) {
        let w = &params[self.weight..self.weight + self.co * self.ci * self.off.len()];
        (w, self.bias.map(|b| &params[b..b + self.co]))
    }
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
    MaxPool(misc::Window),
    AvgPool(misc::Window),
    Gap { hw: usize },
    LogSoftmax,
}

impl Step {
    /// One image through a step without parameters or saved state: average pool, global
    /// average pool or log-softmax.
    pub(super) fn plain<T: Real>(&self, xi: &[T], o: &mut [T]) {
        match self {
            Step::AvgPool(win) => misc::avg_pool(xi, o, win),
            Step::Gap { hw } => misc::gap(xi, o, *hw),
            Step::LogSoftmax => misc::log_softmax(xi, o),
            _ => unreachable!("not a plain step"),
        }
    }
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
    /// The max pools' arg-max buffers.
    pub(super) args: BufferPool<u32>,
}

impl Engine {
    /// Compiles resolved layers (`None` when there are none) for numerics `version`
    /// ([`OLDEST_NUMERICS`](crate::OLDEST_NUMERICS) to [`NUMERICS_VERSION`](crate::NUMERICS_VERSION));
    /// parameters are expected flattened in `named_params` order.
    pub(crate) fn new(layers: &[ResolvedLayer], version: u32) -> Option<Self> {
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
                    stride,
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
                    names.push(match stride {
                        1 => format!("conv {c}→{co} {k}x{k}"),
                        s => format!("conv {c}→{co} {k}x{k} /{s}"),
                    });
                    let rows = hp - k + 1;
                    let group = (GROUP_SPAN / (hp * wp)).clamp(1, 16);
                    let mut conv = ConvStep {
                        ci: c,
                        co,
                        pad,
                        h,
                        w,
                        hp,
                        wp,
                        oh: o.h,
                        ow: o.w,
                        stride,
                        rows,
                        weight,
                        bias,
                        off: (0..k * k).map(|t| (t / k) * wp + t % k).collect(),
                        front: (k - 1) * wp + k - 1,
                        group,
                        grad_group: grad_group(group, version),
                        winograd: false,
                        lanes_grad: false,
                        tiles: false,
                    };
                    // Rows of even length: the pairs of positions never straddle a row, and planes are even.
                    conv.winograd = version >= 3
                        && k == 3
                        && conv.direct()
                        && conv.bias.is_none()
                        && wp.is_multiple_of(2);
                    conv.lanes_grad = version >= 4
                        && conv.unpadded_stride1()
                        && conv.group == super::lanes_grad::LANES;
                    // One input channel (the first layer) stays direct: its transforms would
                    // cost more than the products they save.
                    conv.tiles =
                        version >= 5 && conv.winograd && conv.unpadded_stride1() && conv.ci > 1;
                    Step::Conv(conv)
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
                Layer::MaxPool { kernel, stride } | Layer::AvgPool { kernel, stride } => {
                    let win = misc::Window {
                        c,
                        h,
                        w,
                        k: kernel,
                        s: stride,
                    };
                    let what = match stride == kernel {
                        true => format!("{kernel}x{kernel}"),
                        false => format!("{kernel}x{kernel} /{stride}"),
                    };
                    match l.layer {
                        Layer::MaxPool { .. } => {
                            names.push(format!("max pool {what}"));
                            Step::MaxPool(win)
                        }
                        _ => {
                            names.push(format!("avg pool {what}"));
                            Step::AvgPool(win)
                        }
                    }
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
            args: BufferPool::default(),
        })
    }
}

/// A [`Real`] with its buffer pool in the engine.
pub(crate) trait Pooled: Real {
    /// The engine's buffer pool for this type.
    fn pool(e: &Engine) -> &BufferPool<Self>;
}

impl Pooled for f32 {
    fn pool(e: &Engine) -> &BufferPool<Self> {
        &e.pool32
    }
}

impl Pooled for f64 {
    fn pool(e: &Engine) -> &BufferPool<Self> {
        &e.pool64
    }
}
