//! Convolution kernels on "wide" planes.
//!
//! A stride-1 convolution of a `Hp×Wp` (already padded) plane with a `K×K` kernel is computed
//! for every flat position `p = oh·Wp + ow` of the input's width, not only `ow < OW`: then tap
//! `(kh, kw)` reads the input at `p + kh·Wp + kw`, one contiguous run per tap, and the inner
//! loop is a plain multiply-add over a chunk of outputs that the compiler vectorises. The
//! columns `ow ≥ OW` are garbage and are cropped. The input gradient is the same correlation
//! of the (zero-padded, wide) output gradient with the flipped, transposed kernel, and the
//! weight gradient a dot product per tap over the same runs.
//!
//! Every sum runs in a fixed order (inputs, then taps, in index order; lanes folded left to
//! right), so results do not depend on the instruction set or on the thread count.

use super::act;
use super::places::{Epilogue, Listed, Places, Run};
use super::real::Real;

/// Outputs per accumulator chunk.
pub const CHUNK: usize = 16;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(super::simd::CHUNK == CHUNK);
/// Lanes of the weight-gradient dot products.
pub const LANES: usize = 8;

fma_dispatch! {
/// `out[o·os + p] = bias[o] + Σ_i Σ_t w[(o·ni + i)·nt + t] · x[i·xs + p + off[t]]` for
/// `p < lw` (`lw` a multiple of [`CHUNK`]); `x` must hold `(ni−1)·xs + lw + max(off)` values.
#[allow(clippy::too_many_arguments)]
pub fn correlate<T: Real>(
    x: &[T],
    xs: usize,
    ni: usize,
    w: &[T],
    bias: Option<&[T]>,
    no: usize,
    off: &[usize],
    out: &mut [T],
    os: usize,
    lw: usize,
) {
    assert_eq!(lw % CHUNK, 0);
    let rows = runs(xs, ni, off);
    let top = rows.iter().max().copied().unwrap_or(0);
    assert!(top + lw <= x.len(), "correlate: input too short");
    assert!(w.len() >= no * ni * off.len() && (no == 0 || (no - 1) * os + lw <= out.len()));
    if let Some(b) = bias {
        assert!(b.len() >= no);
    }
    let (obs, nvs) = blocking(rows.len(), no);
    // Positions outside, outputs inside: one stretch of positions (its runs, a few KB) stays in
    // the L1 cache while every output block reads it.
    let mut p0 = 0;
    for &nv in nvs {
        while p0 + nv * CHUNK <= lw {
            let at = Run { p0, chunk: CHUNK };
            let args = Args { x, rows: &rows, top, w, bias, o: 0, out: &mut *out, os, at, act: None };
            every_output(args, no, nv, obs);
            p0 += nv * CHUNK;
        }
    }
}
}

fma_dispatch! {
/// [`correlate`] at listed places, with an act step applied before each store: for each
/// `(i, q)` of `places` and `j <` [`CHUNK`], `out[o·os + q + j] = act(bias[o] + Σ_i Σ_t
/// w[(o·ni + i)·nt + t] · x[i·xs + i + off[t] + j])`. With the images in the lanes, a place is
/// one position of [`CHUNK`] images: every lane sums the same terms in the same order as
/// [`correlate`]'s lane for that image and position, so the same bits.
#[allow(clippy::too_many_arguments)]
pub fn correlate_at<T: Real>(
    x: &[T],
    xs: usize,
    ni: usize,
    w: &[T],
    bias: Option<&[T]>,
    no: usize,
    off: &[usize],
    out: &mut [T],
    os: usize,
    places: &[(usize, usize)],
    act: Option<Epilogue<'_, T>>,
) {
    let rows = runs(xs, ni, off);
    let top = rows.iter().max().copied().unwrap_or(0);
    let (last_in, last_out) = places.iter().fold((0, 0), |(a, b), &(i, q)| (a.max(i), b.max(q)));
    assert!(places.is_empty() || top + last_in + CHUNK <= x.len(), "correlate_at: input too short");
    assert!(no == 0 || places.is_empty() || (no - 1) * os + last_out + CHUNK <= out.len());
    assert!(w.len() >= no * ni * off.len());
    assert!(bias.is_none_or(|b| b.len() >= no));
    assert!(act.is_none_or(|e| e.a.len() >= no && e.b.len() >= no));
    let (obs, nvs) = blocking(rows.len(), no);
    let mut p = 0;
    for &nv in nvs {
        while p + nv <= places.len() {
            let mut at = Listed::default();
            for (v, &(i, q)) in places[p..p + nv].iter().enumerate() {
                (at.input[v], at.output[v]) = (i, q);
            }
            let args = Args { x, rows: &rows, top, w, bias, o: 0, out: &mut *out, os, at, act };
            every_output(args, no, nv, obs);
            p += nv;
        }
    }
}
}

