//! The probe's kernels, checks and timing. A plane is `[channel][row][column]` of `__m512`, one
//! image to a lane; a group is 16 images.
// The tile transforms write a transposed array: each loop index picks a row and a column.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::time::Instant;

type V = __m512;

/// `G` of F(4, 3), the weights' transform (in `f64`: the weights are transformed once a step).
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Groups of 16 images a timed round: 128 images, a training batch.
const GROUPS: usize = 8;

/// Checks and times every case, then prints the table.
pub fn run() -> Result<(), String> {
    println!(
        "AVX-512, one thread, {} images a round, median of 5 rounds",
        GROUPS * 16
    );
    println!(
        "µs per image: in all, then the inputs' transform, the products, and the outputs' (or"
    );
    println!("the output gradient's) transform; the check's error relative to the largest value");
    println!(
        "{:<44} {:>6} {:>6} {:>6} {:>6} {:>8}",
        "case", "all", "in", "prod", "out", "error"
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cases: [(&str, Case); 6] = [
        (
            "conv2 forward (10 → 10, 26² → 24²)",
            forward_case::<10, 10, 6>,
        ),
        (
            "conv2 input gradient (10 → 10, 28² → 26²)",
            forward_case::<10, 10, 7>,
        ),
        (
            "conv2 weight gradient (10 × 10 × 9, 24²)",
            weight_case::<10, 10, 6, 2>,
        ),
        (
            "conv3 forward (10 → 15, 24² → 22²)",
            forward_case::<10, 15, 6>,
        ),
        (
            "conv3 input gradient (15 → 10, 26² → 24²)",
            forward_case::<15, 10, 6>,
        ),
        (
            "conv3 weight gradient (15 × 10 × 9, 22²)",
            weight_case::<10, 15, 6, 3>,
        ),
    ];
    for (name, case) in cases {
        let (us, [a, b, c], err) = case(&mut rng)?;
        println!("{name:<44} {us:>6.2} {a:>6.2} {b:>6.2} {c:>6.2} {err:>8.1e}");
    }
    Ok(())
}

/// A case: (µs per image, its three parts, relative error of the check).
type Case = fn(&mut Rng) -> Result<(f64, [f64; 3], f64), String>;

/// Time spent in each of three parts of a kernel, lap by lap.
struct Laps {
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
    fn lap(&mut self, k: usize) {
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
fn forward_case<const CI: usize, const CO: usize, const NT: usize>(
    rng: &mut Rng,
) -> Result<(f64, [f64; 3], f64), String> {
    let (hp, op) = (4 * NT + 2, 4 * NT);
    let w: Vec<f32> = (0..CO * CI * 9).map(|_| 0.3 * rng.next()).collect();
    let u = weights(&w, CI, CO);
    let xs: Vec<Planes> = (0..GROUPS)
        .map(|_| Planes::random(CI * hp * hp, rng))
        .collect();
    let mut ys = vec![Planes::zeros(CO * op * op); GROUPS];
    let (mut v, mut m) = (Planes::zeros(36 * NT * CI).v, Planes::zeros(36 * NT * CO).v);
    let mut laps = Laps::new();
    // SAFETY (both calls): `run`'s caller checked that the CPU has AVX-512 F.
    unsafe { forward::<CI, CO, NT>(&xs[0].v, &u, &mut ys[0].v, (&mut v, &mut m), &mut laps) };
    let err = check_forward(&xs[0], &w, &ys[0], [CI, CO, hp, op]);
    laps = Laps::new();
    let us = time(|| {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            unsafe { forward::<CI, CO, NT>(&x.v, &u, &mut y.v, (&mut v, &mut m), &mut laps) };
        }
    });
    within(err).map(|e| (us, laps.split(us), e))
}

/// The weight gradient of `CO` × `CI` kernels over `NT` × `NT` tiles (`OB` outputs a block).
fn weight_case<const CI: usize, const CO: usize, const NT: usize, const OB: usize>(
    rng: &mut Rng,
) -> Result<(f64, [f64; 3], f64), String> {
    let (hp, op) = (4 * NT + 2, 4 * NT);
    let xs: Vec<Planes> = (0..GROUPS)
        .map(|_| Planes::random(CI * hp * hp, rng))
        .collect();
    let gs: Vec<Planes> = (0..GROUPS)
        .map(|_| Planes::random(CO * op * op, rng))
        .collect();
    let mut du = Planes::zeros(36 * CI * CO).v;
    let (mut v, mut g) = (Planes::zeros(36 * NT * CI).v, Planes::zeros(36 * NT * CO).v);
    let mut laps = Laps::new();
    let bufs = (&mut v[..], &mut g[..]);
    // SAFETY (both calls): `run`'s caller checked that the CPU has AVX-512 F.
    unsafe { weight_grad::<CI, CO, NT, OB>(&xs[0].v, &gs[0].v, &mut du, bufs, &mut laps) };
    let err = check_weight_grad(&xs[0], &gs[0], &du, [CI, CO, hp, op]);
    laps = Laps::new();
    let us = time(|| {
        for (x, dy) in xs.iter().zip(&gs) {
            let bufs = (&mut v[..], &mut g[..]);
            unsafe { weight_grad::<CI, CO, NT, OB>(&x.v, &dy.v, &mut du, bufs, &mut laps) };
        }
    });
    within(err).map(|e| (us, laps.split(us), e))
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
            t.elapsed().as_secs_f64() * 1e6 / (20 * GROUPS * 16) as f64
        })
        .collect();
    each.sort_by(f64::total_cmp);
    each[2]
}

