//! Inference, the training forward of groups of small planes, and (numerics version 4 on) their
//! training backward ([`Backward`]), with the images in the vector lanes.
//!
//! The wide layout computes positions for nothing: the cropped columns, the last rows of each
//! image, the chunk at the end (a sixth of a 26×26 plane, half of a 7×7 one), and the act step
//! after a convolution is a pass of its own over the wide output as it crops it. Here a group of
//! up to [`LANES`] images lies with position `j` of every image side by side
//! (`[channel][position][image]`): one vector holds one position of all the images, the kernel
//! computes exactly the positions kept ([`Geometry`], [`conv::correlate_at`]), and it applies the act step
//! after the convolution before each store. Each lane sums the same terms in the same order as
//! the wide layout's lane for that image and position, and the act step is the same
//! multiply-add and select: the same bits. 2×2 max pools run in the same layout
//! ([`misc::max_pool2_lanes`](super::misc::max_pool2_lanes)). Images move in and out 16
//! positions at a time ([`transpose`]).

use super::padded::BnRows;
use super::places::Epilogue;
use super::plan::ConvStep;
use super::real::Real;
use super::transpose::{self, Bn};
use super::{conv, lanes_grad};

/// Images per group in the lanes layout: a kernel vector's lanes.
pub(super) const LANES: usize = conv::CHUNK;
// The kernels that move images into the lanes and sum over them agree (they do not import
// this module).
const _: () = assert!(
    LANES == transpose::LANES && LANES == lanes_grad::LANES && LANES == super::tiles::LANES
);

/// Whether inference can run this convolution in the lanes layout: stride 1, unpadded.
pub(super) fn fits(cs: &ConvStep) -> bool {
    cs.unpadded_stride1()
}

/// `m ≤ LANES` images of `size` values each (one after another in `src`) into the lanes layout:
/// `dst[j·LANES + i]` is value `j` of image `i`; the lanes from `m` on are zero.
pub(super) fn gather<T: Real>(src: &[T], m: usize, size: usize, dst: &mut [T]) {
    assert!(m <= LANES && src.len() >= m * size && dst.len() >= size * LANES);
    transpose::into_lanes(src, size, m, size, |j| j * LANES, None, dst);
}

/// The inverse of [`gather`]: the first `m` images back one after another.
pub(super) fn scatter<T: Real>(src: &[T], m: usize, size: usize, dst: &mut [T]) {
    assert!(m <= LANES && dst.len() >= m * size && src.len() >= size * LANES);
    transpose::out_of_lanes(src, |j| j * LANES, m, size, size, dst);
}

/// A convolution that [`fits`], laid out for the lanes once per pass: its tap offsets, its
/// channels' strides and the places it computes (each kept position's input and output offset).
pub(super) struct Geometry {
    off: Vec<usize>,
    places: Vec<(usize, usize)>,
    xs: usize,
    os: usize,
}

impl Geometry {
    pub(super) fn new(cs: &ConvStep) -> Self {
        assert!(fits(cs));
        let places = (0..cs.oh)
            .flat_map(|r| (0..cs.ow).map(move |c| (r * cs.wp + c, r * cs.ow + c)))
            .map(|(i, q)| (i * LANES, q * LANES))
            .collect();
        Geometry {
            off: cs.off.iter().map(|d| d * LANES).collect(),
            places,
            xs: cs.hp * cs.wp * LANES,
            os: cs.oh * cs.ow * LANES,
        }
    }

    /// The forward of `cs` (this geometry's convolution) from `x` (`ci` planes in the lanes
    /// layout) into `out` (`co` planes of `oh·ow` positions), with the act step after it when
    /// given.
    pub(super) fn conv<T: Real>(
        &self,
        cs: &ConvStep,
        x: &[T],
        params: &[T],
        out: &mut [T],
        act: Option<Epilogue<'_, T>>,
    ) {
        let (w, bias) = cs.weights(params);
        let (xs, os, ci, co) = (self.xs, self.os, cs.ci, cs.co);
        conv::correlate_at(
            x,
            xs,
            ci,
            w,
            bias,
            co,
            &self.off,
            out,
            os,
            &self.places,
            act,
        );
    }
}

