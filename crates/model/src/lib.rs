//! Small convnets from one description.
//!
//! An [`ArchSpec`] (plain data: input shape and named blocks of layers, readable from JSON) is
//! the single source of truth: [`Summary`] computes per-layer shapes, parameters and receptive
//! fields from it, [`Net`] builds the candle network from it, and [`checkpoint`] derives the
//! PyTorch `state_dict` names, shapes and dtypes from it. The seed's 7,684-parameter net is
//! [`ArchSpec::seed`].
//!
//! [`Net`] runs on the fast CPU engine by default (the whole layer stack as one candle custom
//! op with hand-written kernels) or, with [`Kernels::Reference`], on candle's own ops. Every
//! gradient of both paths is finite-difference-tested; max and average pooling on the reference
//! path are custom ops because candle 0.11.1's own backward passes for them are wrong.
//! Randomness (init, dropout masks) comes only from RNGs the caller passes in.
//!
#![doc = include_str!("../README.md")]

#[cfg(feature = "candle")]
pub mod checkpoint;
#[cfg(feature = "candle")]
pub(crate) mod engine;
#[cfg(feature = "candle")]
mod layers;
#[cfg(feature = "candle")]
pub mod net;
#[cfg(feature = "candle")]
pub(crate) mod pool;
pub mod spec;
pub mod summary;

#[cfg(feature = "candle")]
pub use engine::{KernelPath, PathUnavailable, StepTime};
#[cfg(feature = "candle")]
pub use net::{Kernels, ModelError, Net};
pub use spec::{ArchSpec, Block, Layer, SpecError};
pub use summary::Summary;

/// The version of the engine's arithmetic. Same config, same data and same version give the same
/// bits on any CPU, kernel path and thread count; a change that reorders any sum (and so changes
/// results) bumps it, and committed runs are then re-accepted (`reproduce --accept`). Every run
/// records the version it was trained with.
///
/// - 1: the first engine: every weight gradient summed per image, then over images in order.
/// - 2: small convolutions batched across images: each layer's images run through its kernels
///   in groups (up to 16 images, by plane size), and the weight gradient's dot products run
///   over a whole group, then over groups in order. Forward and input gradients are the same
///   bits as in version 1.
/// - 3: in training, the large 3×3 stride-1 convolutions (unpadded, without bias, taken one
///   image at a time forward) run on row-wise Winograd F(2,3) kernels: forward, input gradient
///   and weight gradient (also in a backward after an evaluation forward). The evaluation
///   forward and inference compute what version 2 does.
/// - 4: version 3, with the training backward of the small convolutions (unpadded, stride 1,
///   planes small enough for groups of 16 images) run with the images in the vector lanes: the
///   input gradient the same bits as version 3's, the weight gradient summed lane by lane (one
///   image a lane) over the positions kept, its 16 lanes folded as a tree, then over groups in
///   order.
/// - 5: version 4, with two changes. Training's backward takes the large planes (those whose
///   training groups held 4 images or fewer) one image a group, so their weight gradient sums
///   per image, then over images in order: the layers' parallel loops end on one image's work.
///   Evaluation and inference run the convolutions version 3 trains on row-wise Winograd (3×3,
///   unpadded, stride 1, without bias, large planes), when they have more than one input
///   channel, on 2D Winograd F(4×4, 3×3) tiles with the images in the vector lanes, one image
///   a lane: 36 multiplies per 16 outputs and input channel instead of 144. The forward and
///   every input gradient of training are version 4's bits.
pub const NUMERICS_VERSION: u32 = 5;

/// The version before [`NUMERICS_VERSION`], which the engine still computes:
/// [`Net::with_numerics`] selects it, to measure the change and to test that it is one.
/// Runs train with [`NUMERICS_VERSION`].
pub const PREVIOUS_NUMERICS: u32 = NUMERICS_VERSION - 1;

/// The oldest version the engine still computes ([`Net::with_numerics`] takes any from it to
/// [`NUMERICS_VERSION`]): version 2's direct kernels are also what evaluation and inference
/// run up to version 4, so its training arithmetic stays testable against the versions after
/// it.
pub const OLDEST_NUMERICS: u32 = 2;
