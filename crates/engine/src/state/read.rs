//! Reading segments and loading a chain of them into a fresh [`KvState`].

use super::format::{SegmentHeader, StoredDType};
use super::write::tensor_names;
use super::{convert, q8, SegmentId, StateError};
use crate::error::{EngineError, Result};
use crate::fingerprint::ModelFingerprint;
use crate::kv::{KvGeometry, KvState};
use crate::model::Model;
use candle_core::DType;
use half::f16;
use rayon::prelude::*;
use safetensors::tensor::Dtype;
use safetensors::tensor::Metadata;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An opened segment file whose header, tensor layout and token ids have been checked.
///
/// The K/V bytes are not kept: [`Segment::open`] streams them once through the checksum, and
/// [`load_chain`] reads them again straight into the state's buffers, checksumming as it goes,
/// so a thaw touches every byte once and never holds a second copy of the file. The file is
/// read with positioned reads, never mapped: a mapped file that another process truncates kills
/// the reader with SIGBUS, while a read just comes back short and is refused.
pub struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub id: SegmentId,
    pub tokens: Vec<u32>,
    pub file_bytes: u64,
    /// Where each tensor of [`tensor_names`] lies in the file, in that (the checksum's) order:
    /// absolute byte ranges, checked against the header's dtypes and shapes.
    spans: Vec<Range<u64>>,
    /// The `tokens` tensor as stored (it is the first thing the checksum covers).
    token_bytes: Vec<u8>,
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
    let (_, meta) = parse_metadata(bytes, file)?;
    SegmentHeader::from_metadata(meta.metadata().as_ref(), file)
}

/// The safetensors metadata (tensor table and string map) at the start of `bytes`, and the
/// length of the header it was read from.
fn parse_metadata(bytes: &[u8], file: &str) -> Result<(u64, Metadata), StateError> {
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
    // Deserializing validates the table: offsets contiguous from 0, each range the size its
    // dtype and shape imply (checked arithmetic).
    let meta: Metadata = serde_json::from_slice(&bytes[8..8 + n as usize])
        .map_err(|e| not_state(format!("its header is not safetensors metadata ({e})")))?;
    Ok((n, meta))
}

/// Reads the length field and the header of the open file `f` (`file_len` bytes long).
fn read_header_bytes(f: &mut File, file_len: u64, name: &str) -> Result<Vec<u8>, StateError> {
    use std::io::Read;
    let not_state = |detail: String| StateError::NotAStateFile {
        file: name.to_string(),
        detail,
    };
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| not_state("it is shorter than a header".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || n > file_len.saturating_sub(8) {
        return Err(not_state(format!(
            "its header length {n} exceeds the file ({file_len} bytes) or the limit"
        )));
    }
    let mut buf = len.to_vec();
    buf.resize(8 + n as usize, 0);
    f.read_exact(&mut buf[8..])
        .map_err(|_| not_state("it is shorter than its header".into()))?;
    Ok(buf)
}

/// Opens `path` for reading if it is a regular file (checked before opening: opening a FIFO
/// for reading blocks until a writer appears), with its length.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    if !std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?.is_file() {
        return Err(StateError::NotAStateFile {
            file: path.display().to_string(),
            detail: "it is not a regular file".into(),
        }
        .into());
    }
    let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    Ok((file, len))
}

/// Reads only the header of the segment at `path`, without reading or hashing the K/V.
pub fn read_header(path: &Path) -> Result<SegmentHeader> {
    let name = path.display().to_string();
    let (mut f, len) = open_regular(path)?;
    let buf = read_header_bytes(&mut f, len, &name)?;
    Ok(parse_header(&buf, &name)?)
}

