use proptest::prelude::*;

use super::*;
use crate::engine::winograd::tests::values;

/// A shape: `ni` input channels of a `h × h` plane in the lanes layout, `no` output-gradient
/// rows of an `oh × oh` plane (`oh = h − k + 1`), a `k × k` kernel.
#[derive(Debug, Clone, Copy)]
struct Shape {
    ni: usize,
    no: usize,
    h: usize,
    k: usize,
}

impl Shape {
    fn oh(&self) -> usize {
        self.h - self.k + 1
    }
    /// Tap offsets in the input, in values: `(kh·h + kw)·LANES`.
    fn off(&self) -> Vec<usize> {
        (0..self.k * self.k)
            .map(|t| (t / self.k * self.h + t % self.k) * LANES)
            .collect()
    }
    /// Each output position's input and output-gradient offsets, row by row.
    fn places(&self) -> Vec<(usize, usize)> {
        let (h, oh) = (self.h, self.oh());
        (0..oh * oh)
            .map(|p| ((p / oh * h + p % oh) * LANES, p * LANES))
            .collect()
    }
}

fn shapes() -> impl Strategy<Value = Shape> {
    (1usize..12, 1usize..14, 1usize..10, prop::bool::ANY).prop_map(|(ni, no, h, three)| {
        let k = if three && h >= 3 { 3 } else { 1 };
        Shape { ni, no, h, k }
    })
}

/// The kernel's weight gradient of a shape from its input `x` and output gradient `g`.
fn kernel<T: Real>(s: Shape, x: &[T], g: &[T]) -> Vec<T> {
    let (xs, gs) = (s.h * s.h * LANES, s.oh() * s.oh() * LANES);
    let mut gw = vec![T::ZERO; s.no * s.ni * s.k * s.k];
    weight_grad_at(g, gs, s.no, x, xs, s.ni, &s.off(), &s.places(), &mut gw);
    gw
}

/// The weight gradient as a plain sum over images and positions in `f64`, independently of
/// the kernel's layout arithmetic: `gw[o][i][kh][kw] = Σ_l Σ_{r,c} g[o][r][c][l] ·
/// x[i][r + kh][c + kw][l]`.
fn direct(s: Shape, x: &[f64], g: &[f64]) -> Vec<f64> {
    let (h, oh, k) = (s.h, s.oh(), s.k);
    let xv = |i: usize, r: usize, c: usize, l: usize| x[((i * h + r) * h + c) * LANES + l];
    let gv = |o: usize, r: usize, c: usize, l: usize| g[((o * oh + r) * oh + c) * LANES + l];
    let mut gw = vec![0.0; s.no * s.ni * k * k];
    for o in 0..s.no {
        for i in 0..s.ni {
            for t in 0..k * k {
                let mut sum = 0.0;
                for (r, c, l) in
                    (0..oh * oh * LANES).map(|q| (q / LANES / oh, q / LANES % oh, q % LANES))
                {
                    sum += gv(o, r, c, l) * xv(i, r + t / k, c + t % k, l);
                }
                gw[(o * s.ni + i) * k * k + t] = sum;
            }
        }
    }
    gw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// In `f64`, the kernel's weight gradient is the plain sum within rounding.
    #[test]
    fn the_lanes_weight_gradient_is_the_plain_sum(s in shapes(), seed in 0u64..1000) {
        let x = values::<f64>(s.ni * s.h * s.h * LANES, seed);
        let g = values::<f64>(s.no * s.oh() * s.oh() * LANES, seed + 1);
        let (got, want) = (kernel(s, &x, &g), direct(s, &x, &g));
        for (a, b) in got.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} against {b}");
        }
    }

    /// In `f32`, every kernel path gives the same bits, and each is the `f64` sum within
    /// `f32` rounding.
    #[test]
    fn the_lanes_weight_gradient_is_the_same_bits_on_every_path(s in shapes(), seed in 0u64..1000) {
        let x = values::<f32>(s.ni * s.h * s.h * LANES, seed);
        let g = values::<f32>(s.no * s.oh() * s.oh() * LANES, seed + 1);
        let runs = crate::engine::on_every_path(|| kernel(s, &x, &g));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (path, got) in &runs[1..] {
            prop_assert!(bits(got) == bits(&runs[0].1), "{path} differs from {}", runs[0].0);
        }
        let wide = |v: &[f32]| v.iter().map(|&f| f as f64).collect::<Vec<_>>();
        let want = direct(s, &wide(&x), &wide(&g));
        let terms = (s.oh() * s.oh() * LANES) as f64;
        for (a, b) in runs[0].1.iter().zip(&want) {
            prop_assert!((*a as f64 - b).abs() <= 1e-6 * terms, "{a} against {b}");
        }
    }
}
