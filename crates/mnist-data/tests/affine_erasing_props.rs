//! Properties of the affine transform and of random erasing (torchvision's own output is
//! `torchvision_affine.rs`'s job).

use proptest::prelude::*;
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_mnist_data::augment::{
    Affine, RandomAffine, RandomErasing, RandomRotation, Rect, affine, erase,
};
use under8k_mnist_data::batch::{BatchConfig, EpochBatches};
use under8k_mnist_data::dataset::Normalization;

mod common;
use common::toy_split;

fn image(max_side: usize) -> impl Strategy<Value = (usize, usize, Vec<u8>)> {
    (1..max_side, 1..max_side).prop_flat_map(|(r, c)| {
        proptest::collection::vec(any::<u8>(), r * c).prop_map(move |v| (r, c, v))
    })
}

proptest! {
    #[test]
    fn the_identity_transform_changes_nothing((r, c, img) in image(40)) {
        let id = Affine { angle: 0.0, translate: (0, 0), scale: 1.0 };
        prop_assert_eq!(affine(&img, r, c, &id), img);
    }

    /// A whole-pixel shift moves every pixel by (tx, ty), right and down, filling with 0:
    /// out[i][j] = img[i − ty][j − tx] where that is inside the image.
    #[test]
    fn a_shift_moves_every_pixel((r, c, img) in image(30), tx in -8i32..8, ty in -8i32..8) {
        let t = Affine { angle: 0.0, translate: (tx, ty), scale: 1.0 };
        let want: Vec<u8> = (0..r * c)
            .map(|k| {
                let (i, j) = ((k / c) as i32 - ty, (k % c) as i32 - tx);
                if (0..r as i32).contains(&i) && (0..c as i32).contains(&j) {
                    img[i as usize * c + j as usize]
                } else {
                    0
                }
            })
            .collect();
        prop_assert_eq!(affine(&img, r, c, &t), want);
    }

    #[test]
    fn affine_output_is_made_of_input_pixels_or_fill(
        (r, c, img) in image(30),
        angle in -180.0f32..180.0,
        scale in 0.5f32..2.0,
        tx in -5i32..5,
    ) {
        let out = affine(&img, r, c, &Affine { angle, translate: (tx, -tx), scale });
        prop_assert_eq!(out.len(), img.len());
        for v in out {
            prop_assert!(v == 0 || img.contains(&v));
        }
    }

    #[test]
    fn random_affine_draws_stay_in_their_ranges(
        seed in any::<u64>(),
        d in 0.0f32..45.0,
        t in 0.0f32..0.3,
        lo in 0.5f32..1.0,
        extra in 0.0f32..0.5,
    ) {
        let a = RandomAffine::new(d, t, (lo, lo + extra)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let max_shift = (t * 28.0).round() as i32;
        for _ in 0..50 {
            let s = a.sample(&mut rng, 28, 28);
            prop_assert!((-d..=d).contains(&s.angle));
            prop_assert!(s.translate.0.abs() <= max_shift && s.translate.1.abs() <= max_shift);
            prop_assert!((lo..=lo + extra).contains(&s.scale));
        }
    }

    /// Erasing blanks exactly its rectangle, which lies inside the image and whose area is in
    /// range up to the rounding of its sides.
    #[test]
    fn erasing_blanks_exactly_a_rectangle_inside_the_image(
        seed in any::<u64>(),
        (r, c, img) in (8usize..40, 8usize..40).prop_flat_map(|(r, c)| {
            proptest::collection::vec(1u8..=255, r * c).prop_map(move |v| (r, c, v))
        }),
    ) {
        let e = RandomErasing::new(1.0, (0.02, 0.2), (0.3, 3.3)).unwrap();
        let mut out = img.clone();
        let Some(rect) = e.apply(&mut ChaCha8Rng::seed_from_u64(seed), &mut out, r, c) else {
            // Ten tries that do not fit are possible, though rare, at these sizes.
            prop_assert_eq!(out, img);
            return Ok(());
        };
        prop_assert!(rect.top + rect.height <= r && rect.left + rect.width <= c);
        prop_assert!(rect.height >= 1 && rect.width >= 1);
        for k in 0..r * c {
            let (i, j) = (k / c, k % c);
            let inside = (rect.top..rect.top + rect.height).contains(&i)
                && (rect.left..rect.left + rect.width).contains(&j);
            prop_assert_eq!(out[k], if inside { 0 } else { img[k] });
        }
        // h·w against A = area·total: h, w are within ½ of √(A·ratio) and √(A/ratio), so the
        // product is within (√(A·ratio) + ½)(√(A/ratio) + ½) ≤ A + ½(√(A·3.3) + √(A/0.3)) + ¼.
        let total = (r * c) as f64;
        let a_max = 0.2 * total;
        let bound = a_max + 0.5 * ((a_max * 3.3).sqrt() + (a_max / 0.3).sqrt()) + 0.25;
        prop_assert!(((rect.height * rect.width) as f64) <= bound);
    }

    #[test]
    fn erasing_with_p_zero_never_erases(seed in any::<u64>()) {
        let e = RandomErasing::new(0.0, (0.02, 0.2), (0.3, 3.3)).unwrap();
        prop_assert_eq!(e.sample(&mut ChaCha8Rng::seed_from_u64(seed), 28, 28), None);
    }
}

#[test]
fn erase_blanks_the_rectangle_given() {
    // 3×4 image of ones; erase rows 1..3, columns 1..3.
    let mut img = vec![1u8; 12];
    erase(
        &mut img,
        4,
        Rect {
            top: 1,
            left: 1,
            height: 2,
            width: 2,
        },
    );
    assert_eq!(img, [1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1]);
}

#[test]
fn bad_settings_are_refused() {
    assert!(RandomAffine::new(-1.0, 0.1, (0.9, 1.1)).is_err());
    assert!(RandomAffine::new(10.0, 1.5, (0.9, 1.1)).is_err());
    assert!(RandomAffine::new(10.0, 0.1, (1.1, 0.9)).is_err());
    assert!(RandomAffine::new(10.0, 0.1, (0.0, 1.1)).is_err());
    assert!(RandomAffine::new(f32::NAN, 0.1, (0.9, 1.1)).is_err());
    assert!(RandomErasing::new(1.5, (0.02, 0.2), (0.3, 3.3)).is_err());
    assert!(RandomErasing::new(0.5, (0.2, 0.02), (0.3, 3.3)).is_err());
    assert!(RandomErasing::new(0.5, (0.02, 1.0), (0.3, 3.3)).is_err());
    assert!(RandomErasing::new(0.5, (0.02, 0.2), (0.0, 3.3)).is_err());
}

fn epoch(cfg: BatchConfig, seed: u64) -> Vec<Vec<f32>> {
    EpochBatches::new(&toy_split(40), cfg, ChaCha8Rng::seed_from_u64(seed))
        .map(|b| b.pixels)
        .collect()
}

/// Batches with every augmentation are seeded; with the extra ones absent they are the batches
/// of the rotation alone, and each extra one changes them.
#[test]
fn batches_with_all_augmentations_are_seeded() {
    let base = BatchConfig::new(
        16,
        true,
        Some(RandomRotation::new(7.0).unwrap()),
        Normalization::MNIST,
    )
    .unwrap();
    let affine = Some(RandomAffine::new(10.0, 0.1, (0.9, 1.1)).unwrap());
    let erasing = Some(RandomErasing::new(0.5, (0.02, 0.2), (0.3, 3.3)).unwrap());
    let all = base.with_affine(affine).with_erasing(erasing);
    assert_eq!(epoch(all, 3), epoch(all, 3));
    assert_ne!(epoch(all, 3), epoch(all, 4));
    assert_eq!(
        epoch(base.with_affine(None).with_erasing(None), 3),
        epoch(base, 3)
    );
    assert_ne!(epoch(base.with_affine(affine), 3), epoch(base, 3));
    assert_ne!(epoch(base.with_erasing(erasing), 3), epoch(base, 3));
}
