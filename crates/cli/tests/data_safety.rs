//! A file the user put on disk is never overwritten or deleted unless they asked (`--repair`),
//! and any IDX dataset can be trained on and evaluated (`--dataset idx`).
//!
//! Every case runs the real `under8k` binary on a directory made by the test from the real MNIST
//! files (hard links to `data/mnist`, which CI fetches first), with one file replaced.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{s, stderr, stdout, under8k};

use flate2::{Compression, write::GzEncoder};
use under8k_mnist_data::Dataset;
use under8k_mnist_data::dataset::FILE_NAMES;
use under8k_mnist_data::idx::{self, Images};

fn real() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

/// The committed attempt-1 checkpoint (with its run's config.json beside it).
fn checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/report/runs/attempt1/seed1/model.safetensors")
}

fn real_file(i: usize) -> Vec<u8> {
    std::fs::read(real().join(FILE_NAMES[i])).expect("data/mnist: run `under8k fetch` first")
}

/// A directory with the real MNIST files, but file `i` replaced by `bytes` (under its name plus
/// `suffix`, "" or ".gz").
fn dir_with(i: usize, suffix: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (j, name) in FILE_NAMES.iter().enumerate() {
        if j != i {
            let from = real().join(name);
            let to = dir.path().join(name);
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(drop))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join(format!("{}{suffix}", FILE_NAMES[i])), bytes).unwrap();
    dir
}

/// Every file in `dir` with its size and MD5, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, usize, String)> {
    let mut v: Vec<(String, usize, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len(),
                idx::md5_hex(&bytes),
            )
        })
        .collect();
    v.sort();
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut h = magic.to_be_bytes().to_vec();
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

/// The thirteen kinds of broken file: (which file, suffix, bytes, what the error must say).
fn broken_files() -> Vec<(&'static str, usize, &'static str, Vec<u8>, &'static str)> {
    let labels = real_file(3);
    let images = real_file(2);
    let with = |mut v: Vec<u8>, at: usize, b: u8| {
        v[at] = b;
        v
    };
    let mut trailing = labels.clone();
    trailing.push(0);
    let mut claim = header(idx::IMAGES_MAGIC, &[u32::MAX, 28, 28]);
    claim.extend_from_slice(&images[16..1000]);
    let small = idx::encode_images(&Images {
        count: 10_000,
        rows: 32,
        cols: 24,
        pixels: vec![7; 10_000 * 32 * 24],
    });
    let mut corrupt_gz = gz(&labels);
    let mid = corrupt_gz.len() / 2;
    corrupt_gz[mid..mid + 16].fill(0xa5);
    vec![
        ("empty", 3, "", vec![], "too short"),
        ("header cut short", 3, "", labels[..3].to_vec(), "too short"),
        (
            "wrong magic",
            3,
            "",
            with(labels.clone(), 0, 0x12),
            "bad magic",
        ),
        (
            "float dtype code",
            3,
            "",
            with(labels.clone(), 2, 0x0d),
            "data type code 0x0d",
        ),
        (
            "truncated body",
            3,
            "",
            labels[..labels.len() - 10].to_vec(),
            "declares 10000 data bytes",
        ),
        ("trailing bytes", 3, "", trailing, "trailing bytes"),
        ("4 G images claimed", 2, "", claim, "declares"),
        (
            "a zero dimension",
            2,
            "",
            with(images.clone(), 11, 0),
            "dimension 1 is zero",
        ),
        (
            "32x24 images",
            2,
            "",
            small,
            "not MNIST: a valid IDX file, but its MD5 is",
        ),
        ("corrupt gzip stream", 3, ".gz", corrupt_gz, "gzip"),
        (
            "a label of 12",
            3,
            "",
            with(labels.clone(), 8 + 77, 12),
            "label 12 at index 77",
        ),
        (
            "9,999 labels for 10,000 images",
            3,
            "",
            idx::encode_labels(&labels[8..8 + 9999]),
            "not MNIST",
        ),
        (
            "a text file",
            3,
            "",
            b"these are my own labels\n".to_vec(),
            "bad magic",
        ),
    ]
}

