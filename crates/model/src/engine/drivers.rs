//! The convolution drivers: a layer's images in parallel, each padded into the wide-plane layout
//! the kernels in [`conv`] work on, a group of images per call; weight gradients summed per
//! group in group order.

use super::buffers::{Buf, BufferPool};
use super::lanes::{self, LANES};
use super::padded::BnRows;
use super::places::Epilogue;
use super::plan::ConvStep;
use super::real::Real;
use super::spread;
use super::winograd::PAIRS;
use super::{act, ahead, conv, mask, padded, tiles, winograd};

/// Per image, per channel: a pair of sums (BatchNorm's statistics or its gradient's).
pub(super) type ImageSums = Vec<Vec<(f64, f64)>>;

/// Scratch buffers of one worker of [`spread::each`], taken from the engine's pool and given
/// back when dropped: a step's scratch is needed again on the next batch, and fresh memory
/// would be zero-filled (and faulted in) every time.
pub(super) struct Scratch<'p, T: Real> {
    pool: &'p BufferPool<T>,
    pub(super) bufs: Vec<Buf<T>>,
}

impl<'p, T: Real> Scratch<'p, T> {
    pub(super) fn take(pool: &'p BufferPool<T>, lens: &[usize]) -> Self {
        let bufs = lens.iter().map(|&n| pool.take(n)).collect();
        Scratch { pool, bufs }
    }
}

impl<T: Real> Drop for Scratch<'_, T> {
    fn drop(&mut self) {
        self.pool.give(self.bufs.drain(..));
    }
}

/// The wide layout of `n` images side by side: each channel's row holds the images' padded
/// planes one after another, so one kernel call covers all of them. Each output of the forward
/// and of the input gradient still sums the same terms in the same order as for one image alone
/// (the positions between images only feed cropped columns and rows); the weight gradient's dot
/// products run over the whole group, one fold per group instead of per image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    n: usize,
    plane: usize,
    /// One channel's stride in the padded input: `n·plane`.
    xs: usize,
    /// Wide forward length: the last image's stride-1 rows, rounded up to a chunk.
    lw: usize,
    /// Wide input-gradient length: `n·plane` rounded up to a chunk.
    lq: usize,
    /// Weight-gradient dot length: the forward span rounded up to the dot products' lanes.
    lwg: usize,
}

impl Group {
    pub(super) fn new(cs: &ConvStep, n: usize) -> Self {
        let plane = cs.hp * cs.wp;
        let span = (n - 1) * plane + cs.rows * cs.wp;
        Group {
            n,
            plane,
            xs: n * plane,
            lw: span.div_ceil(conv::CHUNK) * conv::CHUNK,
            lq: (n * plane).div_ceil(conv::CHUNK) * conv::CHUNK,
            lwg: span.div_ceil(conv::LANES) * conv::LANES,
        }
    }
}

/// What a forward is for: training, with each image's BatchNorm statistics of the output when
/// `stats`, or evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Purpose {
    Train { stats: bool },
    Eval,
}

/// A layer's forward over the batch, [`ConvStep::group`] images per kernel call. In training,
/// with the Winograd kernels where the step says ([`ConvStep::winograd`]; evaluation computes
/// what inference does), and with `stats` also each image's per-channel `(Σy, Σy²)` of the
/// output ([`act::plane_sums`], what a BatchNorm in training mode next needs), computed while
/// the output is still in cache. With `pre` (direct convolutions only), `xin` is the act
/// step's input and each image goes through the act step into a scratch buffer first, its
/// dropout mask recorded into `masks` when given ([`PreAct::image`]). Scratch buffers come
/// from `pool`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_forward<T: Real>(
    pool: &BufferPool<T>,
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    out: &mut [T],
    isz: usize,
    osz: usize,
    purpose: Purpose,
    pre: Option<PreAct<'_, T>>,
    masks: Option<&mut [u32]>,
) -> Option<ImageSums> {
    if cs.tiles && matches!(purpose, Purpose::Eval) {
        assert!(masks.is_none(), "no dropout mask in evaluation");
        tiles_eval(pool, cs, xin, params, out, (isz, osz), pre);
        return None;
    }
    let stats = matches!(purpose, Purpose::Train { stats: true });
    let (xlen, wlen) = conv_scratch(cs, cs.group);
    let hw = cs.oh * cs.ow;
    // Unpadded large planes one image at a time where they lie (the forward's bits do not
    // depend on the grouping), except an image too close to the end of the batch for what the
    // kernel reads past it.
    let one = cs.direct();
    assert!(
        one || pre.is_none(),
        "an act step is folded into direct convolutions only"
    );
    let (per, slack) = match one {
        true => (1, direct_slack(cs)),
        false => (cs.group, 0),
    };
    // With the Winograd kernels: the transformed weights and a buffer for the transformed
    // input, whose packed rows read nothing past an image (so every image runs where it lies).
    let u = (cs.winograd && matches!(purpose, Purpose::Train { .. }))
        .then(|| winograd::weights(cs.weights(params).0, cs.co * cs.ci));
    let mut lens = vec![xlen, wlen];
    if u.is_some() {
        lens.push(4 * compact_pairs(cs));
    }
    // With an act step folded in, each image's act step goes through a buffer first.
    if pre.is_some() {
        lens.push(isz + slack);
    }
    // Groups of a full vector's lanes of images, unpadded at stride 1, whose wide layout
    // computes positions for nothing: with the images in the lanes, where only the positions
    // kept are computed ([`lanes`]; the same bits).
    let wasted = cs.oh * cs.ow < cs.hp * cs.wp;
    let geometry =
        (!one && wasted && cs.group == LANES && lanes::fits(cs)).then(|| lanes::Geometry::new(cs));
    // Each image's part of `masks` (one image per call where there is an act step).
    let mut records: Vec<Option<&mut [u32]>> = match (masks, pre) {
        (Some(m), Some(p)) => m.chunks_mut(p.image_words(isz)).map(Some).collect(),
        _ => out.chunks(per * osz).map(|_| None).collect(),
    };
    let items = out.chunks_mut(per * osz).zip(records.iter_mut()).collect();
    let sums: Vec<ImageSums> = spread::each(
        items,
        || Scratch::take(pool, &lens),
        |s, k, (o, record)| {
            let [xp, wide, rest @ ..] = &mut s.bufs[..] else {
                unreachable!("two to four buffers")
            };
            // The transformed input's buffer where there are weights to transform, then the act
            // step's.
            let (t, xa) = rest.split_at_mut(usize::from(u.is_some()));
            let (n, x) = (o.len() / osz, &xin[k * per * isz..]);
            let room = x.len() >= isz + slack;
            let wino = u.as_deref().zip(t.first_mut().map(|t| &mut t[..]));
            match (pre, xa.first_mut()) {
                (Some(p), Some(xa)) => {
                    p.image(k, &x[..isz], &mut xa[..isz], record.as_deref_mut());
                    one_image(cs, xa, params, wino, o, wide)
                }
                _ if one && (room || wino.is_some()) => one_image(cs, x, params, wino, o, wide),
                _ if let Some(geometry) = &geometry => {
                    lanes::gather(&x[..n * isz], n, isz, xp);
                    geometry.conv(cs, xp, params, wide, None);
                    lanes::scatter(wide, n, osz, o);
                }
                _ => conv_group(cs, n, &x[..n * isz], params, o, xp, wide, None),
            }
            match stats {
                true => o
                    .chunks(osz)
                    .map(|oi| {
                        let mut s = vec![(0.0, 0.0); cs.co];
                        act::plane_sums(oi, cs.co, hw, &mut s);
                        s
                    })
                    .collect(),
                false => vec![],
            }
        },
    );
    stats.then(|| sums.into_iter().flatten().collect())
}