/// Fills `buf` from `offset` of `file`. A file cut short since it was opened ends the read
/// early, which is an error here, never a crash.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Segment {
    /// Opens and checks a segment file completely: header fields, tensor names, dtypes and
    /// shapes, sizes, and the content checksum (the K/V is streamed through the hash in
    /// bounded memory). Nothing is trusted before it is checked.
    #[tracing::instrument(level = "debug", name = "engine.open_segment", skip_all, fields(path = %path.display()))]
    pub fn open(path: &Path) -> Result<Self> {
        let (seg, file) = Self::open_layout(path)?;
        seg.verify(&file)?;
        Ok(seg)
    }

    /// Opens a segment to be loaded by [`load_chain`]: everything [`Segment::open`] checks
    /// except the content checksum, which `load_chain` computes while it reads the K/V into
    /// the state (and refuses the state on a mismatch), so that a thaw reads each byte once.
    #[tracing::instrument(level = "debug", name = "engine.open_segment_for_load", skip_all, fields(path = %path.display()))]
    pub fn open_for_load(path: &Path) -> Result<Self> {
        Ok(Self::open_layout(path)?.0)
    }

    /// Everything but the checksum: the header, the tensor table against it, the file's size
    /// against the table, and the token ids.
    fn open_layout(path: &Path) -> Result<(Self, File)> {
        let name = path.display().to_string();
        let (mut file, file_bytes) = open_regular(path)?;
        let head = read_header_bytes(&mut file, file_bytes, &name)?;
        let (n, meta) = parse_metadata(&head, &name)?;
        let header = SegmentHeader::from_metadata(meta.metadata().as_ref(), &name)?;
        let layout = |detail: String| StateError::Layout {
            file: name.clone(),
            detail,
        };
        let data_start = 8 + n;
        if data_start.checked_add(meta.data_len() as u64) != Some(file_bytes) {
            return Err(layout(format!(
                "truncated or corrupted (the header describes {} bytes of tensors, the file holds {})",
                meta.data_len(),
                file_bytes - data_start
            ))
            .into());
        }
        // The count the header implies, checked against the tensors the file really holds
        // before any list is built from it: a header claiming 2^40 layers must cost nothing.
        let per_layer: usize = if header.stored_dtype == StoredDType::Q8 { 4 } else { 2 };
        let implied = header.n_layer.checked_mul(per_layer).and_then(|n| n.checked_add(1));
        let count = meta.tensors().len();
        if implied != Some(count) {
            return Err(layout(format!(
                "it holds {count} tensors, a {}-layer {} segment has {}",
                header.n_layer,
                header.stored_dtype,
                implied.map_or_else(|| "more than can exist".to_string(), |n| n.to_string())
            ))
            .into());
        }
        let names = tensor_names(header.n_layer, header.stored_dtype);
        let mut spans = Vec::with_capacity(names.len());
        for t in &names {
            let info = meta.info(t).ok_or_else(|| layout(format!("tensor `{t}` is missing")))?;
            let (dt, shape) = expected(t, &header, info.dtype);
            if info.dtype != dt || info.shape != shape {
                return Err(layout(format!(
                    "tensor `{t}` is {:?} {:?}, expected {dt:?} {shape:?}",
                    info.dtype, info.shape
                ))
                .into());
            }
            let (s, e) = info.data_offsets;
            spans.push(data_start + s as u64..data_start + e as u64);
        }
        let token_span = spans[0].clone();
        let mut token_bytes = vec![0u8; (token_span.end - token_span.start) as usize];
        read_at(&file, &mut token_bytes, token_span.start).map_err(|e| changed(&name, e))?;
        let tokens = match meta.info("tokens").map(|i| i.dtype) {
            Some(Dtype::U16) => token_bytes
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            _ => token_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        let id = header.id();
        Ok((
            Self {
                path: path.to_path_buf(),
                header,
                id,
                tokens,
                file_bytes,
                spans,
                token_bytes,
            },
            file,
        ))
    }

    /// Streams every tensor of `file` (this segment, open) through the checksum in the
    /// checksum's order, a bounded buffer at a time, and compares it with the header's.
    fn verify(&self, file: &File) -> Result<()> {
        const CHUNK: u64 = 8 << 20;
        let name = self.path.display().to_string();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.token_bytes);
        let mut buf = vec![0u8; CHUNK.min(self.file_bytes) as usize];
        for span in &self.spans[1..] {
            let mut at = span.start;
            while at < span.end {
                let piece = &mut buf[..(span.end - at).min(CHUNK) as usize];
                read_at(file, piece, at).map_err(|e| changed(&name, e))?;
                hasher.update_rayon(piece);
                at += piece.len() as u64;
            }
        }
        self.check_sum(hasher)
    }

    /// Finishes a hash of the tensors (in [`tensor_names`] order) with the transcript and
    /// compares it with the header's checksum.
    fn check_sum(&self, mut hasher: blake3::Hasher) -> Result<()> {
        SegmentHeader::hash_transcript(
            self.header.format_version,
            self.header.transcript.as_deref(),
            &mut hasher,
        );
        self.check_digest(hasher.finalize())
    }

    /// Compares a finished checksum with the header's.
    fn check_digest(&self, digest: blake3::Hash) -> Result<()> {
        let sum = digest.to_hex().to_string();
        if sum != self.header.checksum {
            return Err(StateError::Checksum {
                file: self.path.display().to_string(),
                content: sum[..16].to_string(),
                header: self.header.checksum[..16].to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Opens the file again for loading; it must still have the size it had when opened.
    fn reopen(&self) -> Result<File> {
        let (file, len) = open_regular(&self.path)?;
        if len != self.file_bytes {
            return Err(StateError::Layout {
                file: self.path.display().to_string(),
                detail: format!(
                    "it changed size since it was opened ({} bytes, now {len})",
                    self.file_bytes
                ),
            }
            .into());
        }
        Ok(file)
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
}

/// A read that came back short or failed: the file was cut or changed under us.
fn changed(file: &str, e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return StateError::Layout {
            file: file.to_string(),
            detail: "it was cut short while it was read".into(),
        }
        .into();
    }
    EngineError::io(Path::new(file), e)
}

/// Loads the first `upto` tokens of a chain (root first) into a new state for `model`.
/// Checks that the chain links up and belongs to the model before allocating anything
/// (`validate`), then allocates the buffers (`allocate`) and converts the stored K/V into them
/// (`fill`).
#[tracing::instrument(level = "debug", name = "engine.load_chain", skip_all, fields(segments = chain.len(), tokens = upto))]
pub fn load_chain(chain: &[Segment], upto: usize, model: &Model, fingerprint: &ModelFingerprint) -> Result<KvState> {
    let geo = model.kv_geometry();
    validate(chain, upto, &geo, fingerprint)?;
    // Room for a question and its reply after the loaded tokens, so that the first prompt
    // after a thaw does not copy the whole cache to grow it (at 13,600 tokens of a 1B model,
    // 1.8 s on a VM, against the thaw's 0.15 s). On the CPU that room costs nothing until
    // written (lazily zeroed pages: `allocate`), so it is the room a prefill reserves; a GPU
    // copies it with the state, so it gets less there (growing on a GPU is a fast copy).
    let room = if model.device().is_cpu() {
        crate::PREFILL_HEADROOM
    } else {
        crate::kv::GROW_STEP
    };
    let step = crate::kv::GROW_STEP;
    let cap = (upto + room).div_ceil(step).saturating_mul(step).min(geo.max_len);
    if model.device().is_cpu() {
        // Refused before anything is read or allocated (a GPU's allocator refuses on its own).
        let needed = (upto as u64).saturating_mul(geo.bytes_per_position() as u64);
        crate::memory::ensure(needed, crate::memory::available(), &|| {
            format!("a thawed state of {upto} tokens")
        })?;
    }
    let mut bufs = allocate(&geo, cap)?;
    let tokens = tracing::debug_span!("engine.fill").in_scope(|| fill(chain, upto, &geo, cap, &mut bufs))?;
    let (h, d) = (geo.n_kv_head, geo.head_dim);
    let device = model.device();
    // On the CPU the buffers become the state's tensors as they are; a GPU copies them over.
    let buffers = tracing::debug_span!("engine.to_device")
        .in_scope(|| super::upload::to_device(bufs, (h, cap, d), geo.dtype, device))?;
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

/// Zero f16 K and V buffers with room for `cap` positions for every layer
/// (`n_kv_head × cap × head_dim` each), lazily zeroed ([`crate::kv::zeroed`]): nothing is
/// written here, [`fill`] writes the loaded positions once, and the positions after them stay
/// fresh pages that cost no memory until the state grows into them.
fn allocate(geo: &KvGeometry, cap: usize) -> Result<Vec<(Vec<f16>, Vec<f16>)>> {
    let n = geo.n_kv_head * cap * geo.head_dim;
    // Fallible: a refusal by the allocator is an error, not an abort of the process.
    let one = || -> Result<Vec<f16>> {
        crate::kv::zeroed(n).ok_or_else(|| {
            // Every buffer of the state: K and V of each layer.
            let bytes = 2 * geo.n_layer * n * std::mem::size_of::<f16>();
            crate::memory::refused(format!("a thawed state of {cap} positions"), bytes as u64)
        })
    };
    (0..geo.n_layer).map(|_| Ok((one()?, one()?))).collect()
}

/// Reads the stored K/V of the chain's first `upto` tokens into `bufs` (zeros from
/// [`allocate`], `cap` positions a head), checksumming every segment it reads from, and returns
/// those tokens.
/// The chain must have passed [`validate`]; a segment whose content does not match its
/// checksum fails the whole load.
///
/// An f16 segment loaded whole (the default, and every thaw that is not a rewind) is read
/// straight into the state and checksummed by every core ([`read_whole_f16`]). Other stored
/// dtypes, and a segment cut by `upto`, go through a scratch buffer: this thread reads and
/// converts each tensor in the checksum's order while a second thread hashes what was read.
fn fill(
    chain: &[Segment],
    upto: usize,
    geo: &KvGeometry,
    cap: usize,
    bufs: &mut [(Vec<f16>, Vec<f16>)],
) -> Result<Vec<u32>> {
    let mut tokens = Vec::with_capacity(upto);
    let used: Vec<&Segment> = chain.iter().take_while(|s| s.header.start < upto).collect();
    for s in &used {
        tokens.extend_from_slice(&s.tokens[..s.header.token_count.min(upto - s.header.start)]);
    }
    let len = geo.n_kv_head * cap * geo.head_dim;
    if bufs.iter().any(|(k, v)| k.len() != len || v.len() != len) {
        return Err(EngineError::Invalid("load buffers not the size of the state".into()));
    }
    let (to_hash, hashed) = std::sync::mpsc::sync_channel::<Hash<'_>>(64);
    let (to_reuse, reusable) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || -> Result<()> {
            let mut h = blake3::Hasher::new();
            for msg in hashed {
                match msg {
                    Hash::Borrowed(b) => {
                        h.update(b);
                    }
                    Hash::Owned(b) => {
                        h.update(&b);
                        // The reader may have stopped; a buffer nobody takes back is freed.
                        let _ = to_reuse.send(b);
                    }
                    Hash::End(s) => {
                        s.check_sum(std::mem::replace(&mut h, blake3::Hasher::new()))?;
                    }
                }
            }
            Ok(())
        });
        let read = read_chain(&used, upto, geo, cap, bufs, &to_hash, &reusable);
        // Closing the channel ends the hasher once it has caught up.
        drop(to_hash);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(EngineError::Invalid("the checksum thread failed".into())));
        // A failed checksum first: the reader then fails only because the hasher stopped. A
        // read that failed on its own (a file cut short) leaves the hasher without a verdict.
        hashed.and(read)
    })?;
    Ok(tokens)
}

