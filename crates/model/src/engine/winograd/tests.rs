use proptest::prelude::*;

use super::*;

/// A shape: `ci` input channels of `xs` (even) values each, rows `wp` (even) apart, `no`
/// outputs, `lp` pairs computed.
#[derive(Debug, Clone, Copy)]
struct Shape {
    ci: usize,
    no: usize,
    wp: usize,
    xs: usize,
    lp: usize,
}

fn shapes() -> impl Strategy<Value = Shape> {
    (1usize..12, 1usize..17, 2usize..9, 1usize..5, 0usize..3).prop_map(|(ci, no, w2, n8, extra)| {
        let (wp, lp) = (2 * w2, PAIRS * n8);
        // A channel at least as long as the pairs computed, plus `extra` pairs.
        let xs = 2 * (lp + extra);
        Shape { ci, no, wp, xs, lp }
    })
}

/// Values of `f(i)` in [-1, 1) from a seed (a fixed hash: what the kernels compute does not
/// depend on which values).
pub(in crate::engine) fn values<T: Real>(n: usize, seed: u64) -> Vec<T> {
    (0..n as u64)
        .map(|i| {
            let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D);
            T::from_f64((h >> 40) as f64 / (1u64 << 23) as f64 - 1.0)
        })
        .collect()
}

/// The input length a shape's kernels read: the last channel's 2 rows and `lp` pairs, one pair
/// more for the transform, and a vector's overrun.
fn input_len(s: Shape) -> usize {
    (s.ci - 1) * s.xs + 2 * s.wp + 2 * s.lp + 2 + 16
}

/// The forward of a shape, its transformed input's pairs, and the weight gradient of a
/// gradient `g` (`no` rows of `2·lp`), with the Winograd kernels on the active path.
fn winograd<T: Real>(s: Shape, x: &[T], w: &[T], g: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
    let pairs = (input_len(s) - 18) / 2;
    let mut t = vec![T::ZERO; 4 * pairs];
    transform(x, pairs, &mut t);
    let input = Input::of(&t, s.xs, s.ci, s.wp);
    let mut out = vec![T::ZERO; s.no * 2 * s.lp];
    correlate(
        input,
        &weights(w, s.no * s.ci),
        s.no,
        &mut out,
        2 * s.lp,
        s.lp,
    );
    let mut sg = vec![T::ZERO; s.no * s.lp * 4];
    grad_transform(g, 2 * s.lp, s.no, s.lp, &mut sg);
    let mut gw = vec![T::ZERO; s.no * s.ci * 9];
    // The lanes' contents on entry are unused: NaN there would reach the gradient otherwise.
    let mut acc = vec![T::from_f64(f64::NAN); acc_len(s.no, s.ci)];
    weight_grad(&sg, s.no, s.lp, input, &mut acc, &mut gw);
    (out, t, gw)
}

