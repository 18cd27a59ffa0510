//! Writing one segment: the K/V of positions `start..end` of a state, crash-safely (temporary
//! file, fsync, rename), so a reader never sees half a segment.

use super::direct::{Direct, DIRECT};
use super::format::{SegmentHeader, StoredDType, FORMAT_VERSION};
use super::{q8, SegmentId};
use crate::error::{EngineError, Result};
use crate::fingerprint::ModelFingerprint;
use crate::kv::KvState;
use candle_core::{CpuStorage, DType, Device, Storage, StridedBlocks, Tensor};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, Metadata};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What was written.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub id: SegmentId,
    pub header: SegmentHeader,
    pub path: PathBuf,
    pub bytes: u64,
}

pub(super) struct Raw<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Data<'a>,
}

/// A tensor's values as they are written: bytes, 16/32-bit floats kept in the vector they were
/// copied into (their little-endian bytes are the stored bytes, so on a little-endian machine
/// they are written as they lie, without a second copy), or the state's own memory, lent in
/// runs of bytes (when the stored type is the state's: nothing is copied before the write).
pub(super) enum Data<'a> {
    Bytes(Vec<u8>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
    Lent(Vec<&'a [u8]>),
}

impl Data<'_> {
    /// The bytes in order, as one or more runs.
    pub(super) fn runs(&self) -> Vec<Cow<'_, [u8]>> {
        match self {
            Self::Bytes(b) => vec![Cow::Borrowed(b)],
            Self::F16(v) => vec![le_bytes(v, |x| x.to_le_bytes())],
            Self::Bf16(v) => vec![le_bytes(v, |x| x.to_le_bytes())],
            Self::F32(v) => vec![le_bytes(v, f32::to_le_bytes)],
            Self::Lent(runs) => runs.iter().map(|r| Cow::Borrowed(*r)).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::F16(v) => v.len() * 2,
            Self::Bf16(v) => v.len() * 2,
            Self::F32(v) => v.len() * 4,
            Self::Lent(runs) => runs.iter().map(|r| r.len()).sum(),
        }
    }
}

/// The bytes of `t` (a host tensor whose dtype is the stored one) in row-major order, borrowed
/// from its storage in contiguous runs: a state's `(n_kv_head, positions, head_dim)` view is one
/// run per head. None where that is not possible (another device, a big-endian machine, a
/// layout that is not uniform runs); the caller copies instead.
fn lend<'a>(storage: &'a Storage, t: &Tensor) -> Option<Vec<&'a [u8]>> {
    fn bytes<T>(v: &[T]) -> &[u8] {
        // SAFETY: `T` is f16, bf16 or f32 (below): plain values with no padding, so their
        // memory is `size_of_val(v)` initialised bytes, borrowed for as long as `v`.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
    }
    if cfg!(target_endian = "big") {
        return None;
    }
    let (all, size) = match storage {
        Storage::Cpu(CpuStorage::F16(v)) => (bytes(v), 2),
        Storage::Cpu(CpuStorage::BF16(v)) => (bytes(v), 2),
        Storage::Cpu(CpuStorage::F32(v)) => (bytes(v), 4),
        _ => return None,
    };
    let run = |start: usize, len: usize| all.get(start * size..(start + len) * size);
    match t.strided_blocks() {
        StridedBlocks::SingleBlock { start_offset, len } => Some(vec![run(start_offset, len)?]),
        StridedBlocks::UniformBlocks {
            start_offset,
            block_len,
            count,
            src_stride,
        } => (0..count)
            .map(|i| run(start_offset + i * src_stride, block_len))
            .collect(),
        StridedBlocks::MultipleBlocks { .. } => None,
    }
}

/// The little-endian bytes of `v`: the values' own memory on a little-endian machine, a
/// converted copy elsewhere.
fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        debug_assert_eq!(std::mem::size_of::<T>(), N);
        // SAFETY: `T` is one of f16, bf16, f32: plain values of exactly N bytes with no padding
        // and no invalid bit patterns, so their memory is `v.len() * N` initialised bytes; the
        // slice borrows `v` and lives no longer than it.
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) })
    } else {
        Cow::Owned(bytes_of(v, f))
    }
}

