//! Rotation that reproduces torchvision's `RandomRotation(degrees)` on a tensor image.
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

use rand_core::RngCore;

/// Rotates a `rows × cols` grayscale image by `degrees` (counter-clockwise) about its centre,
/// nearest-neighbour, fill 0, into `out` (same size). Panics if the slice lengths are not
/// `rows * cols`.
pub fn rotate_into(img: &[u8], rows: usize, cols: usize, degrees: f32, out: &mut [u8]) {
    assert_eq!(img.len(), rows * cols, "input is not rows*cols pixels");
    assert_eq!(out.len(), rows * cols, "output is not rows*cols pixels");
    let theta = (degrees as f64).to_radians();
    // torchvision: matrix in f64, then `torch.tensor(matrix, dtype=float32)`.
    let (m0, m1, m3, m4) = (
        theta.cos() as f32,
        -theta.sin() as f32,
        theta.sin() as f32,
        theta.cos() as f32,
    );
    let (w, h) = (cols as f32, rows as f32);
    // `rescaled_theta = theta.T / [0.5 w, 0.5 h]` (f32 division).
    let (r00, r10, r01, r11) = (
        m0 / (0.5 * w),
        m1 / (0.5 * w),
        m3 / (0.5 * h),
        m4 / (0.5 * h),
    );
    for i in 0..rows {
        let y = i as f32 - rows as f32 * 0.5 + 0.5;
        for j in 0..cols {
            let x = j as f32 - cols as f32 * 0.5 + 0.5;
            // `base_grid.bmm(rescaled_theta)`: x·r0 + y·r1 + 1·0.
            let gx = x * r00 + y * r10 + 0.0;
            let gy = x * r01 + y * r11 + 0.0;
            // grid_sample's unnormalisation with align_corners=False, then nearest (half to even).
            let sx = (((gx + 1.0) * w - 1.0) / 2.0).round_ties_even();
            let sy = (((gy + 1.0) * h - 1.0) / 2.0).round_ties_even();
            out[i * cols + j] = if sx >= 0.0 && sx < w && sy >= 0.0 && sy < h {
                img[sy as usize * cols + sx as usize]
            } else {
                0
            };
        }
    }
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
        let u = (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
        -self.max_degrees + 2.0 * self.max_degrees * u
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
}