/// Start of each (input, tap) run, input-major: every read is `runs[k] + p`.
fn runs(xs: usize, ni: usize, off: &[usize]) -> Vec<usize> {
    (0..ni)
        .flat_map(|i| off.iter().map(move |d| i * xs + d))
        .collect()
}

/// Register blocking per path for `nk` runs into `no` outputs: `OB` outputs × `NV` chunks of
/// accumulators per block, as many as the path's registers hold (AVX-512: 5 × 4 zmm of its 32,
/// where each block has enough runs to pay for its 20 stores, else 4 × 4; AVX2: 3 × 2 chunks of
/// two ymm, 12 of its 16, where the outputs come in threes, else 5 × 1, 10 of them; portable: 4
/// × 1). AVX2's 3 × 2 loads 7 vectors per 12 multiply-adds against 5 × 1's 7 per 10: in a
/// timing loop over conv2's input in the lanes (10 channels of 26×26, 3×3, one core) its
/// blocks ran 108–110 GFLOP/s against 102–105, and 2 × 2 blocks 93–95, so 10 outputs stay 5 +
/// 5 (docs/PERFORMANCE.md, nineteenth pass). Every output lane sums the same terms in the
/// same order whatever the blocking, so the paths give the same bits.
fn blocking(nk: usize, no: usize) -> (&'static [usize], &'static [usize]) {
    match super::KernelPath::active() {
        super::KernelPath::Avx512 if nk >= 16 => (&[5, 4, 2, 1], &[4, 2, 1]),
        super::KernelPath::Avx512 => (&[4, 2, 1], &[4, 2, 1]),
        super::KernelPath::Avx2 if no.is_multiple_of(3) => (&[3, 2, 1], &[2, 1]),
        super::KernelPath::Avx2 => (&[5, 4, 2, 1], &[1]),
        super::KernelPath::Portable => (&[4, 2, 1], &[1]),
    }
}

/// Outputs in the next block: the largest of `obs` that fits, except that 6 and 8 left go as
/// 4 + 2 and 4 + 4 rather than with a block of 1 or 3 at the end.
#[inline(always)]
fn out_block(obs: &[usize], left: usize) -> usize {
    match left {
        6 | 8 if obs[0] == 5 => 4,
        _ => *obs.iter().find(|&&b| b <= left).expect("1 always fits"),
    }
}

/// The blocks of `nv` vectors at `args.at` for every output from `args.o` to `no`, `obs` at a
/// time ([`out_block`]).
#[inline(always)]
fn every_output<T: Real, P: Places>(mut args: Args<'_, T, P>, no: usize, nv: usize, obs: &[usize]) {
    let mut o = args.o;
    while o < no {
        let ob = out_block(obs, no - o);
        run_block(ob, nv, args.at_output(o));
        o += ob;
    }
}

/// One `ob × nv` block.
#[inline(always)]
fn run_block<T: Real, P: Places>(ob: usize, nv: usize, args: Args<'_, T, P>) {
    match (ob, nv) {
        (5, 1) => block::<T, 5, 1, P>(args),
        (5, 4) => block::<T, 5, 4, P>(args),
        (5, 2) => block::<T, 5, 2, P>(args),
        (4, 4) => block::<T, 4, 4, P>(args),
        (2, 4) => block::<T, 2, 4, P>(args),
        (1, 4) => block::<T, 1, 4, P>(args),
        (4, 2) => block::<T, 4, 2, P>(args),
        (3, 2) => block::<T, 3, 2, P>(args),
        (3, 1) => block::<T, 3, 1, P>(args),
        (2, 2) => block::<T, 2, 2, P>(args),
        (1, 2) => block::<T, 1, 2, P>(args),
        (4, 1) => block::<T, 4, 1, P>(args),
        (2, 1) => block::<T, 2, 1, P>(args),
        (1, 1) => block::<T, 1, 1, P>(args),
        _ => unreachable!("no {ob}×{nv} block on any path"),
    }
}

