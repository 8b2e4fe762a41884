//! The architecture description: an input shape and named blocks of layers. Plain data, read
//! from JSON (see `docs/ARCH_SPEC.md`), validated layer by layer into the shapes every other
//! part of the crate works from.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One layer. In JSON: an object with `"type"` and the fields below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// 2-D convolution (square kernel). `in_channels` may be given to be checked.
    Conv {
        /// Input channels; inferred when absent, checked when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_channels: Option<usize>,
        /// Output channels.
        out_channels: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on each side.
        #[serde(default)]
        padding: usize,
        /// Whether the layer has a bias.
        #[serde(default)]
        bias: bool,
    },
    /// Batch normalisation over channels (PyTorch's `BatchNorm2d`, momentum 0.1, eps 1e-5).
    BatchNorm {
        /// Channels; inferred when absent, checked when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_features: Option<usize>,
    },
    /// Dropout with drop probability `p`, in `[0, 1)`.
    Dropout {
        /// Probability of zeroing an element.
        p: f32,
    },
    /// Rectified linear unit.
    Relu,
    /// Max pooling (square).
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Step.
        stride: usize,
    },
    /// Average pooling (square).
    AvgPool {
        /// Window size.
        kernel: usize,
        /// Step.
        stride: usize,
    },
    /// Global average pooling: an average pool whose window is the whole (square) map.
    GlobalAvgPool,
    /// Log-softmax over channels of a `C×1×1` map; the output is `C` log-probabilities.
    LogSoftmax,
}

fn one() -> usize {
    1
}

/// A named group of layers (PyTorch: an `nn.Sequential` attribute, or a single module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Attribute name, used for parameter names (`<name>.<index>.weight`).
    pub name: String,
    /// The layers, in order.
    pub layers: Vec<Layer>,
}

/// A whole network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    /// A name for reports.
    pub name: String,
    /// Input shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// The blocks, in order.
    pub blocks: Vec<Block>,
}

/// A spec that cannot be read or does not describe a working net.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The JSON does not describe a spec.
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or `<string>`.
        origin: String,
        /// Where and what.
        message: String,
    },
    /// A layer is invalid.
    #[error("block `{block}`, layer {index} ({kind}): {problem}")]
    Layer {
        /// Block name.
        block: String,
        /// Index of the layer in the block.
        index: usize,
        /// Layer type.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Something about the spec as a whole.
    #[error("{0}")]
    Spec(String),
}

/// A `C×H×W` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// A layer together with where it sits and the shapes around it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLayer {
    /// Block name.
    pub block: String,
    /// Index in the block.
    pub index: usize,
    /// The layer, with inferred fields filled in.
    pub layer: Layer,
    /// Input shape.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
}

impl ResolvedLayer {
    /// Parameter-name prefix, PyTorch-style: `block.index` (or `block` alone for a block that
    /// is a single module without parameters, such as `pool1`).
    pub fn prefix(&self) -> String {
        format!("{}.{}", self.block, self.index)
    }
}

impl Layer {
    /// PyTorch's class name for the layer, as torchsummary prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv { .. } => "Conv2d",
            Layer::BatchNorm { .. } => "BatchNorm2d",
            Layer::Dropout { .. } => "Dropout",
            Layer::Relu => "ReLU",
            Layer::MaxPool { .. } => "MaxPool2d",
            Layer::AvgPool { .. } | Layer::GlobalAvgPool => "AvgPool2d",
            Layer::LogSoftmax => "LogSoftmax",
        }
    }

    /// Trainable parameters of the layer for an input with `in_c` channels (BatchNorm: weight
    /// and bias; its running statistics are buffers, not parameters).
    pub fn params(&self, in_c: usize) -> usize {
        match *self {
            Layer::Conv {
                out_channels,
                kernel,
                bias,
                ..
            } => out_channels * in_c * kernel * kernel + if bias { out_channels } else { 0 },
            Layer::BatchNorm { .. } => 2 * in_c,
            _ => 0,
        }
    }

    /// Kernel, stride and padding as the receptive-field recurrence sees the layer, given the
    /// input's side length (GAP is a pool with the kernel equal to the input). `None` for
    /// layers that do not change the spatial grid.
    pub fn window(&self, side: usize) -> Option<(usize, usize, usize)> {
        match *self {
            Layer::Conv {
                kernel,
                stride,
                padding,
                ..
            } => Some((kernel, stride, padding)),
            Layer::MaxPool { kernel, stride } | Layer::AvgPool { kernel, stride } => {
                Some((kernel, stride, 0))
            }
            Layer::GlobalAvgPool => Some((side, side, 0)),
            _ => None,
        }
    }
}