/// What the reader hands the hashing thread, in the checksum's order: bytes read into the
/// state, a scratch buffer (given back for reuse once hashed), or the end of a segment.
enum Hash<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    End(&'a Segment),
}

/// The reading side of [`fill`]: every tensor of the `used` segments in the checksum's order,
/// written over each head's first `upto` positions in `bufs` (the rest stay zero).
fn read_chain<'a>(
    used: &[&'a Segment],
    upto: usize,
    geo: &KvGeometry,
    cap: usize,
    bufs: &'a mut [(Vec<f16>, Vec<f16>)],
    to_hash: &std::sync::mpsc::SyncSender<Hash<'a>>,
    reusable: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    // The hashing thread only stops early on a mismatch, which it reports itself.
    let send = |m: Hash<'a>| {
        to_hash
            .send(m)
            .map_err(|_| EngineError::Invalid("checksum stopped".into()))
    };
    let (h, d) = (geo.n_kv_head, geo.head_dim);
    // The state's buffers, head by head: (layer, k or v) → the `h` rows of `cap` positions,
    // each slice starting at the first position not loaded yet.
    let mut heads: Vec<Vec<&'a mut [f16]>> = bufs
        .iter_mut()
        .flat_map(|(k, v)| [k, v])
        .map(|b| b.chunks_mut(cap * d).take(h).collect())
        .collect();
    let mut scratch_count = 0;
    let mut scratch = |len: usize| -> Vec<u8> {
        // Three buffers in flight at most: the one being filled, the one being hashed, one
        // waiting; a fourth request waits for the hasher to give one back.
        let reused = reusable
            .try_recv()
            .ok()
            .or_else(|| (scratch_count >= 3).then(|| reusable.recv().ok()).flatten());
        let mut b = reused.unwrap_or_else(|| {
            scratch_count += 1;
            Vec::new()
        });
        if b.len() < len {
            b = vec![0u8; len];
            populate(&mut b);
        }
        b.truncate(len);
        b
    };
    for s in used {
        let name = s.path.display().to_string();
        let file = s.reopen()?;
        let n = s.header.token_count;
        let take = n.min(upto - s.header.start);
        let dt = s.header.stored_dtype;
        let per_kv = if dt == StoredDType::Q8 { 2 } else { 1 };
        if s.spans.len() != 1 + heads.len() * per_kv {
            return Err(EngineError::Invalid(format!("{name}: not one K and one V a layer")));
        }
        if dt == StoredDType::F16 && take == n && cfg!(target_endian = "little") {
            // Loaded whole: read and checksummed in parallel, straight into the state.
            read_whole_f16(s, &file, &mut heads, n * d)?;
            continue;
        }
        send(Hash::Borrowed(&s.token_bytes))?;
        for (tensor, span) in heads.iter_mut().zip(s.spans[1..].chunks_exact(per_kv)) {
            let mut data = scratch((span[0].end - span[0].start) as usize);
            read_at(&file, &mut data, span[0].start).map_err(|e| changed(&name, e))?;
            let scales = match span.get(1) {
                Some(sc) => {
                    let mut b = scratch((sc.end - sc.start) as usize);
                    read_at(&file, &mut b, sc.start).map_err(|e| changed(&name, e))?;
                    Some(b)
                }
                None => None,
            };
            let (vals, bytes) = (take * d, bytes_per_value(dt));
            tensor.par_iter_mut().enumerate().for_each(|(head, buf)| {
                let row = head * n;
                let (dst, after) = std::mem::take(buf).split_at_mut(vals);
                *buf = after;
                populate(dst);
                let src = &data[row * d * bytes..][..vals * bytes];
                let scales = scales
                    .as_ref()
                    .map(|v| &v[row * d / q8::BLOCK * 2..][..vals / q8::BLOCK * 2]);
                convert::to_f16(dt, src, scales, dst);
            });
            send(Hash::Owned(data))?;
            if let Some(b) = scales {
                send(Hash::Owned(b))?;
            }
        }
        send(Hash::End(s))?;
    }
    Ok(())
}

