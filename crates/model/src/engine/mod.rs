//! The fast CPU path: the whole layer stack of a spec as one candle custom op.
//!
//! candle's autograd accumulates every node's gradient as `zeros_like + add`, a full pass over
//! memory per activation, and its CPU convolution backward is a naive loop. This engine runs the
//! spec's layers with hand-written kernels ([`conv`], [`act`], [`misc`]) inside one
//! [`CustomOp2`] of `(input, all parameters flattened)`, keeping the activations it needs for
//! backward to itself. To candle it is one differentiable op: `loss.backward()` reaches every
//! parameter [`Var`](candle_core::Var) through the `cat` that flattened them.
//!
//! - Convolutions (any stride and padding, with or without bias) use the wide-plane kernels of
//!   [`conv`]; the first layer's input gradient is skipped unless the input tracks a gradient.
//! - BatchNorm → Dropout → ReLU runs fused ([`act`]), with counter-based dropout masks
//!   recomputed rather than stored.
//! - Images are processed in parallel (rayon); every reduction over the batch (BatchNorm
//!   statistics, weight gradients) sums per-image partials in image order, so results are the
//!   same for any thread count.
//!
//! [`Net`](crate::Net) compares this path against its reference path (candle's own ops) in
//! tests, and finite-difference tests check its gradients in `f64`.
//!
//! Files by job, each importing only what is below it: [`real`] (the float trait) and
//! [`dispatch`] (the kernel paths: portable, AVX2, AVX-512) are leaves; the kernels ([`conv`], [`act`], [`misc`])
//! use them alone; [`plan`] compiles a spec into steps, [`buffers`] keeps activation buffers,
//! [`profile`] times steps, [`drivers`] run the convolution kernels over a batch, [`pass`] runs
//! a whole forward and backward, and [`op`] is the candle glue.

#[macro_use]
mod dispatch;
pub(crate) mod real;

pub(crate) mod act;
pub(crate) mod conv;
pub(crate) mod misc;

mod buffers;
mod drivers;
mod op;
mod pass;
mod plan;
mod profile;

pub use dispatch::{KernelPath, PathUnavailable};
pub(crate) use pass::Pass;
pub(crate) use plan::Engine;
pub use profile::StepTime;