impl ArchSpec {
    /// Reads a spec from a JSON file.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_json_named(&text, &path.display().to_string())
    }

    /// Parses a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        Self::from_json_named(text, "<string>")
    }

    fn from_json_named(text: &str, origin: &str) -> Result<Self, SpecError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| SpecError::Parse {
            origin: origin.to_string(),
            message: format!("at `{}`: {}", e.path(), e.inner()),
        })
    }

    /// The spec as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a spec always serialises")
    }

    /// The net of the seed: 7,684 parameters, receptive fields 3, 5, 7, 8, 8, 12, 16, 20, 28, 28.
    /// Seven blocks of conv (no bias, no padding) → BatchNorm → Dropout(0.029) → ReLU, channels
    /// 1→10→10→15, max pool 2×2, 1×1 15→10, 10→10→10→32, then GAP → 1×1 32→10 → log-softmax.
    pub fn seed() -> Self {
        let block = |name: &str, out_channels, kernel| Block {
            name: name.into(),
            layers: vec![
                Layer::Conv {
                    in_channels: None,
                    out_channels,
                    kernel,
                    stride: 1,
                    padding: 0,
                    bias: false,
                },
                Layer::BatchNorm { num_features: None },
                Layer::Dropout { p: 0.029 },
                Layer::Relu,
            ],
        };
        ArchSpec {
            name: "seed-7684".into(),
            input: [1, 28, 28],
            blocks: vec![
                block("convblock1", 10, 3),
                block("convblock2", 10, 3),
                block("convblock3", 15, 3),
                Block {
                    name: "pool1".into(),
                    layers: vec![Layer::MaxPool {
                        kernel: 2,
                        stride: 2,
                    }],
                },
                block("convblock4", 10, 1),
                block("convblock5", 10, 3),
                block("convblock6", 10, 3),
                block("convblock7", 32, 3),
                Block {
                    name: "gap".into(),
                    layers: vec![Layer::GlobalAvgPool],
                },
                Block {
                    name: "convblock8".into(),
                    layers: vec![Layer::Conv {
                        in_channels: None,
                        out_channels: 10,
                        kernel: 1,
                        stride: 1,
                        padding: 0,
                        bias: false,
                    }],
                },
                Block {
                    name: "log_softmax".into(),
                    layers: vec![Layer::LogSoftmax],
                },
            ],
        }
    }

    /// Checks every layer and returns them with their shapes (inferred channel counts filled in).
    pub fn resolve(&self) -> Result<Vec<ResolvedLayer>, SpecError> {
        let [c, h, w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            return Err(SpecError::Spec(format!(
                "input shape {:?} has a zero dimension",
                self.input
            )));
        }
        if self.blocks.is_empty() {
            return Err(SpecError::Spec("the spec has no blocks".into()));
        }
        let mut names = std::collections::HashSet::new();
        let mut shape = Shape { c, h, w };
        let mut out = Vec::new();
        let total: usize = self.blocks.iter().map(|b| b.layers.len()).sum();
        for block in &self.blocks {
            if block.name.is_empty()
                || block.name.contains('.')
                || !names.insert(block.name.as_str())
            {
                return Err(SpecError::Spec(format!(
                    "block name `{}` must be unique, non-empty and without dots",
                    block.name
                )));
            }
            if block.layers.is_empty() {
                return Err(SpecError::Spec(format!(
                    "block `{}` has no layers",
                    block.name
                )));
            }
            for (index, layer) in block.layers.iter().enumerate() {
                let fail = |problem: String| SpecError::Layer {
                    block: block.name.clone(),
                    index,
                    kind: layer.kind(),
                    problem,
                };
                let (layer, output) = resolve_layer(layer, shape).map_err(fail)?;
                if matches!(layer, Layer::LogSoftmax) && out.len() + 1 != total {
                    return Err(fail("log_softmax must be the last layer".into()));
                }
                out.push(ResolvedLayer {
                    block: block.name.clone(),
                    index,
                    layer,
                    input: shape,
                    output,
                });
                shape = output;
            }
        }
        Ok(out)
    }
}

