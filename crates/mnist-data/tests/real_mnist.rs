//! The real MNIST, fetched into the workspace's `data/mnist` if it is not there yet (the fetch is
//! the crate's own, verified by MD5), checked against facts published about the dataset.

use std::path::PathBuf;

use under8k_mnist_data::fetch::{self, FetchOptions, Source};
use under8k_mnist_data::{Mnist, Normalization};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

#[test]
fn real_mnist_matches_published_facts() {
    let dir = data_dir();
    let report = fetch::fetch(&FetchOptions::new(&dir), &mut ()).expect("MNIST fetch");
    assert_eq!(report.files.len(), 4);
    // A second fetch finds everything in place.
    let again = fetch::fetch(&FetchOptions::new(&dir), &mut ()).unwrap();
    assert!(again.files.iter().all(|f| f.source == Source::Existing));

    let mnist = Mnist::load(&dir).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    assert_eq!((mnist.train.images.rows, mnist.train.images.cols), (28, 28));
    // Per-class counts and first labels as torchvision / the original site list them.
    assert_eq!(
        mnist.train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        mnist.test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(&mnist.train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&mnist.test.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // The famous normalisation constants come out of the data.
    let n = Normalization::from_pixels(&mnist.train.images.pixels).unwrap();
    assert_eq!(
        (format!("{:.4}", n.mean), format!("{:.4}", n.std)),
        ("0.1307".into(), "0.3081".into())
    );
}
