//! The GGUF container: the header, metadata key/value access and the tensor index of a GGUF
//! file, and reading its tensors. What the data means is for its users: the model loader
//! ([`crate::model::gguf`]: weights to a [`crate::Model`]) and the tokenizer
//! ([`crate::tokenizer::gguf`]: `tokenizer.ggml.*` metadata to a [`crate::Tokenizer`]).
//! candle parses the format; this module adds the checks (every tensor inside the file) and
//! errors that name the file, the key or the tensor.

use crate::error::{EngineError, Result};
use crate::loader::LoadProgress;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// ggml's name for each type number, for naming the types candle cannot load. This is the
/// container's catalogue, not what the engine supports: that is the table of weight formats
/// with the CPU kernels ([`crate::model::cpu`]), whose names are spelled as here.
const GGML_TYPE_NAMES: [&str; 40] = [
    "F32",
    "F16",
    "Q4_0",
    "Q4_1",
    "Q4_2",
    "Q4_3",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q8_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "Q8_K",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ3_XXS",
    "IQ1_S",
    "IQ4_NL",
    "IQ3_S",
    "IQ2_S",
    "IQ4_XS",
    "I8",
    "I16",
    "I32",
    "I64",
    "F64",
    "IQ1_M",
    "BF16",
    "Q4_0_4_4",
    "Q4_0_4_8",
    "Q4_0_8_8",
    "TQ1_0",
    "TQ2_0",
    "IQ4_NL_4_4",
    "IQ4_NL_4_8",
    "IQ4_NL_8_8",
    "MXFP4",
];

/// Whether `name` (upper case) is one of ggml's tensor type names.
pub(crate) fn is_ggml_type_name(name: &str) -> bool {
    GGML_TYPE_NAMES.contains(&name)
}

/// ggml's name for type number `n` (`#n` past the catalogue).
fn ggml_type_name(n: u32) -> String {
    GGML_TYPE_NAMES
        .get(n as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("#{n}"))
}

/// One tensor of a GGUF file's index: where its data lies and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct TensorEntry<'a> {
    pub name: &'a str,
    pub dtype: GgmlDType,
    pub dims: &'a [usize],
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