/// The evaluation forward of a convolution on Winograd tiles ([`ConvStep::tiles`], numerics
/// version 5): up to [`LANES`] images at a time moved into the lanes (each through the act step
/// folded before it, `pre`, first), [`tiles::forward`], and back. Each image's outputs are the
/// same bits as inference's, which runs the same kernel with the images already in the lanes.
fn tiles_eval<T: Real>(
    pool: &BufferPool<T>,
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    out: &mut [T],
    (isz, osz): (usize, usize),
    pre: Option<PreAct<'_, T>>,
) {
    let u = tile_weights(cs, params);
    let lens = [
        LANES * isz,
        LANES * isz,
        LANES * osz,
        tiles::scratch_len(cs.ci, cs.co),
    ];
    spread::each(
        out.chunks_mut(LANES * osz).collect(),
        || Scratch::take(pool, &lens),
        |s, k, o| {
            let [xa, xl, yl, scratch] = &mut s.bufs[..] else {
                unreachable!("four buffers")
            };
            let n = o.len() / osz;
            let mut x = &xin[k * LANES * isz..][..n * isz];
            if let Some(p) = pre {
                for (i, (z, a)) in x.chunks(isz).zip(xa.chunks_mut(isz)).enumerate() {
                    p.image(k * LANES + i, z, a, None);
                }
                x = &xa[..n * isz];
            }
            tiles_moved(cs, &u, x, o, None, [xl, yl, scratch]);
        },
    );
}

/// A convolution's weights transformed for [`tiles::forward`].
pub(super) fn tile_weights<T: Real>(cs: &ConvStep, params: &[T]) -> Vec<T> {
    tiles::weights(cs.weights(params).0, cs.ci, cs.co)
}

/// Up to [`LANES`] images `x`, one after another, through [`tiles::forward`] (transformed
/// weights `u`, the act step `act` before the stores) into `y`, one after another: moved into
/// the lanes in `xl`, out of them from `yl`.
pub(super) fn tiles_moved<T: Real>(
    cs: &ConvStep,
    u: &[T],
    x: &[T],
    y: &mut [T],
    act: Option<Epilogue<'_, T>>,
    [xl, yl, scratch]: [&mut [T]; 3],
) {
    let (isz, osz) = (cs.ci * cs.h * cs.w, cs.co * cs.oh * cs.ow);
    let n = x.len() / isz;
    lanes::gather(x, n, isz, xl);
    tiles::forward(xl, cs.ci, cs.h, cs.w, u, cs.co, yl, act, scratch);
    lanes::scatter(yl, n, osz, y);
}

/// Lengths of the padded-input and wide-output scratch buffers [`conv_group`] needs for `n`
/// images.
pub(super) fn conv_scratch(cs: &ConvStep, n: usize) -> (usize, usize) {
    let g = Group::new(cs, n);
    (cs.ci * g.xs + g.lw + cs.front + conv::CHUNK, cs.co * g.lw)
}

/// A training act step a direct convolution ([`ConvStep::direct`]) applies to its input as it
/// reads it, instead of reading the act step's stored output (which is then never written): the
/// map, the dropout and the ReLU of [`act::forward`], with the same operations on every value,
/// so the same bits. The backward recomputes the output the same way, its dropout mask read
/// from what the forward recorded ([`mask`]) instead of hashed again.
#[derive(Clone, Copy)]
pub(super) struct PreAct<'a, T> {
    pub(super) a: &'a [T],
    pub(super) b: &'a [T],
    pub(super) drop: Option<act::Drop<T>>,
    pub(super) relu: bool,
    /// With dropout, the mask the forward recorded: per image and channel, the words of one
    /// plane ([`mask::words`]).
    pub(super) bits: Option<&'a [u32]>,
}

impl<T: Real> PreAct<'_, T> {
    /// Mask words of one image of `isz` values.
    pub(super) fn image_words(&self, isz: usize) -> usize {
        let c = self.a.len();
        c * mask::words(isz / c)
    }

    /// Image `i` (all its channels) of the act step's input into `out`; with dropout and
    /// `record` (the image's [`Self::image_words`]), its mask recorded there as it is applied,
    /// each plane asking for the next image's ([`ahead`]).
    fn image(&self, i: usize, z: &[T], out: &mut [T], record: Option<&mut [u32]>) {
        let c = self.a.len();
        let hw = z.len() / c;
        let (Some(d), Some(record)) = (self.drop, record) else {
            let first = (i * c * hw) as u32;
            return act::forward(z, out, c, hw, self.a, self.b, self.drop, self.relu, first);
        };
        let w = mask::words(hw);
        for ((ch, z), (o, bits)) in z
            .chunks_exact(hw)
            .enumerate()
            .zip(out.chunks_exact_mut(hw).zip(record.chunks_exact_mut(w)))
        {
            ahead::lines(z.as_ptr(), c * hw, hw);
            let m = mask::Mask::Record {
                key: d.key,
                threshold: d.threshold,
                first: ((i * c + ch) * hw) as u32,
                bits,
            };
            mask::forward(z, o, self.a[ch], self.b[ch], d.scale, self.relu, m);
        }
    }

    /// Channel `c` of image `i`: `hw` values of the act step's input into `out`, the mask read
    /// from [`Self::bits`] when the forward recorded it; asks for the next image's plane
    /// ([`ahead`]).
    fn plane(&self, i: usize, c: usize, z: &[T], out: &mut [T]) {
        let hw = z.len();
        ahead::lines(z.as_ptr(), self.a.len() * hw, hw);
        if let (Some(d), Some(bits)) = (self.drop, self.bits) {
            let w = mask::words(hw);
            let bits = &bits[(i * self.a.len() + c) * w..][..w];
            let m = mask::Mask::Replay(bits);
            return mask::forward(z, out, self.a[c], self.b[c], d.scale, self.relu, m);
        }
        let (a, b) = (&self.a[c..=c], &self.b[c..=c]);
        let base = ((i * self.a.len() + c) * hw) as u32;
        act::forward(z, out, 1, hw, a, b, self.drop, self.relu, base);
    }
}