/// `N` vectors `stride` apart from `v[at]`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn gather<const N: usize>(v: &[V], at: usize, stride: usize) -> [V; N] {
    let mut out = [_mm512_setzero_ps(); N];
    for (k, o) in out.iter_mut().enumerate() {
        *o = v[at + k * stride];
    }
    out
}

/// `Bᵀ d` of 6 inputs (a column of a tile, then a row).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn bt(d: [V; 6]) -> [V; 6] {
    let (m4, m5, two, four) = (
        _mm512_set1_ps(-4.0),
        _mm512_set1_ps(-5.0),
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
    );
    let a = _mm512_fmadd_ps(m4, d[2], d[4]);
    let b = _mm512_fmadd_ps(m4, d[1], d[3]);
    let c = _mm512_sub_ps(d[4], d[2]);
    let e = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fmadd_ps(m5, d[2], d[4])),
        _mm512_add_ps(b, a),
        _mm512_sub_ps(a, b),
        _mm512_add_ps(c, e),
        _mm512_sub_ps(c, e),
        _mm512_fmadd_ps(four, d[1], _mm512_fmadd_ps(m5, d[3], d[5])),
    ]
}

/// `Aᵀ m`: 4 outputs of 6 products.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn at(m: [V; 6]) -> [V; 4] {
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), d34, d12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d34, d12), m[5]),
    ]
}

/// `A y`: 6 values of 4 output gradients (the transpose of [`at`]).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn a6(y: [V; 4]) -> [V; 6] {
    let (s02, s13) = (_mm512_add_ps(y[0], y[2]), _mm512_add_ps(y[1], y[3]));
    let f02 = _mm512_fmadd_ps(_mm512_set1_ps(4.0), y[2], y[0]);
    let f13 = _mm512_mul_ps(
        _mm512_set1_ps(2.0),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), y[3], y[1]),
    );
    [
        y[0],
        _mm512_add_ps(s02, s13),
        _mm512_sub_ps(s02, s13),
        _mm512_add_ps(f02, f13),
        _mm512_sub_ps(f02, f13),
        y[3],
    ]
}

/// `Bᵀ d B` of the 6 × 6 inputs from `x[at]` (rows `side` apart) into `v[ij·stride + off]`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn input_tile(x: &[V], side: usize, at: usize, v: &mut [V], (off, stride): (usize, usize)) {
    let mut cols = [[_mm512_setzero_ps(); 6]; 6];
    for s in 0..6 {
        let t = bt(gather(x, at + s, side));
        for i in 0..6 {
            cols[i][s] = t[i];
        }
    }
    for (i, col) in cols.into_iter().enumerate() {
        for (j, t) in bt(col).into_iter().enumerate() {
            v[(i * 6 + j) * stride + off] = t;
        }
    }
}

/// `A dy Aᵀ` of the 4 × 4 output gradients from `dy[at]` into `g[ij·stride + off]`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn grad_tile(dy: &[V], side: usize, at: usize, g: &mut [V], (off, stride): (usize, usize)) {
    let mut cols = [[_mm512_setzero_ps(); 4]; 6];
    for b in 0..4 {
        let t = a6(gather(dy, at + b, side));
        for i in 0..6 {
            cols[i][b] = t[i];
        }
    }
    for (i, col) in cols.into_iter().enumerate() {
        for (j, t) in a6(col).into_iter().enumerate() {
            g[(i * 6 + j) * stride + off] = t;
        }
    }
}

/// The outputs `Aᵀ m A` of a tile's products `m[ij·stride + off]` into `y[at]` (rows `side`
/// apart).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn output_tile(m: &[V], (off, stride): (usize, usize), y: &mut [V], side: usize, at: usize) {
    let mut rows = [[_mm512_setzero_ps(); 6]; 4];
    for j in 0..6 {
        let t = self::at(gather(m, j * stride + off, 6 * stride));
        for a in 0..4 {
            rows[a][j] = t[a];
        }
    }
    for (a, row) in rows.into_iter().enumerate() {
        y[at + a * side..][..4].copy_from_slice(&self::at(row));
    }
}