#[test]
fn thirteen_kinds_of_broken_file_stop_eval_and_stay_byte_for_byte() {
    let ckpt = checkpoint();
    for (kind, i, suffix, bytes, says) in broken_files() {
        let dir = dir_with(i, suffix, &bytes);
        let before = snapshot(dir.path());
        let o = under8k(&["eval", "--checkpoint", s(&ckpt), "--data", s(dir.path())]);
        let e = stderr(&o);
        let file = dir.path().join(format!("{}{suffix}", FILE_NAMES[i]));
        assert!(!o.status.success(), "{kind}: exit 0\n{e}");
        assert!(!e.contains("panicked"), "{kind}: {e}");
        assert!(e.contains(s(&file)) && e.contains(says), "{kind}: {e}");
        assert!(
            e.contains("under8k fetch --repair") && e.contains("--dataset idx"),
            "{kind}: both ways out: {e}"
        );
        assert!(
            !e.contains("not found") && !e.contains("fetching"),
            "{kind}: {e}"
        );
        assert!(e.lines().count() <= 8, "{kind}: a few lines: {e}");
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{kind}: the directory changed"
        );
    }
}

#[test]
fn train_augment_and_fetch_stop_on_a_bad_file_too() {
    let bytes = b"these are my own labels\n";
    let dir = dir_with(3, "", bytes);
    let before = snapshot(dir.path());
    let out = dir.path().join("run");
    let grid = dir.path().join("grid.png");
    for args in [
        vec![
            "train",
            "--attempt",
            "1",
            "--epochs",
            "1",
            "--out",
            s(&out),
            "--data",
            s(dir.path()),
        ],
        vec!["augment", "--grid", s(&grid), "--data", s(dir.path())],
        vec![
            "fetch",
            "--data",
            s(dir.path()),
            "--no-mirrors",
            "--no-pypi",
        ],
    ] {
        let o = under8k(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{}: {e}", args[0]);
        assert!(
            e.contains("t10k-labels-idx1-ubyte: corrupt: bad magic"),
            "{}: {e}",
            args[0]
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{}: the directory changed",
            args[0]
        );
    }
}

/// MNIST's test labels, each moved on by one: a valid IDX file, not MNIST's.
fn relabelled() -> Vec<u8> {
    let labels = real_file(3);
    idx::encode_labels(&labels[8..].iter().map(|l| (l + 1) % 10).collect::<Vec<_>>())
}

#[test]
fn a_valid_foreign_file_is_kept_used_with_idx_and_moved_aside_only_with_repair() {
    let mine = relabelled();
    let dir = dir_with(3, "", &mine);
    let labels = dir.path().join(FILE_NAMES[3]);
    let ckpt = checkpoint();

    let o = under8k(&["eval", "--checkpoint", s(&ckpt), "--data", s(dir.path())]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    let md5 = idx::md5_hex(&mine);
    let expected = format!(
        "{}: not MNIST: a valid IDX file, but its MD5 is {md5}, not MNIST's {}",
        labels.display(),
        Dataset::Mnist.md5s()[3]
    );
    assert!(e.contains(&expected), "{e}");
    assert_eq!(std::fs::read(&labels).unwrap(), mine);

    // `--dataset idx` uses the user's labels as they are: the committed model, which gets MNIST
    // right 99 % of the time, now matches almost none of them (every label is off by one).
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--dataset",
        "idx",
        "--data",
        s(dir.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let acc: f64 = out
        .split("accuracy ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(acc < 5.0, "{out}");
    assert_eq!(std::fs::read(&labels).unwrap(), mine);

    // `fetch --repair` moves it aside, byte for byte, and gets MNIST's from a local copy.
    let repair = |dir: &Path| {
        under8k(&[
            "fetch",
            "--repair",
            "--data",
            s(dir),
            "--from",
            s(&real()),
            "--no-mirrors",
            "--no-pypi",
        ])
    };
    let o = repair(dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let aside = dir.path().join("t10k-labels-idx1-ubyte.bad");
    assert!(stderr(&o).contains(&format!(
        "moved {} aside to {}",
        labels.display(),
        aside.display()
    )));
    assert_eq!(std::fs::read(&aside).unwrap(), mine);
    assert_eq!(std::fs::read(&labels).unwrap(), real_file(3));

    // Again with another bad file: the next free name, nothing overwritten.
    std::fs::write(&labels, b"junk").unwrap();
    let o = repair(dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&aside).unwrap(), mine);
    assert_eq!(
        std::fs::read(dir.path().join("t10k-labels-idx1-ubyte.bad.1")).unwrap(),
        b"junk"
    );
    assert_eq!(std::fs::read(&labels).unwrap(), real_file(3));
}

/// A tiny dataset of 3 classes of 16×16 images: a horizontal, a vertical or a diagonal bar, at
/// a position and brightness drawn from a fixed LCG, on a noisy background.
fn three_bars(dir: &Path, train: usize, test: usize) {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut make = |n: usize| {
        let mut pixels = Vec::with_capacity(n * 256);
        let mut labels = Vec::with_capacity(n);
        for k in 0..n {
            let class = k % 3;
            let at = 3 + next() % 10;
            let bright = 150 + (next() % 100) as u8;
            for r in 0..16 {
                for c in 0..16 {
                    let on = match class {
                        0 => r == at,
                        1 => c == at,
                        _ => r == c,
                    };
                    pixels.push(if on { bright } else { (next() % 40) as u8 });
                }
            }
            labels.push(class as u8);
        }
        (
            Images {
                count: n,
                rows: 16,
                cols: 16,
                pixels,
            },
            labels,
        )
    };
    let (tri, trl) = make(train);
    let (tei, tel) = make(test);
    std::fs::write(dir.join(FILE_NAMES[0]), idx::encode_images(&tri)).unwrap();
    std::fs::write(dir.join(FILE_NAMES[1]), idx::encode_labels(&trl)).unwrap();
    // The test images gzipped: either form is read.
    std::fs::write(
        dir.join(format!("{}.gz", FILE_NAMES[2])),
        gz(&idx::encode_images(&tei)),
    )
    .unwrap();
    std::fs::write(dir.join(FILE_NAMES[3]), idx::encode_labels(&tel)).unwrap();
}

/// A net for 16×16 inputs and `classes` outputs, in the seed's style.
fn spec(side: usize, classes: usize) -> String {
    format!(
        r#"{{"name": "bars", "input": [1, {side}, {side}], "blocks": [
  {{"name": "b1", "layers": [{{"type": "conv", "out_channels": 8, "kernel": 3}}, {{"type": "batch_norm"}}, {{"type": "relu"}}]}},
  {{"name": "pool", "layers": [{{"type": "max_pool", "kernel": 2, "stride": 2}}]}},
  {{"name": "b2", "layers": [{{"type": "conv", "out_channels": 8, "kernel": 3}}, {{"type": "batch_norm"}}, {{"type": "relu"}}]}},
  {{"name": "gap", "layers": [{{"type": "global_avg_pool"}}]}},
  {{"name": "out", "layers": [{{"type": "conv", "out_channels": {classes}, "kernel": 1}}, {{"type": "log_softmax"}}]}}
]}}"#
    )
}

/// `under8k train` of attempt 1's recipe (lr 0.05, 2 epochs of batches of 32) on the IDX
/// dataset in `data` with the net `arch`, into `out`.
fn train_idx(data: &Path, arch: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--attempt",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--dataset",
        "idx",
        "--data",
        s(data),
        "--arch",
        s(arch),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    under8k(&args)
}

#[test]
fn a_synthetic_idx_dataset_trains_and_a_spec_that_does_not_fit_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bars");
    std::fs::create_dir(&data).unwrap();
    three_bars(&data, 480, 120);
    let before = snapshot(&data);
    let train = |arch: &Path, out: &Path| train_idx(&data, arch, out, &[]);

    // The input does not fit: the seed's 28×28 net.
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, stdout(&under8k(&["summary", "--print-spec"]))).unwrap();
    let out = dir.path().join("refused");
    let o = train(&seed, &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("takes 1x28x28 inputs but the data's images are 1x16x16"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing is written before the check");

    // The output does not fit: 4 classes for 3.
    let four = dir.path().join("four.json");
    std::fs::write(&four, spec(16, 4)).unwrap();
    let o = train(&four, &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has 4 outputs but the data has 3 classes"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // A net that fits trains, and records the data it trained on.
    let three = dir.path().join("three.json");
    std::fs::write(&three, spec(16, 3)).unwrap();
    let out = dir.path().join("run");
    let o = train(&three, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["data"]["dataset"], "idx");
    // MD5s of the files' uncompressed content, computed here from what the test wrote.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(data.join(format!("{}.gz", FILE_NAMES[2]))).unwrap(),
    )
    .read_to_end(&mut raw)
    .unwrap();
    let md5s = [
        idx::md5_hex(&std::fs::read(data.join(FILE_NAMES[0])).unwrap()),
        idx::md5_hex(&std::fs::read(data.join(FILE_NAMES[1])).unwrap()),
        idx::md5_hex(&raw),
        idx::md5_hex(&std::fs::read(data.join(FILE_NAMES[3])).unwrap()),
    ];
    assert_eq!(config["data"]["md5"], serde_json::json!(md5s));
    assert_eq!(config["arch"]["name"], "bars");
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    let acc = history["epochs"][1]["test_acc"].as_f64().unwrap();
    // Three easy classes: far above chance (33 %) after two epochs.
    assert!(acc > 60.0, "test accuracy {acc}");

    // Any spec the calculator accepts trains on the fast path: here a padded stride-2
    // convolution (16² → 8²) and an overlapping 3×3 stride-2 pool (8² → 3²).
    let strided = dir.path().join("strided.json");
    std::fs::write(
        &strided,
        spec(16, 3)
            .replacen(
                r#""kernel": 3}"#,
                r#""kernel": 3, "stride": 2, "padding": 1}"#,
                1,
            )
            .replace(r#""kernel": 2, "stride": 2"#, r#""kernel": 3, "stride": 2"#),
    )
    .unwrap();
    let strided_out = dir.path().join("strided-run");
    let o = train(&strided, &strided_out);
    assert!(o.status.success(), "{}", stderr(&o));
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(strided_out.join("history.json")).unwrap()).unwrap();
    let acc = history["epochs"][1]["test_acc"].as_f64().unwrap();
    assert!(acc > 60.0, "test accuracy {acc}");

    // eval finds the spec, dataset and normalisation in the run's config.json; 3 classes.
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(&out.join("model.safetensors")),
        "--data",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("({}/120)", (acc * 1.2).round())),
        "{text}"
    );
    assert!(
        text.contains("  2: ") && !text.contains("  3: "),
        "3 classes: {text}"
    );

    // A resume on other data is refused: the config (with the data's MD5s) differs.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    three_bars(&other, 481, 120);
    let o = train_idx(&other, &three, &out, &["--resume"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("different configuration"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&data), before, "the data is only read");
}

#[test]
fn two_fetches_into_one_empty_directory_both_end_verified() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_under8k"))
            .args([
                "fetch",
                "--data",
                s(dir.path()),
                "--from",
                s(&real()),
                "--no-mirrors",
                "--no-pypi",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let names: Vec<String> = snapshot(dir.path()).into_iter().map(|(n, ..)| n).collect();
    let mut expected: Vec<String> = FILE_NAMES.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "the four files and nothing else");
    for (i, name) in FILE_NAMES.iter().enumerate() {
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), real_file(i));
    }
}

#[test]
fn a_fetch_killed_mid_download_leaves_no_file_at_all() {
    // A mirror on loopback that sends the headers and half of the first file, then stalls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (sent, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let body = gz(&real_file(0));
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body[..body.len() / 2]).unwrap();
        stream.flush().unwrap();
        sent.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_under8k"))
        .args([
            "fetch",
            "--data",
            s(dir.path()),
            "--mirror",
            &url,
            "--no-pypi",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    got.recv_timeout(std::time::Duration::from_secs(20))
        .unwrap();
    // Give it time to write what it received, then kill it without a chance to clean up.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        snapshot(dir.path()),
        vec![],
        "no partial file, no temporary"
    );
}