/// Bytes of the checksummed stream one worker reads and hashes at a time: a power of two of
/// blake3 chunks, so that each piece is a subtree of the hash (see `blake3::hazmat`), small
/// enough to still be in cache when it is hashed right after it is read.
const SUBTREE: u64 = 1 << 20;

/// One part of the checksummed stream: bytes already in memory, or bytes of the file to read
/// into the state's buffer first.
enum Part<'a> {
    Mem(&'a [u8]),
    File { at: u64, dst: &'a mut [u8] },
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Mem(b) => b.len(),
            Part::File { dst, .. } => dst.len(),
        }
    }
}

/// Loads every K/V value of the f16 segment `s` (`rows` values a head) into the state's
/// buffers `heads` (each advanced past them) and checks the segment's checksum, with every core:
/// the checksummed stream (token ids, each tensor head by head, the transcript) is cut into
/// [`SUBTREE`]-byte subtrees, each read and hashed by one worker while it is in cache, and the
/// subtrees' chaining values are merged as blake3's tree does. Same result as hashing the stream
/// in one pass (the file's checksum), at the speed of all cores.
fn read_whole_f16(s: &Segment, file: &File, heads: &mut [Vec<&mut [f16]>], rows: usize) -> Result<()> {
    let name = s.path.display().to_string();
    let mut marker = Vec::new();
    if let (true, Some(t)) = (s.header.format_version >= 3, s.header.transcript.as_deref()) {
        marker.extend_from_slice(b"\0transcript\0");
        marker.extend_from_slice(t.as_bytes());
    }
    // The stream in checksum order, with the K/V parts pointing into the state's buffers.
    let mut parts: Vec<Part<'_>> = vec![Part::Mem(&s.token_bytes)];
    for (tensor, span) in heads.iter_mut().zip(&s.spans[1..]) {
        for (head, buf) in tensor.iter_mut().enumerate() {
            let (dst, after) = std::mem::take(buf).split_at_mut(rows);
            *buf = after;
            // SAFETY: the same memory as bytes: an f16 is two bytes with no invalid value, and
            // bytes need no alignment.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, std::mem::size_of_val(dst)) };
            parts.push(Part::File {
                at: span.start + (head * dst.len()) as u64,
                dst,
            });
        }
    }
    parts.push(Part::Mem(&marker));
    // Cut the parts at subtree boundaries: each subtree owns its pieces, disjoint.
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let mut leaves: Vec<Vec<Part<'_>>> = (0..total.div_ceil(SUBTREE).max(1)).map(|_| Vec::new()).collect();
    let mut offset = 0u64;
    for mut part in parts {
        while part.len() > 0 {
            let leaf = (offset / SUBTREE) as usize;
            let room = (SUBTREE - offset % SUBTREE) as usize;
            let take = room.min(part.len());
            let (head, rest) = match part {
                Part::Mem(b) => (Part::Mem(&b[..take]), Part::Mem(&b[take..])),
                Part::File { at, dst } => {
                    let (a, b) = dst.split_at_mut(take);
                    (
                        Part::File { at, dst: a },
                        Part::File {
                            at: at + take as u64,
                            dst: b,
                        },
                    )
                }
            };
            leaves[leaf].push(head);
            offset += take as u64;
            part = rest;
        }
    }
    let single = leaves.len() == 1;
    let cvs: Vec<std::io::Result<blake3::hazmat::ChainingValue>> = leaves
        .into_par_iter()
        .enumerate()
        .map(|(i, leaf)| {
            use blake3::hazmat::HasherExt;
            let mut h = blake3::Hasher::new();
            if i > 0 {
                h.set_input_offset(i as u64 * SUBTREE);
            }
            for part in leaf {
                match part {
                    Part::Mem(b) => {
                        h.update(b);
                    }
                    Part::File { at, dst } => {
                        // Faulted in here, by the worker, not all up front by one thread.
                        populate(dst);
                        read_at(file, dst, at)?;
                        h.update(dst);
                    }
                }
            }
            // A stream of one subtree is the root itself: its hash, not a chaining value.
            Ok(if single {
                *h.finalize().as_bytes()
            } else {
                h.finalize_non_root()
            })
        })
        .collect();
    let cvs = cvs
        .into_iter()
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| changed(&name, e))?;
    let digest = if single {
        blake3::Hash::from(cvs[0])
    } else {
        let left = blake3::hazmat::left_subtree_len(total);
        let split = (left / SUBTREE) as usize;
        blake3::hazmat::merge_subtrees_root(
            &merge_subtrees(&cvs[..split], left),
            &merge_subtrees(&cvs[split..], total - left),
            blake3::hazmat::Mode::Hash,
        )
    };
    s.check_digest(digest)
}

