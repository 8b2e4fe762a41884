//! Augmentations that reproduce torchvision's on a tensor image: `RandomRotation(degrees)`,
//! `RandomAffine(degrees, translate, scale)` and `RandomErasing` (cutout).
//!
//! torchvision (`transforms.functional.rotate` → `_functional_tensor.rotate`) builds the inverse
//! affine matrix `[cos θ, −sin θ, 0; sin θ, cos θ, 0]` (θ in radians, positive = counter-clockwise
//! as seen on screen), casts it to `f32`, samples a grid of pixel centres `x = j − (W−1)/2`,
//! `y = i − (H−1)/2`, maps them to normalised coordinates `g = (x·m₀ + y·m₁ + m₂) / (W/2)` and
//! lets `grid_sample(mode="nearest", padding_mode="zeros", align_corners=False)` read pixel
//! `round_half_even(((g + 1)·W − 1) / 2)`; outside the image the output is the fill value, 0.
//! [`rotate`] does the same arithmetic, in the same `f32` order, so its output matches
//! torchvision's pixel for pixel except where a coordinate lands within an `f32` rounding error
//! of a half-integer — a measure-zero set of angles. Rotating `u8` pixels before `ToTensor`'s
//! division by 255 is the same as rotating afterwards: nearest-neighbour only moves values.
//!
//! [`affine`] is torchvision's `F.affine(img, angle, translate, scale, shear=0)`, of which
//! `rotate(d)` is the case `angle = −d` (affine angles turn clockwise): the inverse matrix of
//! `_get_inverse_affine_matrix` in `f64` (rotation, then `/ scale`, then the translation folded
//! in), cast to `f32`, then the same grid and sampling. `tests/torchvision_affine.rs` holds this
//! to torchvision's own output. [`RandomErasing`] blanks a rectangle drawn as torchvision's
//! `RandomErasing.get_params` draws it, before normalisation (fill: pixel 0).

use rand_core::RngCore;

/// torchvision's `F.affine` parameters (no shear): turn by `angle` degrees *clockwise* (the
/// affine convention), scale by `scale`, then shift by `translate` pixels (right, down), all
/// about the image centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Degrees, clockwise.
    pub angle: f32,
    /// Whole pixels: (right, down).
    pub translate: (i32, i32),
    /// Zoom factor (> 0).
    pub scale: f32,
}

impl Affine {
    /// A pure counter-clockwise rotation (what [`rotate`] does).
    pub fn rotation(degrees: f32) -> Self {
        Self {
            angle: -degrees,
            translate: (0, 0),
            scale: 1.0,
        }
    }

    /// The inverse affine matrix as torchvision computes it (`f64`), cast to `f32`.
    fn inverse_matrix(&self) -> [f32; 6] {
        let rot = (self.angle as f64).to_radians();
        let (tx, ty) = (self.translate.0 as f64, self.translate.1 as f64);
        let scale = self.scale as f64;
        // Shear 0: a = cos(rot), b = −sin(rot), c = sin(rot), d = cos(rot);
        // matrix = [d, −b, 0, −c, a, 0] / scale.
        let (a, b, c, d) = (rot.cos(), -rot.sin(), rot.sin(), rot.cos());
        let mut m = [d, -b, 0.0, -c, a, 0.0].map(|v| v / scale);
        // Centre (0, 0) in these coordinates: `m[2] += m[0]·(−cx − tx) + m[1]·(−cy − ty)`, then
        // `m[2] += cx`.
        let (cx, cy) = (0.0f64, 0.0f64);
        m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
        m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
        m[2] += cx;
        m[5] += cy;
        m.map(|v| v as f32)
    }
}

