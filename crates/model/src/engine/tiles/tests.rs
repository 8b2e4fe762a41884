use proptest::prelude::*;

use super::*;
use crate::engine::on_every_path;
use crate::engine::winograd::tests::values;

/// A shape: `ci` input planes of `h × w` positions, `co` outputs, with or without an act step.
#[derive(Debug, Clone, Copy)]
struct Shape {
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    act: bool,
}

fn shapes() -> impl Strategy<Value = Shape> {
    // Planes from the kernel's size to past two tiles, so that edge tiles are partial and
    // whole; outputs both sides of a block of 5.
    (
        1usize..12,
        1usize..17,
        3usize..14,
        3usize..14,
        prop::bool::ANY,
    )
        .prop_map(|(ci, co, h, w, act)| Shape { ci, co, h, w, act })
}

/// The act step's coefficients for a shape (a per-output scale and shift), when it has one.
/// Output 0 has `a = 0, b = −0`: its outputs are −0 wherever the sum is negative (`y·0 = −0`,
/// `−0 + −0 = −0`), which the ReLU must keep, so the paths' selects are compared on signed
/// zeros too.
fn act_of<T: Real>(s: Shape) -> Option<(Vec<T>, Vec<T>)> {
    s.act.then(|| {
        let (mut a, mut b) = (values(s.co, 7), values(s.co, 8));
        (a[0], b[0]) = (T::ZERO, T::from_f64(-0.0));
        (a, b)
    })
}

/// The kernel's output on the active path.
fn kernel<T: Real>(s: Shape, x: &[T], w: &[T]) -> Vec<T> {
    let (oh, ow) = (s.h - 2, s.w - 2);
    let mut out = vec![T::ZERO; s.co * oh * ow * LANES];
    let mut scratch = vec![T::ZERO; scratch_len(s.ci, s.co)];
    let maps = act_of::<T>(s);
    let act = maps.as_ref().map(|(a, b)| Epilogue { a, b, relu: true });
    let u = weights(w, s.ci, s.co);
    forward(x, s.ci, s.h, s.w, &u, s.co, &mut out, act, &mut scratch);
    out
}

/// The convolution as a plain sum in `f64`, independently of the tiles: `y[o][r][c][l] =
/// act(Σ_i Σ_{kh,kw} w[o][i][kh][kw] · x[i][r + kh][c + kw][l])`, the act step `max(0, y·a +
/// b)`.
fn direct(s: Shape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let (oh, ow) = (s.h - 2, s.w - 2);
    let maps = act_of::<f64>(s);
    let mut y = vec![0.0; s.co * oh * ow * LANES];
    for (n, y) in y.iter_mut().enumerate() {
        let (o, r, c, l) = (
            n / (oh * ow * LANES),
            n / (ow * LANES) % oh,
            n / LANES % ow,
            n % LANES,
        );
        let sum: f64 = (0..s.ci * 9)
            .map(|k| {
                let (i, kh, kw) = (k / 9, k % 9 / 3, k % 3);
                w[o * s.ci * 9 + k] * x[((i * s.h + r + kh) * s.w + c + kw) * LANES + l]
            })
            .sum();
        *y = match &maps {
            Some((a, b)) => (sum * a[o] + b[o]).max(0.0),
            None => sum,
        };
    }
    y
}

/// The largest difference over the largest value.
fn relative(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The tiles compute the convolution: in `f64` to within rounding, in `f32` within what
    /// `f32` arithmetic through F(4, 3)'s transforms leaves (the probe measured 2–4e-6 of the
    /// largest value on the net's shapes; partial tiles and small planes here).
    #[test]
    fn tiles_compute_the_convolution(s in shapes(), seed in 0u64..1000) {
        let (x, w) = (values::<f64>(s.ci * s.h * s.w * LANES, seed), values::<f64>(s.co * s.ci * 9, seed + 1));
        let want = direct(s, &x, &w);
        prop_assert!(relative(&kernel(s, &x, &w), &want) < 1e-12);
        let (x32, w32): (Vec<f32>, Vec<f32>) = (x.iter().map(|&v| v as f32).collect(), w.iter().map(|&v| v as f32).collect());
        let got: Vec<f64> = kernel(s, &x32, &w32).into_iter().map(f64::from).collect();
        prop_assert!(relative(&got, &want) < 2e-5, "{}", relative(&got, &want));
    }

    /// Every kernel path gives the same bits, and each image's outputs do not depend on the
    /// other images in the group (one lane's values changed, the other lanes' outputs are
    /// the same bits).
    #[test]
    fn every_path_and_every_lane_alone(s in shapes(), seed in 0u64..1000, lane in 0..LANES) {
        let (x, w) = (values::<f32>(s.ci * s.h * s.w * LANES, seed), values::<f32>(s.co * s.ci * 9, seed + 1));
        let runs = on_every_path(|| kernel(s, &x, &w));
        for (path, out) in &runs[1..] {
            prop_assert!(out == &runs[0].1, "{path:?} differs from {:?}", runs[0].0);
        }
        let mut other = x.clone();
        for v in other.iter_mut().skip(lane).step_by(LANES) {
            *v = -*v * 0.5;
        }
        let (a, b) = (&runs[0].1, kernel(s, &other, &w));
        for (n, (p, q)) in a.iter().zip(&b).enumerate() {
            if n % LANES != lane {
                prop_assert!(p.to_bits() == q.to_bits(), "lane {} changed with lane {lane}", n % LANES);
            }
        }
    }
}

/// The weights' transform against `G w Gᵀ` written out for one kernel: with `w` all ones,
/// `(G w Gᵀ)[i][j] = (Σ G[i]) · (Σ G[j])`, and the row sums of `G` are 1/4, −1/2, −1/6, 7/24,
/// 1/8 and 1 (summed by hand from Lavin and Gray's table).
#[test]
fn weights_transform_a_kernel_of_ones() {
    let sums = [0.25, -0.5, -1.0 / 6.0, 7.0 / 24.0, 0.125, 1.0];
    let u = weights(&[1.0f64; 9], 1, 1);
    for (ij, &v) in u.iter().enumerate() {
        let want = sums[ij / 6] * sums[ij % 6];
        assert!((v - want).abs() < 1e-15, "element {ij}: {v} against {want}");
    }
}
