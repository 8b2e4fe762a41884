//! The IDX file format (as MNIST ships it): a strict reader and a writer.
//!
//! An IDX file is a big-endian header — two zero bytes, a data-type code (`0x08`: unsigned byte),
//! the number of dimensions — then one `u32` per dimension, then the data, row-major. MNIST's image
//! files have magic `0x0000_0803` (2051: u8, 3 dims) and its label files `0x0000_0801` (2049: u8,
//! 1 dim). Files may be gzip-compressed; compression is detected from the first two bytes
//! (`1f 8b`), never from the file name.
//!
//! Decoding never panics and never allocates more than the input justifies: for raw input the
//! declared size is checked against the bytes present before anything is copied, and gzip input is
//! inflated into a buffer that grows only as real data arrives, capped at the declared size + 1.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Magic number of an IDX file of `u8` images with 3 dimensions (count, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels with 1 dimension (count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The only IDX data-type code supported: unsigned byte.
pub const DTYPE_U8: u8 = 0x08;
/// Number of classes: labels must be below this.
pub const NUM_CLASSES: u8 = 10;

/// What is wrong with an IDX byte string. Carried inside [`IdxError`] together with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdxProblem {
    /// Fewer bytes than the fixed part of the header.
    #[error("only {len} bytes: too short for an IDX header of {needed} bytes")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes the header needs.
        needed: usize,
    },
    /// The first two bytes are not zero (and not a gzip signature either).
    #[error("bad magic number 0x{found:08x}: expected 0x{expected:08x}")]
    BadMagic {
        /// The first four bytes read as a big-endian `u32`.
        found: u32,
        /// The magic this kind of file must have.
        expected: u32,
    },
    /// The data-type byte is not `0x08` (unsigned byte).
    #[error("unsupported IDX data type code 0x{code:02x}: only 0x08 (unsigned byte) is supported")]
    UnsupportedDtype {
        /// The code found.
        code: u8,
    },
    /// The dimension count does not match the kind of file.
    #[error("{found} dimensions: expected {expected}")]
    WrongDims {
        /// Dimensions declared.
        found: u8,
        /// Dimensions this kind of file has.
        expected: u8,
    },
    /// One of the dimensions is zero.
    #[error("dimension {index} is zero")]
    ZeroDim {
        /// Which dimension (0-based).
        index: usize,
    },
    /// The header declares more data than the file holds.
    #[error("header declares {declared} data bytes but the file holds only {present}")]
    Truncated {
        /// Product of the dimensions.
        declared: u64,
        /// Data bytes actually present after the header.
        present: u64,
    },
    /// Bytes left over after the declared data.
    #[error("trailing bytes after the {declared} declared data bytes")]
    TrailingBytes {
        /// Product of the dimensions.
        declared: u64,
    },
    /// The gzip stream is corrupt or ends early.
    #[error("corrupt or truncated gzip stream: {0}")]
    Gzip(String),
    /// A label is not a digit.
    #[error("label {label} at index {index} is not below {NUM_CLASSES}")]
    LabelOutOfRange {
        /// Position of the label.
        index: usize,
        /// Its value.
        label: u8,
    },
}

/// An IDX file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file's content is invalid.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: IdxProblem,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A stack of `count` grayscale images of `rows × cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Height of each image.
    pub rows: usize,
    /// Width of each image.
    pub cols: usize,
    /// `count * rows * cols` pixels.
    pub pixels: Vec<u8>,
}

