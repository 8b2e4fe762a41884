//! The mirror route of `fetch`, against a mirror served on loopback from this process: good
//! files land verified; a corrupt file is rejected with no file (and no temporary) left behind,
//! and the error lists every source tried.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::{Compression, write::GzEncoder};
use under8k_mnist_data::dataset::FILE_NAMES;
use under8k_mnist_data::fetch::{self, FetchError, FetchOptions, Source};

/// Serves `files` (URL path → body) over HTTP/1.1 on 127.0.0.1 until the process ends.
fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(body);
                    }
                    None => {
                        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            });
        }
    });
    format!("http://{addr}/mnist/")
}

fn real_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    fetch::fetch(&FetchOptions::new(&dir), &mut ())
        .expect("the real files, for the mirror to serve");
    dir
}

fn gz(path: &Path) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&std::fs::read(path).unwrap()).unwrap();
    e.finish().unwrap()
}

fn options(dir: &Path, mirrors: Vec<String>) -> FetchOptions {
    FetchOptions {
        mirrors,
        pypi: None,
        ..FetchOptions::new(dir)
    }
}

#[test]
fn mirror_route_verifies_and_rejects() {
    let real = real_dir();
    let good: Vec<(String, Vec<u8>)> = FILE_NAMES
        .iter()
        .map(|n| (format!("/mnist/{n}.gz"), gz(&real.join(n))))
        .collect();
    let mut bad = good.clone();
    // Flip one label inside the gzip payload: still valid gzip, wrong MD5.
    let mut labels = std::fs::read(real.join(FILE_NAMES[1])).unwrap();
    labels[100] = (labels[100] + 1) % 10;
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&labels).unwrap();
    bad[1].1 = e.finish().unwrap();
    let (good_url, bad_url) = (serve(good), serve(bad));

    // Corrupt mirror only: the error names it and the MD5 problem, nothing is left for file 1.
    let dir = tempfile::tempdir().unwrap();
    let err = fetch::fetch(&options(dir.path(), vec![bad_url.clone()]), &mut ()).unwrap_err();
    let FetchError::AllSourcesFailed { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert!(failures[0].reason.contains("MD5 mismatch"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [FILE_NAMES[0]],
        "only the verified file stays, no temporaries"
    );

    // Corrupt mirror first, good one second: all four verified, the rest from the good one.
    let report = fetch::fetch(
        &options(dir.path(), vec![bad_url.clone(), good_url.clone()]),
        &mut (),
    )
    .unwrap();
    assert_eq!(report.files[0].source, Source::Existing);
    assert!(
        report.files[1..]
            .iter()
            .all(|f| f.source == Source::Mirror(good_url.clone()))
    );
    assert_eq!(report.failures.len(), 1);
    for (i, f) in report.files.iter().enumerate() {
        assert_eq!(
            std::fs::read(&f.path).unwrap(),
            std::fs::read(real.join(FILE_NAMES[i])).unwrap()
        );
    }

    // An unreachable mirror (404s here) and no fallback: every source is listed.
    let empty = tempfile::tempdir().unwrap();
    let err = fetch::fetch(
        &options(empty.path(), vec![serve(vec![]), bad_url]),
        &mut (),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("MD5 mismatch"), "{msg}");
}