/// Applies `t` to a `rows × cols` grayscale image, nearest-neighbour, fill 0, into `out` (same
/// size). Panics if the slice lengths are not `rows * cols`.
pub fn affine_into(img: &[u8], rows: usize, cols: usize, t: &Affine, out: &mut [u8]) {
    assert_eq!(img.len(), rows * cols, "input is not rows*cols pixels");
    assert_eq!(out.len(), rows * cols, "output is not rows*cols pixels");
    let g = Grid::new(t, rows, cols);
    match rows * cols <= FLAT {
        true => sample_flat(&g, img, out),
        false => sample_pairs(&g, img, out),
    }
}

// Both samplers take each row in two loops: where every pixel is read from (float operations
// without branches or calls, which the compiler turns into vector instructions), then the reads.

/// [`affine_into`]'s sampling for images of at most [`FLAT`] pixels, through [`flat`] indices,
/// compiled for the widest vectors this CPU has ([`Flat`]): the coordinates are additions,
/// multiplications, divisions and comparisons of `f32`s, each rounded once at any width (the
/// compiler fuses nothing), so every compilation gives the same pixels.
fn sample_flat(g: &Grid, img: &[u8], out: &mut [u8]) {
    Flat::widest().sample(g, img, out)
}

/// The compilations of [`sample_flat`]. The baseline's are SSE2 vectors of 4 coordinates,
/// which made the coordinates 60 % of a rotation (the step's next batch is rotated beside it,
/// on its threads).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flat {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Flat {
    /// The widest this CPU runs (the standard library caches what the CPU has).
    fn widest() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                return Flat::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Flat::Avx2;
            }
        }
        Flat::Baseline
    }

    /// Every compilation this CPU runs, up to [`Flat::widest`].
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let all = [
            Flat::Baseline,
            #[cfg(target_arch = "x86_64")]
            Flat::Avx2,
            #[cfg(target_arch = "x86_64")]
            Flat::Avx512,
        ];
        let widest = Self::widest();
        let n = all.iter().position(|&f| f == widest).expect("listed") + 1;
        all[..n].to_vec()
    }

    fn sample(self, g: &Grid, img: &[u8], out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn avx2(g: &Grid, img: &[u8], out: &mut [u8]) {
            flat_body(g, img, out)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        fn avx512(g: &Grid, img: &[u8], out: &mut [u8]) {
            flat_body(g, img, out)
        }
        match self {
            Flat::Baseline => flat_body(g, img, out),
            // SAFETY: only `widest` and `available` make a `Flat` other than the baseline, and
            // only where the CPU has its features.
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            Flat::Avx2 => unsafe { avx2(g, img, out) },
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            Flat::Avx512 => unsafe { avx512(g, img, out) },
        }
    }
}

/// [`sample_flat`]'s one body, inlined into each compilation.
#[inline(always)]
fn flat_body(g: &Grid, img: &[u8], out: &mut [u8]) {
    let mut from = vec![0i32; g.xs.len()];
    for (i, row) in out.chunks_exact_mut(g.xs.len().max(1)).enumerate() {
        let (yx, yy) = g.row(i);
        for (f, &x) in from.iter_mut().zip(&g.xs) {
            *f = flat(g.source(x, yx, yy), g.w);
        }
        for (o, &k) in row.iter_mut().zip(&from) {
            // A negative index (the fill) converts to one past any image.
            *o = img.get(k as usize).copied().unwrap_or(0);
        }
    }
}

/// [`affine_into`]'s sampling for any image, through `(column, row)` pairs.
fn sample_pairs(g: &Grid, img: &[u8], out: &mut [u8]) {
    let cols = g.xs.len();
    let mut from = vec![(0.0f32, 0.0f32); cols];
    for (i, row) in out.chunks_exact_mut(cols.max(1)).enumerate() {
        let (yx, yy) = g.row(i);
        for (f, &x) in from.iter_mut().zip(&g.xs) {
            *f = g.source(x, yx, yy);
        }
        for (o, &(sx, sy)) in row.iter_mut().zip(&from) {
            // Inside the image both coordinates are small whole numbers: exact conversions.
            *o = match sx >= 0.0 {
                true => img[sy as usize * cols + sx as usize],
                false => 0,
            };
        }
    }
}

