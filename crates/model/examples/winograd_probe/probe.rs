//! The probe's cases, checks and timing, on every vector width the CPU has ([`Kernels`]).

use std::time::Instant;

use crate::kernels::{Avx2, Avx512, Kernels};

/// `G` of F(4, 3), the weights' transform (in `f64`: the weights are transformed once a step).
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Images a timed round: a training batch.
const IMAGES: usize = 128;

/// Checks and times every case on each vector width this CPU has.
pub fn run() -> Result<(), String> {
    println!("one thread, {IMAGES} images a round, median of 5 rounds; µs per image: in all, then");
    println!("the inputs' transform, the products, and the outputs' (or the output gradient's)");
    println!("transform; the check's error relative to the largest value");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut any = false;
    if Avx512::available() {
        table::<Avx512>(&mut rng)?;
        any = true;
    }
    if Avx2::available() {
        table::<Avx2>(&mut rng)?;
        any = true;
    }
    if !any {
        println!("this CPU has neither AVX-512 nor AVX2 with FMA: nothing to measure");
    }
    Ok(())
}

/// One width's table.
fn table<K: Kernels>(rng: &mut Rng) -> Result<(), String> {
    println!("\n{} ({} images a vector)", K::NAME, K::LANES);
    println!(
        "{:<44} {:>6} {:>6} {:>6} {:>6} {:>8}",
        "case", "all", "in", "prod", "out", "error"
    );
    let cases: [(&str, Case); 6] = [
        (
            "conv2 forward (10 → 10, 26² → 24²)",
            forward_case::<K, 10, 10, 6>,
        ),
        (
            "conv2 input gradient (10 → 10, 28² → 26²)",
            forward_case::<K, 10, 10, 7>,
        ),
        (
            "conv2 weight gradient (10 × 10 × 9, 24²)",
            weight_case::<K, 10, 10, 6, 2>,
        ),
        (
            "conv3 forward (10 → 15, 24² → 22²)",
            forward_case::<K, 10, 15, 6>,
        ),
        (
            "conv3 input gradient (15 → 10, 26² → 24²)",
            forward_case::<K, 15, 10, 6>,
        ),
        (
            "conv3 weight gradient (15 × 10 × 9, 22²)",
            weight_case::<K, 10, 15, 6, 3>,
        ),
    ];
    for (name, case) in cases {
        let (us, [a, b, c], err) = case(rng)?;
        println!("{name:<44} {us:>6.2} {a:>6.2} {b:>6.2} {c:>6.2} {err:>8.1e}");
    }
    Ok(())
}

/// A case: (µs per image, its three parts, relative error of the check).
type Case = fn(&mut Rng) -> Result<(f64, [f64; 3], f64), String>;

/// Time spent in each of three parts of a kernel, lap by lap.
pub struct Laps {
    since: Instant,
    parts: [f64; 3],
}

impl Laps {
    fn new() -> Self {
        Laps {
            since: Instant::now(),
            parts: [0.0; 3],
        }
    }

    /// Adds the time since the last lap to part `k`.
    pub fn lap(&mut self, k: usize) {
        let now = Instant::now();
        self.parts[k] += (now - self.since).as_secs_f64();
        self.since = now;
    }

    /// `total` split in the proportions of the parts.
    fn split(&self, total: f64) -> [f64; 3] {
        let sum: f64 = self.parts.iter().sum();
        self.parts.map(|p| total * p / sum)
    }
}

/// A correlation of `CI` planes into `CO`, `NT` × `NT` tiles: a forward, or an input gradient
/// (the output gradient padded, the kernel flipped and transposed: the same arithmetic).
fn forward_case<K: Kernels, const CI: usize, const CO: usize, const NT: usize>(
    rng: &mut Rng,
) -> Result<(f64, [f64; 3], f64), String> {
    let (hp, op, l) = (4 * NT + 2, 4 * NT, K::LANES);
    let w: Vec<f32> = (0..CO * CI * 9).map(|_| 0.3 * rng.next()).collect();
    let u = weights(&w, CI, CO);
    let xs: Vec<Vec<f32>> = (0..IMAGES / l)
        .map(|_| rng.values(CI * hp * hp * l))
        .collect();
    let xv: Vec<Vec<K::V>> = xs.iter().map(|x| K::planes(x)).collect();
    let mut ys = vec![K::planes(&vec![0.0; CO * op * op * l]); IMAGES / l];
    let (mut v, mut m) = (zeros::<K>(36 * NT * CI), zeros::<K>(36 * NT * CO));
    let mut laps = Laps::new();
    // SAFETY (both calls): `run` checked that the CPU has the instructions.
    unsafe { K::forward::<CI, CO, NT>(&xv[0], &u, &mut ys[0], (&mut v, &mut m), &mut laps) };
    let err = check_forward(&xs[0], &w, &K::values(&ys[0]), [CI, CO, hp, op, l]);
    laps = Laps::new();
    let us = time(|| {
        for (x, y) in xv.iter().zip(ys.iter_mut()) {
            unsafe { K::forward::<CI, CO, NT>(x, &u, y, (&mut v, &mut m), &mut laps) };
        }
    });
    within(err).map(|e| (us, laps.split(us), e))
}

