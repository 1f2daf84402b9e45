//! Memory-mapped GGUF reader. Every length and offset is checked against the file before use, so a
//! malformed or truncated file is an error naming the byte where it went wrong, never a panic.
use super::value::{type_id, Array, Value};
use super::{DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAGIC};
use crate::ModelError;
use autodidact_kernels::GgmlType;
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::Path;

/// Where a tensor lives in the file and what it is. `dims[0]` is the innermost (row) length.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset from the start of the file.
    pub offset: u64,
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Bytes {
    Mmap(Mmap),
    Owned(Vec<u64>, usize),
}

/// An open GGUF file: metadata parsed eagerly, tensor data borrowed from the mapping.
pub struct GgufFile {
    pub path: String,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub data_offset: u64,
    bytes: Bytes,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a str,
}

const MAX_ARRAY_DEPTH: usize = 8;

impl<'a> Cursor<'a> {
    fn err(&self, what: impl Into<String>) -> ModelError {
        ModelError::Malformed {
            path: self.path.to_string(),
            offset: self.pos as u64,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(format!(
                "need {n} bytes, {} left (file truncated?)",
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    fn u64(&mut self) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }

    /// A count that must fit in what is left of the file, each item taking at least `min_size` bytes.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, ModelError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_size.max(1) as u64) > left {
            return Err(self.err(format!("{what} count {n} exceeds the file")));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, ModelError> {
        let n = self.count(1, "string length")?;
        let at = self.pos;
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(ModelError::Malformed {
                path: self.path.to_string(),
                offset: at as u64,
                what: "string is not valid UTF-8".into(),
            }),
        }
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, ModelError> {
        use type_id::*;
        Ok(match ty {
            U8 => Value::U8(self.arr::<1>()?[0]),
            I8 => Value::I8(self.arr::<1>()?[0] as i8),
            U16 => Value::U16(u16::from_le_bytes(self.arr()?)),
            I16 => Value::I16(i16::from_le_bytes(self.arr()?)),
            U32 => Value::U32(self.u32()?),
            I32 => Value::I32(i32::from_le_bytes(self.arr()?)),
            F32 => Value::F32(f32::from_le_bytes(self.arr()?)),
            BOOL => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("bool byte {b}"))),
            },
            STRING => Value::String(self.string()?),
            ARRAY => Value::Array(self.array(depth + 1)?),
            U64 => Value::U64(self.u64()?),
            I64 => Value::I64(i64::from_le_bytes(self.arr()?)),
            F64 => Value::F64(f64::from_le_bytes(self.arr()?)),
            other => return Err(self.err(format!("unknown value type {other}"))),
        })
    }

