//! Where a convolution block's vectors lie, and what it does to them before it stores them: a
//! leaf that the block kernels ([`conv`](super::conv) and its explicit-vector `simd`) share
//! with their callers.
//!
//! A block computes `OB` outputs × `NV` vectors of [`CHUNK`](super::conv::CHUNK) lanes. In the
//! wide layout a vector is a chunk of consecutive positions of one plane ([`Run`]); with the
//! images in the lanes, a vector is one position of 16 images, and a block's positions are
//! listed one by one ([`Listed`]), so none is computed for nothing.

/// Offsets of a block's vectors: vector `v` reads each run of its inputs at `input(v)` past the
/// run's start and writes each output at `output(v)` past the output's start.
pub(crate) trait Places: Copy {
    /// Where vector `v` reads, past each run's start.
    fn input(self, v: usize) -> usize;
    /// Where vector `v` writes, past each output's start.
    fn output(self, v: usize) -> usize;
}

/// Consecutive chunks of `chunk` positions from `p0`, read and written at the same offset: the
/// wide layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) p0: usize,
    pub(crate) chunk: usize,
}

impl Places for Run {
    #[inline(always)]
    fn input(self, v: usize) -> usize {
        self.p0 + v * self.chunk
    }
    #[inline(always)]
    fn output(self, v: usize) -> usize {
        self.p0 + v * self.chunk
    }
}

/// Up to four vectors, each with its own input and output offset.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Listed {
    pub(crate) input: [usize; 4],
    pub(crate) output: [usize; 4],
}

impl Places for Listed {
    #[inline(always)]
    fn input(self, v: usize) -> usize {
        self.input[v]
    }
    #[inline(always)]
    fn output(self, v: usize) -> usize {
        self.output[v]
    }
}

/// An inference act step applied to each sum before it is stored: `relu(s·a[o] + b[o])` for
/// output `o` ([`act::affine`](super::act::affine), as [`act::forward`](super::act::forward)
/// computes it), so the same bits as the act step run after the convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a, T> {
    pub(crate) a: &'a [T],
    pub(crate) b: &'a [T],
    pub(crate) relu: bool,
}
