//! Reading segments and loading a chain of them into a fresh [`KvState`].

use super::format::{SegmentHeader, StoredDType};
use super::write::tensor_names;
use super::{convert, q8, SegmentId, StateError};
use crate::error::{EngineError, Result};
use crate::fingerprint::ModelFingerprint;
use crate::kv::{KvGeometry, KvState};
use crate::model::Model;
use candle_core::{DType, Tensor};
use half::f16;
use rayon::prelude::*;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

/// An opened, fully validated segment file (memory-mapped).
pub struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub id: SegmentId,
    pub tokens: Vec<u32>,
    pub file_bytes: u64,
    /// The whole file, read once (not mapped: a mapped file that another process truncates
    /// kills the reader with SIGBUS; a read just comes back short and is refused).
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("header", &self.header)
            .finish()
    }
}

/// The dtype and shape tensor `name` must have; `found` is the file's dtype for it (the token
/// ids may be U16 or U32 from version 2 on).
fn expected(name: &str, h: &SegmentHeader, found: Dtype) -> (Dtype, Vec<usize>) {
    let n = h.token_count;
    if name == "tokens" {
        let dt = if h.format_version >= 2 && found == Dtype::U16 {
            Dtype::U16
        } else {
            Dtype::U32
        };
        return (dt, vec![n]);
    }
    if name.ends_with("_scale") {
        return (Dtype::F16, vec![h.n_kv_head, n, h.head_dim / q8::BLOCK]);
    }
    let dt = match h.stored_dtype {
        StoredDType::F16 => Dtype::F16,
        StoredDType::Bf16 => Dtype::BF16,
        StoredDType::F32 => Dtype::F32,
        StoredDType::Q8 => Dtype::I8,
    };
    (dt, vec![h.n_kv_head, n, h.head_dim])
}

