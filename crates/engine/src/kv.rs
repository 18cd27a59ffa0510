//! `KvState`: the attention state the caller owns.
//!
//! Per layer, K and V live in preallocated buffers of shape `(n_kv_head, capacity, head_dim)`;
//! positions `0..len` are valid and `tokens` holds exactly the `len` token ids they came from.
//! Appending writes in place (`slice_set`) and grows the buffers geometrically, so a token never
//! costs a copy of the whole cache. Rewinding only shortens `len`. Cloning (a fork) shares the
//! buffers. A state sharing a layer may still append in place where no other sharer reads:
//! each layer records how far its sharers may have written, and which lineage (a state that
//! wrote in place past the others, and its forks) holds the positions past the others' ends
//! while any of it lives (`Mark`). Otherwise the first write copies the valid prefix (copy on
//! write). Either way a fork and its original evolve independently, and the common cases copy
//! nothing: a thawed or cached state forked and continued, a document asked one question after
//! another, each answer a fork dropped before the next.

use crate::error::{EngineError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Growth granularity in positions (also the thawed state's, `state::read`).
pub(crate) const GROW_STEP: usize = 256;

/// `n` zero values, or `None` where the allocator refuses. Lazily zeroed: a large buffer is
/// fresh pages from the system, which cost no memory (and no page fault) until written, so room
/// allocated ahead of need is free until it is used.
pub(crate) fn zeroed<T: candle_core::WithDType>(n: usize) -> Option<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the layout's size is not zero (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with `T`'s alignment for exactly `n`
    // elements (the layout a `Vec<T>` of capacity `n` frees with), and zero bytes are a valid
    // value of every `WithDType` (integers and floats: 0).
    Some(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// A zero-filled buffer. On the CPU the allocation is fallible (`refused()` where candle's
/// `Tensor::zeros` aborts the process) and lazily zeroed ([`zeroed`]).
fn zeros(
    shape: (usize, usize, usize),
    dtype: DType,
    device: &Device,
    refused: &dyn Fn() -> EngineError,
) -> Result<Tensor> {
    if !device.is_cpu() {
        return Ok(Tensor::zeros(shape, dtype, device)?);
    }
    let n = shape.0 * shape.1 * shape.2;
    Ok(match dtype {
        DType::F16 => Tensor::from_vec(zeroed::<half::f16>(n).ok_or_else(refused)?, shape, device)?,
        DType::BF16 => Tensor::from_vec(zeroed::<half::bf16>(n).ok_or_else(refused)?, shape, device)?,
        DType::F32 => Tensor::from_vec(zeroed::<f32>(n).ok_or_else(refused)?, shape, device)?,
        _ => Tensor::zeros(shape, dtype, device)?,
    })
}

/// The fixed geometry of a model's attention state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvGeometry {
    pub n_layer: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub dtype: DType,
    /// The model's context length: the state never grows past it.
    pub max_len: usize,
}

impl KvGeometry {
    /// Bytes of K and V a position takes over all layers.
    pub fn bytes_per_position(&self) -> usize {
        self.n_layer * self.bytes_per_layer_position()
    }

    /// Bytes of K and V a position takes in one layer.
    fn bytes_per_layer_position(&self) -> usize {
        2 * self.n_kv_head * self.head_dim * self.dtype.size_in_bytes()
    }
}

#[derive(Debug)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
    /// Who may write where, read and changed under its lock together with the sharer count.
    mark: Mutex<Mark>,
    /// Positions `0..touched` have been written at some time (it never decreases, unlike the
    /// mark, which a rewind lets come back). On the CPU the room past it is untouched, lazily
    /// zeroed memory ([`zeroed`]) that costs nothing: see [`KvState::memory_of`].
    touched: AtomicUsize,
}

/// How far the states sharing a layer may have written, so that one of them can append in
/// place without overwriting what another one reads.
#[derive(Debug)]
struct Mark {
    /// Positions `0..written` may have been written by a sharer: at least every sharer's
    /// `len`.
    written: usize,
    /// While a state holding `tail` lives (one that wrote in place past the other sharers,
    /// and its forks since), positions from `floor` on are theirs, and every other sharer's
    /// `len` is at most `floor`. Once none lives, nobody reads from `floor` on. A layer no
    /// lineage has written past its sharers has no tail, and `floor` is `written`.
    tail: Weak<Tail>,
    floor: usize,
}

/// The token a state and its forks hold for a layer's tail (see [`Mark`]).
#[derive(Debug)]
struct Tail;

impl Mark {
    /// Every sharer has `len` at most `end`, and no lineage holds positions past it.
    fn settled(end: usize) -> Self {
        Self {
            written: end,
            tail: Weak::new(),
            floor: end,
        }
    }
}

impl LayerKv {
    fn new(k: Tensor, v: Tensor, written: usize) -> Arc<Self> {
        Arc::new(Self {
            k,
            v,
            mark: Mutex::new(Mark::settled(written)),
            touched: AtomicUsize::new(written),
        })
    }

    /// Records that positions up to `end` are being written.
    fn touch(&self, end: usize) {
        self.touched.fetch_max(end, Ordering::Relaxed);
    }

    /// Bytes of memory the layer's K and V take: every position of the buffers on a GPU, on the
    /// CPU only those ever written (`touched`).
    fn memory(&self, g: &KvGeometry, cpu: bool) -> usize {
        let cap = self.k.dim(1).unwrap_or(0);
        let positions = if cpu {
            self.touched.load(Ordering::Relaxed).min(cap)
        } else {
            cap
        };
        g.bytes_per_layer_position() * positions
    }

    fn mark(&self) -> MutexGuard<'_, Mark> {
        // Plain numbers and a weak pointer, assigned whole: a panic cannot leave them half
        // changed, so the lock's poison does not matter.
        self.mark.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A state's hold on one layer: the shared buffers, and its token for their tail when it or
/// the state it was forked from wrote there in place past the other sharers.
#[derive(Debug, Clone)]
struct Held {
    kv: Arc<LayerKv>,
    tail: Option<Arc<Tail>>,
}

impl Held {
    fn new(kv: Arc<LayerKv>) -> Self {
        Self { kv, tail: None }
    }

    /// Whether a state of `len` tokens holding this may write positions `len..` in place, and
    /// if it must start a lineage (a tail of its own) to do so. `None`: it must copy.
    ///
    /// In place when no other state holds the layer; or the state is of the lineage that holds
    /// the tail and no state of it has written past `len` (its forks included); or no lineage
    /// lives and `len` is the floor, which every other sharer's `len` is at most.
    fn may_write(&self, mark: &Mark, len: usize) -> Option<bool> {
        if Arc::strong_count(&self.kv) == 1 {
            return Some(false);
        }
        let ours = self
            .tail
            .as_ref()
            .is_some_and(|t| std::ptr::eq(Arc::as_ptr(t), mark.tail.as_ptr()));
        if ours {
            return (mark.written == len).then_some(false);
        }
        (mark.tail.strong_count() == 0 && mark.floor == len).then_some(true)
    }

    /// Claims positions `len..end` for a state of `len` tokens when it may write them in place
    /// ([`Held::may_write`]), recording `end` as written; false leaves everything as it was, and
    /// the caller copies the layer.
    fn claim(&mut self, len: usize, end: usize) -> bool {
        let mut mark = self.kv.mark();
        match self.may_write(&mark, len) {
            None => false,
            Some(_) if Arc::strong_count(&self.kv) == 1 => {
                // Alone: nobody else can reach the layer (a fork needs the state that holds
                // it, which the caller borrows mutably).
                *mark = Mark::settled(end);
                drop(mark);
                self.kv.touch(end);
                self.tail = None;
                true
            }
            Some(start) => {
                if start {
                    let tail = Arc::new(Tail);
                    mark.tail = Arc::downgrade(&tail);
                    mark.floor = len;
                    self.tail = Some(tail);
                }
                mark.written = end;
                self.kv.touch(end);
                true
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct KvState {
    geometry: KvGeometry,
    device: Device,
    tokens: Vec<u32>,
    layers: Vec<Held>,
    capacity: usize,
}

impl KvState {
    /// An empty state; buffers are allocated on the first append.
    pub fn new(geometry: KvGeometry, device: &Device) -> Self {
        Self {
            geometry,
            device: device.clone(),
            tokens: Vec::new(),
            layers: Vec::new(),
            capacity: 0,
        }
    }

    /// Builds a state from per-layer K/V buffers already filled for `tokens`
    /// (`(n_kv_head, capacity, head_dim)` each, capacity ≥ tokens). Used by the state loader,
    /// which writes straight into freshly allocated buffers.
    pub fn from_buffers(
        geometry: KvGeometry,
        device: &Device,
        tokens: Vec<u32>,
        buffers: Vec<(Tensor, Tensor)>,
    ) -> Result<Self> {
        if buffers.len() != geometry.n_layer {
            return Err(EngineError::Invalid(format!(
                "{} layers of K/V for a model with {} layers",
                buffers.len(),
                geometry.n_layer
            )));
        }
        let mut capacity = usize::MAX;
        for (k, v) in &buffers {
            let (h, cap, d) = k.dims3()?;
            if k.dims() != v.dims() || h != geometry.n_kv_head || d != geometry.head_dim {
                return Err(EngineError::Invalid(format!(
                    "K/V buffer shape {:?} does not fit the model",
                    k.dims()
                )));
            }
            if k.dtype() != geometry.dtype || v.dtype() != geometry.dtype {
                return Err(EngineError::Invalid(format!(
                    "K/V buffer dtype {:?}, expected {:?}",
                    k.dtype(),
                    geometry.dtype
                )));
            }
            capacity = capacity.min(cap);
        }
        if buffers.is_empty() {
            capacity = 0;
        }
        if tokens.len() > capacity && !tokens.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{} tokens in buffers of {capacity} positions",
                tokens.len()
            )));
        }
        let n = tokens.len();
        let layers = buffers
            .into_iter()
            .map(|(k, v)| Held::new(LayerKv::new(k, v, n)))
            .collect();
        Ok(Self {
            geometry,
            device: device.clone(),
            tokens,
            layers,
            capacity,
        })
    }

    pub fn geometry(&self) -> &KvGeometry {
        &self.geometry
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Number of positions (= tokens) held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// The token ids whose K/V this state holds, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Allocated positions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rewinds to the first `len` tokens. Cheap: no K/V is copied or freed.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// A fork: shares every buffer; the first of the two to write past `len` does so in place,
    /// the other copies then.
    pub fn fork(&self) -> Self {
        for l in &self.layers {
            let mut mark = l.kv.mark();
            // Held by this state alone, a layer may be marked past `len` (by a fork since
            // dropped, or before a rewind): nobody reads there any more, so the mark comes back
            // to `len`. Under the lock, a sharer made meanwhile by another thread either counts
            // already (no reset) or is a fork of this state, whose first write then comes after
            // the reset and is seen by the next claim.
            if Arc::strong_count(&l.kv) == 1 {
                *mark = Mark::settled(self.len());
            }
        }
        self.clone()
    }

    /// True when this state and `other` still share the K/V storage of layer 0 (fork not yet written).
    pub fn shares_storage_with(&self, other: &KvState) -> bool {
        match (self.layers.first(), other.layers.first()) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.kv, &b.kv),
            _ => false,
        }
    }

    /// Bytes of memory the K/V of `states` take together: each buffer once, however many of
    /// them share it (forks, and states that continued one another in place), and on the CPU
    /// only the positions ever written, the room past them being untouched memory that costs
    /// nothing ([`zeroed`]; a page at each head's end aside). On a GPU the whole capacity.
    /// What a cache of states bounds itself by.
    pub fn memory_of<'a>(states: impl IntoIterator<Item = &'a KvState>) -> usize {
        let mut seen = HashSet::new();
        let mut total = 0;
        for s in states {
            let cpu = s.device.is_cpu();
            for l in &s.layers {
                if seen.insert(Arc::as_ptr(&l.kv)) {
                    total += l.kv.memory(&s.geometry, cpu);
                }
            }
        }
        total
    }

    /// Refuses, before anything is allocated, to hold `positions` positions when the memory
    /// this process can still use without swapping ([`crate::memory::available`]) cannot take
    /// what that adds: the positions not yet written, the written ones again while a fork still
    /// shares them (the first write copies them), and `working` bytes the caller will need
    /// meanwhile (a prefill's activations). `what` names the operation for the error. Only the
    /// CPU is asked: a GPU's allocator refuses with an error of its own.
    pub fn check_memory(&self, positions: usize, working: u64, what: &dyn Fn() -> String) -> Result<()> {
        if !self.device.is_cpu() {
            return Ok(());
        }
        self.check_memory_in(positions, working, crate::memory::available(), what)
    }

    /// [`KvState::check_memory`] against `available` bytes (`None`: unknown, never refused).
    pub(crate) fn check_memory_in(
        &self,
        positions: usize,
        working: u64,
        available: Option<u64>,
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let copies = self
            .layers
            .iter()
            .any(|l| l.may_write(&l.kv.mark(), self.len()).is_none());
        let owned = if copies { 0 } else { self.len() };
        let needed = (positions.saturating_sub(owned) as u64)
            .saturating_mul(self.geometry.bytes_per_position() as u64)
            .saturating_add(working);
        crate::memory::ensure(needed, available, what)
    }

    /// Valid K and V of `layer` for positions `start..end`, as views `(n_kv_head, end-start, head_dim)`.
    /// The views alias the live buffers: use them before the state is written again.
    pub fn layer_view(&self, layer: usize, start: usize, end: usize) -> Result<(Tensor, Tensor)> {
        if end > self.len() || start > end || layer >= self.layers.len() {
            return Err(EngineError::Invalid(format!(
                "layer {layer} positions {start}..{end} outside a state of {} tokens",
                self.len()
            )));
        }
        let l = &self.layers[layer];
        Ok((
            l.kv.k.narrow(1, start, end - start)?,
            l.kv.v.narrow(1, start, end - start)?,
        ))
    }

    /// Views of `layer` for positions `0..end` without checking against committed tokens.
    pub(crate) fn raw_view(&self, layer: usize, end: usize) -> Result<(Tensor, Tensor)> {
        let l = &self.layers[layer];
        Ok((l.kv.k.narrow(1, 0, end)?, l.kv.v.narrow(1, 0, end)?))
    }

    /// Makes room for `extra` more positions and claims them in every layer: in place where
    /// no other sharer reads there ([`Held::claim`]), in a copy of the layer otherwise (copy on
    /// write). Called once per forward, before any layer writes.
    pub(crate) fn prepare_append(&mut self, extra: usize) -> Result<()> {
        let len = self.len();
        let needed = len + extra;
        if needed > self.geometry.max_len {
            return Err(EngineError::ContextOverflow {
                needed,
                context: self.geometry.max_len,
            });
        }
        let what = || format!("a state of {needed} tokens");
        if needed > self.capacity || self.layers.is_empty() {
            self.check_memory(needed, 0, &what)?;
            self.rebuild(self.grown_capacity(needed), &|_| true)?;
        } else {
            let claimed: Vec<bool> = self.layers.iter_mut().map(|l| l.claim(len, needed)).collect();
            if claimed.contains(&false) {
                self.check_memory(needed, 0, &what)?;
                self.rebuild(self.capacity, &|i| !claimed[i])?;
            }
        }
        // Layers just copied are this state's alone: claiming cannot fail (and claimed ones
        // already hold the mark).
        for l in &mut self.layers {
            if Arc::strong_count(&l.kv) == 1 {
                l.claim(len, needed);
            }
        }
        Ok(())
    }

    /// Makes room for `total` positions in all (a prompt of known length: one growth instead of
    /// one per chunk), without changing the tokens. Never shrinks; grows as decoding does
    /// (`grown_capacity`), so that a conversation whose every turn asks for a little
    /// more room copies its cache a few times in all, not at every turn.
    pub fn reserve(&mut self, total: usize) -> Result<()> {
        let total = total.min(self.geometry.max_len);
        if total <= self.capacity {
            return Ok(());
        }
        self.rebuild(self.grown_capacity(total), &|_| true)
    }

    /// The capacity a growth to hold `needed` positions gives: at least half again the current
    /// one (each growth copies the cache, so geometric growth keeps the copies' total linear in
    /// the tokens), in whole [`GROW_STEP`]s, never past the context. On the CPU the room not yet
    /// written costs no memory ([`zeroed`]).
    fn grown_capacity(&self, needed: usize) -> usize {
        needed
            .max(self.capacity + self.capacity / 2)
            .div_ceil(GROW_STEP)
            .saturating_mul(GROW_STEP)
            .min(self.geometry.max_len)
    }

    /// Gives layers exclusive buffers of `new_cap ≥ len` positions, copying the first `len`:
    /// every layer when `new_cap` is more than the capacity, else those `copy` picks (by
    /// index). Layers are replaced one at a time, so the old and new caches are never both
    /// whole in memory (peak: the new cache and one old layer). If a layer fails, the layers
    /// already replaced hold the same values in more room, and `capacity` stays the old one:
    /// the state is still valid.
    fn rebuild(&mut self, new_cap: usize, copy: &dyn Fn(usize) -> bool) -> Result<()> {
        let grow = new_cap > self.capacity;
        let g = self.geometry;
        let len = self.len();
        // A buffer the allocator refuses is reported as the whole state it was for.
        let refused = || {
            crate::memory::refused(
                format!("a state of {new_cap} positions"),
                (g.bytes_per_position() * new_cap) as u64,
            )
        };
        for i in 0..g.n_layer {
            if self.layers.get(i).is_some() && !grow && !copy(i) {
                continue;
            }
            let k = zeros((g.n_kv_head, new_cap, g.head_dim), g.dtype, &self.device, &refused)?;
            let v = zeros((g.n_kv_head, new_cap, g.head_dim), g.dtype, &self.device, &refused)?;
            if let (Some(l), true) = (self.layers.get(i), len > 0) {
                // Head by head: one head's first `len` positions are contiguous in both buffers,
                // so each is one copy, where the `(heads, len, dim)` view of them all is not
                // contiguous and would first be copied whole into a temporary.
                for h in 0..g.n_kv_head {
                    k.narrow(0, h, 1)?
                        .slice_set(&l.kv.k.narrow(0, h, 1)?.narrow(1, 0, len)?, 1, 0)?;
                    v.narrow(0, h, 1)?
                        .slice_set(&l.kv.v.narrow(0, h, 1)?.narrow(1, 0, len)?, 1, 0)?;
                }
            }
            let fresh = Held::new(LayerKv::new(k, v, len));
            match self.layers.get_mut(i) {
                Some(slot) => *slot = fresh,
                None => self.layers.push(fresh),
            }
        }
        self.capacity = new_cap;
        Ok(())
    }

    /// Writes K/V `(n_kv_head, n, head_dim)` for positions `len..len+n` of `layer`.
    /// `prepare_append` must have run for this forward.
    pub(crate) fn write(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let l = &self.layers[layer];
        let pos = self.len();
        k.to_dtype(self.geometry.dtype)?
            .contiguous()
            .and_then(|k| l.kv.k.slice_set(&k, 1, pos))?;
        v.to_dtype(self.geometry.dtype)?
            .contiguous()
            .and_then(|v| l.kv.v.slice_set(&v, 1, pos))?;
        Ok(())
    }

    /// Records that `tokens` now occupy the positions just written.
    pub(crate) fn commit(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEO: KvGeometry = KvGeometry {
        n_layer: 2,
        n_kv_head: 2,
        head_dim: 8,
        dtype: DType::F16,
        max_len: 1000,
    };

    /// A state of `n` tokens with room for 16 positions.
    fn state(n: usize) -> KvState {
        let dev = Device::Cpu;
        let refused = || crate::memory::refused("a test state".into(), 512);
        let buffers = (0..GEO.n_layer)
            .map(|_| {
                (
                    zeros((2, 16, 8), DType::F16, &dev, &refused).unwrap(),
                    zeros((2, 16, 8), DType::F16, &dev, &refused).unwrap(),
                )
            })
            .collect();
        KvState::from_buffers(GEO, &dev, (0..n as u32).collect(), buffers).unwrap()
    }

    #[test]
    fn growth_past_the_free_memory_is_refused_with_both_sizes() {
        let bpp = GEO.bytes_per_position() as u64;
        assert_eq!(bpp, 2 * 2 * 2 * 8 * 2);
        let s = state(10);
        let what = || "a prompt of 90 tokens".to_string();
        // 90 more positions: exactly what is free passes, one byte less is refused.
        s.check_memory_in(100, 0, Some(90 * bpp), &what).unwrap();
        s.check_memory_in(100, 0, None, &what).unwrap();
        s.check_memory_in(100, 7, Some(90 * bpp + 7), &what).unwrap();
        assert!(
            s.check_memory_in(100, 8, Some(90 * bpp + 7), &what).is_err(),
            "working memory counts"
        );
        let e = s.check_memory_in(100, 0, Some(90 * bpp - 1), &what).unwrap_err();
        match &e {
            EngineError::OutOfMemory { needed, available, .. } => {
                assert_eq!((*needed, *available), (90 * bpp, Some(90 * bpp - 1)))
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.starts_with("not enough memory for a prompt of 90 tokens: its attention state needs"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        // A fork writes in place while no sharer has written past it...
        let mut s = s;
        let fork = s.fork();
        fork.check_memory_in(100, 0, Some(90 * bpp), &what).unwrap();
        // ...but once one has, its first write copies the written positions too.
        s.prepare_append(1).unwrap();
        assert!(fork.check_memory_in(100, 0, Some(90 * bpp), &what).is_err());
        fork.check_memory_in(100, 0, Some(100 * bpp), &what).unwrap();
    }

    /// Appends one position whose K and V values are all `x` to every layer of `s`.
    fn append(s: &mut KvState, x: f32) {
        let t = Tensor::full(half::f16::from_f32(x), (GEO.n_kv_head, 1, GEO.head_dim), &Device::Cpu).unwrap();
        s.prepare_append(1).unwrap();
        for layer in 0..GEO.n_layer {
            s.write(layer, &t, &t).unwrap();
        }
        s.commit(&[x as u32]);
    }

    /// The K and V values of every layer at `pos`, as f32.
    fn at(s: &KvState, pos: usize) -> Vec<f32> {
        (0..GEO.n_layer)
            .flat_map(|layer| {
                let (k, v) = s.layer_view(layer, pos, pos + 1).unwrap();
                [k, v]
            })
            .flat_map(|t| {
                t.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_fork_writes_in_place_until_a_sharer_has_written_past_it() {
        let all = |x: f32| vec![x; 2 * GEO.n_layer * GEO.n_kv_head * GEO.head_dim];
        let mut a = state(4);
        let (mut b, mut c) = (a.fork(), a.fork());
        // b writes position 4 in place: no sharer has written past 4, and none reads there.
        append(&mut b, 1.0);
        assert!(b.shares_storage_with(&a) && b.shares_storage_with(&c), "nothing copied");
        // A new fork of the original, whose sharer has written past it, copies too.
        let mut h = a.fork();
        append(&mut h, 9.0);
        assert!(!h.shares_storage_with(&a));
        assert_eq!((at(&h, 4), at(&b, 4)), (all(9.0), all(1.0)));
        // c (4 tokens) would overwrite b's position 4: it copies first.
        append(&mut c, 2.0);
        assert!(!c.shares_storage_with(&a) && b.shares_storage_with(&a));
        assert_eq!((at(&b, 4), at(&c, 4)), (all(1.0), all(2.0)));
        // So does the original.
        append(&mut a, 3.0);
        assert!(!a.shares_storage_with(&b));
        assert_eq!((at(&a, 4), at(&b, 4)), (all(3.0), all(1.0)));
        // A rewound state whose fork holds more copies too, and leaves the fork's values.
        let e = b.fork();
        b.truncate(4);
        append(&mut b, 5.0);
        assert!(!b.shares_storage_with(&e));
        assert_eq!((at(&b, 4), at(&e, 4)), (all(5.0), all(1.0)));
        // Alone with its buffers, a rewound state writes in place.
        drop(e);
        let before = b.capacity();
        b.truncate(4);
        append(&mut b, 6.0);
        assert_eq!((b.capacity(), at(&b, 4)), (before, all(6.0)));
        // A fork that wrote and is gone leaves nothing to protect: the next fork writes in place
        // (a document's second question), and the state it came from keeps its own values.
        let mut f = b.fork();
        append(&mut f, 7.0);
        drop(f);
        let mut g = b.fork();
        append(&mut g, 8.0);
        assert!(g.shares_storage_with(&b), "nothing copied");
        assert_eq!((at(&g, 5), b.len(), at(&b, 4)), (all(8.0), 5, all(6.0)));
        // A document read once and asked twice: the cache keeps a fork, the live state
        // forks each answer. The first answer writes in place; once it is gone, so does the
        // second, while an answer still alive makes the next one copy.
        let doc = state(4);
        let (cached, live) = (doc.fork(), doc.fork());
        drop(doc);
        let mut first = live.fork();
        append(&mut first, 10.0);
        assert!(first.shares_storage_with(&cached));
        let mut other = live.fork();
        append(&mut other, 11.0);
        assert!(!other.shares_storage_with(&cached), "the first answer is still alive");
        drop((first, other));
        let mut second = live.fork();
        append(&mut second, 12.0);
        assert!(second.shares_storage_with(&cached) && second.shares_storage_with(&live));
        // Its fork continues in place after it; the live state and the cache, once rewound
        // below the floor, copy.
        let mut third = second.fork();
        append(&mut third, 13.0);
        assert!(third.shares_storage_with(&second));
        // Within the lineage too, a state that a fork has written past copies.
        let mut second = second;
        append(&mut second, 15.0);
        assert!(!second.shares_storage_with(&third));
        assert_eq!((at(&second, 5), at(&third, 5)), (all(15.0), all(13.0)));
        let mut rewound = cached.fork();
        rewound.truncate(3);
        append(&mut rewound, 14.0);
        assert!(!rewound.shares_storage_with(&cached));
        assert_eq!(
            (at(&second, 4), at(&third, 5), at(&rewound, 3)),
            (all(12.0), all(13.0), all(14.0))
        );
        assert_eq!((at(&cached, 3), live.len()), (all(0.0), 4));
        // Every state still holds its first positions.
        for s in [&a, &b, &c] {
            assert_eq!(at(s, 0), all(0.0));
        }
    }

    #[test]
    fn buffers_are_zero_and_the_state_grows_as_before() {
        let mut s = state(0);
        let (k, _) = s.raw_view(1, 16).unwrap();
        assert!(k
            .flatten_all()
            .unwrap()
            .to_vec1::<half::f16>()
            .unwrap()
            .iter()
            .all(|x| x.to_f32() == 0.0));
        s.prepare_append(300).unwrap();
        assert!(s.capacity() >= 300);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn memory_counts_each_buffer_once_and_only_the_positions_written() {
        let per = GEO.bytes_per_position();
        // 4 tokens in buffers of 16 positions: the 12 not written cost nothing.
        let mut a = state(4);
        assert_eq!(a.capacity(), 16);
        assert_eq!(KvState::memory_of([&a]), 4 * per);
        // A fork shares the buffers: counted once, also when it writes in place.
        let mut b = a.fork();
        assert_eq!(KvState::memory_of([&a, &b, &a]), 4 * per);
        append(&mut b, 1.0);
        assert!(b.shares_storage_with(&a));
        assert_eq!(KvState::memory_of([&a, &b]), 5 * per);
        // A rewind gives nothing back: the positions were written.
        b.truncate(2);
        assert_eq!(KvState::memory_of([&b]), 5 * per);
        // The original must copy now (b's lineage holds position 4): its own buffers, the 4
        // positions copied and the one written.
        append(&mut a, 2.0);
        assert!(!a.shares_storage_with(&b));
        assert_eq!(KvState::memory_of([&a]), 5 * per);
        assert_eq!(KvState::memory_of([&a, &b]), 10 * per);
        // Growth: the new buffers hold what was copied and written, not their capacity.
        for x in 0..12 {
            append(&mut a, x as f32);
        }
        assert!(a.capacity() > 16);
        assert_eq!(KvState::memory_of([&a]), 17 * per);
        assert_eq!(KvState::memory_of(std::iter::empty()), 0);
    }
}