/// Pixels of the largest image whose flat pixel indices [`flat`] computes exactly: `2²³`.
const FLAT: usize = 1 << 23;

/// The sampling grid of one transform on a `rows × cols` image.
struct Grid {
    /// `rescaled_theta = theta.T / [0.5 w, 0.5 h]` (f32 division), as `(r00, r10, r20)` and
    /// `(r01, r11, r21)`.
    r0: (f32, f32, f32),
    r1: (f32, f32, f32),
    /// The pixel centres' `x` of a row.
    xs: Vec<f32>,
    w: f32,
    h: f32,
}

impl Grid {
    fn new(t: &Affine, rows: usize, cols: usize) -> Self {
        let [m0, m1, m2, m3, m4, m5] = t.inverse_matrix();
        let (w, h) = (cols as f32, rows as f32);
        Grid {
            r0: (m0 / (0.5 * w), m1 / (0.5 * w), m2 / (0.5 * w)),
            r1: (m3 / (0.5 * h), m4 / (0.5 * h), m5 / (0.5 * h)),
            xs: (0..cols).map(|j| j as f32 - w * 0.5 + 0.5).collect(),
            w,
            h,
        }
    }

    /// Row `i`'s `y·r10` and `y·r11`.
    fn row(&self, i: usize) -> (f32, f32) {
        let y = i as f32 - self.h * 0.5 + 0.5;
        (y * self.r0.1, y * self.r1.1)
    }

    /// Where the pixel at `x` of a row (`yx`, `yy`: [`Grid::row`]) reads from: `base_grid.bmm(
    /// rescaled_theta)`, `x·r0 + y·r1 + 1·r2` in that order, then [`source`].
    #[inline(always)]
    fn source(&self, x: f32, yx: f32, yy: f32) -> (f32, f32) {
        let (gx, gy) = (
            x * self.r0.0 + yx + self.r0.2,
            x * self.r1.0 + yy + self.r1.2,
        );
        source(gx, gy, self.w, self.h)
    }
}

/// The pixel grid_sample reads at normalised coordinates `(gx, gy)` of a `w × h` image, as
/// (column, row): its unnormalisation with align_corners=False, then nearest (half to even);
/// a column of −1 outside the image, where the output is the fill.
#[inline(always)]
fn source(gx: f32, gy: f32, w: f32, h: f32) -> (f32, f32) {
    let sx = round_ties_even(((gx + 1.0) * w - 1.0) / 2.0);
    let sy = round_ties_even(((gy + 1.0) * h - 1.0) / 2.0);
    let inside = sx >= 0.0 && sx < w && sy >= 0.0 && sy < h;
    (if inside { sx } else { -1.0 }, sy)
}

/// The flat index `sy·w + sx` of [`source`]'s pixel `(sx, sy)` in a `w`-column image of at most
/// [`FLAT`] pixels, or a negative index for the fill (`sx = −1`). Not through `as i32`, whose
/// saturating conversion the compiler leaves scalar on a baseline x86-64 CPU (it took the
/// sampling from 1.7 to 2.9 ns a pixel): the whole number `v` in `[−1, 2²³)` is exact, and
/// `v + 2²³` lies in `[2²³ − 1, 2²⁴)`, where the spacing is at most 1, so the sum is exact too
/// and its bits are `0x4B00_0000 + v` (`2²³ − 1` gives −2).
#[inline(always)]
fn flat((sx, sy): (f32, f32), w: f32) -> i32 {
    let v = if sx >= 0.0 { sy * w + sx } else { -1.0 };
    (v + 8_388_608.0).to_bits() as i32 - 0x4B00_0000
}