/// The chaining value of a subtree of `len` bytes whose [`SUBTREE`]-byte leaves have the
/// chaining values `cvs` (not the root: see [`read_whole_f16`]).
fn merge_subtrees(cvs: &[blake3::hazmat::ChainingValue], len: u64) -> blake3::hazmat::ChainingValue {
    if len <= SUBTREE {
        return cvs[0];
    }
    let left = blake3::hazmat::left_subtree_len(len);
    let split = (left / SUBTREE) as usize;
    blake3::hazmat::merge_subtrees_non_root(
        &merge_subtrees(&cvs[..split], left),
        &merge_subtrees(&cvs[split..], len - left),
        blake3::hazmat::Mode::Hash,
    )
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
fn populate<T>(buf: &mut [T]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::write_segment;
    use candle_core::Device;
    use candle_core::Tensor;

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

    /// A root segment of `n` tokens (2 layers, 2 heads of 32) with distinct K/V values, stored
    /// as `dt`, written to `dir/name`; the state it was written from is returned too.
    fn distinct(dir: &Path, fp: &ModelFingerprint, dt: StoredDType, n: usize, name: &str) -> (PathBuf, KvState) {
        let dev = Device::Cpu;
        let geo = KvGeometry {
            n_layer: 2,
            n_kv_head: 2,
            ..GEO
        };
        let buffers = (0..2)
            .map(|l| {
                let vals = |kv: f32| {
                    let v: Vec<f32> = (0..2 * 64 * 32)
                        .map(|i| ((i as f32 * 0.37 + l as f32 * 11.0 + kv).sin()) * 3.0)
                        .collect();
                    Tensor::from_vec(v, (2, 64, 32), &dev)
                        .unwrap()
                        .to_dtype(DType::F16)
                        .unwrap()
                };
                (vals(0.0), vals(5.0))
            })
            .collect();
        let state = KvState::from_buffers(geo, &dev, (1..=n as u32).collect(), buffers).unwrap();
        let path = dir.join(name);
        write_segment(&state, 0, n, None, fp, dt, Some("a transcript"), &path).unwrap();
        (path, state)
    }

    fn model_free_load(chain: &[Segment], upto: usize) -> Result<Vec<f16>> {
        let geo = KvGeometry {
            n_layer: 2,
            n_kv_head: 2,
            ..GEO
        };
        let mut bufs = allocate(&geo, 64).unwrap();
        fill(chain, upto, &geo, 64, &mut bufs)?;
        Ok(bufs.into_iter().flat_map(|(k, v)| k.into_iter().chain(v)).collect())
    }

    #[test]
    fn loading_checks_the_checksum_on_every_path_and_fills_the_same_values_as_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        for dt in [StoredDType::F16, StoredDType::Bf16, StoredDType::F32, StoredDType::Q8] {
            let (path, _) = distinct(dir.path(), &fp, dt, 40, &format!("{dt}.state"));
            // Whole (f16: read straight into the state) and a prefix (through the scratch buffer).
            for upto in [40, 17] {
                let loaded = model_free_load(&[Segment::open_for_load(&path).unwrap()], upto).unwrap();
                // The reference: the same file checked whole and converted value by value.
                let seg = Segment::open(&path).unwrap();
                let bytes = std::fs::read(&path).unwrap();
                let per_kv = if dt == StoredDType::Q8 { 2 } else { 1 };
                let mut want = Vec::new();
                for (i, span) in seg.spans[1..].chunks_exact(per_kv).enumerate() {
                    let data = &bytes[span[0].start as usize..span[0].end as usize];
                    let scales = span.get(1).map(|s| &bytes[s.start as usize..s.end as usize]);
                    let mut buf = vec![f16::ZERO; 2 * 64 * 32];
                    for head in 0..2 {
                        let (row, b) = (head * 40, bytes_per_value(dt));
                        let dst = &mut buf[head * 64 * 32..][..upto * 32];
                        let scales = scales.map(|v| &v[row * 32 / q8::BLOCK * 2..][..upto * 32 / q8::BLOCK * 2]);
                        convert::to_f16(dt, &data[row * 32 * b..][..upto * 32 * b], scales, dst);
                    }
                    assert!(buf.iter().any(|x| x.to_f32() != 0.0), "{dt}: tensor {i} holds values");
                    want.extend(buf);
                }
                assert!(
                    loaded.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{dt}, {upto} tokens: the loaded values are the stored ones"
                );
            }
            // One flipped bit in the last tensor, past the 17 tokens a prefix load uses: the
            // segment is damaged, so every load of it is refused, as opening it is.
            let mut bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            bytes[n - 3] ^= 0x10;
            let bad = dir.path().join(format!("bad-{dt}.state"));
            std::fs::write(&bad, bytes).unwrap();
            for upto in [40, 17] {
                let e = model_free_load(&[Segment::open_for_load(&bad).unwrap()], upto).unwrap_err();
                assert!(e.to_string().contains("checksum mismatch"), "{dt}, {upto}: {e}");
            }
            let e = Segment::open(&bad).unwrap_err();
            assert!(e.to_string().contains("checksum mismatch"), "{dt}: {e}");
        }
    }

    #[test]
    fn a_damaged_first_segment_of_a_chain_is_named_by_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        let (root_path, state) = distinct(dir.path(), &fp, StoredDType::F16, 40, "whole.state");
        let root = dir.path().join("root.state");
        let info = write_segment(&state, 0, 20, None, &fp, StoredDType::F16, None, &root).unwrap();
        let child = dir.path().join("child.state");
        write_segment(&state, 20, 40, Some(info.id), &fp, StoredDType::F16, None, &child).unwrap();
        let chain = || {
            [
                Segment::open_for_load(&root).unwrap(),
                Segment::open_for_load(&child).unwrap(),
            ]
        };
        // Two segments load the same values as the one whole segment.
        let whole = model_free_load(&[Segment::open_for_load(&root_path).unwrap()], 40).unwrap();
        let two = model_free_load(&chain(), 40).unwrap();
        assert!(whole.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut bytes = std::fs::read(&root).unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        std::fs::write(&root, bytes).unwrap();
        let e = model_free_load(&chain(), 40).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("root.state"),
            "the damaged segment is named, not a stopped reader: {e}"
        );
    }

    #[test]
    fn a_large_segment_is_checksummed_in_parallel_subtrees_exactly() {
        // Streams of one subtree, of several (not a power of two), with and without a
        // transcript: the parallel tree hash must equal the file's one-pass checksum.
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        let dev = Device::Cpu;
        for (n, transcript) in [
            (100, None),
            (5000, Some("a transcript")),
            (10000, None),
            (4096, Some("")),
        ] {
            let cap = n + 64;
            let geo = KvGeometry {
                n_layer: 2,
                n_kv_head: 2,
                head_dim: 32,
                dtype: DType::F16,
                max_len: 8192,
            };
            let buffers = (0..2)
                .map(|l| {
                    let vals = |kv: f32| {
                        let v: Vec<f32> = (0..2 * cap * 32)
                            .map(|i| ((i as f32 * 0.011 + l as f32 * 7.0 + kv).sin()) * 2.0)
                            .collect();
                        Tensor::from_vec(v, (2, cap, 32), &dev)
                            .unwrap()
                            .to_dtype(DType::F16)
                            .unwrap()
                    };
                    (vals(0.0), vals(3.0))
                })
                .collect();
            let state = KvState::from_buffers(geo, &dev, (0..n as u32).collect(), buffers).unwrap();
            let path = dir.path().join(format!("big-{n}.state"));
            write_segment(&state, 0, n, None, &fp, StoredDType::F16, transcript, &path).unwrap();
            Segment::open(&path).expect("the one-pass checksum agrees with the writer");
            let mut bufs = allocate(&geo, cap).unwrap();
            fill(&[Segment::open_for_load(&path).unwrap()], n, &geo, cap, &mut bufs)
                .unwrap_or_else(|e| panic!("{n} tokens, transcript {transcript:?}: {e}"));
            for (l, (k, v)) in bufs.iter().enumerate() {
                let (sk, sv) = state.layer_view(l, 0, n).unwrap();
                for (got, want) in [(k, sk), (v, sv)] {
                    let want = want.flatten_all().unwrap().to_vec1::<f16>().unwrap();
                    for head in 0..2 {
                        assert!(
                            got[head * cap * 32..][..n * 32]
                                .iter()
                                .zip(&want[head * n * 32..][..n * 32])
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{n} tokens: layer {l} head {head} loaded exactly"
                        );
                    }
                }
            }
            // One flipped bit anywhere refuses the whole load.
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() * 2 / 3;
            bytes[at] ^= 0x04;
            std::fs::write(&path, bytes).unwrap();
            let mut bufs = allocate(&geo, cap).unwrap();
            let e = fill(&[Segment::open_for_load(&path).unwrap()], n, &geo, cap, &mut bufs).unwrap_err();
            assert!(e.to_string().contains("checksum mismatch"), "{n}: {e}");
        }
    }

    #[test]
    fn a_segment_that_changes_between_opening_and_loading_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fp = ModelFingerprint::new("test-model");
        let (path, _) = distinct(dir.path(), &fp, StoredDType::F16, 40, "a.state");
        let seg = Segment::open_for_load(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 64]).unwrap();
        let e = model_free_load(&[seg], 40).unwrap_err();
        assert!(e.to_string().contains("changed size since it was opened"), "{e}");
        // Same size, other content: the checksum read during the load catches it.
        let seg = {
            std::fs::write(&path, &bytes).unwrap();
            Segment::open_for_load(&path).unwrap()
        };
        let mut other = bytes.clone();
        let n = other.len();
        other[n / 2 + 7] ^= 1;
        std::fs::write(&path, other).unwrap();
        let e = model_free_load(&[seg], 40).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
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