/// Planes of an act step's output as a convolution's backward holds them: image `b`'s channel
/// `c` starts at `b·image + c·channel` (the stored batch, or a group's padded layout).
#[derive(Clone, Copy)]
pub(super) struct Planes<'a, T> {
    data: &'a [T],
    image: usize,
    channel: usize,
}

impl<'a, T> Planes<'a, T> {
    /// Images of `c·hw` values one after another.
    pub(super) fn dense(data: &'a [T], c: usize, hw: usize) -> Self {
        Planes {
            data,
            image: c * hw,
            channel: hw,
        }
    }

    /// The same planes from image `b` on (the first `b` images skipped).
    pub(super) fn skip(self, b: usize) -> Self {
        Planes {
            data: &self.data[b * self.image..],
            ..self
        }
    }

    /// The first image's channel `c`: `hw` values.
    pub(super) fn plane(&self, c: usize, hw: usize) -> &'a [T] {
        &self.data[c * self.channel..][..hw]
    }
}

/// The convolution forward of `n` consecutive images, with scratch buffers at least
/// [`conv_scratch`]`(cs, n)` long; with `act` (stride 1 only), the act step after it too.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_group<T: Real>(
    cs: &ConvStep,
    n: usize,
    xi: &[T],
    params: &[T],
    o: &mut [T],
    xp: &mut [T],
    wide: &mut [T],
    act: Option<Epilogue<'_, T>>,
) {
    let g = Group::new(cs, n);
    pad_into(cs, &g, xi, xp);
    correlate_finish(cs, &g, xp, params, o, wide, act);
}

/// Values [`conv_direct`] reads past its image: the wide span runs on beyond the last row.
pub(super) fn direct_slack(cs: &ConvStep) -> usize {
    let g = Group::new(cs, 1);
    (g.lw + cs.front).saturating_sub(g.plane)
}

/// The forward of one image whose unpadded planes, `ci×h×w` in a row, are already the
/// group layout of one image: no copy into a padded buffer. `x` starts at the image and runs on
/// for at least [`direct_slack`] values (any: they feed only cropped positions); `wide` is at
/// least [`conv_scratch`]`(cs, 1).1` long. The same bits as [`conv_group`].
pub(super) fn conv_direct<T: Real>(
    cs: &ConvStep,
    x: &[T],
    params: &[T],
    o: &mut [T],
    wide: &mut [T],
    act: Option<Epilogue<'_, T>>,
) {
    correlate_finish(cs, &Group::new(cs, 1), x, params, o, wide, act);
}

/// A training forward of one image where it lies: [`winograd_direct`] given the transformed
/// weights and a buffer for the transformed input (it reads nothing past the image), else
/// [`conv_direct`] (with room after the image, [`direct_slack`]).
fn one_image<T: Real>(
    cs: &ConvStep,
    x: &[T],
    params: &[T],
    wino: Option<(&[T], &mut [T])>,
    o: &mut [T],
    wide: &mut [T],
) {
    match wino {
        Some((u, t)) => winograd_direct(cs, x, u, o, t),
        None => conv_direct(cs, x, params, o, wide, None),
    }
}

/// [`conv_direct`] with the Winograd kernels ([`ConvStep::winograd`]), computing the kept
/// outputs alone: each input row's first `ow / 2` pairs transformed and packed into `t`
/// ([`compact_pairs`] of them), then correlated straight into `o`'s planes
/// ([`winograd::correlate_rows`]). The wide layout's last pair of each row fed only a cropped
/// column (a twelfth to a fourteenth of the products, and masked stores). Each output's sums are
/// the wide layout's: the same bits. `u` holds the transformed weights.
fn winograd_direct<T: Real>(cs: &ConvStep, x: &[T], u: &[T], o: &mut [T], t: &mut [T]) {
    let pr = cs.ow / 2;
    winograd::transform_rows(x, cs.w, cs.ci * cs.h, pr, t);
    winograd::correlate_rows(t, (cs.ci, cs.h, pr), u, cs.co, o);
}

/// Pairs of one image's compact transformed input ([`winograd_direct`]): `ow / 2` a row.
fn compact_pairs(cs: &ConvStep) -> usize {
    cs.ci * cs.h * (cs.ow / 2)
}

/// Pairs of a group's input the Winograd kernels read for `span` positions (the forward's
/// [`Group::lw`], or the weight gradient's `lwg`, no more than those): the last channel's first
/// two rows and the positions.
fn transformed_pairs(cs: &ConvStep, g: &Group, span: usize) -> usize {
    (cs.ci - 1) * g.xs / 2 + cs.wp + span / 2
}

/// A group's transformed input `t` as the Winograd kernels read it.
fn input<'a, T>(cs: &ConvStep, g: &Group, t: &'a [T]) -> winograd::Input<'a, T> {
    winograd::Input::of(t, g.xs, cs.ci, cs.wp)
}

/// A group's forward from its padded layout `xp`: the correlation into `wide`, then the wide
/// output cropped into `o`, with the act step when given.
fn correlate_finish<T: Real>(
    cs: &ConvStep,
    g: &Group,
    xp: &[T],
    params: &[T],
    o: &mut [T],
    wide: &mut [T],
    act: Option<Epilogue<'_, T>>,
) {
    let (w, bias) = cs.weights(params);
    conv::correlate(xp, g.xs, cs.ci, w, bias, cs.co, &cs.off, wide, g.lw, g.lw);
    match act {
        Some(t) => {
            assert_eq!(
                cs.stride, 1,
                "the act step is fused into stride-1 convolutions only"
            );
            let (n, rows, len) = (g.n, cs.oh, cs.ow);
            act::forward_wide(
                wide, o, n, cs.co, rows, len, g.lw, g.plane, cs.wp, t.a, t.b, t.relu,
            );
        }
        None => crop(cs, g, wide, o),
    }
}

fma_dispatch! {
/// Keeps, of the wide stride-1 output planes, every `stride`-th row and column of each image's
/// output.
fn crop<T: Real>(cs: &ConvStep, g: &Group, planes: &[T], o: &mut [T]) {
    let s = cs.stride;
    for b in 0..g.n {
        for c in 0..cs.co {
            for r in 0..cs.oh {
                let src = &planes[c * g.lw + b * g.plane + r * s * cs.wp..];
                let at = ((b * cs.co + c) * cs.oh + r) * cs.ow;
                let dst = &mut o[at..at + cs.ow];
                match s {
                    1 => copy_run(dst, &src[..cs.ow]),
                    _ => {
                        for (x, d) in dst.iter_mut().enumerate() {
                            *d = src[x * s];
                        }
                    }
                }
            }
        }
    }
}
}