/// `v.round_ties_even()` without a call to the C library's `rintf` (which is what it compiles to
/// for a baseline x86-64 CPU, without SSE4.1's `roundss`), and without a branch, so that a loop
/// of them becomes vector instructions; the same value for every `v`, signed zeros included:
/// when `|v| < 2²³`, `|v| + 2²³` lies in `[2²³, 2²⁴)`, where the float spacing is 1, so the
/// addition itself rounds `|v|` to an integer, to even on a tie (`2²³` is even), the
/// subtraction is exact, and the sign goes back on. From `2²³` on every float is a whole
/// number already; infinities and NaN are kept as they are.
#[inline(always)]
fn round_ties_even(v: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let a = v.abs();
    let r = ((a + TWO_23) - TWO_23).copysign(v);
    if a < TWO_23 { r } else { v }
}

/// [`affine_into`], into a new image of the same size.
pub fn affine(img: &[u8], rows: usize, cols: usize, t: &Affine) -> Vec<u8> {
    let mut out = vec![0; img.len()];
    affine_into(img, rows, cols, t, &mut out);
    out
}

/// Rotates a `rows × cols` grayscale image by `degrees` (counter-clockwise) about its centre,
/// nearest-neighbour, fill 0, into `out` (same size): [`affine_into`] with
/// [`Affine::rotation`], whose matrix is exactly torchvision's `rotate`'s. Panics if the slice
/// lengths are not `rows * cols`.
pub fn rotate_into(img: &[u8], rows: usize, cols: usize, degrees: f32, out: &mut [u8]) {
    affine_into(img, rows, cols, &Affine::rotation(degrees), out);
}

/// Rotates an image by exactly `degrees`; returns a new image of the same size.
pub fn rotate(img: &[u8], rows: usize, cols: usize, degrees: f32) -> Vec<u8> {
    let mut out = vec![0; img.len()];
    rotate_into(img, rows, cols, degrees, &mut out);
    out
}

/// `RandomRotation(max_degrees)`: an angle uniform in `[-max_degrees, max_degrees]` per image.
///
/// ```
/// use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
/// use under8k_mnist_data::augment::RandomRotation;
///
/// let rotation = RandomRotation::new(7.0)?;
/// let image: Vec<u8> = (0..28 * 28).map(|i| (i % 256) as u8).collect();
/// let mut out = vec![0; 28 * 28];
/// // The angle comes from the caller's seeded RNG: the same seed, the same pixels.
/// rotation.apply_into(&mut ChaCha8Rng::seed_from_u64(3), &image, 28, 28, &mut out);
/// let mut again = vec![0; 28 * 28];
/// rotation.apply_into(&mut ChaCha8Rng::seed_from_u64(3), &image, 28, 28, &mut again);
/// assert_eq!(out, again);
/// assert!(RandomRotation::new(f32::NAN).is_err());
/// # Ok::<(), under8k_mnist_data::augment::InvalidRotation>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomRotation {
    /// Largest rotation either way, in degrees.
    pub max_degrees: f32,
}

/// An invalid augmentation setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rotation range must be a finite, non-negative number of degrees up to 180, got {0}")]
pub struct InvalidRotation(pub f32);

impl RandomRotation {
    /// Validating constructor: `max_degrees` must be finite and in `[0, 180]`.
    pub fn new(max_degrees: f32) -> Result<Self, InvalidRotation> {
        if max_degrees.is_finite() && (0.0..=180.0).contains(&max_degrees) {
            Ok(Self { max_degrees })
        } else {
            Err(InvalidRotation(max_degrees))
        }
    }

    /// Draws one angle from `rng`: one `u32`, its top 24 bits as a uniform `f32` in `[0, 1)`.
    /// Written out here (not `rand`'s distributions) so the stream of angles for a seed never
    /// changes with a dependency upgrade.
    pub fn sample_angle<R: RngCore + ?Sized>(&self, rng: &mut R) -> f32 {
        // −m + (m − (−m))·u: the same bits as −m + 2m·u (m + m = 2m exactly).
        uniform(rng, -self.max_degrees, self.max_degrees)
    }