/// A convolution that [`fits`], laid out for its training backward with the images in the lanes
/// (numerics version 4, [`ConvStep::lanes_grad`]): the output gradient padded by `k − 1` on
/// every side; the input gradient is [`conv::correlate_at`] of it with the flipped, transposed
/// kernel, each lane the same terms in the same order as the wide layout's (the same bits), and
/// the weight gradient [`lanes_grad::weight_grad_at`] over the positions kept.
pub(super) struct Backward {
    /// The padded gradient's plane (positions).
    plane: usize,
    /// The input gradient's taps in the padded gradient, and each input position's (read,
    /// write) offsets.
    taps: Vec<usize>,
    inputs: Vec<(usize, usize)>,
    /// The weight gradient's taps in the input, and each output position's (input, padded
    /// gradient) offsets.
    off: Vec<usize>,
    outputs: Vec<(usize, usize)>,
}

impl Backward {
    pub(super) fn new(cs: &ConvStep) -> Self {
        assert!(fits(cs));
        let k1 = cs.h - cs.oh;
        let k = k1 + 1;
        let pw = cs.ow + 2 * k1;
        let front = k1 * pw + k1;
        let (w, ow) = (cs.w, cs.ow);
        Backward {
            plane: (cs.oh + 2 * k1) * pw,
            taps: (0..k * k).map(|t| (t / k * pw + t % k) * LANES).collect(),
            inputs: (0..cs.h * w)
                .map(|p| ((p / w * pw + p % w) * LANES, p * LANES))
                .collect(),
            off: cs.off.iter().map(|d| d * LANES).collect(),
            outputs: (0..cs.oh * ow)
                .map(|p| {
                    (
                        (p / ow * w + p % ow) * LANES,
                        (front + p / ow * pw + p % ow) * LANES,
                    )
                })
                .collect(),
        }
    }

    /// The scratch a group needs: the padded gradient, then the input and its gradient in the
    /// lanes.
    pub(super) fn lens(&self, cs: &ConvStep) -> [usize; 3] {
        let x = cs.ci * cs.h * cs.w * LANES;
        [cs.co * self.plane * LANES, x, x]
    }

    /// The output gradient of `m ≤ LANES` images (`g`, one after another) into `gl`, padded,
    /// each value through BatchNorm's input gradient when `bn` is given; the lanes from `m` on
    /// are zero.
    pub(super) fn grad_into<T: Real>(
        &self,
        cs: &ConvStep,
        g: &[T],
        m: usize,
        bn: Option<BnRows<'_, T>>,
        gl: &mut [T],
    ) {
        let size = cs.co * cs.oh * cs.ow;
        assert!(m <= LANES && g.len() >= m * size && bn.is_none_or(|b| b.y.len() >= m * size));
        let (n, plane) = (cs.oh * cs.ow, self.plane * LANES);
        let gl = &mut gl[..cs.co * plane];
        // Zeroing only the padding, around the positions written below, gained nothing.
        gl.fill(T::ZERO);
        for c in 0..cs.co {
            let bn = bn.map(|b| Bn {
                y: &b.y[c * n..],
                mean: b.mean[c],
                k: b.k[c],
            });
            let to = |p: usize| c * plane + self.outputs[p].1;
            transpose::into_lanes(&g[c * n..], size, m, n, to, bn, gl);
        }
    }

    /// The weight gradient added to `gw` from the padded gradient `gl` and the input `x` in
    /// the lanes.
    pub(super) fn weight_grad<T: Real>(&self, cs: &ConvStep, gl: &[T], x: &[T], gw: &mut [T]) {
        let xs = cs.h * cs.w * LANES;
        let gs = self.plane * LANES;
        lanes_grad::weight_grad_at(gl, gs, cs.co, x, xs, cs.ci, &self.off, &self.outputs, gw);
    }