impl Images {
    /// Pixels of image `i` (panics if `i >= count`, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Whether `bytes` start with the gzip signature.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decodes an image file (raw or gzip) from memory.
pub fn decode_images(bytes: &[u8]) -> Result<Images, IdxProblem> {
    images_of(decode(bytes, IMAGES_MAGIC)?)
}

/// [`decode_images`] of bytes it may keep: a raw file's pixels stay in the same allocation
/// (no second copy of a large file in memory).
pub fn decode_images_owned(bytes: Vec<u8>) -> Result<Images, IdxProblem> {
    images_of(decode_owned(bytes, IMAGES_MAGIC)?)
}

fn images_of((dims, pixels): (Vec<usize>, Vec<u8>)) -> Result<Images, IdxProblem> {
    Ok(Images {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Decodes a label file (raw or gzip) from memory; every label must be below 10 (a digit).
pub fn decode_labels(bytes: &[u8]) -> Result<Vec<u8>, IdxProblem> {
    digits(decode_labels_any(bytes)?)
}

/// [`decode_labels`] of bytes it may keep.
pub fn decode_labels_owned(bytes: Vec<u8>) -> Result<Vec<u8>, IdxProblem> {
    digits(decode_owned(bytes, LABELS_MAGIC)?.1)
}

fn digits(labels: Vec<u8>) -> Result<Vec<u8>, IdxProblem> {
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= NUM_CLASSES) {
        return Err(IdxProblem::LabelOutOfRange { index, label });
    }
    Ok(labels)
}

/// Decodes a label file (raw or gzip) from memory, any label value (for datasets of other than
/// ten classes).
pub fn decode_labels_any(bytes: &[u8]) -> Result<Vec<u8>, IdxProblem> {
    Ok(decode(bytes, LABELS_MAGIC)?.1)
}

/// MD5 (lowercase hex) of `bytes`: with [`encode_images`] / [`encode_labels`], the MD5 of the
/// uncompressed file the data came from.
#[cfg(feature = "fetch")]
pub fn md5_hex(bytes: &[u8]) -> String {
    md5_of(&[bytes])
}

/// MD5 (lowercase hex) of the raw IDX file of `images`, `md5_hex(&encode_images(images))`
/// without making that copy.
#[cfg(feature = "fetch")]
pub fn images_md5(images: &Images) -> String {
    let dims = [images.count, images.rows, images.cols];
    md5_of(&[&header(IMAGES_MAGIC, &dims), &images.pixels])
}

/// MD5 (lowercase hex) of the raw IDX file of `labels`, without making it.
#[cfg(feature = "fetch")]
pub fn labels_md5(labels: &[u8]) -> String {
    md5_of(&[&header(LABELS_MAGIC, &[labels.len()]), labels])
}

/// MD5 (lowercase hex) of the parts one after another.
#[cfg(feature = "fetch")]
fn md5_of(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes images as a raw (uncompressed) IDX byte string.
pub fn encode_images(images: &Images) -> Vec<u8> {
    encode(
        IMAGES_MAGIC,
        &[images.count, images.rows, images.cols],
        &images.pixels,
    )
}

/// Encodes labels as a raw (uncompressed) IDX byte string.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    encode(LABELS_MAGIC, &[labels.len()], labels)
}

/// Reads and validates an image file.
pub fn read_images(path: &Path) -> Result<Images, IdxError> {
    let bytes = read_file(path)?;
    decode_images_owned(bytes).map_err(|problem| invalid(path, problem))
}

/// Reads and validates a label file (every label a digit).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, IdxError> {
    let bytes = read_file(path)?;
    decode_labels_owned(bytes).map_err(|problem| invalid(path, problem))
}

/// Reads and validates a label file, any label value.
pub fn read_labels_any(path: &Path) -> Result<Vec<u8>, IdxError> {
    let bytes = read_file(path)?;
    decode_labels_any(&bytes).map_err(|problem| invalid(path, problem))
}

fn invalid(path: &Path, problem: IdxProblem) -> IdxError {
    IdxError::Invalid {
        path: path.to_path_buf(),
        problem,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, IdxError> {
    std::fs::read(path).map_err(|source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn encode(magic: u32, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = header(magic, dims);
    out.extend_from_slice(data);
    out
}

/// Parses the header at the start of `head`: returns the dimensions and the header length.
/// `head` may be longer than the header.
fn parse_header(head: &[u8], magic: u32) -> Result<(Vec<usize>, usize), IdxProblem> {
    let want_dims = (magic & 0xff) as u8;
    let header_len = 4 + 4 * want_dims as usize;
    if head.len() < 4 {
        return Err(IdxProblem::TooShort {
            len: head.len(),
            needed: header_len,
        });
    }
    let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[0] != 0 || head[1] != 0 {
        return Err(IdxProblem::BadMagic {
            found,
            expected: magic,
        });
    }
    if head[2] != DTYPE_U8 {
        return Err(IdxProblem::UnsupportedDtype { code: head[2] });
    }
    if head[3] != want_dims {
        return Err(IdxProblem::WrongDims {
            found: head[3],
            expected: want_dims,
        });
    }
    if head.len() < header_len {
        return Err(IdxProblem::TooShort {
            len: head.len(),
            needed: header_len,
        });
    }
    let dims: Vec<usize> = head[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if let Some(index) = dims.iter().position(|&d| d == 0) {
        return Err(IdxProblem::ZeroDim { index });
    }
    Ok((dims, header_len))
}

/// Product of the dimensions in `u64` (cannot overflow: at most three `u32`s would, so saturate).
fn declared_len(dims: &[usize]) -> u64 {
    dims.iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// A raw IDX header: the magic number, then each dimension, big-endian.
fn header(magic: u32, dims: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len());
    out.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).expect("IDX dimensions are u32");
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

fn decode(bytes: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>), IdxProblem> {
    if is_gzip(bytes) {
        return decode_gzip(bytes, magic);
    }
    let (dims, header_len) = check_raw(bytes, magic)?;
    Ok((dims, bytes[header_len..].to_vec()))
}

/// [`decode`] keeping a raw file's data in `bytes`' own allocation.
fn decode_owned(mut bytes: Vec<u8>, magic: u32) -> Result<(Vec<usize>, Vec<u8>), IdxProblem> {
    if is_gzip(&bytes) {
        return decode_gzip(&bytes, magic);
    }
    let (dims, header_len) = check_raw(&bytes, magic)?;
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// A raw file's dimensions and header length, once its data is exactly the declared size.
fn check_raw(bytes: &[u8], magic: u32) -> Result<(Vec<usize>, usize), IdxProblem> {
    let (dims, header_len) = parse_header(bytes, magic)?;
    let declared = declared_len(&dims);
    let present = (bytes.len() - header_len) as u64;
    if present < declared {
        return Err(IdxProblem::Truncated { declared, present });
    }
    if present > declared {
        return Err(IdxProblem::TrailingBytes { declared });
    }
    Ok((dims, header_len))
}

fn decode_gzip(bytes: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>), IdxProblem> {
    let gz_err = |e: std::io::Error| IdxProblem::Gzip(e.to_string());
    let mut decoder = GzDecoder::new(bytes);
    // The header first, so its claims can be checked before the data is read.
    let max_header = 4 + 4 * (magic & 0xff) as usize;
    let mut head = Vec::with_capacity(max_header);
    (&mut decoder)
        .take(4)
        .read_to_end(&mut head)
        .map_err(gz_err)?;
    if head.len() == 4
        && head[..2] == [0, 0]
        && head[2] == DTYPE_U8
        && head[3] as u32 == magic & 0xff
    {
        (&mut decoder)
            .take(max_header as u64 - 4)
            .read_to_end(&mut head)
            .map_err(gz_err)?;
    }
    let (dims, _) = parse_header(&head, magic)?;
    let declared = declared_len(&dims);
    // Grows with real data only; one byte past the declared size detects trailing data.
    let mut data = Vec::new();
    (&mut decoder)
        .take(declared.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(gz_err)?;
    let present = data.len() as u64;
    if present < declared {
        return Err(IdxProblem::Truncated { declared, present });
    }
    if present > declared {
        return Err(IdxProblem::TrailingBytes { declared });
    }
    // Drain the stream so the gzip trailer (CRC-32 and length) is checked.
    let mut rest = [0u8; 1];
    match decoder.read(&mut rest).map_err(gz_err)? {
        0 => Ok((dims, data)),
        _ => Err(IdxProblem::TrailingBytes { declared }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Images {
        Images {
            count: 2,
            rows: 2,
            cols: 3,
            pixels: (0..12).collect(),
        }
    }

    #[test]
    fn header_bytes_are_the_documented_ones() {
        // Written by hand from the format: magic 0x00000803, then 2, 2, 3 big-endian.
        let enc = encode_images(&sample());
        assert_eq!(
            &enc[..16],
            &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(decode_images(&enc).unwrap(), sample());
        assert_eq!(decode_images(&gz(&enc)).unwrap(), sample());
    }

    #[test]
    fn huge_claim_in_tiny_file_is_rejected_without_allocating() {
        // 16 bytes claiming 4 G images of 28x28: must fail on the size check, not on allocation.
        let mut bytes = vec![0, 0, 8, 3];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(&28u32.to_be_bytes());
        bytes.extend_from_slice(&28u32.to_be_bytes());
        let declared = u32::MAX as u64 * 784;
        assert_eq!(
            decode_images(&bytes),
            Err(IdxProblem::Truncated {
                declared,
                present: 0
            })
        );
        assert_eq!(
            decode_images(&gz(&bytes)),
            Err(IdxProblem::Truncated {
                declared,
                present: 0
            })
        );
    }

    #[test]
    fn each_problem_is_reported() {
        let good = encode_images(&sample());
        let mut m = good.clone();
        m[2] = 0x0d;
        assert_eq!(
            decode_images(&m),
            Err(IdxProblem::UnsupportedDtype { code: 0x0d })
        );
        assert_eq!(
            decode_images(&encode_labels(&[1, 2])),
            Err(IdxProblem::WrongDims {
                found: 1,
                expected: 3
            })
        );
        let mut m = good.clone();
        m[0] = 1;
        assert!(matches!(
            decode_images(&m),
            Err(IdxProblem::BadMagic { .. })
        ));
        let mut m = good.clone();
        m[11] = 0;
        assert_eq!(decode_images(&m), Err(IdxProblem::ZeroDim { index: 1 }));
        let mut m = good.clone();
        m.push(7);
        assert_eq!(
            decode_images(&m),
            Err(IdxProblem::TrailingBytes { declared: 12 })
        );
        assert_eq!(
            decode_images(&gz(&m)),
            Err(IdxProblem::TrailingBytes { declared: 12 })
        );
        assert_eq!(
            decode_images(&good[..good.len() - 1]),
            Err(IdxProblem::Truncated {
                declared: 12,
                present: 11
            })
        );
        assert_eq!(
            decode_images(&good[..5]),
            Err(IdxProblem::TooShort { len: 5, needed: 16 })
        );
        assert_eq!(
            decode_labels(&encode_labels(&[3, 10])),
            Err(IdxProblem::LabelOutOfRange {
                index: 1,
                label: 10
            })
        );
        let z = gz(&good);
        assert!(matches!(
            decode_images(&z[..z.len() - 3]),
            Err(IdxProblem::Gzip(_))
        ));
        let mut corrupt = z.clone();
        let n = corrupt.len();
        corrupt[n - 6] ^= 0xff; // inside the CRC-32 trailer
        assert!(matches!(decode_images(&corrupt), Err(IdxProblem::Gzip(_))));
    }
}