    /// Draws an angle and rotates `img` by it into `out`; returns the angle.
    pub fn apply_into<R: RngCore + ?Sized>(
        &self,
        rng: &mut R,
        img: &[u8],
        rows: usize,
        cols: usize,
        out: &mut [u8],
    ) -> f32 {
        let angle = self.sample_angle(rng);
        rotate_into(img, rows, cols, angle, out);
        angle
    }
}

/// A uniform `f32` in `[lo, hi)` from one `u32` (its top 24 bits), as [`RandomRotation`] draws.
fn uniform<R: RngCore + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    let u = (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
    lo + (hi - lo) * u
}

/// An invalid affine or erasing setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidAugmentation {
    /// The affine ranges are out of bounds.
    #[error(
        "affine augmentation needs degrees in [0, 180], translate in [0, 1] and 0 < min scale ≤ max scale, all finite; got degrees {degrees}, translate {translate}, scale {scale:?}"
    )]
    Affine {
        /// Degrees.
        degrees: f32,
        /// Translate fraction.
        translate: f32,
        /// Scale range.
        scale: (f32, f32),
    },
    /// The erasing settings are out of bounds.
    #[error(
        "random erasing needs p in [0, 1], 0 < min area ≤ max area < 1 and 0 < min ratio ≤ max ratio, all finite; got p {p}, area {area:?}, ratio {ratio:?}"
    )]
    Erasing {
        /// Probability.
        p: f32,
        /// Area fraction range.
        area: (f32, f32),
        /// Aspect-ratio range.
        ratio: (f32, f32),
    },
}

/// `RandomAffine(degrees, translate=(t, t), scale=(lo, hi))` without shear: per image, an angle
/// uniform in `[−degrees, degrees]`, a shift of `round(u · t · side)` whole pixels each way
/// (`u` uniform in `[−1, 1)`, ties to even, as Python's `round`), a scale uniform in `[lo, hi)` —
/// drawn in that order, as torchvision's `get_params` does — then [`affine_into`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomAffine {
    /// Largest turn either way, degrees.
    pub degrees: f32,
    /// Largest shift, as a fraction of the side (same for both axes).
    pub translate: f32,
    /// Scale range.
    pub scale: (f32, f32),
}

impl RandomAffine {
    /// Validating constructor.
    pub fn new(
        degrees: f32,
        translate: f32,
        scale: (f32, f32),
    ) -> Result<Self, InvalidAugmentation> {
        let finite = [degrees, translate, scale.0, scale.1]
            .iter()
            .all(|v| v.is_finite());
        if finite
            && (0.0..=180.0).contains(&degrees)
            && (0.0..=1.0).contains(&translate)
            && scale.0 > 0.0
            && scale.0 <= scale.1
        {
            Ok(Self {
                degrees,
                translate,
                scale,
            })
        } else {
            Err(InvalidAugmentation::Affine {
                degrees,
                translate,
                scale,
            })
        }
    }

    /// Draws one transform for a `rows × cols` image.
    pub fn sample<R: RngCore + ?Sized>(&self, rng: &mut R, rows: usize, cols: usize) -> Affine {
        let angle = uniform(rng, -self.degrees, self.degrees);
        let (max_dx, max_dy) = (self.translate * cols as f32, self.translate * rows as f32);
        let tx = uniform(rng, -max_dx, max_dx).round_ties_even() as i32;
        let ty = uniform(rng, -max_dy, max_dy).round_ties_even() as i32;
        let scale = uniform(rng, self.scale.0, self.scale.1);
        Affine {
            angle,
            translate: (tx, ty),
            scale,
        }
    }

    /// Draws a transform and applies it to `img` into `out`; returns it.
    pub fn apply_into<R: RngCore + ?Sized>(
        &self,
        rng: &mut R,
        img: &[u8],
        rows: usize,
        cols: usize,
        out: &mut [u8],
    ) -> Affine {
        let t = self.sample(rng, rows, cols);
        affine_into(img, rows, cols, &t, out);
        t
    }
}