/// An open GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile {
    pub path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    file_len: u64,
    /// Bytes of tensor data read so far, and of all tensors (for load progress).
    read_bytes: u64,
    total_bytes: u64,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| classify_read_error(path, e))?;
        let mut me = Self {
            path: path.to_path_buf(),
            content,
            reader,
            file_len,
            read_bytes: 0,
            total_bytes: 0,
        };
        me.total_bytes = me.content.tensor_infos.keys().map(|n| me.tensor_bytes(n)).sum();
        me.check_tensor_extents()?;
        Ok(me)
    }

    /// Every tensor must lie inside the file: a truncated download is caught here, by name.
    fn check_tensor_extents(&mut self) -> Result<()> {
        let base = self.content.tensor_data_offset;
        for (name, info) in &self.content.tensor_infos {
            let bs = info.ggml_dtype.block_size();
            let elems = info.shape.elem_count();
            if elems % bs != 0 {
                return Err(EngineError::Truncated {
                    path: self.path.clone(),
                    detail: format!("tensor `{name}` has {elems} elements, not a multiple of its block size {bs}"),
                });
            }
            let bytes = (elems / bs * info.ggml_dtype.type_size()) as u64;
            let end = base.saturating_add(info.offset).saturating_add(bytes);
            if end > self.file_len {
                return Err(EngineError::Truncated {
                    path: self.path.clone(),
                    detail: format!(
                        "tensor `{name}` ends at byte {end} but the file has {} bytes",
                        self.file_len
                    ),
                });
            }
        }
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| EngineError::io(&self.path, e))?;
        Ok(())
    }

    /// The raw metadata value of `key`, if present.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// The error for metadata `key` that is missing or not what the reader needs.
    pub fn bad_metadata(&self, key: &str, detail: impl Into<String>) -> EngineError {
        EngineError::BadMetadata {
            path: self.path.clone(),
            key: key.into(),
            detail: detail.into(),
        }
    }

    pub fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.bad_metadata(key, format!("expected a string, found {:?}", v.value_type()))),
            None => Err(self.bad_metadata(key, "missing")),
        }
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self.meta(key).ok_or_else(|| self.bad_metadata(key, "missing"))?;
        v.to_u64()
            .map(|n| n as usize)
            .or_else(|_| v.to_i32().map(|n| n.max(0) as usize))
            .map_err(|_| self.bad_metadata(key, format!("expected an integer, found {:?}", v.value_type())))
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32> {
        let v = self.meta(key).ok_or_else(|| self.bad_metadata(key, "missing"))?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|x| x as f32))
            .map_err(|_| self.bad_metadata(key, format!("expected a float, found {:?}", v.value_type())))
    }

    /// A boolean value, if `key` holds one.
    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        self.meta(key).and_then(|v| v.to_bool().ok())
    }

    /// An array of strings (an error names the key when it is missing or holds anything else).
    pub fn meta_strings(&self, key: &str) -> Result<Vec<String>> {
        let bad = || self.bad_metadata(key, "expected an array of strings");
        match self.meta(key) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(bad()),
                })
                .collect(),
            Some(_) => Err(bad()),
            None => Err(self.bad_metadata(key, "missing")),
        }
    }

    /// An array of integers (i32 or u32 elements), or `None` when `key` is missing, not an
    /// array, or holds any other element.
    pub fn meta_ints(&self, key: &str) -> Option<Vec<i64>> {
        match self.meta(key) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.to_i32().map(i64::from).or_else(|_| v.to_u32().map(i64::from)).ok())
                .collect(),
            _ => None,
        }
    }

    /// The number of values in the array at `key`, if it is one.
    pub fn meta_array_len(&self, key: &str) -> Option<usize> {
        match self.meta(key) {
            Some(Value::Array(a)) => Some(a.len()),
            _ => None,
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The index entry of tensor `name`, if present.
    pub fn tensor_entry(&self, name: &str) -> Option<TensorEntry<'_>> {
        let (name, info) = self.content.tensor_infos.get_key_value(name)?;
        Some(self.entry(name, info))
    }

    /// The tensor index: every tensor in the file, in no particular order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorEntry<'_>> {
        self.content
            .tensor_infos
            .iter()
            .map(|(name, info)| self.entry(name, info))
    }

    fn entry<'a>(&'a self, name: &'a str, info: &'a TensorInfo) -> TensorEntry<'a> {
        TensorEntry {
            name,
            dtype: info.ggml_dtype,
            dims: info.shape.dims(),
            offset: self.content.tensor_data_offset + info.offset,
            bytes: self.tensor_bytes(name),
        }
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(EngineError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            });
        }
        let t = self
            .content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| EngineError::Truncated {
                path: self.path.clone(),
                detail: format!("tensor `{name}`: {e}"),
            })?;
        self.read_bytes += self.tensor_bytes(name);
        Ok(t)
    }

    /// The matrices `names` as one, their rows in order, when they share a format and a row
    /// width (`None` otherwise, or if one is missing). Each tensor's bytes are read as they are
    /// stored: block-quantized rows never share a block, so the rows of one follow the other's.
    pub fn stacked_tensor(&mut self, names: &[String], device: &Device) -> Result<Option<QTensor>> {
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            match self.content.tensor_infos.get(name.as_str()) {
                Some(info) if info.shape.dims().len() == 2 => infos.push(info),
                _ => return Ok(None),
            }
        }
        let Some(first) = infos.first() else { return Ok(None) };
        let (dtype, cols) = (first.ggml_dtype, first.shape.dims()[1]);
        if infos.iter().any(|i| i.ggml_dtype != dtype || i.shape.dims()[1] != cols) {
            return Ok(None);
        }
        let rows: usize = infos.iter().map(|i| i.shape.dims()[0]).sum();
        let total: u64 = names.iter().map(|n| self.tensor_bytes(n)).sum();
        let mut raw = Vec::new();
        raw.try_reserve_exact(total as usize)
            .map_err(|_| EngineError::Truncated {
                path: self.path.clone(),
                detail: format!("cannot allocate {total} bytes for tensors {names:?}"),
            })?;
        for (name, info) in names.iter().zip(&infos) {
            let n = self.tensor_bytes(name);
            let at = self.content.tensor_data_offset + info.offset;
            let truncated = |e: std::io::Error| EngineError::Truncated {
                path: self.path.clone(),
                detail: format!("tensor `{name}`: {e}"),
            };
            self.reader.seek(SeekFrom::Start(at)).map_err(truncated)?;
            // Read into the reserved capacity (no zero-filling first); a short read is a
            // truncated file.
            let start = raw.len();
            let got = std::io::Read::read_to_end(&mut std::io::Read::take(&mut self.reader, n), &mut raw)
                .map_err(truncated)?;
            if got as u64 != n {
                raw.truncate(start);
                return Err(truncated(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{got} of its {n} bytes in the file"),
                )));
            }
            self.read_bytes += n;
        }
        let t = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &raw, vec![rows, cols], device).map_err(
            |e| EngineError::Truncated {
                path: self.path.clone(),
                detail: format!("tensors {names:?}: {e}"),
            },
        )?;
        Ok(Some(t))
    }

    /// Bytes of one tensor's data in the file (0 if absent).
    fn tensor_bytes(&self, name: &str) -> u64 {
        self.content.tensor_infos.get(name).map_or(0, |info| {
            (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64
        })
    }

    /// Load progress: tensor bytes read so far, of all.
    pub fn progress(&self) -> LoadProgress {
        LoadProgress {
            done_bytes: self.read_bytes,
            total_bytes: self.total_bytes,
        }
    }

    /// The dtype of a tensor, if present.
    pub fn tensor_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|i| i.ggml_dtype)
    }
}

fn classify_read_error(path: &Path, e: candle_core::Error) -> EngineError {
    // With RUST_BACKTRACE set candle appends a backtrace to the message; only the first line names
    // the problem.
    let full = e.to_string();
    let msg = full.lines().next().unwrap_or_default().trim().to_string();
    if msg.contains("unknown magic") || msg.contains("unsupported magic") {
        return EngineError::NotAModel {
            path: path.into(),
            detail: "no GGUF magic at the start of the file".into(),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown dtype for tensor ") {
        if let Ok(n) = rest.trim().parse::<u32>() {
            return EngineError::UnsupportedTensorType {
                path: path.into(),
                dtype: ggml_type_name(n),
            };
        }
    }
    let eof = matches!(&e, candle_core::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
    EngineError::Truncated {
        path: path.into(),
        detail: if eof {
            "the header ends before it is complete".into()
        } else {
            msg
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_formats_are_named_as_ggml_names_them() {
        for name in crate::model::cpu::supported_names().split(", ") {
            assert!(GGML_TYPE_NAMES.contains(&name), "{name} is not a ggml type name");
        }
        assert_eq!((ggml_type_name(12), ggml_type_name(40)), ("Q4_K".into(), "#40".into()));
    }
}