fma_dispatch! {
/// Copies `n` images' `ci×h×w` planes into the zero-padded group layout; everything after it in
/// `xp` is zeroed too (a larger group may have left values there, and the weight gradient
/// multiplies them by zeros).
fn pad_into<T: Real>(cs: &ConvStep, g: &Group, xi: &[T], xp: &mut [T]) {
    let used = cs.ci * g.xs;
    if cs.pad > 0 {
        xp[..used].fill(T::ZERO);
    }
    xp[used..].fill(T::ZERO);
    for (dst, src, len) in input_runs(cs, g, g.xs) {
        copy_run(&mut xp[dst..dst + len], &xi[src..src + len]);
    }
}
}

fma_dispatch! {
/// [`pad_into`] for an unpadded convolution whose input is an act step's output, computed from
/// that step's input `z` ([`PreAct`]); `first` is the group's first image in the batch.
fn act_into<T: Real>(
    cs: &ConvStep,
    g: &Group,
    first: usize,
    p: PreAct<'_, T>,
    z: &[T],
    xp: &mut [T],
) {
    assert_eq!(
        cs.pad, 0,
        "an act step is folded into unpadded convolutions only"
    );
    xp[cs.ci * g.xs..].fill(T::ZERO);
    // Unpadded, each run is a whole plane: the `k`-th is image `k / ci`'s channel `k % ci`.
    for (k, (dst, src, len)) in input_runs(cs, g, g.xs).enumerate() {
        let (b, c) = (k / cs.ci, k % cs.ci);
        p.plane(first + b, c, &z[src..src + len], &mut xp[dst..dst + len]);
    }
}
}

fma_dispatch! {
/// A group's input gradient from its wide layout `gxw` (channels `lq` apart) into its
/// images' planes `gx`, run by run ([`input_runs`]): in the kernel path's vectors, not the
/// baseline's 128-bit moves of the generic code that calls it.
fn uncrop<T: Real>(cs: &ConvStep, g: &Group, gxw: &[T], gx: &mut [T]) {
    for (src, at, len) in input_runs(cs, g, g.lq) {
        copy_run(&mut gx[at..at + len], &gxw[src..src + len]);
    }
}
}

/// Each contiguous run of a group's input: its start in the padded group layout (channels
/// `stride` apart), its start in the images as given (`n×ci×h×w`), and its length — one row,
/// or a whole plane when there is no padding (its rows then follow one another in both).
fn input_runs(
    cs: &ConvStep,
    g: &Group,
    stride: usize,
) -> impl Iterator<Item = (usize, usize, usize)> {
    let (ci, w, wp, pad, plane) = (cs.ci, cs.w, cs.wp, cs.pad, g.plane);
    let (h, len) = match pad {
        0 => (1, cs.h * w),
        _ => (cs.h, w),
    };
    // (image, channel, row) by [`Rows`]' carried counters: no divisions per run.
    let runs = Rows::new(g.n, ci, h).enumerate();
    runs.map(move |(k, (b, c, r))| (c * stride + b * plane + (r + pad) * wp + pad, k * len, len))
}

/// `dst.copy_from_slice(src)` for the short runs of rows, in fixed-size pieces the compiler
/// turns into vector moves rather than a call to `memcpy` per row; runs under 8 values (the
/// 1×1 planes after a global average pool) in two overlapping pieces of 2 or 4.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    const P: usize = 8;
    let n = dst.len();
    let src = &src[..n];
    if n < P {
        // Two overlapping fixed-size pieces (a loop would become a call to `memcpy`).
        match n {
            0 => {}
            1 => dst[0] = src[0],
            2..4 => {
                dst[..2].copy_from_slice(&src[..2]);
                dst[n - 2..].copy_from_slice(&src[n - 2..]);
            }
            _ => {
                dst[..4].copy_from_slice(&src[..4]);
                dst[n - 4..].copy_from_slice(&src[n - 4..]);
            }
        }
        return;
    }
    if n > 16 * P {
        dst.copy_from_slice(src);
        return;
    }
    let mut i = 0;
    while i + P <= n {
        dst[i..i + P].copy_from_slice(&src[i..i + P]);
        i += P;
    }
    if i < n {
        dst[n - P..].copy_from_slice(&src[n - P..]);
    }
}

fma_dispatch! {
/// The stride-1 output's gradient of a group in its padded layout `gpad` (channels `gs`
/// apart, each after `front` zeros): the given gradient `gi` at every `s`-th row and column, 0
/// everywhere else. With stride 1, the rows are copied and only the gaps between them zeroed
/// (a short gap as one whole piece, which the next row's copy then overwrites), rather than
/// the whole buffer zeroed first: the same contents. With `bn` (stride 1 only), each row goes
/// through BatchNorm's input gradient ([`BnGrad`]) as it is copied.
fn grad_into<T: Real>(
    cs: &ConvStep,
    g: &Group,
    gi: &[T],
    gpad: &mut [T],
    gs: usize,
    bn: Option<BnRows<'_, T>>,
) {
    const P: usize = 8;
    let (s, ow) = (cs.stride, cs.ow);
    // Where row `r` of image `b`'s channel `c` goes in `gpad`, and where it lies in `gi`.
    let row = |b: usize, c: usize, r: usize| {
        (
            c * gs + cs.front + b * g.plane + r * s * cs.wp,
            ((b * cs.co + c) * cs.oh + r) * ow,
        )
    };
    if s != 1 {
        assert!(bn.is_none(), "BatchNorm's input gradient at stride 1 only");
        gpad.fill(T::ZERO);
        for (c, b, r) in rows_of(cs, g) {
            let (dst, src) = row(b, c, r);
            for (x, &v) in gi[src..src + ow].iter().enumerate() {
                gpad[dst + x * s] = v;
            }
        }
        return;
    }
    let layout = padded::Layout {
        co: cs.co,
        n: g.n,
        oh: cs.oh,
        ow,
        wp: cs.wp,
        front: cs.front,
        plane: g.plane,
        gs,
    };
    if padded::grad_rows(super::KernelPath::active(), layout, gi, bn, gpad) {
        return;
    }
    // Rows in memory order; everything before `at` is written.
    let mut at = 0;
    for (c, b, r) in rows_of(cs, g) {
        let (dst, src) = row(b, c, r);
        debug_assert!(at <= dst, "rows in memory order");
        match dst - at <= P && at + P <= gpad.len() {
            true => gpad[at..at + P].copy_from_slice(&[T::ZERO; P]),
            false => gpad[at..dst].fill(T::ZERO),
        }
        let (to, from) = (&mut gpad[dst..dst + ow], &gi[src..src + ow]);
        match bn {
            None => copy_run(to, from),
            Some(m) => bn_run(to, from, &m.y[src..src + ow], m.mean[c], m.k[c]),
        }
        at = dst + ow;
    }
    gpad[at..].fill(T::ZERO);
}
}