/// A rectangle to blank: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// Sets the pixels of `rect` to 0 (the background, before normalisation).
pub fn erase(img: &mut [u8], cols: usize, rect: Rect) {
    for r in rect.top..rect.top + rect.height {
        img[r * cols + rect.left..][..rect.width].fill(0);
    }
}

/// `RandomErasing(p, scale=area, ratio)` with value 0 applied before normalisation (cutout):
/// with probability `p`, up to 10 tries of an area fraction uniform in `area` and a log-uniform
/// aspect ratio in `ratio`, `h = round(√(A·r))`, `w = round(√(A/r))`, kept when it fits inside
/// the image, placed uniformly — torchvision's `get_params`, drawn from our RNG.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomErasing {
    /// Probability of erasing an image.
    pub p: f32,
    /// Area range, as fractions of the image.
    pub area: (f32, f32),
    /// Aspect-ratio (height / width) range.
    pub ratio: (f32, f32),
}

impl RandomErasing {
    /// Validating constructor.
    pub fn new(p: f32, area: (f32, f32), ratio: (f32, f32)) -> Result<Self, InvalidAugmentation> {
        let finite = [p, area.0, area.1, ratio.0, ratio.1]
            .iter()
            .all(|v| v.is_finite());
        if finite
            && (0.0..=1.0).contains(&p)
            && area.0 > 0.0
            && area.0 <= area.1
            && area.1 < 1.0
            && ratio.0 > 0.0
            && ratio.0 <= ratio.1
        {
            Ok(Self { p, area, ratio })
        } else {
            Err(InvalidAugmentation::Erasing { p, area, ratio })
        }
    }

    /// Draws the rectangle to erase in a `rows × cols` image, if any.
    pub fn sample<R: RngCore + ?Sized>(
        &self,
        rng: &mut R,
        rows: usize,
        cols: usize,
    ) -> Option<Rect> {
        if uniform(rng, 0.0, 1.0) >= self.p {
            return None;
        }
        let total = (rows * cols) as f32;
        let (lo, hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = total * uniform(rng, self.area.0, self.area.1);
            let aspect = uniform(rng, lo, hi).exp();
            let height = (target * aspect).sqrt().round_ties_even() as usize;
            let width = (target / aspect).sqrt().round_ties_even() as usize;
            if !(height < rows && width < cols) || height == 0 || width == 0 {
                continue;
            }
            let top = ((rng.next_u64() as u128 * (rows - height + 1) as u128) >> 64) as usize;
            let left = ((rng.next_u64() as u128 * (cols - width + 1) as u128) >> 64) as usize;
            return Some(Rect {
                top,
                left,
                height,
                width,
            });
        }
        None
    }

