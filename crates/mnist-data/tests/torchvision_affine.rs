//! `augment::rotate` and `augment::affine` against torchvision's own output: 80 rotations over the
//! whole circle and 80 affine transforms in `RandomAffine(15, translate=(0.15, 0.15),
//! scale=(0.8, 1.2))`'s ranges, of MNIST test images, written by `scripts/torchvision_affine.py`
//! (torch 2.x, torchvision's `F.rotate` / `F.affine`, nearest, fill 0). Every pixel must agree.

use under8k_mnist_data::augment::{Affine, affine, rotate};

const FIXTURE: &[u8] = include_bytes!("fixtures/torchvision_affine.bin");
const PIXELS: usize = 28 * 28;
const RECORD: usize = 20 + 2 * PIXELS;

fn le(b: &[u8]) -> [u8; 4] {
    b[..4].try_into().unwrap()
}

#[test]
fn matches_torchvision_pixel_for_pixel() {
    assert_eq!(FIXTURE.len() % RECORD, 0);
    let (mut rotations, mut affines, mut changed) = (0, 0, 0);
    for (k, r) in FIXTURE.chunks(RECORD).enumerate() {
        let kind = u32::from_le_bytes(le(r));
        let angle = f32::from_le_bytes(le(&r[4..]));
        let translate = (
            i32::from_le_bytes(le(&r[8..])),
            i32::from_le_bytes(le(&r[12..])),
        );
        let scale = f32::from_le_bytes(le(&r[16..]));
        let (input, want) = (&r[20..20 + PIXELS], &r[20 + PIXELS..]);
        let got = match kind {
            0 => {
                rotations += 1;
                rotate(input, 28, 28, angle)
            }
            _ => {
                affines += 1;
                affine(
                    input,
                    28,
                    28,
                    &Affine {
                        angle,
                        translate,
                        scale,
                    },
                )
            }
        };
        assert_eq!(got.len(), want.len(), "pixels");
        let wrong = got.iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(
            wrong, 0,
            "record {k} (kind {kind}, angle {angle}, translate {translate:?}, scale {scale}): {wrong} pixels differ"
        );
        changed += usize::from(got != input);
    }
    assert_eq!((rotations, affines), (80, 80));
    // Small angles with no shift can leave a digit as it was; nearly all records change it.
    assert!(changed >= 150, "{changed}");
}