/// A block's inputs: the input, its runs' starts and the largest of them, the weights, the bias,
/// the first output, the output and its stride, where its vectors lie, and the act step before
/// the stores.
struct Args<'a, T, P> {
    x: &'a [T],
    rows: &'a [usize],
    top: usize,
    w: &'a [T],
    bias: Option<&'a [T]>,
    o: usize,
    out: &'a mut [T],
    os: usize,
    at: P,
    act: Option<Epilogue<'a, T>>,
}

impl<T: Copy, P: Copy> Args<'_, T, P> {
    /// The same block arguments from output `o` on, the output reborrowed.
    fn at_output(&mut self, o: usize) -> Args<'_, T, P> {
        Args {
            o,
            out: &mut *self.out,
            act: self.act,
            ..*self
        }
    }
}

/// [`block`] for `f32` on the AVX2 and AVX-512 paths, with explicit vectors ([`super::simd`]);
/// the arguments back when it does not apply.
#[allow(unsafe_code)]
#[inline(always)]
fn simd_block<'a, T: Real, const OB: usize, const NV: usize, P: Places>(
    args: Args<'a, T, P>,
) -> Option<Args<'a, T, P>> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::real::{as_f32, as_f32_mut};
        let path = super::KernelPath::active();
        if path == super::KernelPath::Portable || as_f32(args.x).is_none() {
            return Some(args);
        }
        let f32s = |v: &'a [T]| as_f32(v).expect("f32, as the input");
        let b = super::simd::Block {
            x: f32s(args.x),
            rows: args.rows,
            top: args.top,
            w: f32s(args.w),
            bias: args.bias.map(f32s),
            o: args.o,
            out: as_f32_mut(args.out).expect("f32, as the input"),
            os: args.os,
            at: args.at,
            act: args.act.map(|e| Epilogue {
                a: f32s(e.a),
                b: f32s(e.b),
                relu: e.relu,
            }),
        };
        // SAFETY: each path runs only on a CPU with its features (`KernelPath::active`).
        match path {
            super::KernelPath::Avx512 => unsafe { super::simd::block512::<OB, NV, P>(b) },
            _ => unsafe { super::simd::block256::<OB, NV, P>(b) },
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Some(args)
    }
}

/// `OB` outputs × `NV` vectors at `args.at`, over all runs. The caller ([`correlate`],
/// [`correlate_at`]) has checked every index.
#[allow(unsafe_code)]
#[inline(always)]
fn block<T: Real, const OB: usize, const NV: usize, P: Places>(args: Args<'_, T, P>) {
    let Some(Args {
        x,
        rows,
        w,
        bias,
        o,
        out,
        os,
        at,
        act,
        ..
    }) = simd_block::<T, OB, NV, P>(args)
    else {
        return;
    };
    let wk = rows.len();
    let mut acc = [[[T::ZERO; CHUNK]; NV]; OB];
    if let Some(b) = bias {
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [[b[o + r]; CHUNK]; NV];
        }
    }
    for (k, &row) in rows.iter().enumerate() {
        // SAFETY: row + at.input(v) + CHUNK ≤ max(rows) + last input offset + CHUNK ≤ x.len()
        // and (o+r)·wk + k < no·ni·nt ≤ w.len(), both asserted by the caller.
        let xv: [&[T; CHUNK]; NV] = std::array::from_fn(|v| unsafe {
            &*(x.as_ptr().add(row + at.input(v)) as *const [T; CHUNK])
        });
        for (r, a) in acc.iter_mut().enumerate() {
            let c = unsafe { *w.get_unchecked((o + r) * wk + k) };
            for v in 0..NV {
                for j in 0..CHUNK {
                    a[v][j] = xv[v][j].mul_add(c, a[v][j]);
                }
            }
        }
    }
    for (r, a) in acc.iter_mut().enumerate() {
        if let Some(e) = act {
            let (ea, eb) = (e.a[o + r], e.b[o + r]);
            for y in a.as_flattened_mut() {
                *y = act::affine(*y, ea, eb, e.relu);
            }
        }
        for (v, av) in a.iter().enumerate() {
            let at = (o + r) * os + at.output(v);
            out[at..at + CHUNK].copy_from_slice(av);
        }
    }
}

