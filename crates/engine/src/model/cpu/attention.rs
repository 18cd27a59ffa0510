//! Attention over the f16 cache, without copying it and without materializing the whole
//! score matrix.
//!
//! Each query row is computed on its own with a fixed order of operations, so a row's result
//! does not depend on how many other rows share the call: decoding token by token gives
//! bit-for-bit the same K/V and logits as one prefill, whatever the chunking. That is what makes
//! a thawed state resume exactly. For a row at position `p` (it sees keys `0..=p`):
//!
//! * score `s_j = (Σ_t q_t·k_jt) · scale`, the sum one fused multiply-add per `t` in increasing
//!   `t`, starting from zero;
//! * `e_j = exp(s_j - max_j s_j)` with our own [`exp`] (the same polynomial on every path);
//! * `Σ e_j` over 16 lanes (`j mod 16`) reduced in the tree of [`super::gemm::reduce`];
//! * output `o_t = (Σ_j e_j·v_jt) · (1 / Σ e_j)`, the sum one fused multiply-add per key in
//!   increasing `j`.
//!
//! Grouped queries: the rows of the `group` query heads that share a KV head are processed
//! together, so each block of keys is converted from f16 (and transposed, keys across the vector
//! lanes, so that one register holds the scores of 16 keys) once for all of them. The vector width
//! and the register tiles change only the speed: the AVX-512, AVX2, NEON (every 64-bit ARM CPU)
//! and scalar paths are one generic kernel over [`simd::Simd`] and agree bit for bit.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

mod kernel;
mod simd;

use super::isa::{isa, Isa};
use super::pool;
use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

pub use kernel::exp;

/// Query positions per task in a prefill.
const ROW_TILE: usize = 16;

/// One KV head's cache rows, in place.
#[derive(Clone, Copy)]
struct KvRows {
    ptr: *const u16,
    head_stride: usize,
    row_stride: usize,
}

impl KvRows {
    /// Row `j` of head `h`.
    ///
    /// # Safety
    /// `h` and `j` must be within the view the pointer came from.
    unsafe fn row(&self, h: usize, j: usize) -> *const u16 {
        // SAFETY: with `h` and `j` inside the view (the contract), the offset is at most the
        // view's last row, which `view` checked lies inside the storage.
        unsafe { self.ptr.add(h * self.head_stride + j * self.row_stride) }
    }
}

/// Everything a task needs; shared read-only by all tasks (each writes its own output rows).
#[derive(Clone, Copy)]
struct Job {
    q: *const f32,
    out: *mut f32,
    k: KvRows,
    v: KvRows,
    l: usize,
    d: usize,
    group: usize,
    past: usize,
    scale: f32,
}
// SAFETY: the pointers stay valid for the whole parallel section (the tensors are borrowed by
// `attend`), inputs are only read, and tasks write disjoint output rows.
unsafe impl Send for Job {}
// SAFETY: shared `&Job`s only read the pointers' targets `q`, `k`, `v`, which nobody writes
// during `attend`; writes through `out` go to rows that belong to one task each.
unsafe impl Sync for Job {}

fn view(s: &Storage, l: &Layout) -> Option<(KvRows, usize)> {
    let Storage::Cpu(CpuStorage::F16(data)) = s else {
        return None;
    };
    let st = l.stride();
    let dims = l.dims();
    if st.len() != 3 || st[2] != 1 {
        return None;
    }
    let end = l.start_offset() + (dims[0] - 1) * st[0] + (dims[1] - 1) * st[1] + dims[2];
    if dims.contains(&0) || end > data.len() {
        return None;
    }
    let ptr = data[l.start_offset()..].as_ptr() as *const u16;
    Some((
        KvRows {
            ptr,
            head_stride: st[0],
            row_stride: st[1],
        },
        end,
    ))
}

/// `q`: `(n_head, L, d)` f32; `k`, `v`: `(n_kv, T, d)` f16 views on the CPU; query row `i` sits
/// at position `T - L + i`. Returns `(n_head, L, d)` f32, or `None` when the inputs are not
/// CPU/f16 (the caller then uses the generic path).
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Option<Tensor>> {
    attend_with(isa(), q, k, v)
}

fn attend_with(isa: Isa, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let d = q.dims().last().copied().unwrap_or(0);
    attend_lanes(lanes(isa, d), q, k, v)
}

/// [`attend`] with the kernel instantiation `lanes`, which must come from [`lanes`] (or be
/// [`Lanes::Scalar`]), as the kernel's `unsafe` relies on it.
fn attend_lanes(lanes: Lanes, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if !q.device().is_cpu() || k.dtype() != DType::F16 || v.dtype() != DType::F16 || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n_head, l, d) = q.dims3()?;
    let (n_kv, t, dk) = k.dims3()?;
    if v.dims3()? != (n_kv, t, dk) || dk != d || n_kv == 0 || !n_head.is_multiple_of(n_kv) || t < l || l == 0 {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(qd)) = &*qs else {
        return Ok(None);
    };
    let qv = &qd[ql.start_offset()..][..n_head * l * d];
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Some((kr, _)), Some((vr, _))) = (view(&ks, kl), view(&vs, vl)) else {
        return Ok(None);
    };
    let mut out = vec![0f32; n_head * l * d];
    let job = Job {
        q: qv.as_ptr(),
        out: out.as_mut_ptr(),
        k: kr,
        v: vr,
        l,
        d,
        group: n_head / n_kv,
        past: t - l,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let tiles = l.div_ceil(ROW_TILE);
    let run = |task: usize| {
        // The last tiles see the most keys: start them first.
        let tile = tiles - 1 - task / n_kv;
        let i0 = tile * ROW_TILE;
        // SAFETY: `job` points into tensors borrowed for this whole function, with the shapes
        // checked above (`q`: n_head × l × d, `out`: the same, `k`/`v`: n_kv × t × d, t ≥ l); the
        // task's KV head is below `n_kv`, its rows `i0..min(i0 + ROW_TILE, l)` non-empty, and
        // it writes only their outputs. `lanes` comes from `lanes` (the contract of
        // `attend_lanes`), for `d` and an `isa` from `isa()` or, in tests, `available()`.
        unsafe { kernel::task(lanes, &job, task % n_kv, i0, (i0 + ROW_TILE).min(l)) };
    };
    pool::run(n_kv * tiles, &run);
    drop((qs, ks, vs));
    Ok(Some(Tensor::from_vec(out, (n_head, l, d), q.device())?))
}

/// A kernel instantiation: the vector type the generic kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lanes {
    /// One lane (`f32`): any head dimension, any CPU; the reference.
    Scalar,
    /// Four lanes of NEON, which every 64-bit ARM CPU has.
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// Eight lanes of AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Sixteen lanes of AVX-512.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Which kernel instantiation serves head dimension `d` on `isa` (the widest whose lanes divide
/// `d`). The kernel's safety rests on this: a vector path is returned only for an `isa` that has
/// its features, and a `d` made of whole vectors.
fn lanes(isa: Isa, d: usize) -> Lanes {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 if d.is_multiple_of(16) => return Lanes::Avx512,
        Isa::Avx512 | Isa::Avx2 if d.is_multiple_of(8) => return Lanes::Avx2,
        _ => {}
    }
    #[cfg(target_arch = "aarch64")]
    if d.is_multiple_of(4) {
        return Lanes::Neon;
    }
    // Only x86 has instruction sets to choose between.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    Lanes::Scalar
}

#[cfg(test)]
mod tests;
