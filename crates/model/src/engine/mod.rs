//! The fast CPU path: the whole layer stack of a spec as one candle custom op.
//!
//! candle's autograd accumulates every node's gradient as `zeros_like + add`, a full pass over
//! memory per activation, and its CPU convolution backward is a naive loop. This engine runs the
//! spec's layers with hand-written kernels ([`conv`], [`act`], [`misc`]) inside one
//! [`CustomOp2`](candle_core::CustomOp2) of `(input, all parameters flattened)`, keeping the
//! activations it needs for backward to itself. To candle it is one differentiable op:
//! `loss.backward()` reaches every parameter [`Var`](candle_core::Var) through the `cat` that
//! flattened them.
//!
//! - Convolutions (any stride and padding, with or without bias) use the wide-plane kernels of
//!   [`conv`]; the first layer's input gradient is skipped unless the input tracks a gradient.
//! - BatchNorm → Dropout → ReLU runs fused ([`act`]), with counter-based dropout masks
//!   recomputed rather than stored (an act step folded into a convolution, below, records its
//!   mask as bits for that convolution's backward, [`mask`]); pools take any window and stride
//!   ([`misc`]). When a convolution or a max pool follows it, the act step's first backward
//!   pass (∂L/∂z and BatchNorm's per-image sums) runs inside that step's backward, on each
//!   group's or image's input gradient while it is still in cache. BatchNorm's input gradient
//!   is applied by the convolution before it (stride 1, no bias), as its backward copies that
//!   gradient into its padded layout (its time then counts in the convolution's row); elsewhere
//!   it is a pass of its own. A max pool after an act step pools each image as soon as the act
//!   step has computed it (its time then counts in the act step's row of the profile); in
//!   training, where the pool's windows do not overlap, from a scratch plane, so the act step's
//!   output is never stored (the pool's backward reads only its own output and the act step's
//!   input). An act step before an unpadded convolution on large planes is folded into it in
//!   training: the convolution applies it to each image as it reads it, forward and backward,
//!   and its output is never stored (its time then counts in the convolution's row).
//! - Images are processed in parallel on rayon's threads, each thread taking its own share of
//!   a layer's images, the same in every layer, then what is left of the other's ([`spread`]),
//!   in groups of up to 16 side by side in one kernel call
//!   ([`drivers`]; the group size depends on the layer's plane alone, so small convolutions
//!   fill the vectors; from numerics version 5 the backward takes large planes one image a
//!   group, so that a layer's parallel loop ends on one image's work). Every
//!   reduction over the batch (BatchNorm statistics per image, weight gradients per group)
//!   sums its partials in image or group order, so results are the same for any thread count.
//!   The grouping is part of the numerics (numerics version 2 on). The forward of a group of
//!   16 small unpadded planes runs with the images in the vector lanes ([`lanes`]), where only
//!   the positions kept are computed: the same bits as the wide layout.
//! - Training runs the large unpadded 3×3 stride-1 convolutions without bias on row-wise
//!   Winograd F(2,3) kernels ([`winograd`]): forward, input gradient and weight gradient, each
//!   input transformed by a pass of its own (numerics version 3 on), the forward's rows packed so
//!   that it computes only the outputs it keeps. Up to version 4,
//!   evaluation and inference compute what version 2 does.
//! - Training runs the backward of the small unpadded stride-1 convolutions (groups of 16
//!   images) with the images in the lanes ([`lanes::Backward`]; numerics version 4 on): the
//!   output gradient moved in padded (BatchNorm's input gradient applied on the way,
//!   [`transpose`]), the input gradient the same bits as version 3's, the weight gradient
//!   summed lane by lane over the positions kept ([`lanes_grad`]).
//!   [`Net::with_numerics`](crate::Net::with_numerics) selects an older version instead of
//!   [`NUMERICS_VERSION`](crate::NUMERICS_VERSION), down to
//!   [`OLDEST_NUMERICS`](crate::OLDEST_NUMERICS) 2 (the direct kernels).
//! - Evaluation runs the large 3×3 convolutions with more than one input channel on 2D
//!   Winograd F(4×4, 3×3) tiles with the images in the lanes ([`tiles`]; numerics version 5
//!   on): inference where its group lies in the lanes already, and elsewhere (as the batch
//!   path's evaluation forward) by moving up to 16 images in and out, each image the same bits
//!   either way.
//! - Every kernel is compiled for each [`KernelPath`] (portable, AVX2, AVX-512), one chosen at
//!   run time, with the same bits on each.
//! - Inference (eval mode, nothing kept for backward, [`infer`]) runs a few images at a time
//!   through the whole stack, so activations stay in cache. Where the convolutions' largest
//!   group is 16 images, a group runs with its images in the vector lanes ([`lanes`]) through
//!   every unpadded stride-1 convolution and 2×2 max pool: only the positions kept are
//!   computed, and the act step after a convolution is applied before its stores. Elsewhere
//!   each convolution takes the images in its training groups, or one image at a time where it
//!   lies when unpadded with large planes; the act step after a convolution runs as it crops
//!   its output, and 2×2 max pools skip the arg-max. The same bits as one image alone, in
//!   either layout (an output's sum does not depend on the group or the layout).
//!
//! [`Net`](crate::Net) compares this path against its reference path (candle's own ops) in
//! tests, and finite-difference tests check its gradients in `f64`.
//!
//! Files by job, each importing only what is below it: [`real`] (the float trait) and
//! [`dispatch`] (the kernel paths) are leaves, as is [`places`] (where a convolution block's
//! vectors lie, and the act step it applies before storing); the kernels ([`conv`] with its
//! explicit-vector blocks in `simd`, which also holds the max pool's rows, [`act`], [`misc`])
//! use them alone, and [`mask`] and [`transpose`] (moving images into the vector lanes and out)
//! use [`act`]'s value; [`lanes_grad`] (the weight gradient in the lanes) and [`padded`] (a
//! group's output gradient into its padded layout, BatchNorm's input gradient applied) are
//! kernels too; [`plan`] compiles a spec into steps,
//! [`buffers`] keeps activation buffers, [`profile`] times steps, [`drivers`] run the
//! convolution kernels over a batch, [`lanes`] over a group with the images in the lanes,
//! [`infer`] runs the inference forward, [`pass`] a whole forward and backward, and [`op`] is
//! the candle glue. [`winograd`] and [`tiles`] (each with its own explicit-vector kernels) sit
//! beside [`conv`].

#[macro_use]
mod dispatch;
pub(crate) mod real;

pub(crate) mod act;
pub(crate) mod conv;
mod mask;
pub(crate) mod misc;

mod ahead;
mod buffers;
mod drivers;
mod infer;
mod lanes;
mod lanes_grad;
mod op;
mod padded;
mod pass;
mod places;
mod plan;
mod profile;
#[cfg(target_arch = "x86_64")]
mod simd;
mod spread;
mod tiles;
mod transpose;
pub(crate) mod winograd;

pub use dispatch::{KernelPath, PathUnavailable};
pub(crate) use pass::Pass;
pub(crate) use plan::Engine;
pub use profile::StepTime;

/// `run` once on every kernel path this CPU offers, each result with its path; the best path is
/// active again before this returns, so a test's assertions (which may return early) run after
/// it. The path is process-wide: tests that need one path throughout have their own binary.
#[cfg(test)]
pub(crate) fn on_every_path<R>(mut run: impl FnMut() -> R) -> Vec<(KernelPath, R)> {
    let runs = KernelPath::available()
        .into_iter()
        .map(|path| {
            KernelPath::use_path(path).expect("available");
            (path, run())
        })
        .collect();
    KernelPath::use_path(KernelPath::best()).expect("best");
    runs
}