/// `dst = g·k1 + (y − mean)·k2 + k3` over a row, each value by [`act::bn_input_value`], in
/// fixed-size pieces (the last one overlapping the one before: the same values written
/// again) that the compiler turns into vector instructions, as [`copy_run`] copies.
#[inline(always)]
fn bn_run<T: Real>(dst: &mut [T], g: &[T], y: &[T], mean: T, k: (T, T, T)) {
    const P: usize = 8;
    #[inline(always)]
    fn values<T: Real>(dst: &mut [T], g: &[T], y: &[T], mean: T, k: (T, T, T)) {
        for ((d, &g), &y) in dst.iter_mut().zip(g).zip(y) {
            *d = act::bn_input_value(g, y, mean, k);
        }
    }
    let n = dst.len();
    if n < P {
        return values(dst, g, y, mean, k);
    }
    let mut i = 0;
    while i + P <= n {
        values(&mut dst[i..i + P], &g[i..i + P], &y[i..i + P], mean, k);
        i += P;
    }
    if i < n {
        values(&mut dst[n - P..], &g[n - P..], &y[n - P..], mean, k);
    }
}

/// A group's output rows `(channel, image, row)` in the order they lie in the padded layout.
fn rows_of(cs: &ConvStep, g: &Group) -> Rows {
    Rows::new(cs.co, g.n, cs.oh)
}

/// Three nested counters, outermost first: [`rows_of`]'s (channel, image, row) and
/// [`input_runs`]' (image, channel, row). Carried by hand, not divisions of one counter (5 % of
/// `grad_into`'s time; in `input_runs`, 35 % of the last 1×1 convolution's backward, whose runs
/// are one value long) nor a `flat_map` (not inlined: a call per row, 3 % of a step on a Zen
/// 5), and a `next` inlined into the kernel path's copy of its caller.
struct Rows {
    at: (usize, usize, usize),
    ends: (usize, usize, usize),
}

impl Rows {
    /// Starts at the end when there are no images or no rows, so that `next` only has to
    /// compare the channel.
    fn new(channels: usize, images: usize, rows: usize) -> Self {
        let empty = images == 0 || rows == 0;
        Rows {
            at: (if empty { channels } else { 0 }, 0, 0),
            ends: (channels, images, rows),
        }
    }
}

impl Iterator for Rows {
    type Item = (usize, usize, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let ((c, b, r), (co, n, oh)) = (self.at, self.ends);
        if c == co {
            return None;
        }
        self.at = match (r + 1 < oh, b + 1 < n) {
            (true, _) => (c, b, r + 1),
            (false, true) => (c, b + 1, 0),
            (false, false) => (c + 1, 0, 0),
        };
        Some((c, b, r))
    }
}

/// What a group's input gradient goes through once written, while it is still in cache (the
/// first backward pass of the step before): called with the group's first image, its input
/// gradient and its inputs (the act step's output); returns one value per image.
pub(super) type Then<'a, T> = &'a (dyn Fn(usize, &mut [T], Planes<'_, T>) -> ImageSums + Sync);

/// Where a convolution's backward writes its input gradient, and what it does with it next.
pub(super) struct InputGrad<'a, T> {
    pub(super) gx: &'a mut [T],
    pub(super) then: Option<Then<'a, T>>,
}

/// BatchNorm's input gradient, still to be applied to the output gradient of the convolution
/// before it (the BatchNorm's input `y`, that convolution's output): `k1·g + k2·(y − mean) +
/// k3` per channel, as [`act::bn_input_grad`] computes it. The convolution's backward applies
/// it to each row as it copies the gradient into its padded layout ([`grad_into`]), instead of
/// a pass over the batch of its own: the same operations on every value.
pub(super) struct BnGrad<'a, T> {
    pub(super) y: &'a [T],
    pub(super) mean: &'a [T],
    pub(super) k: Vec<(T, T, T)>,
}

/// Whether convolution `cs`'s backward can apply the input gradient of the BatchNorm after it
/// ([`BnGrad`]): stride 1 (its rows are copied whole into the padded layout) and no bias (the
/// bias gradient sums the output gradient as given, before it would be applied).
pub(super) fn takes_bn_grad(cs: &ConvStep) -> bool {
    cs.stride == 1 && cs.bias.is_none()
}

/// Pairs of a group's padded output gradient (channels `front + lq` apart) the Winograd input
/// gradient reads: the last channel's first two rows and the input gradient's positions.
fn grad_pairs(cs: &ConvStep, g: &Group) -> usize {
    (cs.co - 1) * (cs.front + g.lq) / 2 + cs.wp + g.lq / 2
}

/// The Winograd weight gradient's transform of a group's padded output gradient `gpad` into
/// the second of `wino`'s buffers, when `wino` holds them (see [`group_weight_grad`]). Run
/// right after `gpad` is written, while it is in cache: run after the input's move into its
/// padded layout and its transform, it read `gpad` back from further away (docs/PERFORMANCE.md,
/// forty-second pass).
fn grad_transform<T: Real>(cs: &ConvStep, g: &Group, gpad: &[T], wino: &mut [Buf<T>]) {
    if let [_, sg, _, ..] = wino {
        let gs = cs.front + g.lq;
        winograd::grad_transform(&gpad[cs.front..], gs, cs.co, g.lwg / 2, sg);
    }
}

/// A group's weight gradient added to `gw`, from its padded output gradient `gpad` and padded
/// input `xp`: with the Winograd kernels when `wino` holds their scratch buffers (the
/// transformed input, the transformed gradient from [`grad_transform`], the lanes the weight
/// gradient sums in and, when the input gradient is computed and unused here, its transformed
/// gradient), else with the direct kernel.
fn group_weight_grad<T: Real>(
    cs: &ConvStep,
    g: &Group,
    gpad: &[T],
    xp: &[T],
    wino: &mut [Buf<T>],
    gw: &mut [T],
) {
    let gs = cs.front + g.lq;
    match wino {
        [tx, sg, acc, ..] => {
            let lp = g.lwg / 2;
            winograd::transform(xp, transformed_pairs(cs, g, g.lwg), tx);
            winograd::weight_grad(sg, cs.co, lp, input(cs, g, tx), acc, gw);
        }
        _ => conv::weight_grad(
            &gpad[cs.front..],
            gs,
            cs.co,
            xp,
            g.xs,
            cs.ci,
            &cs.off,
            g.lwg,
            gw,
        ),
    }
}

/// A group's input gradient `gx` (its images' planes in order) with the Winograd kernels: its
/// padded output gradient `gpad` transformed into `tg`, correlated with the flipped, transposed
/// kernel's transformed weights `uf`. No wide buffer and no copy out of it: that copy of a
/// quarter of a step's data was 2.5 % of a 1-thread step.
fn group_input_grad<T: Real>(
    cs: &ConvStep,
    g: &Group,
    gpad: &[T],
    uf: &[T],
    tg: &mut [T],
    gx: &mut [T],
) {
    winograd::transform(gpad, grad_pairs(cs, g), tg);
    // Unpadded: image `b`'s plane of channel `c` is the wide layout's positions from `b·plane`
    // of that channel, so each image's pairs are correlated straight into its planes (channels
    // `plane` apart), the last `PAIRS` again where they do not fill a block (each pair's value
    // is its own sums, whatever the block).
    assert!(
        cs.pad == 0 && g.plane >= 2 * PAIRS,
        "an unpadded Winograd layer"
    );
    let pp = g.plane / 2;
    let main = pp / PAIRS * PAIRS;
    for (b, gxb) in gx.chunks_exact_mut(cs.ci * g.plane).enumerate() {
        let from =
            |p: usize| winograd::Input::of(&tg[4 * (b * pp + p)..], cs.front + g.lq, cs.co, cs.wp);
        winograd::correlate(from(0), uf, cs.ci, gxb, g.plane, main);
        if main < pp {
            let last = pp - PAIRS;
            winograd::correlate(from(last), uf, cs.ci, &mut gxb[2 * last..], g.plane, PAIRS);
        }
    }
}