    /// Draws and erases in place; returns the rectangle, if any.
    pub fn apply<R: RngCore + ?Sized>(
        &self,
        rng: &mut R,
        img: &mut [u8],
        rows: usize,
        cols: usize,
    ) -> Option<Rect> {
        let rect = self.sample(rng, rows, cols)?;
        erase(img, cols, rect);
        Some(rect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turn_is_counter_clockwise() {
        // 2x3 image; a counter-clockwise quarter turn about the centre of a non-square image
        // leaves most pixels outside, so use a square 3x3 where numpy.rot90 gives the answer:
        // rot90([[1,2,3],[4,5,6],[7,8,9]]) = [[3,6,9],[2,5,8],[1,4,7]].
        let img = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(rotate(&img, 3, 3, 90.0), vec![3, 6, 9, 2, 5, 8, 1, 4, 7]);
        assert_eq!(rotate(&img, 3, 3, -90.0), vec![7, 4, 1, 8, 5, 2, 9, 6, 3]);
        assert_eq!(rotate(&img, 3, 3, 180.0), vec![9, 8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn constructor_validates() {
        assert!(RandomRotation::new(7.0).is_ok());
        assert!(RandomRotation::new(-1.0).is_err());
        assert!(RandomRotation::new(f32::NAN).is_err());
        assert!(RandomRotation::new(181.0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn rounding_equals_the_standard_librarys(v in proptest::num::f32::ANY) {
            let (a, b) = (round_ties_even(v), v.round_ties_even());
            proptest::prop_assert!(a == b || (a.is_nan() && b.is_nan()), "{v}: {a} vs {b}");
        }
    }

    /// torchvision's sampling transcribed one pixel at a time, as [`affine_into`] did before
    /// its coordinates became a loop of vector instructions: the standard library's rounding,
    /// a branch per pixel.
    fn per_pixel(img: &[u8], rows: usize, cols: usize, t: &Affine) -> Vec<u8> {
        let [m0, m1, m2, m3, m4, m5] = t.inverse_matrix();
        let (w, h) = (cols as f32, rows as f32);
        let (r0, r1) = (
            (m0 / (0.5 * w), m1 / (0.5 * w), m2 / (0.5 * w)),
            (m3 / (0.5 * h), m4 / (0.5 * h), m5 / (0.5 * h)),
        );
        let mut out = vec![0; rows * cols];
        for i in 0..rows {
            let y = i as f32 - h * 0.5 + 0.5;
            for j in 0..cols {
                let x = j as f32 - w * 0.5 + 0.5;
                let gx = x * r0.0 + y * r0.1 + r0.2;
                let gy = x * r1.0 + y * r1.1 + r1.2;
                let sx = (((gx + 1.0) * w - 1.0) / 2.0).round_ties_even();
                let sy = (((gy + 1.0) * h - 1.0) / 2.0).round_ties_even();
                if sx >= 0.0 && sx < w && sy >= 0.0 && sy < h {
                    out[i * cols + j] = img[sy as usize * cols + sx as usize];
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn affine_equals_the_per_pixel_transcription(
            rows in 0usize..40,
            cols in 0usize..40,
            angle in -180.0f32..180.0,
            translate in (-12i32..12, -12i32..12),
            scale in 0.25f32..4.0,
            seed in proptest::num::u64::ANY,
        ) {
            let img: Vec<u8> = (0..rows * cols)
                .map(|k| (seed.wrapping_mul(k as u64 * 2 + 1) >> 56) as u8)
                .collect();
            let t = Affine { angle, translate, scale };
            let expected = per_pixel(&img, rows, cols, &t);
            proptest::prop_assert_eq!(&affine(&img, rows, cols, &t), &expected);
            // Every compilation of the flat sampler this CPU runs.
            let g = Grid::new(&t, rows, cols);
            for path in Flat::available() {
                let mut flat = vec![1; rows * cols];
                path.sample(&g, &img, &mut flat);
                proptest::prop_assert_eq!(&flat, &expected, "{:?}", path);
            }
            // The sampler for images over `FLAT` pixels, on these small ones.
            let mut pairs = vec![1; rows * cols];
            sample_pairs(&Grid::new(&t, rows, cols), &img, &mut pairs);
            proptest::prop_assert_eq!(&pairs, &expected);
        }
    }

    #[test]
    fn rounding_ties_and_edges() {
        // Every half and whole number in [−64, 64] (the ties go to the even neighbour), then the
        // edges of the fast range and beyond, against the standard library one by one.
        let halves = (-128..=128).map(|k| k as f32 * 0.5);
        let edges = [
            4_194_303.5,
            4_194_304.0,
            8_388_607.5,
            8_388_608.0,
            8_388_609.0,
            1e30,
            f32::MAX,
            f32::INFINITY,
        ];
        for v in halves.chain(edges).chain(edges.map(|v: f32| -v)) {
            assert_eq!(round_ties_even(v), v.round_ties_even(), "{v}");
        }
        assert_eq!(round_ties_even(2.5), 2.0);
        assert_eq!(round_ties_even(-3.5), -4.0);
    }
}