fn bytes_of<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * N);
    for x in v {
        out.extend_from_slice(&f(*x));
    }
    out
}

/// The tensor names of a segment in canonical order (the order the checksum covers).
pub(super) fn tensor_names(n_layer: usize, dtype: StoredDType) -> Vec<String> {
    let mut names = vec!["tokens".to_string()];
    for l in 0..n_layer {
        for kv in ["k", "v"] {
            names.push(format!("layers.{l}.{kv}"));
            if dtype == StoredDType::Q8 {
                names.push(format!("layers.{l}.{kv}_scale"));
            }
        }
    }
    names
}

/// Writes positions `start..end` of `state` as a segment whose parent is `parent` (which must
/// hold exactly positions `0..start` of the same state).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", name = "engine.write_segment", skip_all, fields(start = start, end = end, dtype = %dtype))]
pub fn write_segment(
    state: &KvState,
    start: usize,
    end: usize,
    parent: Option<SegmentId>,
    fingerprint: &ModelFingerprint,
    dtype: StoredDType,
    transcript: Option<&str>,
    path: &Path,
) -> Result<SegmentInfo> {
    write_segment_with(state, start, end, parent, fingerprint, dtype, transcript, path, DIRECT).map(|(info, _)| info)
}

/// [`write_segment`] with the choice of direct writes given; also says whether the file was
/// written directly.
#[allow(clippy::too_many_arguments)]
fn write_segment_with(
    state: &KvState,
    start: usize,
    end: usize,
    parent: Option<SegmentId>,
    fingerprint: &ModelFingerprint,
    dtype: StoredDType,
    transcript: Option<&str>,
    path: &Path,
    direct: Direct,
) -> Result<(SegmentInfo, bool)> {
    if start >= end || end > state.len() {
        return Err(EngineError::Invalid(format!(
            "cannot save positions {start}..{end} of a state of {} tokens",
            state.len()
        )));
    }
    if parent.is_none() != (start == 0) {
        return Err(EngineError::Invalid(
            "a segment has a parent exactly when it does not start at 0".into(),
        ));
    }
    let g = *state.geometry();
    let n = end - start;
    let host = tracing::debug_span!("engine.copy_out").in_scope(|| on_host(state, start, end))?;
    // Read guards on the host tensors' storage, held while their bytes are lent to the write
    // (declared before `tensors`, which borrows from them).
    let storages: Vec<_> = host.iter().map(|t| t.storage_and_layout()).collect();
    let mut tensors: Vec<(String, Raw)> = Vec::new();
    let ids = &state.tokens()[start..end];
    tensors.push((
        "tokens".into(),
        match ids.iter().all(|&t| t <= u32::from(u16::MAX)) {
            // Vocabularies up to 65,536 entries (SmolLM2, Mistral, Llama 2) need 2 bytes a token.
            true => Raw {
                dtype: Dtype::U16,
                shape: vec![n],
                data: Data::Bytes(bytes_of(ids, |t| (t as u16).to_le_bytes())),
            },
            false => Raw {
                dtype: Dtype::U32,
                shape: vec![n],
                data: Data::Bytes(bytes_of(ids, u32::to_le_bytes)),
            },
        },
    ));
    let copy = tracing::debug_span!("engine.copy_out").entered();
    let mut host = host.iter().zip(&storages);
    for l in 0..g.n_layer {
        for name in ["k", "v"] {
            let (t, (storage, _)) = host
                .next()
                .ok_or_else(|| EngineError::Invalid("a K/V view is missing".into()))?;
            let shape = vec![g.n_kv_head, n, g.head_dim];
            let key = format!("layers.{l}.{name}");
            let stored = match dtype {
                StoredDType::F16 => Some((DType::F16, Dtype::F16)),
                StoredDType::Bf16 => Some((DType::BF16, Dtype::BF16)),
                StoredDType::F32 => Some((DType::F32, Dtype::F32)),
                StoredDType::Q8 => None,
            };
            if let Some((ours, theirs)) = stored.filter(|&(ours, _)| t.dtype() == ours) {
                if let Some(runs) = lend(storage, t).filter(|r| {
                    r.iter().map(|x| x.len()).sum::<usize>() == g.n_kv_head * n * g.head_dim * ours.size_in_bytes()
                }) {
                    tensors.push((
                        key,
                        Raw {
                            dtype: theirs,
                            shape,
                            data: Data::Lent(runs),
                        },
                    ));
                    continue;
                }
            }
            match dtype {
                StoredDType::F16 => {
                    let vals = t.to_dtype(DType::F16)?.flatten_all()?.to_vec1::<f16>()?;
                    tensors.push((
                        key,
                        Raw {
                            dtype: Dtype::F16,
                            shape,
                            data: Data::F16(vals),
                        },
                    ));
                }
                StoredDType::Bf16 => {
                    let vals = t.to_dtype(DType::BF16)?.flatten_all()?.to_vec1::<bf16>()?;
                    tensors.push((
                        key,
                        Raw {
                            dtype: Dtype::BF16,
                            shape,
                            data: Data::Bf16(vals),
                        },
                    ));
                }
                StoredDType::F32 => {
                    let vals = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    tensors.push((
                        key,
                        Raw {
                            dtype: Dtype::F32,
                            shape,
                            data: Data::F32(vals),
                        },
                    ));
                }
                StoredDType::Q8 => {
                    if !g.head_dim.is_multiple_of(q8::BLOCK) {
                        return Err(EngineError::Invalid(format!(
                            "q8 needs a head dimension divisible by 32, not {}",
                            g.head_dim
                        )));
                    }
                    let vals = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    let (mut q, mut s) = (
                        Vec::with_capacity(vals.len()),
                        Vec::with_capacity(vals.len() / q8::BLOCK),
                    );
                    q8::quantize(&vals, &mut q, &mut s);
                    let scale_shape = vec![g.n_kv_head, n, g.head_dim / q8::BLOCK];
                    tensors.push((
                        key.clone(),
                        Raw {
                            dtype: Dtype::I8,
                            shape,
                            data: Data::Bytes(q.iter().map(|x| *x as u8).collect()),
                        },
                    ));
                    tensors.push((
                        format!("{key}_scale"),
                        Raw {
                            dtype: Dtype::F16,
                            shape: scale_shape,
                            data: Data::F16(s),
                        },
                    ));
                }
            }
        }
    }
    drop(copy);
    let mut header = SegmentHeader {
        format_version: FORMAT_VERSION,
        model_fingerprint: fingerprint.clone(),
        parent,
        start,
        token_count: n,
        stored_dtype: dtype,
        n_layer: g.n_layer,
        n_kv_head: g.n_kv_head,
        head_dim: g.head_dim,
        // Filled in by the write, which checksums the values while it writes them.
        checksum: String::new(),
        transcript: transcript.map(str::to_string),
    };
    let (bytes, was_direct) = write_atomically(path, &tensors, &mut header, direct)?;
    drop(tensors);
    drop(storages);
    Ok((
        SegmentInfo {
            id: header.id(),
            header,
            path: path.to_path_buf(),
            bytes,
        },
        was_direct,
    ))
}