/// What a group's backward in the wide layout reads: its output gradient, its input (the act
/// step's input with `pre`), its first image, and BatchNorm's input gradient to apply.
struct Wide<'a, T> {
    gi: &'a [T],
    xi: &'a [T],
    first: usize,
    rows: Option<BnRows<'a, T>>,
    pre: Option<PreAct<'a, T>>,
}

/// A group's weight gradient added to `gw` in the wide layout: its padded output gradient into
/// `gpad` (BatchNorm's input gradient applied as it is copied), its padded input into `xp`
/// (through the act step with `pre`). Returns the planes of its input as the act step's
/// backward reads them.
fn wide_weight_grad<'a, T: Real>(
    cs: &ConvStep,
    grp: &Group,
    w: Wide<'a, T>,
    (gpad, xp, wino): (&mut [T], &'a mut [T], &mut [Buf<T>]),
    gw: &mut [T],
) -> Planes<'a, T> {
    grad_into(cs, grp, w.gi, gpad, cs.front + grp.lq, w.rows);
    grad_transform(cs, grp, gpad, wino);
    let inputs = match w.pre {
        Some(p) => {
            act_into(cs, grp, w.first, p, w.xi, xp);
            Planes {
                data: &xp[..],
                image: grp.plane,
                channel: grp.xs,
            }
        }
        None => {
            pad_into(cs, grp, w.xi, xp);
            Planes::dense(w.xi, cs.ci, cs.h * cs.w)
        }
    };
    group_weight_grad(cs, grp, gpad, xp, wino, gw);
    inputs
}

/// A layer's backward over the batch: the weight (and bias) gradient added to `gp`, the input
/// gradient written where `gx` says. Returns what `gx.then` returned, per image in order (empty
/// without it). With `pre`, `xin` is the act step's input, as in [`conv_forward`]: each group's
/// input is recomputed into its padded layout. Scratch buffers come from `pool`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_backward<T: Real>(
    pool: &BufferPool<T>,
    cs: &ConvStep,
    xin: &[T],
    params: &[T],
    g: &[T],
    gx: Option<InputGrad<'_, T>>,
    gp: &mut [T],
    n: usize,
    isz: usize,
    osz: usize,
    pre: Option<PreAct<'_, T>>,
    bn: Option<BnGrad<'_, T>>,
) -> ImageSums {
    assert!(
        bn.is_none() || takes_bn_grad(cs),
        "BatchNorm's input gradient is applied in stride-1 convolutions without bias only"
    );
    let nt = cs.off.len();
    let (w, _) = cs.weights(params);
    let nw = w.len();
    // Flipped, transposed kernel: wf[(i·co + o)·nt + t] = w[(o·ci + i)·nt + nt−1−t].
    let mut wf = vec![T::ZERO; nw];
    for o in 0..cs.co {
        for i in 0..cs.ci {
            for t in 0..nt {
                wf[(i * cs.co + o) * nt + t] = w[(o * cs.ci + i) * nt + nt - 1 - t];
            }
        }
    }
    let most = Group::new(cs, cs.grad_group);
    let glen = cs.co * (cs.front + most.lq) + cs.front + conv::CHUNK;
    // The input gradient's transformed weights, when it is computed.
    let uf = (cs.winograd && gx.is_some()).then(|| winograd::weights(&wf, cs.ci * cs.co));
    let (xlen, _) = conv_scratch(cs, cs.grad_group);
    let with_bias = cs.bias.is_some();
    let then = gx.as_ref().and_then(|g| g.then);
    // Numerics version 4: small planes with the images in the lanes ([`lanes::Backward`]).
    let back = (cs.lanes_grad && pre.is_none()).then(|| lanes::Backward::new(cs));
    // Each group's weight (and bias) gradient, `pw` values a group in one buffer.
    let pw = nw + if with_bias { cs.co } else { 0 };
    let mut parts = pool.take(n.div_ceil(cs.grad_group) * pw);
    let per_group = |k: usize,
                     gi: &[T],
                     xi: &[T],
                     gxi: Option<&mut [T]>,
                     part: &mut [T],
                     scratch: &mut Scratch<'_, T>| {
        let (gpad, xp, gxw, wino) = match &mut scratch.bufs[..] {
            [gpad, xp, gxw, wino @ ..] => (gpad, xp, gxw, wino),
            _ => unreachable!("three buffers to seven"),
        };
        let grp = Group::new(cs, gi.len() / osz);
        let gs = cs.front + grp.lq;
        let rows = bn.as_ref().map(|b| BnRows {
            y: &b.y[k * cs.grad_group * osz..][..gi.len()],
            mean: b.mean,
            k: &b.k,
        });
        let first = k * cs.grad_group;
        part.fill(T::ZERO);
        let inputs = match &back {
            Some(back) => {
                back.grad_into(cs, gi, grp.n, rows, gpad);
                lanes::gather(&xi[..grp.n * isz], grp.n, isz, xp);
                back.weight_grad(cs, gpad, xp, &mut part[..nw]);
                Planes::dense(xi, cs.ci, cs.h * cs.w)
            }
            None => {
                let bufs = (&mut gpad[..], &mut xp[..], &mut wino[..]);
                let wide = Wide {
                    gi,
                    xi,
                    first,
                    rows,
                    pre,
                };
                wide_weight_grad(cs, &grp, wide, bufs, &mut part[..nw])
            }
        };
        if with_bias {
            let hw = cs.oh * cs.ow;
            for c in 0..cs.co {
                part[nw + c] = gi.chunks(osz).fold(T::ZERO, |s, gb| {
                    s + gb[c * hw..(c + 1) * hw].iter().fold(T::ZERO, |s, &v| s + v)
                });
            }
        }
        if let Some(gxi) = gxi {
            match (&back, wino, &uf) {
                (Some(back), ..) => {
                    back.input_grad(cs, gpad, &wf, gxw);
                    lanes::scatter(gxw, grp.n, isz, gxi);
                }
                (None, [_, _, _, tg], Some(uf)) => group_input_grad(cs, &grp, gpad, uf, tg, gxi),
                _ => {
                    conv::correlate(
                        gpad, gs, cs.co, &wf, None, cs.ci, &cs.off, gxw, grp.lq, grp.lq,
                    );
                    uncrop(cs, &grp, gxw, gxi);
                }
            }
            if let Some(then) = then {
                return then(first, gxi, inputs);
            }
        }
        vec![]
    };
    // The Winograd input gradient goes straight into `gx`: no wide buffer for it.
    let gxw = if uf.is_some() { 0 } else { cs.ci * most.lq };
    let mut lens = match &back {
        Some(back) => back.lens(cs).to_vec(),
        None => vec![glen, xlen, gxw],
    };
    if cs.winograd {
        let lp = most.lwg / 2;
        let tx = 4 * transformed_pairs(cs, &most, most.lwg);
        lens.extend([tx, cs.co * lp * 4, winograd::acc_len(cs.co, cs.ci)]);
        if uf.is_some() {
            lens.push(4 * grad_pairs(cs, &most));
        }
    }
    let init = || Scratch::take(pool, &lens);
    let (gsz, isz_g, osz_g) = (cs.grad_group, cs.grad_group * isz, cs.grad_group * osz);
    let groups = g
        .chunks(osz_g)
        .zip(xin.chunks(isz_g))
        .zip(parts.chunks_mut(pw));
    let per_image: Vec<ImageSums> = match gx {
        Some(gx) => {
            let items = gx.gx.chunks_mut(isz_g).zip(groups).collect();
            spread::each(items, init, |s, k, (gxi, ((gi, xi), part))| {
                per_group(k, gi, xi, Some(gxi), part, s)
            })
        }
        None => spread::each(groups.collect(), init, |s, k, ((gi, xi), part)| {
            per_group(k, gi, xi, None, part, s)
        }),
    };
    debug_assert_eq!(per_image.len(), n.div_ceil(gsz));
    add_parts(&mut gp[cs.weight..cs.weight + nw], &parts, pw, 0);
    if let Some(b) = cs.bias {
        add_parts(&mut gp[b..b + cs.co], &parts, pw, nw);
    }
    pool.give([parts]);
    per_image.into_iter().flatten().collect()
}