    fn array(&mut self, depth: usize) -> Result<Array, ModelError> {
        use type_id::*;
        if depth > MAX_ARRAY_DEPTH {
            return Err(self.err("arrays nested too deeply"));
        }
        let ty = self.u32()?;
        macro_rules! prim {
            ($variant:ident, $t:ty) => {{
                let n = self.count(std::mem::size_of::<$t>(), "array")?;
                let b = self.take(n * std::mem::size_of::<$t>())?;
                Array::$variant(
                    b.chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            U8 => prim!(U8, u8),
            I8 => prim!(I8, i8),
            U16 => prim!(U16, u16),
            I16 => prim!(I16, i16),
            U32 => prim!(U32, u32),
            I32 => prim!(I32, i32),
            F32 => prim!(F32, f32),
            U64 => prim!(U64, u64),
            I64 => prim!(I64, i64),
            F64 => prim!(F64, f64),
            BOOL => {
                let n = self.count(1, "array")?;
                let b = self.take(n)?;
                Array::Bool(b.iter().map(|&x| x != 0).collect())
            }
            STRING => {
                let n = self.count(8, "array")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string()?);
                }
                Array::String(v)
            }
            ARRAY => {
                let n = self.count(12, "array")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(depth + 1)?);
                }
                Array::Array(v)
            }
            other => return Err(self.err(format!("unknown array element type {other}"))),
        })
    }
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path_s = path.as_ref().display().to_string();
        let io = |source| ModelError::Io {
            path: path_s.clone(),
            source,
        };
        let file = std::fs::File::open(path.as_ref()).map_err(io)?;
        // SAFETY: the mapping is read-only; a file truncated underneath us by another process is the
        // one hazard every mmap-based loader (llama.cpp included) accepts.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        #[cfg(unix)]
        let _ = mmap.advise(memmap2::Advice::WillNeed);
        Self::parse(path_s, Bytes::Mmap(mmap))
    }

    /// Parses an in-memory GGUF image (tests and fuzzing).
    pub fn from_bytes(name: &str, data: &[u8]) -> Result<Self, ModelError> {
        // u64 storage keeps tensor data 8-byte aligned, as a mapping's page alignment would.
        let mut words = vec![0u64; data.len().div_ceil(8)];
        // SAFETY: u64 has no invalid bit patterns; the byte view covers exactly the allocation.
        let view = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8)
        };
        view[..data.len()].copy_from_slice(data);
        Self::parse(name.to_string(), Bytes::Owned(words, data.len()))
    }

    fn parse(path: String, bytes: Bytes) -> Result<Self, ModelError> {
        let buf: &[u8] = match &bytes {
            Bytes::Mmap(m) => m,
            // SAFETY: as in from_bytes.
            Bytes::Owned(w, len) => unsafe {
                std::slice::from_raw_parts(w.as_ptr() as *const u8, *len)
            },
        };
        let mut c = Cursor {
            buf,
            pos: 0,
            path: &path,
        };
        let magic: [u8; 4] = c.arr().map_err(|_| ModelError::BadMagic {
            path: path.clone(),
            magic: [0; 4],
        })?;
        if magic != MAGIC {
            return Err(ModelError::BadMagic {
                path: path.clone(),
                magic,
            });
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::BadVersion {
                path: path.clone(),
                version,
            });
        }
        let n_tensors = c.count(24, "tensor")?;
        let n_kv = c.count(13, "metadata")?;
        let mut metadata = Vec::with_capacity(n_kv);
        let mut index = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.err(format!("duplicate metadata key {key}")));
            }
            metadata.push((key, v));
        }
        let alignment = match index.get(KEY_ALIGNMENT).map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(c.err(format!("{KEY_ALIGNMENT} must be a power of two, got {v:?}")))
                }
            },
        };
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            if n_dims == 0 || n_dims > 4 {
                return Err(c.err(format!(
                    "tensor {name} has {n_dims} dimensions (1 to 4 allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.u64()?);
            }
            let ty_id = c.u32()?;
            let offset = c.u64()?;
            raw.push((name, dims, ty_id, offset));
        }
        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = buf.len() as u64;
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::new();
        for (name, dims, ty_id, offset) in raw {
            let bad = |what: String| ModelError::BadTensor {
                path: path.clone(),
                name: name.clone(),
                what,
            };
            let ty = GgmlType::from_id(ty_id).map_err(|e| bad(e.to_string()))?;
            if ty == GgmlType::Q8K {
                return Err(bad("Q8_K is an activation format, not a weight type".into()));
            }
            let n = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n < (1u64 << 40))
                .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(bad(format!(
                    "row length {} is not a multiple of {}'s block size {}",
                    dims[0],
                    ty.name(),
                    ty.block_len()
                )));
            }
            let size = n / ty.block_len() as u64 * ty.block_bytes() as u64;
            if offset % alignment != 0 {
                return Err(bad(format!(
                    "offset {offset} is not aligned to {alignment}"
                )));
            }
            let start = data_offset
                .checked_add(offset)
                .ok_or_else(|| bad("offset overflows".into()))?;
            if start % 4 != 0 {
                return Err(bad(format!("data offset {start} is not 4-byte aligned")));
            }
            if start.checked_add(size).is_none_or(|end| end > file_len) {
                return Err(bad(format!(
                    "data [{start}, {start}+{size}) runs past the end of the file ({file_len} bytes)"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad("duplicate tensor name".into()));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset: start,
                size,
            });
        }
        Ok(GgufFile {
            path,
            version,
            metadata,
            index,
            tensors,
            tensor_index,
            data_offset,
            bytes,
        })
    }

    /// Drops the mapped pages wholly inside `offset..offset + len` from this process's memory
    /// (they stay in the page cache): for tensors whose data was copied out, e.g. repacked.
    pub fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let Bytes::Mmap(m) = &self.bytes {
            const PAGE: usize = 4096;
            let start = offset.div_ceil(PAGE) * PAGE;
            let end = ((offset + len) / PAGE * PAGE).min(m.len());
            if end > start {
                // SAFETY: the mapping is read-only and file-backed, so dropped pages are re-read
                // from the file if touched again; nothing borrowed from them is lost.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }

    /// The whole file (tensor offsets in `TensorInfo` index into it).
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mmap(m) => m,
            // SAFETY: as in from_bytes.
            Bytes::Owned(w, len) => unsafe {
                std::slice::from_raw_parts(w.as_ptr() as *const u8, *len)
            },
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Removes a metadata entry and hands it over, for large values (the vocabulary) that their
    /// user would otherwise copy and so hold twice.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.metadata.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(v)
    }

    pub fn require(&self, key: &str) -> Result<&Value, ModelError> {
        self.get(key)
            .ok_or_else(|| ModelError::MissingKey(key.to_string()))
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| ModelError::KeyType {
                key: key.into(),
                found: v.type_name(),
                expected: "integer",
            }),
        }
    }

    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f32().map(Some).ok_or_else(|| ModelError::KeyType {
                key: key.into(),
                found: v.type_name(),
                expected: "float",
            }),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| ModelError::KeyType {
                key: key.into(),
                found: v.type_name(),
                expected: "string",
            }),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| ModelError::KeyType {
                key: key.into(),
                found: v.type_name(),
                expected: "bool",
            }),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| ModelError::KeyType {
                key: key.into(),
                found: v.type_name(),
                expected: "array",
            }),
        }
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of tensor `name` (bounds were checked at open).
    pub fn tensor_data(&self, name: &str) -> Result<(&TensorInfo, &[u8]), ModelError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let data = &self.bytes()[info.offset as usize..(info.offset + info.size) as usize];
        Ok((info, data))
    }

    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }
}
