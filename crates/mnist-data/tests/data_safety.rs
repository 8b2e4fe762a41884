//! `fetch` never touches a file that is there: whatever bytes sit under a dataset's file name,
//! it names the file and leaves it as it was; only `repair` moves it, and never over another.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use proptest::prelude::*;
use under8k_mnist_data::dataset::FILE_NAMES;
use under8k_mnist_data::fetch::{self, BadProblem, FetchError, FetchOptions, FileState, Source};
use under8k_mnist_data::{Dataset, idx};

/// No source at all: nothing can be fetched.
fn offline(dataset: Dataset, dir: &Path) -> FetchOptions {
    FetchOptions {
        mirrors: vec![],
        local_copies: vec![],
        pypi: None,
        ..FetchOptions::for_dataset(dataset, dir)
    }
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

    /// Any bytes under any of the four names, raw or `.gz`, for either dataset: the file is
    /// reported bad (no byte string of this size has a canonical MD5) and stays as it was.
    #[test]
    fn whatever_is_there_is_named_and_left_alone(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            // Valid label files, which must fail on their MD5 alone.
            proptest::collection::vec(0u8..10, 1..64).prop_map(|l| idx::encode_labels(&l)),
        ],
        which in 0usize..4,
        gz in any::<bool>(),
        fashion in any::<bool>(),
    ) {
        let dataset = if fashion { Dataset::FashionMnist } else { Dataset::Mnist };
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{}{}", FILE_NAMES[which], if gz { ".gz" } else { "" });
        std::fs::write(dir.path().join(&name), &bytes).unwrap();
        let states = fetch::check_dir(dir.path(), dataset);
        for (i, state) in states.iter().enumerate() {
            match state {
                FileState::Bad(b) => {
                    prop_assert_eq!(i, which);
                    prop_assert_eq!(&b.path, &dir.path().join(&name));
                }
                FileState::Missing { .. } => prop_assert_ne!(i, which),
                FileState::Verified(_) => prop_assert!(false, "{} verified", i),
            }
        }
        let err = fetch::fetch(&offline(dataset, dir.path()), &mut ()).unwrap_err();
        let FetchError::BadFiles { files, .. } = &err else {
            panic!("{err}")
        };
        prop_assert_eq!(files.len(), 1);
        prop_assert!(err.to_string().contains(&name), "{}", err);
        prop_assert_eq!(listing(dir.path()), vec![(name, bytes)]);
    }
}

#[test]
fn bad_problems_say_what_is_true() {
    let dir = tempfile::tempdir().unwrap();
    // A valid IDX label file, not MNIST's: its MD5 computed here from the bytes written.
    let mine = idx::encode_labels(&[1, 2, 3]);
    std::fs::write(dir.path().join(FILE_NAMES[3]), &mine).unwrap();
    std::fs::write(dir.path().join(FILE_NAMES[1]), b"").unwrap();
    let [a, b, c, d] = fetch::check_dir(dir.path(), Dataset::Mnist);
    assert!(matches!(a, FileState::Missing { path } if path == dir.path().join(FILE_NAMES[0])));
    assert!(matches!(c, FileState::Missing { .. }));
    let FileState::Bad(b) = b else {
        panic!("{b:?}")
    };
    assert_eq!(
        b.to_string(),
        format!(
            "{}: corrupt: only 0 bytes: too short for an IDX header of 8 bytes",
            b.path.display()
        )
    );
    let FileState::Bad(d) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        d.problem,
        BadProblem::Foreign {
            dataset: Dataset::Mnist,
            md5: idx::md5_hex(&mine),
            expected: Dataset::Mnist.md5s()[3],
        }
    );
    assert!(d.to_string().ends_with(&format!(
        "not MNIST: a valid IDX file, but its MD5 is {}, not MNIST's 27ae3e4e09519cfbb04c329615203637",
        idx::md5_hex(&mine)
    )));
    // No source: what is missing is said, not "not found".
    std::fs::remove_file(dir.path().join(FILE_NAMES[1])).unwrap();
    std::fs::remove_file(dir.path().join(FILE_NAMES[3])).unwrap();
    let err = fetch::fetch(&offline(Dataset::Mnist, dir.path()), &mut ()).unwrap_err();
    assert!(
        matches!(&err, FetchError::NoSource { missing, .. } if missing.len() == 4),
        "{err}"
    );
    assert!(err.to_string().contains("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte missing"), "{err}");
}

#[test]
fn repair_moves_bad_files_aside_to_free_names_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), b"mine").unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte.bad"), b"older").unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte.gz"), b"also mine").unwrap();
    std::fs::write(d.join("notes.txt"), b"unrelated").unwrap();
    let moved = fetch::repair(d, Dataset::Mnist).unwrap();
    // The raw file first (it hides the .gz), then, looking again, the .gz.
    let pairs: Vec<(String, String)> = moved
        .iter()
        .map(|m| {
            let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
            (name(&m.from), name(&m.to))
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (
                "t10k-labels-idx1-ubyte".into(),
                "t10k-labels-idx1-ubyte.bad.1".into()
            ),
            (
                "t10k-labels-idx1-ubyte.gz".into(),
                "t10k-labels-idx1-ubyte.gz.bad".into()
            ),
        ]
    );
    assert_eq!(
        listing(d),
        [
            ("notes.txt".to_string(), b"unrelated".to_vec()),
            ("t10k-labels-idx1-ubyte.bad".to_string(), b"older".to_vec()),
            ("t10k-labels-idx1-ubyte.bad.1".to_string(), b"mine".to_vec()),
            (
                "t10k-labels-idx1-ubyte.gz.bad".to_string(),
                b"also mine".to_vec()
            ),
        ]
    );
    // Nothing bad is left: a second repair moves nothing.
    assert_eq!(fetch::repair(d, Dataset::Mnist).unwrap(), vec![]);
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_local_copy_is_inflated_verified_and_left_as_it_was() {
    let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    fetch::fetch(&FetchOptions::new(&real), &mut ()).expect("the real files");
    // A read-only source holding the files gzipped, as Debian's Fashion-MNIST package does.
    let source = tempfile::tempdir().unwrap();
    for name in FILE_NAMES {
        let bytes = gz(&std::fs::read(real.join(name)).unwrap());
        std::fs::write(source.path().join(format!("{name}.gz")), bytes).unwrap();
    }
    let before = listing(source.path());
    let dir = tempfile::tempdir().unwrap();
    let options = FetchOptions {
        local_copies: vec![PathBuf::from("/no/such/dir"), source.path().to_path_buf()],
        ..offline(Dataset::Mnist, dir.path())
    };
    let report = fetch::fetch(&options, &mut ()).unwrap();
    assert!(
        report
            .files
            .iter()
            .all(|f| f.source == Source::Local(source.path().to_path_buf()))
    );
    assert_eq!(
        report.failures.len(),
        1,
        "the missing directory is reported"
    );
    for (i, name) in FILE_NAMES.iter().enumerate() {
        assert_eq!(report.files[i].md5, Dataset::Mnist.md5s()[i]);
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            std::fs::read(real.join(name)).unwrap()
        );
    }
    assert_eq!(listing(source.path()), before);
    // The same source checked against Fashion-MNIST's MD5s: refused, nothing written.
    let other = tempfile::tempdir().unwrap();
    let options = FetchOptions {
        local_copies: vec![source.path().to_path_buf()],
        ..offline(Dataset::FashionMnist, other.path())
    };
    let err = fetch::fetch(&options, &mut ()).unwrap_err();
    assert!(err.to_string().contains("MD5 mismatch"), "{err}");
    assert_eq!(listing(other.path()), vec![]);
}