/// Adds to each `g[j]` its part of every group in group order, `parts[k·stride + at + j]` for
/// `k = 0, 1, …`: the order of the sums a loop over the groups gave (the same bits), with each
/// block of `g` summed in registers, blocks on the pool's threads. Summed group by group on one
/// thread, a whole `g` loaded and stored again for every group, it was serial (docs/PERFORMANCE.md,
/// forty-second pass).
fn add_parts<T: Real>(g: &mut [T], parts: &[T], stride: usize, at: usize) {
    let groups = parts.len() / stride;
    assert!(
        groups * stride == parts.len() && at + g.len() <= stride,
        "add_parts: lengths"
    );
    spread::all(g.chunks_mut(PART_BLOCK).collect(), |i, gb| {
        let from = at + i * PART_BLOCK;
        match <&mut [T; PART_BLOCK]>::try_from(&mut *gb) {
            Ok(gb) => add_block(gb, parts, stride, from, groups),
            Err(_) => {
                for k in 0..groups {
                    let p = &parts[k * stride + from..][..gb.len()];
                    gb.iter_mut().zip(p).for_each(|(g, &v)| *g += v);
                }
            }
        }
    });
}

/// Weights in a block of [`add_parts`]: 4 zmm or 8 ymm, which stay in registers.
const PART_BLOCK: usize = 64;

