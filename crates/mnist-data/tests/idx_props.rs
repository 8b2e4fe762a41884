//! Property tests of the IDX codec: round trips, and `Ok`-or-typed-error (never a panic) on any
//! byte string, random or a mutated valid file.

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use proptest::prelude::*;
use under8k_mnist_data::idx::{self, IdxError, IdxProblem, Images};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn images() -> impl Strategy<Value = Images> {
    (1usize..12, 1usize..30, 1usize..30).prop_flat_map(|(count, rows, cols)| {
        proptest::collection::vec(any::<u8>(), count * rows * cols).prop_map(move |pixels| Images {
            count,
            rows,
            cols,
            pixels,
        })
    })
}

proptest! {
    #[test]
    fn images_round_trip(img in images(), compress in any::<bool>()) {
        let mut bytes = idx::encode_images(&img);
        if compress { bytes = gz(&bytes); }
        prop_assert_eq!(idx::decode_images(&bytes).unwrap(), img);
    }

    #[test]
    fn labels_round_trip(labels in proptest::collection::vec(0u8..10, 1..500), compress in any::<bool>()) {
        let mut bytes = idx::encode_labels(&labels);
        if compress { bytes = gz(&bytes); }
        prop_assert_eq!(idx::decode_labels(&bytes).unwrap(), labels);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = idx::decode_images(&bytes);
        let _ = idx::decode_labels(&bytes);
        let _ = idx::decode_images(&gz(&bytes));
    }

    /// Random bytes behind a valid-looking header: exercises the size checks, not just the magic.
    #[test]
    fn random_headers_never_panic(dims in proptest::collection::vec(any::<u32>(), 3), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![0, 0, 8, 3];
        for d in &dims { bytes.extend_from_slice(&(d % 9).to_be_bytes()); }
        bytes.extend_from_slice(&tail);
        let declared = dims.iter().map(|d| (d % 9) as u64).product::<u64>();
        match idx::decode_images(&bytes) {
            Ok(img) => prop_assert_eq!(img.pixels.len() as u64, declared),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mutated_files_never_panic(
        img in images(),
        compress in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = idx::encode_images(&img);
        if compress { bytes = gz(&bytes); }
        for (at, v) in edits { let i = at.index(bytes.len()); bytes[i] = v; }
        if do_cut { bytes.truncate(cut.index(bytes.len() + 1)); }
        if let Ok(back) = idx::decode_images(&bytes) {
            prop_assert_eq!(back.pixels.len(), back.count * back.rows * back.cols);
        }
        let _ = idx::decode_labels(&bytes);
    }
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad-labels");
    std::fs::write(&p, [0, 0, 8, 1, 0, 0, 0, 2, 1]).unwrap();
    let e = idx::read_labels(&p).unwrap_err();
    assert!(matches!(
        e,
        IdxError::Invalid {
            problem: IdxProblem::Truncated {
                declared: 2,
                present: 1
            },
            ..
        }
    ));
    assert!(e.to_string().contains("bad-labels"), "{e}");
    let missing = dir.path().join("nope");
    let e = idx::read_images(&missing).unwrap_err();
    assert!(
        matches!(e, IdxError::Io { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
}

proptest! {
    /// The decoders that keep their bytes give what the borrowing ones give, on valid files
    /// (raw and gzip) and on any bytes at all (the same value or the same error).
    #[test]
    fn owned_decoders_agree_with_borrowing_ones(
        img in images(),
        labels in proptest::collection::vec(0u8..12, 1..200),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        compress in any::<bool>(),
    ) {
        let wrap = |b: Vec<u8>| if compress { gz(&b) } else { b };
        let (bi, bl) = (wrap(idx::encode_images(&img)), wrap(idx::encode_labels(&labels)));
        prop_assert_eq!(idx::decode_images_owned(bi.clone()), idx::decode_images(&bi));
        prop_assert_eq!(idx::decode_labels_owned(bl.clone()), idx::decode_labels(&bl));
        prop_assert_eq!(idx::decode_images_owned(noise.clone()), idx::decode_images(&noise));
        prop_assert_eq!(idx::decode_labels_owned(noise.clone()), idx::decode_labels(&noise));
    }

    /// The MD5 of data in memory, hashed without encoding it, is the MD5 of its encoded file.
    #[cfg(feature = "fetch")]
    #[test]
    fn md5_of_data_is_md5_of_its_file(img in images(), labels in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(idx::images_md5(&img), idx::md5_hex(&idx::encode_images(&img)));
        prop_assert_eq!(idx::labels_md5(&labels), idx::md5_hex(&idx::encode_labels(&labels)));
    }
}