/// The most header bytes a segment may have. The header holds the transcript, so it grows with
/// a conversation or a document (a 128k-token document is well under 2 MB of text); this bound
/// only stops a hostile length field from allocating without limit.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Parses and checks the header of a segment whose file starts with `bytes` (at least the
/// length field and the header; the tensor data may follow or not). The one header parser:
/// opening a segment and looking up a parent by hash both use it.
pub fn parse_header(bytes: &[u8], file: &str) -> Result<SegmentHeader, StateError> {
    let not_state = |detail: String| StateError::NotAStateFile {
        file: file.to_string(),
        detail,
    };
    let Some(len) = bytes.get(..8) else {
        return Err(not_state("it is shorter than a header".into()));
    };
    let n = u64::from_le_bytes(len.try_into().unwrap_or_default());
    if n > MAX_HEADER_BYTES || n > (bytes.len() - 8) as u64 {
        return Err(not_state(format!(
            "its header length field ({n} bytes) exceeds the file or the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&bytes[8..8 + n as usize])
        .map_err(|e| not_state(format!("its header is not safetensors metadata ({e})")))?;
    SegmentHeader::from_metadata(meta.metadata().as_ref(), file)
}

/// Reads only the header of the segment at `path`, without mapping or hashing the K/V.
pub fn read_header(path: &Path) -> Result<SegmentHeader> {
    use std::io::Read;
    let file = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let meta = f.metadata().map_err(|e| EngineError::io(path, e))?;
    let not_state = |detail: String| StateError::NotAStateFile {
        file: file.clone(),
        detail,
    };
    if !meta.is_file() {
        return Err(not_state("it is not a regular file".into()).into());
    }
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| not_state("it is shorter than a header".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || n > meta.len().saturating_sub(8) {
        return Err(not_state(format!(
            "its header length {n} exceeds the file ({} bytes) or the limit",
            meta.len()
        ))
        .into());
    }
    let mut buf = len.to_vec();
    buf.resize(8 + n as usize, 0);
    f.read_exact(&mut buf[8..]).map_err(|e| EngineError::io(path, e))?;
    Ok(parse_header(&buf, &file)?)
}

impl Segment {
    /// Opens and checks a segment file: header fields, tensor names, dtypes and shapes, sizes,
    /// and the content checksum. Nothing is trusted before it is checked.
    #[tracing::instrument(level = "debug", name = "engine.open_segment", skip_all, fields(path = %path.display()))]
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        // Checked before opening: opening a FIFO for reading blocks until a writer appears.
        if !std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?.is_file() {
            return Err(StateError::NotAStateFile {
                file: name,
                detail: "it is not a regular file".into(),
            }
            .into());
        }
        let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_bytes = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let bytes = read_exactly(file, file_bytes, path)?;
        let header = parse_header(&bytes, &name)?;
        let layout = |detail: String| StateError::Layout {
            file: name.clone(),
            detail,
        };
        let st = SafeTensors::deserialize(&bytes).map_err(|e| layout(format!("truncated or corrupted ({e})")))?;
        // The count the header implies, checked against the tensors the file really holds
        // before any list is built from it: a header claiming 2^40 layers must cost nothing.
        let per_layer: usize = if header.stored_dtype == StoredDType::Q8 { 4 } else { 2 };
        let implied = header.n_layer.checked_mul(per_layer).and_then(|n| n.checked_add(1));
        if implied != Some(st.len()) {
            return Err(layout(format!(
                "it holds {} tensors, a {}-layer {} segment has {}",
                st.len(),
                header.n_layer,
                header.stored_dtype,
                implied.map_or_else(|| "more than can exist".to_string(), |n| n.to_string())
            ))
            .into());
        }
        let names = tensor_names(header.n_layer, header.stored_dtype);
        let mut hasher = blake3::Hasher::new();
        for t in &names {
            let view = st.tensor(t).map_err(|_| layout(format!("tensor `{t}` is missing")))?;
            let (dt, shape) = expected(t, &header, view.dtype());
            if view.dtype() != dt || view.shape() != shape.as_slice() {
                return Err(layout(format!(
                    "tensor `{t}` is {:?} {:?}, expected {dt:?} {shape:?}",
                    view.dtype(),
                    view.shape()
                ))
                .into());
            }
            hasher.update_rayon(view.data());
        }
        SegmentHeader::hash_transcript(header.format_version, header.transcript.as_deref(), &mut hasher);
        let sum = hasher.finalize().to_hex().to_string();
        if sum != header.checksum {
            return Err(StateError::Checksum {
                file: name,
                content: sum[..16].to_string(),
                header: header.checksum[..16].to_string(),
            }
            .into());
        }
        let tokens = st
            .tensor("tokens")
            .map(|v| match v.dtype() {
                Dtype::U16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                _ => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            })
            .map_err(|e| layout(format!("tokens: {e}")))?;
        let id = header.id();
        drop(st);
        Ok(Self {
            path: path.to_path_buf(),
            header,
            id,
            tokens,
            file_bytes,
            bytes,
        })
    }

    pub fn end(&self) -> usize {
        self.header.start + self.header.token_count
    }

    /// Refuses a segment made for another model, naming both.
    pub fn check_model(&self, fingerprint: &ModelFingerprint) -> Result<()> {
        if &self.header.model_fingerprint != fingerprint {
            return Err(EngineError::StateModelMismatch {
                expected: fingerprint.to_string(),
                found: format!("{} (in {})", self.header.model_fingerprint, self.path.display()),
            });
        }
        Ok(())
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| {
            StateError::Layout {
                file: self.path.display().to_string(),
                detail: format!("truncated or corrupted ({e})"),
            }
            .into()
        })
    }
}

/// Reads a file of `len` bytes (its size when opened) whole. A file that shrinks or grows while
/// it is read is refused as truncated or changed, never trusted.
fn read_exactly(file: std::fs::File, len: u64, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = path.display().to_string();
    let cap = usize::try_from(len).map_err(|_| StateError::NotAStateFile {
        file: name.clone(),
        detail: format!("{len} bytes do not fit in memory"),
    })?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(cap).map_err(|_| {
        EngineError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("cannot hold {len} bytes")),
        )
    })?;
    // One byte more than expected tells a file that grew from one that did not.
    file.take(len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| EngineError::io(path, e))?;
    if bytes.len() as u64 != len {
        return Err(StateError::Layout {
            file: name,
            detail: format!("it changed size while it was read ({len} bytes, then {})", bytes.len()),
        }
        .into());
    }
    Ok(bytes)
}

/// Loads the first `upto` tokens of a chain (root first) into a new state for `model`.
/// Checks that the chain links up and belongs to the model before allocating anything
/// (`validate`), then allocates the buffers (`allocate`) and converts the stored K/V into them
/// (`fill`).
#[tracing::instrument(level = "debug", name = "engine.load_chain", skip_all, fields(segments = chain.len(), tokens = upto))]
pub fn load_chain(chain: &[Segment], upto: usize, model: &Model, fingerprint: &ModelFingerprint) -> Result<KvState> {
    let geo = model.kv_geometry();
    validate(chain, upto, &geo, fingerprint)?;
    let cap = (upto + 256).div_ceil(256).saturating_mul(256).min(geo.max_len);
    let mut bufs = allocate(&geo, cap);
    let tokens = fill(chain, upto, &geo, cap, &mut bufs)?;
    let (h, d) = (geo.n_kv_head, geo.head_dim);
    let device = model.device();
    let buffers = bufs
        .into_iter()
        .map(|(k, v)| {
            let k = Tensor::from_vec(k, (h, cap, d), device)?.to_dtype(geo.dtype)?;
            let v = Tensor::from_vec(v, (h, cap, d), device)?.to_dtype(geo.dtype)?;
            Ok((k, v))
        })
        .collect::<Result<Vec<_>>>()?;
    KvState::from_buffers(geo, device, tokens, buffers)
}

/// Everything [`load_chain`] can check before it allocates: the chain starts at a root and
/// links up, every segment was made for this model (fingerprint) with its K/V geometry, `upto`
/// is a token count the chain holds and the context fits, and the live cache dtype is one the
/// loaded f16 values convert to.
fn validate(chain: &[Segment], upto: usize, geo: &KvGeometry, fingerprint: &ModelFingerprint) -> Result<()> {
    let Some(first) = chain.first() else {
        return Err(EngineError::Invalid("an empty chain of segments".into()));
    };
    if let Some(parent) = &first.header.parent {
        return Err(StateError::MissingParent {
            file: first.path.display().to_string(),
            parent: parent.to_string(),
            detail: "it was not given".into(),
        }
        .into());
    }
    for (i, s) in chain.iter().enumerate() {
        s.check_model(fingerprint)?;
        let h = &s.header;
        if (h.n_layer, h.n_kv_head, h.head_dim) != (geo.n_layer, geo.n_kv_head, geo.head_dim) {
            return Err(StateError::Shape {
                file: s.path.display().to_string(),
                found: format!("{}×{}×{}", h.n_layer, h.n_kv_head, h.head_dim),
                expected: format!("{}×{}×{}", geo.n_layer, geo.n_kv_head, geo.head_dim),
            }
            .into());
        }
        if i > 0 {
            let prev = &chain[i - 1];
            if h.parent.as_ref() != Some(&prev.id) || h.start != prev.end() {
                return Err(StateError::BrokenChain {
                    file: s.path.display().to_string(),
                    previous: prev.path.display().to_string(),
                    detail: format!(
                        "its parent is {:?} at {}, expected {} at {}",
                        h.parent.as_ref().map(|p| p.short(12)),
                        h.start,
                        prev.id.short(12),
                        prev.end()
                    ),
                }
                .into());
            }
        }
    }
    let total = chain.last().map(|s| s.end()).unwrap_or(0);
    if upto == 0 || upto > total {
        return Err(EngineError::Invalid(format!(
            "cannot take {upto} tokens from a chain of {total}"
        )));
    }
    if upto > geo.max_len {
        return Err(EngineError::ContextOverflow {
            needed: upto,
            context: geo.max_len,
        });
    }
    if geo.dtype != DType::F16 && geo.dtype != DType::F32 && geo.dtype != DType::BF16 {
        return Err(EngineError::Invalid(format!(
            "unsupported live cache dtype {:?}",
            geo.dtype
        )));
    }
    Ok(())
}

/// Zeroed f16 K and V buffers of `cap` positions for every layer (`n_kv_head × cap × head_dim`
/// each); pages past the loaded tokens are never touched (see [`zeroed`]).
fn allocate(geo: &KvGeometry, cap: usize) -> Vec<(Vec<f16>, Vec<f16>)> {
    let n = geo.n_kv_head * cap * geo.head_dim;
    (0..geo.n_layer).map(|_| (zeroed(n), zeroed(n))).collect()
}

/// Converts the stored K/V of the chain's first `upto` tokens into `bufs` (from [`allocate`],
/// `cap` positions a head) and returns those tokens. The chain must have passed [`validate`].
fn fill(
    chain: &[Segment],
    upto: usize,
    geo: &KvGeometry,
    cap: usize,
    bufs: &mut [(Vec<f16>, Vec<f16>)],
) -> Result<Vec<u32>> {
    let (h, d) = (geo.n_kv_head, geo.head_dim);
    let mut tokens = Vec::with_capacity(upto);
    for s in chain {
        let start = s.header.start;
        if start >= upto {
            break;
        }
        let n = s.header.token_count;
        let take = n.min(upto - start);
        tokens.extend_from_slice(&s.tokens[..take]);
        let st = s.tensors()?;
        // Layers in parallel: a real-size state is hundreds of megabytes, and one core copies
        // (and faults in) well below what the page cache delivers.
        bufs.par_iter_mut()
            .enumerate()
            .try_for_each(|(l, (kb, vb))| -> Result<()> {
                for (kv, buf) in [("k", &mut *kb), ("v", &mut *vb)] {
                    let name = format!("layers.{l}.{kv}");
                    let missing = |e: safetensors::SafeTensorError| -> EngineError {
                        StateError::Layout {
                            file: s.path.display().to_string(),
                            detail: e.to_string(),
                        }
                        .into()
                    };
                    let data = st.tensor(&name).map_err(missing)?;
                    let scales = match s.header.stored_dtype {
                        StoredDType::Q8 => Some(st.tensor(&format!("{name}_scale")).map_err(missing)?),
                        _ => None,
                    };
                    // A head's rows are contiguous on both sides: convert them in one run.
                    let (vals, bytes) = (take * d, bytes_per_value(s.header.stored_dtype));
                    for head in 0..h {
                        let row = head * n;
                        let dst = &mut buf[(head * cap + start) * d..][..vals];
                        populate(dst);
                        let src = &data.data()[row * d * bytes..][..vals * bytes];
                        let scales = scales
                            .as_ref()
                            .map(|v| &v.data()[row * d / q8::BLOCK * 2..][..vals / q8::BLOCK * 2]);
                        convert::to_f16(s.header.stored_dtype, src, scales, dst);
                    }
                }
                Ok(())
            })?;
    }
    Ok(tokens)
}

/// Stored bytes per K/V value (q8: the signed bytes; the scales are a separate tensor).
fn bytes_per_value(dt: StoredDType) -> usize {
    match dt {
        StoredDType::F16 | StoredDType::Bf16 => 2,
        StoredDType::F32 => 4,
        StoredDType::Q8 => 1,
    }
}

/// Maps the pages under `buf` in one call before they are written (Linux 5.14+; elsewhere, or
/// on an older kernel, the writes fault them in one by one as before). Freshly allocated
/// buffers are zero pages not yet mapped, and a page fault per 4 KiB was the largest cost of
/// loading a state.
fn populate(buf: &mut [f16]) {
    #[cfg(target_os = "linux")]
    {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: sysconf only reads a system constant; `_SC_PAGESIZE` is a valid name.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .unwrap_or(4096)
            .max(1);
        let (start, end) = (
            buf.as_mut_ptr() as usize,
            buf.as_mut_ptr() as usize + std::mem::size_of_val(buf),
        );
        let (first, last) = (start.next_multiple_of(page), end / page * page);
        if last > first {
            // SAFETY: `first..last` lies inside `buf`, which we own mutably; populating only maps
            // pages (with their current, zero, contents) and changes no value. A failure
            // (EINVAL on an older kernel) is ignored: the writes will fault the pages in.
            unsafe { libc::madvise(first as *mut libc::c_void, last - first, MADV_POPULATE_WRITE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// `n` zero f16 values from zeroed memory (calloc): pages past the loaded tokens are never touched.
fn zeroed(n: usize) -> Vec<f16> {
    let mut v = std::mem::ManuallyDrop::new(vec![0u16; n]);
    // SAFETY: f16 has the size, alignment and (for 0) bit pattern of u16; the allocation is
    // handed over whole, with its length and capacity.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut f16, v.len(), v.capacity()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::write_segment;
    use candle_core::Device;

    const GEO: KvGeometry = KvGeometry {
        n_layer: 1,
        n_kv_head: 1,
        head_dim: 32,
        dtype: DType::F16,
        max_len: 64,
    };

    /// A root segment of 3 tokens with the geometry [`GEO`], written and opened.
    fn root(dir: &Path, fingerprint: &ModelFingerprint) -> Segment {
        let dev = Device::Cpu;
        let kv = Tensor::zeros((1, 4, 32), DType::F16, &dev).unwrap();
        let state = KvState::from_buffers(GEO, &dev, vec![1, 2, 3], vec![(kv.clone(), kv)]).unwrap();
        let path = dir.join("root.safetensors");
        write_segment(&state, 0, 3, None, fingerprint, StoredDType::F16, None, &path).unwrap();
        Segment::open(&path).unwrap()
    }

    #[test]
    fn the_live_cache_dtype_is_checked_with_the_chain_before_anything_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        let chain = [root(dir.path(), &fp)];
        validate(&chain, 3, &GEO, &fp).expect("a whole chain of the model's geometry is valid");
        let u8_cache = KvGeometry {
            dtype: DType::U8,
            ..GEO
        };
        let e = validate(&chain, 3, &u8_cache, &fp).unwrap_err();
        assert!(
            matches!(&e, EngineError::Invalid(m) if m == "unsupported live cache dtype U8"),
            "validation (which runs before allocation) must refuse a cache dtype the loader cannot fill: {e}"
        );
        let e = validate(&chain, 4, &u8_cache, &fp).unwrap_err();
        assert!(
            matches!(&e, EngineError::Invalid(m) if m.starts_with("cannot take 4 tokens")),
            "the checks that came first still come first: {e}"
        );
    }
}