fma_dispatch! {
/// [`add_parts`] of one whole block, kept in registers over the groups.
fn add_block<T: Real>(
    gb: &mut [T; PART_BLOCK],
    parts: &[T],
    stride: usize,
    from: usize,
    groups: usize,
) {
    let mut acc = *gb;
    for k in 0..groups {
        let p: &[T; PART_BLOCK] =
            parts[k * stride + from..][..PART_BLOCK].try_into().expect("a block");
        for (a, &v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    *gb = acc;
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`Rows`] against three nested loops, the empty cases included.
    #[test]
    fn rows_are_the_nested_loops() {
        for (co, n, oh) in
            (0..4).flat_map(|c| (0..4).flat_map(move |n| (0..5).map(move |r| (c, n, r))))
        {
            let mut want = vec![];
            for c in 0..co {
                for b in 0..n {
                    for r in 0..oh {
                        want.push((c, b, r));
                    }
                }
            }
            assert_eq!(
                Rows::new(co, n, oh).collect::<Vec<_>>(),
                want,
                "{co}×{n}×{oh}"
            );
        }
    }

    /// [`input_runs`] against three nested loops over (image, channel, row), padded and
    /// unpadded: where each run starts in the padded group layout
    /// (`c·stride + b·plane + (r + pad)·wp + pad`), in the images (runs back to back), and its
    /// length (a row, or a whole plane when unpadded).
    #[test]
    fn input_runs_are_the_nested_loops() {
        for (ci, n, h, pad) in (1..4).flat_map(|c| {
            (1..4).flat_map(move |n| (1..5).flat_map(move |h| (0..2).map(move |p| (c, n, h, p))))
        }) {
            let w = h + 1;
            let mut cs = lanes::tests::step(ci, 2, 1, h, w, false);
            (cs.pad, cs.hp, cs.wp) = (pad, h + 2 * pad, w + 2 * pad);
            let g = Group::new(&cs, n);
            let stride = n * g.plane + 5;
            let (rows, len) = if pad == 0 { (1, h * w) } else { (h, w) };
            let mut want = vec![];
            for b in 0..n {
                for c in 0..ci {
                    for r in 0..rows {
                        let dst = c * stride + b * g.plane + (r + pad) * cs.wp + pad;
                        want.push((dst, want.len() * len, len));
                    }
                }
            }
            let got: Vec<_> = input_runs(&cs, &g, stride).collect();
            assert_eq!(got, want, "{ci} channels, {n} images, {h}×{w}, pad {pad}");
        }
    }

    proptest! {
        /// A group's output gradient into its padded layout (`grad_into`, stride 1), with and
        /// without BatchNorm's input gradient, against each value put where its row goes and
        /// every other value zero, with `bn_input_value` per value: the same bits on every
        /// kernel path (the vector paths' masked rows and gaps, [`padded`], included), for
        /// rows shorter than a vector, of one or two, and over two; NaN, ±∞ and −0 included.
        #[test]
        fn padded_gradient_is_the_definition_on_every_path(
            (co, n, k, h, w) in (1usize..4, 1usize..4, 1usize..4)
                .prop_flat_map(|(co, n, k)| (Just(co), Just(n), Just(k), k..8, k..40)),
            with_bn in any::<bool>(),
            seed in prop::collection::vec(-3.0f32..3.0, 64),
        ) {
            let cs = lanes::tests::step(1, co, k, h, w, false);
            let g = Group::new(&cs, n);
            let gs = cs.front + g.lq;
            let size = n * co * cs.oh * cs.ow;
            let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0];
            let val = |j: usize, m: usize| match (j * m) % 53 {
                0..=4 => special[(j * m) % 53],
                _ => seed[(j * m + j / 64) % 64],
            };
            let (gi, y): (Vec<f32>, Vec<f32>) = (0..size).map(|j| (val(j, 5), val(j, 11))).unzip();
            let mean: Vec<f32> = (0..co).map(|c| seed[c] / 2.0).collect();
            let kk: Vec<(f32, f32, f32)> =
                (0..co).map(|c| (seed[c + 8], seed[c + 16], seed[c + 24])).collect();
            let bn = with_bn.then(|| BnRows { y: &y, mean: &mean, k: &kk });
            let len = cs.co * gs + cs.front + conv::CHUNK;
            let mut want = vec![0.0f32; len];
            for (c, b, r) in rows_of(&cs, &g) {
                for x in 0..cs.ow {
                    let src = ((b * co + c) * cs.oh + r) * cs.ow + x;
                    want[c * gs + cs.front + b * g.plane + r * cs.wp + x] = match with_bn {
                        true => act::bn_input_value(gi[src], y[src], mean[c], kk[c]),
                        false => gi[src],
                    };
                }
            }
            let runs = crate::engine::on_every_path(|| {
                let mut gpad = vec![f32::NAN; len];
                grad_into(&cs, &g, &gi, &mut gpad, gs, bn);
                gpad
            });
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for (path, got) in runs {
                prop_assert_eq!(bits(&got), bits(&want), "on {}", path);
            }
        }

        /// The row copies in pieces of 8 (the last overlapping the one before) against a plain
        /// copy, and BatchNorm's input gradient over a row against `bn_input_value` of each
        /// value, bit for bit, for lengths on both sides of the pieces' bounds (under 8, the
        /// multiples of 8, over 128); nothing past the row is written.
        #[test]
        fn row_pieces_are_the_plain_loops(
            n in 0usize..140,
            seed in prop::collection::vec(-3.0f32..3.0, 64),
            mean in -1.0f32..1.0,
            k in (-2.0f32..2.0, -2.0f32..2.0, -2.0f32..2.0),
        ) {
            let val = |j: usize, m: usize| seed[(j * m + j / 64) % 64] * (1.0 + (j % 7) as f32);
            let (g, y): (Vec<f32>, Vec<f32>) = (0..n).map(|j| (val(j, 5), val(j, 11))).unzip();
            let mut copied = vec![f32::NAN; n + 3];
            copy_run(&mut copied[..n], &g);
            prop_assert_eq!(&copied[..n], &g[..]);
            prop_assert!(copied[n..].iter().all(|v| v.is_nan()));
            let mut got = vec![f32::NAN; n + 3];
            bn_run(&mut got[..n], &g, &y, mean, k);
            for j in 0..n {
                let want = act::bn_input_value(g[j], y[j], mean, k);
                prop_assert_eq!(got[j].to_bits(), want.to_bits(), "value {}", j);
            }
            prop_assert!(got[n..].iter().all(|v| v.is_nan()));
        }

        /// The groups' weight gradients summed per block ([`add_parts`]) against the loop over
        /// the groups it replaced, each weight's parts added to it in group order: the same
        /// bits, on every kernel path, for lengths on both sides of a block (64), an offset into
        /// each group's part, and no groups. The values span 2^−24 to 2^24 with both signs, so
        /// another order rounds differently (summed in reverse group order, or pairwise, it
        /// fails).
        #[test]
        fn parts_add_in_group_order(
            groups in 0usize..24,
            len in 1usize..200,
            (stride_extra, at) in (0usize..4).prop_flat_map(|e| (Just(e), 0..=e)),
            seed in prop::collection::vec((-1.0f32..1.0, -24i32..24), 64),
        ) {
            let stride = len + stride_extra;
            let val = |j: usize| {
                let (m, e) = seed[(j * 7 + j / 64) % 64];
                m * 2f32.powi(e)
            };
            let parts: Vec<f32> = (0..groups * stride).map(val).collect();
            let start: Vec<f32> = (0..len).map(|j| val(j + 5000)).collect();
            let mut want = start.clone();
            for part in parts.chunks(stride) {
                for (w, &p) in want.iter_mut().zip(&part[at..at + len]) {
                    *w += p;
                }
            }
            let runs = crate::engine::on_every_path(|| {
                let mut g = start.clone();
                add_parts(&mut g, &parts, stride, at);
                g
            });
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for (path, got) in runs {
                prop_assert_eq!(bits(&got), bits(&want), "on {}", path);
            }
        }

        /// The training forward of a group of unpadded small planes, which runs in the lanes,
        /// against the wide layout's forward of the same images (`conv_group`, a call per 16
        /// images) and each image's statistics from that output: the same bits, on every kernel
        /// path, for batches that leave a last group short.
        #[test]
        fn lanes_training_forward_is_the_wide_one(
            (ci, co, k, h, w) in (1usize..4, 1usize..12, 2usize..4)
                .prop_flat_map(|(ci, co, k)| (Just(ci), Just(co), Just(k), k..10, k..10)),
            n in 1usize..40,
            bias in any::<bool>(),
            seed in prop::collection::vec(-2.0f32..2.0, 64),
        ) {
            let cs = lanes::tests::step(ci, co, k, h, w, bias);
            let pick = |j: usize| seed[(j * 7 + j / 64) % 64] * (1.0 + (j % 5) as f32 / 8.0);
            let params: Vec<f32> = (0..co * ci * k * k + co).map(|j| pick(j + 1000)).collect();
            let (isz, osz) = (ci * h * w, co * cs.oh * cs.ow);
            let x: Vec<f32> = (0..n * isz).map(pick).collect();
            let pool = BufferPool::default();
            let runs = crate::engine::on_every_path(|| {
                let mut y = vec![f32::NAN; n * osz];
                let purpose = Purpose::Train { stats: true };
                let sums =
                    conv_forward(&pool, &cs, &x, &params, &mut y, isz, osz, purpose, None, None);
                (y, sums.expect("statistics"))
            });
            let (xl, wl) = conv_scratch(&cs, cs.group);
            let (mut xp, mut wide) = (vec![0.0; xl], vec![0.0; wl]);
            let mut want = vec![f32::NAN; n * osz];
            for (yc, xc) in want.chunks_mut(cs.group * osz).zip(x.chunks(cs.group * isz)) {
                conv_group(&cs, xc.len() / isz, xc, &params, yc, &mut xp, &mut wide, None);
            }
            for (path, (y, sums)) in runs {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&y), bits(&want), "outputs on {}", path);
                for (yi, si) in want.chunks(osz).zip(&sums) {
                    let mut s = vec![(0.0, 0.0); co];
                    act::plane_sums(yi, co, cs.oh * cs.ow, &mut s);
                    prop_assert_eq!(&s, si, "statistics on {}", path);
                }
            }
        }
    }
}