fn resolve_layer(layer: &Layer, s: Shape) -> Result<(Layer, Shape), String> {
    let spatial =
        |kernel: usize, stride: usize, padding: usize| -> Result<(usize, usize), String> {
            if kernel == 0 || stride == 0 {
                return Err(format!(
                    "kernel {kernel} and stride {stride} must be at least 1"
                ));
            }
            if s.h + 2 * padding < kernel || s.w + 2 * padding < kernel {
                return Err(format!(
                    "kernel {kernel} is larger than its {}x{} input (padding {padding})",
                    s.h, s.w
                ));
            }
            Ok((
                (s.h + 2 * padding - kernel) / stride + 1,
                (s.w + 2 * padding - kernel) / stride + 1,
            ))
        };
    match *layer {
        Layer::Conv {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            bias,
        } => {
            if let Some(ic) = in_channels.filter(|&ic| ic != s.c) {
                return Err(format!(
                    "in_channels is {ic} but its input has {} channels",
                    s.c
                ));
            }
            if out_channels == 0 {
                return Err("out_channels must be at least 1".into());
            }
            let (h, w) = spatial(kernel, stride, padding)?;
            let l = Layer::Conv {
                in_channels: Some(s.c),
                out_channels,
                kernel,
                stride,
                padding,
                bias,
            };
            Ok((
                l,
                Shape {
                    c: out_channels,
                    h,
                    w,
                },
            ))
        }
        Layer::BatchNorm { num_features } => {
            if let Some(n) = num_features.filter(|&n| n != s.c) {
                return Err(format!(
                    "num_features is {n} but its input has {} channels",
                    s.c
                ));
            }
            Ok((
                Layer::BatchNorm {
                    num_features: Some(s.c),
                },
                s,
            ))
        }
        Layer::Dropout { p } => {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("p = {p} must be in [0, 1)"));
            }
            Ok((layer.clone(), s))
        }
        Layer::Relu => Ok((Layer::Relu, s)),
        // Any valid window: overlapping pools (3×3 stride 2) too.
        Layer::MaxPool { kernel, stride } | Layer::AvgPool { kernel, stride } => {
            let (h, w) = spatial(kernel, stride, 0)?;
            Ok((layer.clone(), Shape { c: s.c, h, w }))
        }
        Layer::GlobalAvgPool => {
            if s.h != s.w {
                return Err(format!(
                    "global average pooling needs a square map, got {}x{}",
                    s.h, s.w
                ));
            }
            Ok((Layer::GlobalAvgPool, Shape { c: s.c, h: 1, w: 1 }))
        }
        Layer::LogSoftmax => {
            if (s.h, s.w) != (1, 1) {
                return Err(format!(
                    "log_softmax needs a Cx1x1 input, got {}x{}x{}",
                    s.c, s.h, s.w
                ));
            }
            Ok((Layer::LogSoftmax, s))
        }
    }
}