/// The weight gradient of `CO` × `CI` kernels over `NT` × `NT` tiles (`OB` outputs a block).
fn weight_case<K: Kernels, const CI: usize, const CO: usize, const NT: usize, const OB: usize>(
    rng: &mut Rng,
) -> Result<(f64, [f64; 3], f64), String> {
    let (hp, op, l) = (4 * NT + 2, 4 * NT, K::LANES);
    let xs: Vec<Vec<f32>> = (0..IMAGES / l)
        .map(|_| rng.values(CI * hp * hp * l))
        .collect();
    let gs: Vec<Vec<f32>> = (0..IMAGES / l)
        .map(|_| rng.values(CO * op * op * l))
        .collect();
    let (xv, gv): (Vec<_>, Vec<_>) = xs
        .iter()
        .zip(&gs)
        .map(|(x, g)| (K::planes(x), K::planes(g)))
        .unzip();
    let mut du = zeros::<K>(36 * CI * CO);
    let (mut v, mut g) = (zeros::<K>(36 * NT * CI), zeros::<K>(36 * NT * CO));
    let mut laps = Laps::new();
    let bufs = (&mut v[..], &mut g[..]);
    // SAFETY (both calls): `run` checked that the CPU has the instructions.
    unsafe { K::weight_grad::<CI, CO, NT, OB>(&xv[0], &gv[0], &mut du, bufs, &mut laps) };
    let err = check_weight_grad(&xs[0], &gs[0], &K::values(&du), [CI, CO, hp, op, l]);
    laps = Laps::new();
    let us = time(|| {
        for (x, dy) in xv.iter().zip(&gv) {
            let bufs = (&mut v[..], &mut g[..]);
            unsafe { K::weight_grad::<CI, CO, NT, OB>(x, dy, &mut du, bufs, &mut laps) };
        }
    });
    within(err).map(|e| (us, laps.split(us), e))
}

/// `n` zero vectors.
fn zeros<K: Kernels>(n: usize) -> Vec<K::V> {
    K::planes(&vec![0.0; n * K::LANES])
}

/// The error, or why it is too large for `f32` arithmetic.
fn within(err: f64) -> Result<f64, String> {
    match err < 1e-4 {
        true => Ok(err),
        false => Err(format!("the kernel is wrong: relative error {err:.1e}")),
    }
}

/// µs per image of `round` (one pass over the groups), the median of 5 rounds of 20.
fn time(mut round: impl FnMut()) -> f64 {
    let mut each: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..20 {
                round();
            }
            t.elapsed().as_secs_f64() * 1e6 / (20 * IMAGES) as f64
        })
        .collect();
    each.sort_by(f64::total_cmp);
    each[2]
}

/// `u[ij][c][o] = (G w Gᵀ)[i][j]` of `w[o][c]` (3 × 3).
fn weights(w: &[f32], ci: usize, co: usize) -> Vec<f32> {
    let mut u = vec![0f32; 36 * ci * co];
    for (oc, k) in w.chunks_exact(9).enumerate() {
        let (o, c) = (oc / ci, oc % ci);
        for (ij, slot) in (0..36).map(|ij| (ij, ((ij * ci + c) * co + o))) {
            let (i, j) = (ij / 6, ij % 6);
            let sum = (0..9).map(|ab| G[i][ab / 3] * f64::from(k[ab]) * G[j][ab % 3]);
            u[slot] = sum.sum::<f64>() as f32;
        }
    }
    u
}

/// The forward's largest error against a direct correlation in `f64`, over its largest value:
/// `x` `[ci][hp]²`, `y` `[co][op]²`, `l` images to a position.
fn check_forward(x: &[f32], w: &[f32], y: &[f32], [ci, co, hp, op, l]: [usize; 5]) -> f64 {
    let (mut worst, mut scale) = (0f64, 0f64);
    for (o, r, s, n) in positions(co, op, l) {
        let want: f64 = (0..ci * 9)
            .map(|k| {
                let (c, a, b) = (k / 9, k % 9 / 3, k % 3);
                f64::from(w[o * ci * 9 + k]) * f64::from(x[((c * hp + r + a) * hp + s + b) * l + n])
            })
            .sum();
        worst = worst.max((f64::from(y[((o * op + r) * op + s) * l + n]) - want).abs());
        scale = scale.max(want.abs());
    }
    worst / scale
}

/// The weight gradient's largest error (`Gᵀ (Σ lanes du) G` against a direct sum in `f64`).
fn check_weight_grad(x: &[f32], dy: &[f32], du: &[f32], [ci, co, hp, op, l]: [usize; 5]) -> f64 {
    let (mut worst, mut scale) = (0f64, 0f64);
    for k in 0..co * ci * 9 {
        let (o, c, a, b) = (k / (ci * 9), k / 9 % ci, k % 9 / 3, k % 3);
        let got: f64 = (0..36 * l)
            .map(|q| {
                let (i, j, n) = (q / (6 * l), q / l % 6, q % l);
                G[i][a] * G[j][b] * f64::from(du[(((i * 6 + j) * ci + c) * co + o) * l + n])
            })
            .sum();
        let want: f64 = positions(1, op, l)
            .map(|(_, r, s, n)| {
                f64::from(dy[((o * op + r) * op + s) * l + n])
                    * f64::from(x[((c * hp + r + a) * hp + s + b) * l + n])
            })
            .sum();
        worst = worst.max((got - want).abs());
        scale = scale.max(want.abs());
    }
    worst / scale
}

/// Every `(plane, row, column, lane)` of `planes` planes `side` × `side`, `l` lanes a position.
fn positions(
    planes: usize,
    side: usize,
    l: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..planes * side * side * l).map(move |n| {
        let (p, r, s) = (n / (side * side * l), n / (side * l) % side, n / l % side);
        (p, r, s, n % l)
    })
}

/// xorshift64: the probe's values (its timings do not depend on them).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// `n` values uniform in [−0.5, 0.5).
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}