fma_dispatch! {
/// `gw[(o·ni + i)·nt + t] += Σ_{p<lw} g[o·gs + p] · x[i·xs + p + off[t]]` (`lw` a multiple of
/// [`LANES`]).
#[allow(clippy::too_many_arguments)]
pub fn weight_grad<T: Real>(
    g: &[T],
    gs: usize,
    no: usize,
    x: &[T],
    xs: usize,
    ni: usize,
    off: &[usize],
    lw: usize,
    gw: &mut [T],
) {
    assert_eq!(lw % LANES, 0);
    let runs: Vec<&[[T; LANES]]> = (0..ni)
        .flat_map(|i| off.iter().map(move |d| i * xs + d))
        .map(|s| x[s..s + lw].as_chunks::<LANES>().0)
        .collect();
    let nk = runs.len();
    // Eight input runs per block on the AVX-512 path (two gradient rows share a zmm, so its
    // 32 registers hold 6 rows × 8 runs of accumulators, with the 3 row pairs and a run), three
    // elsewhere; each dot product's lanes and their fold are the same either way. An odd last
    // row is paired there with a copy of itself, whose dot products go to a spare row of
    // accumulators: one row alone would fill half of each register.
    let wide = super::KernelPath::active() == super::KernelPath::Avx512;
    let most = if wide { MAXK } else { AVX2_K };
    let obs: &[usize] = if wide { &[MAXO, 4, 2, 1] } else { &[4, 2, 1] };
    let no_padded = if wide { no.next_multiple_of(2) } else { no };
    let grads: Vec<&[[T; LANES]]> = (0..no_padded)
        .map(|o| o.min(no - 1))
        .map(|o| g[o * gs..o * gs + lw].as_chunks::<LANES>().0)
        .collect();
    let (real, no) = (no * nk, no_padded);
    // The positions in tiles of TILE chunks, every block over one tile before the next: a
    // tile's gradient rows and input runs stay in the core's caches. Each dot product's lane
    // accumulators are kept between tiles, so every lane sums the same terms in the same order
    // as in one sweep, and the lanes are folded once at the end.
    let chunks = lw / LANES;
    let mut acc = vec![[T::ZERO; LANES]; no * nk];
    for c0 in (0..chunks).step_by(TILE) {
        let span = c0..(c0 + TILE).min(chunks);
        let mut o = 0;
        while o < no {
            let ob = *obs.iter().find(|&&b| b <= no - o).expect("1 fits");
            let mut k = 0;
            while k < nk {
                let kb = [most, 4, 2, 1].into_iter().find(|&b| b <= nk - k).expect("1 fits");
                let g: [&[[T; LANES]]; MAXO] =
                    std::array::from_fn(|r| &grads[o + r.min(ob - 1)][span.clone()]);
                let x: [&[[T; LANES]]; MAXK] =
                    std::array::from_fn(|q| &runs[k + q.min(kb - 1)][span.clone()]);
                let a = Acc { acc: &mut acc, o, k, nk };
                match (ob, kb) {
                    (6, 8) => dots::<T, 6, 8>(&g, &x, a),
                    (6, 4) => dots::<T, 6, 4>(&g, &x, a),
                    (6, 2) => dots::<T, 6, 2>(&g, &x, a),
                    (6, 1) => dots::<T, 6, 1>(&g, &x, a),
                    (4, 8) => dots::<T, 4, 8>(&g, &x, a),
                    (2, 8) => dots::<T, 2, 8>(&g, &x, a),
                    (1, 8) => dots::<T, 1, 8>(&g, &x, a),
                    (4, 4) => dots::<T, 4, 4>(&g, &x, a),
                    (2, 4) => dots::<T, 2, 4>(&g, &x, a),
                    (1, 4) => dots::<T, 1, 4>(&g, &x, a),
                    (4, 3) => dots::<T, 4, 3>(&g, &x, a),
                    (2, 3) => dots::<T, 2, 3>(&g, &x, a),
                    (1, 3) => dots::<T, 1, 3>(&g, &x, a),
                    (4, 2) => dots::<T, 4, 2>(&g, &x, a),
                    (4, 1) => dots::<T, 4, 1>(&g, &x, a),
                    (2, 2) => dots::<T, 2, 2>(&g, &x, a),
                    (2, 1) => dots::<T, 2, 1>(&g, &x, a),
                    (1, 2) => dots::<T, 1, 2>(&g, &x, a),
                    _ => dots::<T, 1, 1>(&g, &x, a),
                }
                k += kb;
            }
            o += ob;
        }
    }
    // `acc[o·nk + k]` is `gw[(o·ni + i)·nt + t]` for `k = i·nt + t`; the spare row is left out.
    for (v, a) in gw.iter_mut().zip(&acc[..real]) {
        *v += a.iter().fold(T::ZERO, |s, &l| s + l);
    }
}
}