    /// The input gradient `gx` (in the lanes) from the padded gradient and the flipped,
    /// transposed kernel `wf` (`wf[(i·co + o)·k² + t] = w[(o·ci + i)·k² + k² − 1 − t]`).
    pub(super) fn input_grad<T: Real>(&self, cs: &ConvStep, gl: &[T], wf: &[T], gx: &mut [T]) {
        let (xs, gs) = (cs.h * cs.w * LANES, self.plane * LANES);
        conv::correlate_at(
            gl,
            gs,
            cs.co,
            wf,
            None,
            cs.ci,
            &self.taps,
            gx,
            xs,
            &self.inputs,
            None,
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A value of the test data: mostly ordinary, sometimes −0, NaN or ±∞.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -2.0f32..2.0,
            1 => Just(-0.0f32),
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
        ]
    }

    /// A `k×k` unpadded stride-1 convolution of `ci` channels of `h×w` into `co`.
    pub(in crate::engine) fn step(
        ci: usize,
        co: usize,
        k: usize,
        h: usize,
        w: usize,
        bias: bool,
    ) -> ConvStep {
        ConvStep {
            ci,
            co,
            pad: 0,
            h,
            w,
            hp: h,
            wp: w,
            oh: h - k + 1,
            ow: w - k + 1,
            stride: 1,
            rows: h - k + 1,
            weight: 0,
            bias: bias.then_some(co * ci * k * k),
            off: (0..k * k).map(|t| (t / k) * w + t % k).collect(),
            front: (k - 1) * w + k - 1,
            group: LANES,
            grad_group: LANES,
            winograd: false,
            lanes_grad: false,
            tiles: false,
        }
    }