/// The 3×3 correlation and its weight gradient as plain sums in `f64`, independently of the
/// engine: `y[o][p] = Σ_c Σ_kh Σ_kw w[o][c][kh][kw] · x[c·xs + p + kh·wp + kw]` and `gw[o][c][kh][kw]
/// = Σ_p g[o][p] · x[c·xs + p + kh·wp + kw]`.
fn direct(s: Shape, x: &[f64], w: &[f64], g: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = 2 * s.lp;
    let tap = |c: usize, k: usize, p: usize| x[c * s.xs + p + k / 3 * s.wp + k % 3];
    let mut y = vec![0.0; s.no * n];
    let mut gw = vec![0.0; s.no * s.ci * 9];
    for o in 0..s.no {
        for c in 0..s.ci {
            for k in 0..9 {
                let wv = w[(o * s.ci + c) * 9 + k];
                for p in 0..n {
                    y[o * n + p] += wv * tap(c, k, p);
                    gw[(o * s.ci + c) * 9 + k] += g[o * n + p] * tap(c, k, p);
                }
            }
        }
    }
    (y, gw)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// In `f64`, the forward and the weight gradient are the plain sums' within rounding (the
    /// Winograd identities are exact in real numbers; the sums here are of at most 99 terms
    /// of size ≤ 1, so 1e-12 is far above `f64` rounding and far below any wrong term).
    #[test]
    fn winograd_is_the_correlation(s in shapes(), seed in any::<u64>()) {
        let x = values::<f64>(input_len(s), seed);
        let w = values::<f64>(s.no * s.ci * 9, seed ^ 1);
        let g = values::<f64>(s.no * 2 * s.lp, seed ^ 2);
        let (y, _, gw) = winograd(s, &x, &w, &g);
        let (want_y, want_gw) = direct(s, &x, &w, &g);
        for (k, (a, b)) in y.iter().zip(&want_y).enumerate() {
            prop_assert!((a - b).abs() <= 1e-12, "output {}: {} against {}", k, a, b);
        }
        let scale = 2.0 * s.lp as f64;
        for (k, (a, b)) in gw.iter().zip(&want_gw).enumerate() {
            prop_assert!((a - b).abs() <= 1e-12 * scale, "weight {}: {} against {}", k, a, b);
        }
    }

    /// In `f32`, every kernel path of this CPU gives the same bits: the explicit vectors of the
    /// AVX paths (AVX-512 with two rows to a register in the weight gradient) against the
    /// portable code.
    #[test]
    fn every_path_gives_the_same_bits(s in shapes(), seed in any::<u64>()) {
        let x = values::<f32>(input_len(s), seed);
        let w = values::<f32>(s.no * s.ci * 9, seed ^ 1);
        let g = values::<f32>(s.no * 2 * s.lp, seed ^ 2);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let runs = crate::engine::on_every_path(|| {
            let (y, t, gw) = winograd(s, &x, &w, &g);
            (bits(&y), bits(&t), bits(&gw))
        });
        let (_, (y0, t0, gw0)) = &runs[0];
        for (path, (y, t, gw)) in &runs[1..] {
            prop_assert_eq!(t, t0, "transform on {}", path);
            prop_assert_eq!(y, y0, "forward on {}", path);
            prop_assert_eq!(gw, gw0, "weight gradient on {}", path);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The compact forward ([`transform_rows`], then [`correlate_rows`]) gives every kept output
    /// the wide forward's bits (all of each row's pairs, then the crop), on every path, with
    /// the input ending at the image (its last rows transformed without vectors that would read
    /// past it); and the packed pairs are [`transform`]'s of each row.
    #[test]
    fn the_compact_forward_is_the_wide_one_cropped(
        ci in 1usize..5,
        no in 1usize..12,
        pr in 4usize..16,
        oh in 2usize..10,
        seed in any::<u64>(),
    ) {
        let (w, h, ow) = (2 * pr + 2, oh + 2, 2 * pr);
        let lp = (oh * w / 2).div_ceil(PAIRS) * PAIRS;
        let s = Shape { ci, no, wp: w, xs: h * w, lp };
        let x = values::<f32>(input_len(s), seed);
        let wt = values::<f32>(no * ci * 9, seed ^ 1);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let runs = crate::engine::on_every_path(|| {
            let (wide, _, _) = winograd(s, &x, &wt, &vec![0.0; no * 2 * lp]);
            let crop = |o: usize, r: usize, c: usize| wide[o * 2 * lp + r * w + c];
            let want: Vec<f32> = (0..no * oh * ow).map(|k| crop(k / (oh * ow), k / ow % oh, k % ow)).collect();
            let mut t = vec![f32::NAN; 4 * ci * h * pr];
            transform_rows(&x[..ci * h * w], w, ci * h, pr, &mut t);
            let mut row = vec![0.0; 4 * pr];
            for r in 0..ci * h {
                transform(&x[r * w..], pr, &mut row);
                assert_eq!(bits(&row), bits(&t[4 * r * pr..][..4 * pr]), "row {r}");
            }
            let mut out = vec![f32::NAN; no * oh * ow];
            correlate_rows(&t, (ci, h, pr), &weights(&wt, no * ci), no, &mut out);
            (bits(&want), bits(&out))
        });
        for (path, (want, out)) in &runs {
            prop_assert_eq!(out, want, "on {}", path);
        }
    }
    /// Rows of fewer pairs than a vector holds are transformed too.
    #[test]
    fn short_rows_are_transformed(pr in 1usize..5, rows in 1usize..6, seed in any::<u64>()) {
        let w = 2 * pr + 2;
        let x = values::<f32>(rows * w, seed);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (path, (t, want)) in crate::engine::on_every_path(|| {
            let mut t = vec![f32::NAN; 4 * rows * pr];
            transform_rows(&x, w, rows, pr, &mut t);
            let mut want = vec![0.0; 4 * rows * pr];
            for r in 0..rows {
                transform(&x[r * w..], pr, &mut want[4 * r * pr..]);
            }
            (bits(&t), bits(&want))
        }) {
            prop_assert_eq!(t, want, "on {}", path);
        }
    }
}