/// The forward of one group: `x` `[CI][4·NT + 2]²`, transformed weights `u` `[36][CI][CO]`,
/// `y` `[CO][4·NT]²`; `v` and `m` a row of tiles' transformed inputs and products. Blocks of 5
/// outputs × 3 tiles stay in registers over the input channels.
///
/// # Safety
/// The CPU has AVX-512 F.
#[target_feature(enable = "avx512f,fma")]
unsafe fn forward<const CI: usize, const CO: usize, const NT: usize>(
    x: &[V],
    u: &[f32],
    y: &mut [V],
    (v, m): (&mut [V], &mut [V]),
    laps: &mut Laps,
) {
    assert!(CO.is_multiple_of(5), "whole blocks");
    let (hp, op) = (4 * NT + 2, 4 * NT);
    for ty in 0..NT {
        laps.lap(2);
        for tx in 0..NT {
            for c in 0..CI {
                let at = c * hp * hp + 4 * (ty * hp + tx);
                input_tile(x, hp, at, v, (tx * CI + c, NT * CI));
            }
        }
        laps.lap(0);
        for ij in 0..36 {
            let (v, u) = (&v[ij * NT * CI..][..NT * CI], &u[ij * CI * CO..][..CI * CO]);
            for o0 in (0..CO).step_by(5) {
                let mut t0 = 0;
                while t0 + 3 <= NT {
                    products::<CI, CO, NT, 3>(v, u, m, (ij, t0, o0));
                    t0 += 3;
                }
                for t0 in t0..NT {
                    products::<CI, CO, NT, 1>(v, u, m, (ij, t0, o0));
                }
            }
        }
        laps.lap(1);
        for tx in 0..NT {
            for o in 0..CO {
                let at = o * op * op + 4 * (ty * op + tx);
                output_tile(m, (tx * CO + o, NT * CO), y, op, at);
            }
        }
    }
}

/// One block of [`forward`]: the products `m[ij][t][o]` of outputs `o0..o0 + 5` and tiles
/// `t0..t0 + TB` (`v` `[tile][CI]`, `u` `[CI][CO]`, both of `ij`).
// Not inlined: inlined, the compiler hoists the block's 50 weight broadcasts out of the
// loop over tiles and spills them.
#[inline(never)]
#[target_feature(enable = "avx512f,fma")]
fn products<const CI: usize, const CO: usize, const NT: usize, const TB: usize>(
    v: &[V],
    u: &[f32],
    m: &mut [V],
    (ij, t0, o0): (usize, usize, usize),
) {
    let mut acc = [[_mm512_setzero_ps(); TB]; 5];
    for c in 0..CI {
        let vs: [V; TB] = gather(v, t0 * CI + c, CI);
        let w = &u[c * CO + o0..][..5];
        for o in 0..5 {
            let wo = _mm512_set1_ps(w[o]);
            for t in 0..TB {
                acc[o][t] = _mm512_fmadd_ps(wo, vs[t], acc[o][t]);
            }
        }
    }
    for (o, a) in acc.iter().enumerate() {
        for (t, &a) in a.iter().enumerate() {
            m[(ij * NT + t0 + t) * CO + o0 + o] = a;
        }
    }
}

/// Adds one group's weight gradient, per lane, to `du` `[36][CI][CO]`: `x` `[CI][4·NT + 2]²`,
/// `dy` `[CO][4·NT]²`; `v` and `g` a row of tiles' transforms. Blocks of 5 inputs × `OB`
/// outputs stay in registers over the row.
///
/// # Safety
/// The CPU has AVX-512 F.
#[target_feature(enable = "avx512f,fma")]
unsafe fn weight_grad<const CI: usize, const CO: usize, const NT: usize, const OB: usize>(
    x: &[V],
    dy: &[V],
    du: &mut [V],
    (v, g): (&mut [V], &mut [V]),
    laps: &mut Laps,
) {
    assert!(
        CI.is_multiple_of(5) && CO.is_multiple_of(OB),
        "whole blocks"
    );
    let (hp, op) = (4 * NT + 2, 4 * NT);
    for ty in 0..NT {
        laps.lap(1);
        for tx in 0..NT {
            for c in 0..CI {
                let at = c * hp * hp + 4 * (ty * hp + tx);
                input_tile(x, hp, at, v, (tx * CI + c, NT * CI));
            }
        }
        laps.lap(0);
        for tx in 0..NT {
            for o in 0..CO {
                let at = o * op * op + 4 * (ty * op + tx);
                grad_tile(dy, op, at, g, (tx * CO + o, NT * CO));
            }
        }
        laps.lap(2);
        for ij in 0..36 {
            let (v, g) = (&v[ij * NT * CI..][..NT * CI], &g[ij * NT * CO..][..NT * CO]);
            let du = &mut du[ij * CI * CO..][..CI * CO];
            for c0 in (0..CI).step_by(5) {
                for o0 in (0..CO).step_by(OB) {
                    block::<CI, CO, OB>(v, g, du, c0, o0);
                }
            }
        }
    }
}