    proptest! {
        /// The lanes convolution with its act step against the definition, one image, output
        /// and position at a time (`bias + Σ_i Σ_t x·w`, each term a multiply-add in that
        /// order, then `relu(s·a + b)` as a multiply-add and a select): the same bits, NaN, ±∞
        /// and −0 included (a NaN for a NaN), on every kernel path. Channels with `a = 0, b =
        /// −0` make −0 outputs, which a ReLU must keep.
        #[test]
        fn lanes_convolution_is_the_definition(
            (ci, co, k, h, w) in (1usize..4, 1usize..12, 1usize..4)
                .prop_flat_map(|(ci, co, k)| (Just(ci), Just(co), Just(k), k..10, k..10)),
            m in 1usize..=LANES,
            bias in any::<bool>(),
            relu in any::<bool>(),
            seed in prop::collection::vec(value(), 64),
            maps in prop::collection::vec((value(), value(), 0u8..4), 12),
        ) {
            let cs = step(ci, co, k, h, w, bias);
            let pick = |j: usize| seed[(j * 7 + j / 64) % 64] * (1.0 + (j % 5) as f32 / 8.0);
            let params: Vec<f32> = (0..co * ci * k * k + co).map(|j| pick(j + 1000)).collect();
            let x: Vec<f32> = (0..m * ci * h * w).map(pick).collect();
            let (a, b): (Vec<f32>, Vec<f32>) = maps[..co]
                .iter()
                .map(|&(a, b, kind)| if kind == 0 { (0.0, -0.0) } else { (a, b) })
                .unzip();
            let mut xl = vec![f32::NAN; ci * h * w * LANES];
            gather(&x, m, ci * h * w, &mut xl);
            let osz = co * cs.oh * cs.ow;
            // Every kernel path of this CPU.
            let runs = crate::engine::on_every_path(|| {
                let mut yl = vec![f32::NAN; osz * LANES];
                let act = Some(Epilogue { a: &a, b: &b, relu });
                Geometry::new(&cs).conv(&cs, &xl, &params, &mut yl, act);
                let mut y = vec![f32::NAN; m * osz];
                scatter(&yl, m, osz, &mut y);
                y
            });
            for ((i, o, p), (path, y)) in triples(m, co, cs.oh * cs.ow)
                .flat_map(|t| runs.iter().map(move |r| (t, r)))
            {
                let (r, c) = (p / cs.ow, p % cs.ow);
                let mut s = if bias { params[co * ci * k * k + o] } else { 0.0 };
                for ch in 0..ci {
                    for t in 0..k * k {
                        let xv = x[((i * ci + ch) * h + r + t / k) * w + c + t % k];
                        s = xv.mul_add(params[(o * ci + ch) * k * k + t], s);
                    }
                }
                let v = s.mul_add(a[o], b[o]);
                let want = if relu && v < 0.0 { 0.0 } else { v };
                let got = y[(i * co + o) * cs.oh * cs.ow + p];
                // A NaN's sign and payload depend on the instruction (x86's fused multiply-add
                // makes −NaN from ∞·0, the software one +NaN): any NaN for a NaN.
                let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
                prop_assert!(same, "image {} output {} at {} ({}): {} for {}", i, o, p, path, got, want);
            }
        }

        /// `scatter` undoes `gather`, and the lanes past `m` are zero.
        #[test]
        fn scatter_undoes_gather(m in 1usize..=LANES, size in 1usize..40, seed in any::<u32>()) {
            let src: Vec<f32> = (0..m * size).map(|k| (k as u32 ^ seed) as f32).collect();
            let mut lanes = vec![f32::NAN; size * LANES];
            gather(&src, m, size, &mut lanes);
            for j in 0..size {
                for i in 0..LANES {
                    let want = if i < m { src[i * size + j] } else { 0.0 };
                    prop_assert_eq!(lanes[j * LANES + i].to_bits(), want.to_bits());
                }
            }
            let mut back = vec![f32::NAN; m * size];
            scatter(&lanes, m, size, &mut back);
            prop_assert_eq!(back, src);
        }

        /// The backward's output gradient in the lanes, over a buffer of NaNs (what a pooled
        /// buffer may hold): the definition position by position, independently of the padding
        /// runs (value `(o, r, c)` of image `i` at padded row `r + k − 1` and column `c + k −
        /// 1`, through BatchNorm's input gradient when given; zero in the padding and in the
        /// lanes from `m` on).
        #[test]
        fn backward_gradient_into_the_lanes_is_the_definition(
            (co, k, h) in (1usize..4, 1usize..4).prop_flat_map(|(co, k)| (Just(co), Just(k), k..9)),
            m in 1usize..=LANES,
            with_bn in any::<bool>(),
            seed in any::<u32>(),
        ) {
            let cs = step(2, co, k, h, h + 1, false);
            let back = Backward::new(&cs);
            let (oh, ow) = (cs.oh, cs.ow);
            let size = co * oh * ow;
            let g: Vec<f32> = (0..m * size).map(|v| ((v as u32 ^ seed) % 97) as f32 - 48.0).collect();
            let y: Vec<f32> = g.iter().map(|v| v * 0.5 + 1.0).collect();
            let (mean, coef): (Vec<f32>, Vec<_>) = (0..co)
                .map(|c| (c as f32 * 0.25, (1.5, -0.5 - c as f32, 0.125)))
                .unzip();
            let bn = with_bn.then_some(BnRows { y: &y, mean: &mean, k: &coef });
            let mut gl = vec![f32::NAN; back.lens(&cs)[0]];
            back.grad_into(&cs, &g, m, bn, &mut gl);
            let (pw, ph) = (ow + 2 * (k - 1), oh + 2 * (k - 1));
            prop_assert_eq!(gl.len(), co * ph * pw * LANES);
            for (o, r, c, i) in (0..co * ph * pw * LANES)
                .map(|v| (v / LANES / pw / ph, v / LANES / pw % ph, v / LANES % pw, v % LANES))
            {
                let (ri, ci) = (r.wrapping_sub(k - 1), c.wrapping_sub(k - 1));
                let want = match ri < oh && ci < ow && i < m {
                    false => 0.0,
                    true => {
                        let at = i * size + (o * oh + ri) * ow + ci;
                        match with_bn {
                            false => g[at],
                            true => crate::engine::act::bn_input_value(g[at], y[at], mean[o], coef[o]),
                        }
                    }
                };
                let got = gl[((o * ph + r) * pw + c) * LANES + i];
                prop_assert_eq!(got.to_bits(), want.to_bits(), "({}, {}, {}) lane {}", o, r, c, i);
            }
        }
    }

    /// Every (image, output, position) triple.
    fn triples(m: usize, co: usize, hw: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..m).flat_map(move |i| (0..co).flat_map(move |o| (0..hw).map(move |p| (i, o, p))))
    }
}