/// The checksum of a segment's values: blake3 over every tensor's bytes in canonical order
/// (`tensors`' order), then the transcript.
fn checksum(tensors: &[(String, Raw<'_>)], transcript: Option<&str>) -> String {
    let _span = tracing::debug_span!("engine.checksum").entered();
    let mut hasher = blake3::Hasher::new();
    for (_, raw) in tensors {
        for run in raw.data.runs() {
            hasher.update(&run);
        }
    }
    SegmentHeader::hash_transcript(FORMAT_VERSION, transcript, &mut hasher);
    hasher.finalize().to_hex().to_string()
}

/// The safetensors header of a segment (length prefix and JSON, as safetensors encodes it) and
/// the tensors in the order their bytes follow it. The values are then written from where they
/// lie instead of through one buffer of the whole file (which doubled the memory a freeze
/// needed). The header is the crate's own encoding of its `Metadata` (tensors by descending
/// dtype, then by name, as `safetensors::serialize` lays them out; the JSON padded with spaces
/// to 8 bytes), built here because `serialize` reserves a buffer of the whole file even for
/// tensors without data: a 2 GB state asked for 2 GB of address space and aborted the process
/// where that was limited (`ulimit -v`, Windows' commit limit). The offsets are ours, so the
/// data cannot be misplaced; the tests compare whole files with `serialize`'s, so a change in
/// the crate's layout would be seen.
fn encode_header<'a, 'b>(
    tensors: &'a [(String, Raw<'b>)],
    header: &SegmentHeader,
) -> Result<(Vec<u8>, Vec<&'a Raw<'b>>)> {
    let bad = |detail: String| EngineError::Invalid(format!("cannot encode the segment: {detail}"));
    let mut sorted: Vec<&(String, Raw<'b>)> = tensors.iter().collect();
    sorted.sort_by(|(a, l), (b, r)| r.dtype.cmp(&l.dtype).then(a.cmp(b)));
    let mut offset = 0usize;
    let mut infos = Vec::with_capacity(sorted.len());
    for (name, raw) in &sorted {
        let end = offset + raw.data.len();
        infos.push((
            name.clone(),
            safetensors::tensor::TensorInfo {
                dtype: raw.dtype,
                shape: raw.shape.clone(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let meta = Metadata::new(Some(header.to_metadata()), infos).map_err(|e| bad(e.to_string()))?;
    let mut json = serde_json::to_vec(&meta).map_err(|e| bad(e.to_string()))?;
    json.resize(json.len().next_multiple_of(8), b' ');
    if json.len() as u64 > super::read::MAX_HEADER_BYTES {
        // A reader refuses such a header: better no file than one that cannot be thawed.
        return Err(bad(format!(
            "its header ({} bytes, mostly the transcript) exceeds the {}-byte limit",
            json.len(),
            super::read::MAX_HEADER_BYTES
        )));
    }
    let mut head = Vec::with_capacity(8 + json.len());
    head.extend_from_slice(&(json.len() as u64).to_le_bytes());
    head.extend_from_slice(&json);
    // The data follows in the order the offsets were given.
    Ok((head, sorted.into_iter().map(|(_, raw)| raw).collect()))
}

/// Bytes a GPU gathers into one transfer to the host when a state is frozen.
const TRANSFER_BYTES: usize = 256 << 20;

/// The K/V of positions `start..end`, in file order (layer 0 K, layer 0 V, layer 1 K, …), as
/// tensors in host memory. On the CPU these are views of the state. On a GPU the views are
/// gathered on the device and copied to the host in transfers of up to [`TRANSFER_BYTES`]: a
/// 32-layer state is read with a few synchronisations instead of one per tensor.
fn on_host(state: &KvState, start: usize, end: usize) -> Result<Vec<Tensor>> {
    let g = state.geometry();
    let mut views = Vec::with_capacity(2 * g.n_layer);
    for l in 0..g.n_layer {
        let (k, v) = state.layer_view(l, start, end)?;
        views.push(k);
        views.push(v);
    }
    if state.device().is_cpu() {
        return Ok(views);
    }
    let shape = (g.n_kv_head, end - start, g.head_dim);
    let per = shape.0 * shape.1 * shape.2;
    gather(
        &views,
        shape,
        (TRANSFER_BYTES / (per * g.dtype.size_in_bytes()).max(1)).max(1),
    )
}

/// `views` (all of `shape`) copied to the host `batch` at a time, each batch gathered on its
/// device first.
fn gather(views: &[Tensor], shape: (usize, usize, usize), batch: usize) -> Result<Vec<Tensor>> {
    let per = shape.0 * shape.1 * shape.2;
    let mut host = Vec::with_capacity(views.len());
    for group in views.chunks(batch) {
        let flat = group
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let all = Tensor::cat(&flat, 0)?.to_device(&Device::Cpu)?;
        for i in 0..group.len() {
            host.push(all.narrow(0, i * per, per)?.reshape(shape)?);
        }
    }
    Ok(host)
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    if e.raw_os_error() == Some(28) {
        return super::StateError::DiskFull {
            file: path.display().to_string(),
        }
        .into();
    }
    EngineError::Write {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Removes `.{name}.{pid}.partial` files that a killed writer of the same target left beside
/// it (outside a library no gc looks there): on Linux those whose process is gone, elsewhere
/// those untouched for an hour. Best effort.
fn sweep_stale_partials(dir: &Path, name: &str) {
    if name.is_empty() {
        return;
    }
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".partial"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let gone = if cfg!(target_os = "linux") {
            !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        if pid != std::process::id() && gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A segment's file with its values written, its header not yet.
enum Written {
    Direct(std::fs::File, super::direct::Pending),
    Buffered(std::fs::File),
}

/// Writes the segment to a temporary file beside `path`, fsyncs it and renames it into place.
/// The values are checksummed by a second thread while this one writes them: the header, which
/// holds the checksum, is written last at the start of the file, where a header of the same
/// length (the checksum's 64 hex digits as zeros) kept its place. A segment of at least
/// `direct.min` bytes is written around the page cache ([`super::direct`]) where the file system
/// allows it. Sets `header.checksum`; returns the file's size and whether it was written
/// directly.
fn write_atomically(
    path: &Path,
    tensors: &[(String, Raw<'_>)],
    header: &mut SegmentHeader,
    direct: Direct,
) -> Result<(u64, bool)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    sweep_stale_partials(dir, &name);
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = (|| -> Result<(u64, bool)> {
        header.checksum = "0".repeat(64);
        let (placeholder, order) = encode_header(tensors, header)?;
        let total = placeholder.len() as u64 + order.iter().map(|r| r.data.len() as u64).sum::<u64>();
        let transcript = header.transcript.clone();
        let (f, was_direct) = std::thread::scope(|scope| -> Result<(std::fs::File, bool)> {
            let sum = scope.spawn(|| checksum(tensors, transcript.as_deref()));
            let write = tracing::debug_span!("engine.write", direct = tracing::field::Empty).entered();
            let mut pending = None;
            if total >= direct.min && placeholder.len() <= direct.chunk {
                if let Some(f) = super::direct::open(&tmp) {
                    match super::direct::write_data(&f, direct, placeholder.len(), &order, total) {
                        Ok(p) => pending = Some((f, p)),
                        Err(e) if super::direct::unsupported(&e) => {
                            tracing::debug!(error = %e, "direct writes refused here: writing through the page cache");
                        }
                        Err(e) => return Err(io_err(&tmp, e)),
                    }
                }
            }
            write.record("direct", pending.is_some());
            let written = match pending {
                Some((f, p)) => Written::Direct(f, p),
                None => {
                    let f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
                    (|| -> std::io::Result<()> {
                        let mut out = std::io::BufWriter::with_capacity(1 << 20, &f);
                        out.write_all(&vec![0u8; placeholder.len()])?;
                        for raw in &order {
                            for run in raw.data.runs() {
                                out.write_all(&run)?;
                            }
                        }
                        out.flush()
                    })()
                    .map_err(|e| io_err(&tmp, e))?;
                    Written::Buffered(f)
                }
            };
            drop(write);
            header.checksum = sum
                .join()
                .map_err(|_| EngineError::Invalid("the checksum thread failed".into()))?;
            let (head, final_order) = encode_header(tensors, header)?;
            if head.len() != placeholder.len() || final_order.iter().zip(&order).any(|(a, b)| !std::ptr::eq(*a, *b)) {
                return Err(EngineError::Invalid(
                    "cannot encode the segment: its header changed length with the checksum".into(),
                ));
            }
            match written {
                Written::Direct(f, p) => {
                    super::direct::finish(&f, p, &head).map_err(|e| io_err(&tmp, e))?;
                    Ok((f, true))
                }
                Written::Buffered(f) => {
                    write_at(&f, &head, 0).map_err(|e| io_err(&tmp, e))?;
                    Ok((f, false))
                }
            }
        })?;
        tracing::debug_span!("engine.fsync").in_scope(|| f.sync_all().map_err(|e| io_err(&tmp, e)))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        if was_direct {
            // In the background, once the file is in place: the fadvise calls wait for the
            // reads they start.
            let _ = std::thread::Builder::new()
                .name("segment-read-ahead".into())
                .spawn(move || super::direct::read_ahead(&f));
        }
        Ok((total, was_direct))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub(super) fn write_at(f: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(f, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut done, mut buf) = (0u64, buf);
        while !buf.is_empty() {
            let n = std::os::windows::fs::FileExt::seek_write(f, buf, offset + done)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            (done, buf) = (done + n as u64, &buf[n..]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-layer state of 2 heads of 32 with room for 64 positions and distinct values (all
    /// exact in f16), its cache in `dtype`.
    fn state(dtype: DType, n: usize) -> KvState {
        let dev = Device::Cpu;
        let geo = crate::kv::KvGeometry {
            n_layer: 2,
            n_kv_head: 2,
            head_dim: 32,
            dtype,
            max_len: 64,
        };
        let buffers = (0..2)
            .map(|l| {
                let vals = |kv: f32| {
                    let v: Vec<f32> = (0..2 * 64 * 32)
                        .map(|i| f16::from_f32(((i as f32 * 0.37 + l as f32 * 11.0 + kv).sin()) * 3.0).to_f32())
                        .collect();
                    Tensor::from_vec(v, (2, 64, 32), &dev).unwrap().to_dtype(dtype).unwrap()
                };
                (vals(0.0), vals(5.0))
            })
            .collect();
        KvState::from_buffers(geo, &dev, (1..=n as u32).map(|t| t * 70_001).collect(), buffers).unwrap()
    }

    #[test]
    fn a_segment_is_the_safetensors_file_of_its_values_whether_written_from_the_state_or_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        // f16 cache stored as f16: written from the state's own memory, one run per head. An
        // f32 cache of the same values stored as f16: converted copies. Both a root and a
        // segment that starts inside the state (its runs start mid-buffer).
        let lent = state(DType::F16, 40);
        let copied = state(DType::F32, 40);
        let root = write_segment(
            &lent,
            0,
            10,
            None,
            &fp,
            StoredDType::F16,
            None,
            &dir.path().join("root"),
        )
        .unwrap();
        for (start, parent) in [(0, None), (10, Some(root.id.clone()))] {
            let write = |state: &KvState, name: &str| {
                let path = dir.path().join(name);
                let info = write_segment(
                    state,
                    start,
                    40,
                    parent.clone(),
                    &fp,
                    StoredDType::F16,
                    Some("hi"),
                    &path,
                )
                .unwrap();
                (info, std::fs::read(&path).unwrap())
            };
            // The header's metadata is a map, written in no fixed order: headers are compared
            // as JSON, the values byte for byte.
            let split = |file: &[u8]| {
                let n = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
                let json: serde_json::Value = serde_json::from_slice(&file[8..n]).unwrap();
                (json, file[n..].to_vec())
            };
            // The f16 state's values are lent as they lie: one run per head.
            let (k, _) = lent.layer_view(1, start, 40).unwrap();
            let (storage, _) = k.storage_and_layout();
            let runs = lend(&storage, &k).expect("an f16 view is lent");
            assert_eq!(
                runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
                [(40 - start) * 32 * 2; 2]
            );
            drop(storage);
            let (info, from_state) = write(&lent, &format!("lent-{start}"));
            let (copy_info, from_copy) = write(&copied, &format!("copied-{start}"));
            assert_eq!(split(&from_state), split(&from_copy), "segment from {start}");
            assert_eq!(info.id, copy_info.id);
            assert_eq!(info.bytes, from_state.len() as u64);

            // The same file as the safetensors crate encodes it from the values, whole.
            let n = 40 - start;
            let mut values: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = vec![(
                "tokens".into(),
                bytes_of(&lent.tokens()[start..40], u32::to_le_bytes),
                Dtype::U32,
                vec![n],
            )];
            for l in 0..2 {
                let (k, v) = lent.layer_view(l, start, 40).unwrap();
                for (name, t) in [("k", k), ("v", v)] {
                    let vals = t.flatten_all().unwrap().to_vec1::<f16>().unwrap();
                    values.push((
                        format!("layers.{l}.{name}"),
                        bytes_of(&vals, |x| x.to_le_bytes()),
                        Dtype::F16,
                        vec![2, n, 32],
                    ));
                }
            }
            let views: Vec<_> = values
                .iter()
                .map(|(name, bytes, dt, shape)| {
                    (
                        name.as_str(),
                        safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes).unwrap(),
                    )
                })
                .collect();
            let reference = safetensors::tensor::serialize(views, Some(info.header.to_metadata())).unwrap();
            assert_eq!(split(&from_state), split(&reference), "segment from {start}");

            // The checksum covers the values and the transcript, as a reader checks it.
            let mut h = blake3::Hasher::new();
            for (_, bytes, _, _) in &values {
                h.update(bytes);
            }
            SegmentHeader::hash_transcript(FORMAT_VERSION, Some("hi"), &mut h);
            assert_eq!(info.header.checksum, h.finalize().to_hex().to_string());
            super::super::Segment::open(&dir.path().join(format!("lent-{start}"))).unwrap();
        }
    }

    #[test]
    fn a_segment_written_around_the_page_cache_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        let state = state(DType::F16, 40);
        // Whether this file system takes O_DIRECT at all (tmpfs does not: then the buffered
        // fallback must still write the same file).
        let supported = super::super::direct::open(&dir.path().join("probe")).is_some();
        let buffered = Direct {
            min: u64::MAX,
            chunk: 8 << 20,
        };
        // Several buffers (the last one partial), one buffer holding everything, and a buffer
        // size that ends exactly at a block.
        for (i, chunk) in [8192, 1 << 20, 4096].into_iter().enumerate() {
            for (start, parent) in [(0, None), (17, Some(SegmentId::parse(&"ab".repeat(32)).unwrap()))] {
                let write = |name: &str, how: Direct| {
                    let path = dir.path().join(format!("{name}-{i}-{start}"));
                    let (info, direct) = write_segment_with(
                        &state,
                        start,
                        40,
                        parent.clone(),
                        &fp,
                        StoredDType::F16,
                        Some("hi"),
                        &path,
                        how,
                    )
                    .unwrap();
                    (info, direct, std::fs::read(&path).unwrap())
                };
                let (info, was_direct, file) = write("direct", Direct { min: 0, chunk });
                let (plain_info, plain_direct, plain) = write("plain", buffered);
                assert_eq!(was_direct, supported, "chunk {chunk}, from {start}");
                assert!(!plain_direct);
                assert_eq!(info.id, plain_info.id);
                assert_eq!(info.bytes, file.len() as u64);
                let n = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
                assert_eq!(file.len(), plain.len(), "cut to its length, not to whole blocks");
                assert_eq!(file[n..], plain[n..], "chunk {chunk}, from {start}");
                let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
                assert_eq!(json(&file[8..n]), json(&plain[8..n]));
                // And it opens, its checksum verified.
                super::super::Segment::open(&dir.path().join(format!("direct-{i}-{start}"))).unwrap();
            }
        }
    }

    #[test]
    fn views_gathered_in_batches_come_back_whole_and_in_order() -> Result<()> {
        let shape = (2, 3, 4);
        let buf = Tensor::arange(0f32, 5.0 * 2.0 * 8.0 * 4.0, &Device::Cpu)?.reshape((5, 2, 8, 4))?;
        // Five narrowed views of a larger buffer, as a state's layers are.
        let views: Vec<Tensor> = (0..5)
            .map(|i| buf.get(i)?.narrow(1, 2, 3))
            .collect::<candle_core::Result<_>>()?;
        for batch in [1, 2, 3, 5, 9] {
            let host = gather(&views, shape, batch)?;
            assert_eq!(host.len(), views.len());
            for (a, b) in views.iter().zip(&host) {
                assert_eq!(b.dims3()?, shape);
                assert_eq!(
                    a.flatten_all()?.to_vec1::<f32>()?,
                    b.flatten_all()?.to_vec1::<f32>()?,
                    "batch {batch}"
                );
            }
        }
        Ok(())
    }
}