/// One block of [`weight_grad`]: inputs `c0..c0 + 5` × outputs `o0..o0 + OB`, over a row of
/// tiles (`v` `[tile][CI]`, `g` `[tile][CO]`), added to `du` `[CI][CO]`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn block<const CI: usize, const CO: usize, const OB: usize>(
    v: &[V],
    g: &[V],
    du: &mut [V],
    c0: usize,
    o0: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); OB]; 5];
    for c in 0..5 {
        acc[c].copy_from_slice(&du[(c0 + c) * CO + o0..][..OB]);
    }
    for (vt, gt) in v.chunks_exact(CI).zip(g.chunks_exact(CO)) {
        let (vs, gs) = (&vt[c0..c0 + 5], &gt[o0..o0 + OB]);
        for o in 0..OB {
            for c in 0..5 {
                acc[c][o] = _mm512_fmadd_ps(vs[c], gs[o], acc[c][o]);
            }
        }
    }
    for c in 0..5 {
        du[(c0 + c) * CO + o0..][..OB].copy_from_slice(&acc[c]);
    }
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

/// The forward's largest error against a direct correlation in `f64`, over its largest value.
fn check_forward(x: &Planes, w: &[f32], y: &Planes, [ci, co, hp, op]: [usize; 4]) -> f64 {
    let (x, y) = (x.values(), y.values());
    let (mut worst, mut scale) = (0f64, 0f64);
    for (o, r, s, l) in positions(co, op) {
        let want: f64 = (0..ci * 9)
            .map(|k| {
                let (c, a, b) = (k / 9, k % 9 / 3, k % 3);
                f64::from(w[o * ci * 9 + k])
                    * f64::from(x[((c * hp + r + a) * hp + s + b) * 16 + l])
            })
            .sum();
        worst = worst.max((f64::from(y[((o * op + r) * op + s) * 16 + l]) - want).abs());
        scale = scale.max(want.abs());
    }
    worst / scale
}

/// The weight gradient's largest error (`Gᵀ (Σ lanes du) G` against a direct sum in `f64`).
fn check_weight_grad(x: &Planes, dy: &Planes, du: &[V], [ci, co, hp, op]: [usize; 4]) -> f64 {
    let (x, dy, du) = (x.values(), dy.values(), Planes { v: du.to_vec() }.values());
    let (mut worst, mut scale) = (0f64, 0f64);
    for k in 0..co * ci * 9 {
        let (o, c, a, b) = (k / (ci * 9), k / 9 % ci, k % 9 / 3, k % 3);
        let got: f64 = (0..36 * 16)
            .map(|n| {
                let (i, j, l) = (n / 96, n / 16 % 6, n % 16);
                G[i][a] * G[j][b] * f64::from(du[(((i * 6 + j) * ci + c) * co + o) * 16 + l])
            })
            .sum();
        let want: f64 = positions(1, op)
            .map(|(_, r, s, l)| {
                f64::from(dy[((o * op + r) * op + s) * 16 + l])
                    * f64::from(x[((c * hp + r + a) * hp + s + b) * 16 + l])
            })
            .sum();
        worst = worst.max((got - want).abs());
        scale = scale.max(want.abs());
    }
    worst / scale
}

/// Every `(plane, row, column, lane)` of `planes` planes `side` × `side`.
fn positions(planes: usize, side: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..planes * side * side * 16).map(move |n| {
        let (p, r, s) = (
            n / (side * side * 16),
            n / (side * 16) % side,
            n / 16 % side,
        );
        (p, r, s, n % 16)
    })
}

/// Planes of vectors, one image to a lane.
#[derive(Clone)]
struct Planes {
    v: Vec<V>,
}

impl Planes {
    fn zeros(n: usize) -> Self {
        Self::of(&vec![0.0; n * 16])
    }

    /// `n` vectors of values uniform in [−0.5, 0.5).
    fn random(n: usize, rng: &mut Rng) -> Self {
        Self::of(&(0..n * 16).map(|_| rng.next()).collect::<Vec<_>>())
    }

    fn of(values: &[f32]) -> Self {
        let v = values
            .chunks_exact(16)
            // SAFETY: a chunk holds the 16 values the (unaligned) load reads.
            .map(|c| unsafe { _mm512_loadu_ps(c.as_ptr()) })
            .collect();
        Self { v }
    }

    fn values(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.v.len() * 16];
        for (o, v) in out.chunks_exact_mut(16).zip(&self.v) {
            // SAFETY: a chunk has room for the 16 values the store writes.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *v) };
        }
        out
    }
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
}