/// Input runs per weight-gradient block at most.
const MAXK: usize = 8;
/// Input runs per weight-gradient block off the AVX-512 path (4 rows × 3 runs: 12 ymm
/// accumulators, 3 runs and a row of the 16 registers).
const AVX2_K: usize = 3;
/// Gradient rows per weight-gradient block at most (AVX-512 only).
const MAXO: usize = 6;

/// Chunks of [`LANES`] per tile of the weight gradient's positions (8 KB of each row in `f32`):
/// measured on a 10→10 and a 10→15 3×3 layer (AVX-512, one thread, best of 30 alternating
/// rounds), 256 ran 10–16 % faster than 64 (fewer accumulator reloads) and as fast as no tiling.
const TILE: usize = 256;

/// Where a block of dot products keeps its lane accumulators: `acc[o·nk + k]` for gradient row
/// `o` and input run `k`.
struct Acc<'a, T> {
    acc: &'a mut [[T; LANES]],
    o: usize,
    k: usize,
    nk: usize,
}

/// `OB×KB` dot products of gradient rows with input runs over a tile (the first `OB` of `grads`
/// and `KB` of `runs`), continuing each one's lane accumulators in `a`.
#[inline(always)]
fn dots<T: Real, const OB: usize, const KB: usize>(
    grads: &[&[[T; LANES]]; MAXO],
    runs: &[&[[T; LANES]]; MAXK],
    a: Acc<'_, T>,
) {
    #[cfg(target_arch = "x86_64")]
    let a = match avx2::dots::<T, OB, KB>(grads, runs, a) {
        Ok(()) => return,
        Err(a) => a,
    };
    let n = grads[0].len();
    let g: [&[[T; LANES]]; OB] = std::array::from_fn(|r| &grads[r][..n]);
    let x: [&[[T; LANES]]; KB] = std::array::from_fn(|q| &runs[q][..n]);
    let mut acc: [[[T; LANES]; KB]; OB] =
        std::array::from_fn(|r| std::array::from_fn(|q| a.acc[(a.o + r) * a.nk + a.k + q]));
    for c in 0..n {
        for q in 0..KB {
            let xv = x[q][c];
            for r in 0..OB {
                let gv = g[r][c];
                for j in 0..LANES {
                    acc[r][q][j] = gv[j].mul_add(xv[j], acc[r][q][j]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let at = (a.o + r) * a.nk + a.k;
        a.acc[at..at + KB].copy_from_slice(row);
    }
}

/// The weight-gradient dot products for `f32` with explicit AVX2/FMA vectors (the compiler's
/// own vectorisation of [`dots`] shuffles lanes). Same operations in the same order as the
/// portable code, so the same bits.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Acc, LANES, MAXK, MAXO, Real};

    /// `Ok(())` when it ran (f32 on a CPU with AVX2 and FMA); else the accumulators back.
    #[inline(always)]
    pub fn dots<'a, T: Real, const OB: usize, const KB: usize>(
        grads: &[&[[T; LANES]]; MAXO],
        runs: &[&[[T; LANES]]; MAXK],
        a: Acc<'a, T>,
    ) -> Result<(), Acc<'a, T>> {
        if super::super::KernelPath::vectors_for::<T>().is_none() {
            return Err(a);
        }
        let n = grads[0].len();
        let g: [&[[T; LANES]]; OB] = std::array::from_fn(|r| &grads[r][..n]);
        let x: [&[[T; LANES]]; KB] = std::array::from_fn(|q| &runs[q][..n]);
        assert!((a.o + OB - 1) * a.nk + a.k + KB <= a.acc.len());
        // SAFETY: T is f32 (checked above), so these are the same memory viewed as f32; each
        // slice holds n chunks of 8, every accumulator index is checked above, and the CPU has
        // AVX2 and FMA (checked above).
        let g: [*const f32; OB] = g.map(|v| v.as_ptr() as *const f32);
        let x: [*const f32; KB] = x.map(|v| v.as_ptr() as *const f32);
        let acc: [*mut f32; OB] =
            std::array::from_fn(|r| a.acc[(a.o + r) * a.nk + a.k..].as_mut_ptr() as *mut f32);
        // SAFETY: as above; the AVX-512 variants only on that path.
        match super::super::KernelPath::active() == super::super::KernelPath::Avx512 {
            true if OB == 6 => unsafe { pairs512::<3, KB>(&g, x, n, &acc) },
            true if OB == 4 => unsafe { pairs512::<2, KB>(&g, x, n, &acc) },
            true if OB == 2 => unsafe { pairs512::<1, KB>(&g, x, n, &acc) },
            true => unsafe { kernel512::<OB, KB>(g, x, n, acc) },
            false => unsafe { kernel::<OB, KB>(g, x, n, acc) },
        }
        Ok(())
    }

    /// The AVX-512 kernel for `2·P` gradient rows: rows `2j` and `2j+1` share a
    /// zmm (low and high halves), each input run is broadcast to both halves, so one 512-bit
    /// FMA does the work of two 256-bit ones. Every lane is still `g·x + acc` rounded once, in
    /// the same order as [`body`], so the same bits.
    /// (The halves move as `f64x4` bit patterns: AVX-512 F alone, no DQ.)
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    unsafe fn pairs512<const P: usize, const KB: usize>(
        g: &[*const f32],
        x: [*const f32; KB],
        n: usize,
        acc: &[*mut f32],
    ) {
        assert!(g.len() == 2 * P && acc.len() == 2 * P);
        // SAFETY (every pointer below): the caller's slices hold `n` chunks of 8 floats per
        // row and run, and 8 accumulators per run (checked in `dots`).
        let both = |lo: *const f32, hi: *const f32, at: usize| unsafe {
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(lo.add(at))));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                lo,
                _mm256_castps_pd(_mm256_loadu_ps(hi.add(at))),
            ))
        };
        let mut a: [[__m512; KB]; P] = std::array::from_fn(|j| {
            std::array::from_fn(|q| both(acc[2 * j], acc[2 * j + 1], q * LANES))
        });
        for c in 0..n {
            let gv: [__m512; P] = std::array::from_fn(|j| both(g[2 * j], g[2 * j + 1], c * LANES));
            for q in 0..KB {
                let xv = unsafe { _mm256_castps_pd(_mm256_loadu_ps(x[q].add(c * LANES))) };
                let xv = _mm512_castpd_ps(_mm512_broadcast_f64x4(xv));
                for j in 0..P {
                    a[j][q] = _mm512_fmadd_ps(gv[j], xv, a[j][q]);
                }
            }
        }
        for (j, row) in a.iter().enumerate() {
            for (q, v) in row.iter().enumerate() {
                unsafe {
                    _mm256_storeu_ps(acc[2 * j].add(q * LANES), _mm512_castps512_ps256(*v));
                    _mm256_storeu_ps(
                        acc[2 * j + 1].add(q * LANES),
                        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*v))),
                    );
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const OB: usize, const KB: usize>(
        g: [*const f32; OB],
        x: [*const f32; KB],
        n: usize,
        acc: [*mut f32; OB],
    ) {
        unsafe { body::<OB, KB>(g, x, n, acc) }
    }

    /// [`kernel`] with AVX-512 enabled: the same 256-bit instructions, with 32 registers.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    unsafe fn kernel512<const OB: usize, const KB: usize>(
        g: [*const f32; OB],
        x: [*const f32; KB],
        n: usize,
        acc: [*mut f32; OB],
    ) {
        unsafe { body::<OB, KB>(g, x, n, acc) }
    }

    /// `acc[r]` holds row `r`'s `KB` lane accumulators, 8 floats each, one after another.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body<const OB: usize, const KB: usize>(
        g: [*const f32; OB],
        x: [*const f32; KB],
        n: usize,
        acc: [*mut f32; OB],
    ) {
        let mut a: [[__m256; KB]; OB] = std::array::from_fn(|r| {
            std::array::from_fn(|q| unsafe { _mm256_loadu_ps(acc[r].add(q * LANES)) })
        });
        for c in 0..n {
            let xv: [__m256; KB] =
                std::array::from_fn(|q| unsafe { _mm256_loadu_ps(x[q].add(c * LANES)) });
            for r in 0..OB {
                let gv = unsafe { _mm256_loadu_ps(g[r].add(c * LANES)) };
                for q in 0..KB {
                    a[r][q] = _mm256_fmadd_ps(gv, xv[q], a[r][q]);
                }
            }
        }
        for (r, row) in a.iter().enumerate() {
            for (q, v) in row.iter().enumerate() {
                unsafe { _mm256_storeu_ps(acc[r].add(q * LANES), *v) };
            }
        }
    }
}
