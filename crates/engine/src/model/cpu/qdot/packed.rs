//! Prefill with AVX-512 VNNI: the weight rows of a call are repacked, 32 at a time, so that one
//! register holds the same 4 values of 16 rows; each `vpdpbusd` then meets them with 4 bytes of one
//! input row (broadcast), and one `i32` lane collects one weight row's products. A block's integer
//! total ([`super`]'s `T_b`) is thus summed a row per lane, with the integer scales of the K-quants
//! applied once per 16 values of a row (Q2_K, Q3_K and Q4_K: one `vpdpwssd`, exact because such a
//! sum fits 16 bits; Q6_K, whose sums do not: `vpmulld`) or, for Q5_K, whose sums do not fit either
//! but whose scale covers 32 values, once per 32 (`vpmulld`), and the f32 steps of the definition
//! run 16 outputs at a time. The repacking transposes 16 rows × 16 runs of 4 values in registers.
//!
//! The weights are stored as unsigned bytes (`vpdpbusd` takes one unsigned operand): Q4_0 as
//! `q` (so `T_b = Σ q · qx − 8 · Σ qx`), Q8_0 as `q + 128` (`T_b = Σ (q + 128) · qx − 128 · Σ qx`),
//! the K-quants as their `q`: the same integers as the definition's, exact.
//!
//! Repacking costs one pass over the weights per call, against `m` input rows per weight:
//! [`super::block`] takes this path only for calls of [`MIN_M`] input rows or more.
//!
//! [`avx2`] runs the same layout with 256-bit registers (8 rows a register) for machines without
//! AVX-512; the repacking's order ([`drive`]), its scales ([`repack_scales`]) and its buffers are
//! shared.
//!
//! The helpers are `#[inline(always)]` into [`run`], whose `#[target_feature]` enables AVX-512
//! F/BW/DQ/VL/VNNI, AVX2, FMA and F16C; [`block`] is only called when the CPU has them.

// Index loops mirror the layout they fill; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use super::{Call, QFormat, Q2K, Q3K, Q4K, Q4_0, Q5K, Q8_0};
use crate::model::cpu::formats::{f16_ptr as f16, q2k, q3k, q4_0, q4k, q5k, q6k, q8_0};
use std::arch::x86_64::*;
use std::cell::RefCell;

pub(super) mod avx2;

/// Input rows from which a call is worth repacking its weights (1B Q4_K_M, prompts of 4, 8 and
/// 12 tokens: the tiles 20% and 10% faster at 4 and 8, the repacked path 8% faster at 12).
pub const MIN_M: usize = 12;
/// Weight rows per repacked group: two registers of 16 lanes.
const GROUP: usize = 32;
/// Input rows per tile (each holds 2 × 2 integer registers of the 32 weight rows).
const MR: usize = 4;
/// Input rows met by every group before the next ones: as many as fit in 512 KiB (so that they
/// and the call's repacked rows stay in L2), from 16 to 64, whole tiles.
fn chunk(k: usize) -> usize {
    ((512 << 10) / k).clamp(16, 64) / MR * MR
}

/// A call's weight rows, repacked by groups of [`GROUP`].
#[derive(Default)]
struct Packed {
    /// Per group, per 4 values of `k`: the group's 32 rows × 4 unsigned bytes.
    w: Vec<u8>,
    /// Per group, per 16- (Q2_K, Q3_K, Q6_K) or 32-value (Q4_K, Q5_K) scale group: the 32 rows'
    /// integer scales (Q2_K's and Q4_K's non-negative, Q3_K's signed as 16 bits, so each lane's
    /// high 16 bits are zero, as `vpdpwssd` needs).
    sc: Vec<i32>,
    /// Per group, per block, per pair `t < 8` of 16-value groups: the 32 rows' offset
    /// coefficients `(c_2t, c_2t+1)` as two 16-bit halves (the K-quants' `C_b`).
    coef: Vec<i32>,
    /// Per group, per block: the 32 rows' `d` (Q4_0/Q8_0: the block's scale).
    d: Vec<f32>,
    /// Per group, per block: the 32 rows' `e` (K-quants only).
    e: Vec<f32>,
}

/// A group's sizes, per weight row, for `k`-value rows: blocks (`d`), integer scales (`sc`), and
/// blocks with offsets (`e`, and 8 `coef` pairs each: the K-quants; none for Q4_0 and Q8_0).
#[derive(Clone, Copy)]
struct Dims {
    nb: usize,
    ns: usize,
    no: usize,
}

impl Dims {
    const fn of(f: u8, k: usize) -> Self {
        match f {
            Q4_0 | Q8_0 => Self {
                nb: k / 32,
                ns: 0,
                no: 0,
            },
            // K-quants: a scale per 32 values (Q4_K, Q5_K) or per 16.
            _ => Self {
                nb: k / 256,
                ns: if super::k4_scales(f) { k / 32 } else { k / 16 },
                no: k / 256,
            },
        }
    }
}

thread_local! {
    /// Each worker's repacked weights, reused across calls.
    static PACKED: RefCell<Packed> = RefCell::new(Packed::default());
}

/// The 16 × 16 transpose of 32-bit values: value `j` of input `i` becomes value `i` of output `j`.
///
/// # Safety
/// The CPU has AVX-512 F (it touches no memory).
#[inline(always)]
unsafe fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // SAFETY: register operations only, with AVX-512 F (the contract).
    unsafe {
        // Within each 128-bit lane: pairs of rows interleaved, then columns of 4 rows, then the
        // 4 × 4 lanes (lane L of output j = 4L + c gathers column c of lane L of every 4 rows).
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        let mut o = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
            let x1 = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
            let y0 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
            let y1 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
            o[c] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
            o[4 + c] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
            o[8 + c] = _mm512_shuffle_i32x4::<0xDD>(x0, y0);
            o[12 + c] = _mm512_shuffle_i32x4::<0xDD>(x1, y1);
        }
        o
    }
}

/// Repacks weight rows `0..rows` (at most [`GROUP`]) at `w` into group `g` of `p`, rows past
/// `rows` as zeros.
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL, AVX2 and F16C; `rows` rows of `row_bytes` bytes (whole
/// blocks of `F` covering `k`) are readable at `w`; `p`'s vectors hold group `g`.
#[inline(always)]
unsafe fn repack<const F: u8>(p: &mut Packed, g: usize, w: *const u8, row_bytes: usize, rows: usize, k: usize) {
    let pw = clear::<F>(p, g, rows, k);
    let bb = row_bytes / Dims::of(F, k).nb;
    // SAFETY: every read is inside row `i < rows` (pairs `pr < k / 64`, blocks `b < nb` of `bb`
    // bytes); every store writes the 64 bytes of rows `16h..16h + 16` at step `16·pr + j < k / 4`
    // of the group (inside its `GROUP · k` bytes); the features are the contract's.
    unsafe {
        for h in 0..rows.div_ceil(16) {
            for pr in 0..k / 64 {
                // Each row's 64 values (16 runs of 4), then the same run of the 16 rows together.
                let mut v = [_mm512_setzero_si512(); 16];
                for i in 0..(rows - 16 * h).min(16) {
                    let row = w.add((16 * h + i) * row_bytes);
                    v[i] = match F {
                        Q4_0 => _mm512_add_epi8(q4_0::pair_avx512(row.add(2 * pr * bb)), _mm512_set1_epi8(8)),
                        Q8_0 => _mm512_xor_si512(q8_0::pair_avx512(row.add(2 * pr * bb)), _mm512_set1_epi8(-128)),
                        Q2K => q2k::pair_avx512(row.add(pr / 4 * bb), pr % 4),
                        Q3K => q3k::pair_avx512(row.add(pr / 4 * bb), pr % 4),
                        Q4K => q4k::pair_avx512(row.add(pr / 4 * bb), pr % 4),
                        Q5K => q5k::pair_avx512(row.add(pr / 4 * bb), pr % 4),
                        _ => q6k::pair_avx512(row.add(pr / 4 * bb), pr % 4),
                    };
                }
                let o = transpose16(v);
                for j in 0..16 {
                    _mm512_storeu_si512(pw.add(((16 * pr + j) * GROUP + 16 * h) * 4) as *mut __m512i, o[j]);
                }
            }
        }
    }
    // SAFETY: the same rows (the contract).
    unsafe { repack_scales::<F>(p, g, w, row_bytes, rows, k) };
}

/// Group `g` of `p` for `k`-value rows: zeroed when it will hold fewer than [`GROUP`] rows (so
/// the lanes past them compute zeros); returns where its repacked values start.
fn clear<const F: u8>(p: &mut Packed, g: usize, rows: usize, k: usize) -> *mut u8 {
    let Dims { nb, ns, no } = Dims::of(F, k);
    let pw = &mut p.w[g * GROUP * k..][..GROUP * k];
    if rows < GROUP {
        pw.fill(0);
        p.sc[g * GROUP * ns..][..GROUP * ns].fill(0);
        p.coef[g * GROUP * 8 * no..][..GROUP * 8 * no].fill(0);
        p.d[g * GROUP * nb..][..GROUP * nb].fill(0.0);
        p.e[g * GROUP * no..][..GROUP * no].fill(0.0);
    }
    pw.as_mut_ptr()
}

/// The scales of weight rows `0..rows` at `w` into group `g` of `p` (both instruction sets'
/// repacking; rows past `rows` were zeroed by the caller).
///
/// # Safety
/// `rows` rows of `row_bytes` bytes (whole blocks of `F` covering `k`) are readable at `w`; `p`'s
/// vectors hold group `g`.
#[inline(always)]
unsafe fn repack_scales<const F: u8>(p: &mut Packed, g: usize, w: *const u8, row_bytes: usize, rows: usize, k: usize) {
    let Dims { nb, ns, no } = Dims::of(F, k);
    let sc = &mut p.sc[g * GROUP * ns..][..GROUP * ns];
    let coef = &mut p.coef[g * GROUP * 8 * no..][..GROUP * 8 * no];
    let d = &mut p.d[g * GROUP * nb..][..GROUP * nb];
    let e = &mut p.e[g * GROUP * no..][..GROUP * no];
    let bb = row_bytes / nb;
    // SAFETY: every read is inside block `b < nb` of row `i < rows` (the contract).
    unsafe {
        for i in 0..rows {
            for b in 0..nb {
                let blk = w.add(i * row_bytes + b * bb);
                match F {
                    // `d` leads each block (Q4_0 and Q8_0 alike).
                    Q4_0 | Q8_0 => d[b * GROUP + i] = f16(blk),
                    // Q5_K's scales are Q4_K's, at the same places.
                    Q4K | Q5K => {
                        // Scales as bytes 0-7, minimums as bytes 8-15; `c_2t = c_2t+1 = m_t`.
                        let u: [u8; 16] = std::mem::transmute(q4k::scales_mins(blk.add(q4k::SCALES)));
                        for j in 0..8 {
                            sc[(b * 8 + j) * GROUP + i] = u[j] as i32;
                            let m = u[8 + j] as u32;
                            coef[(b * 8 + j) * GROUP + i] = (m | m << 16) as i32;
                        }
                        d[b * GROUP + i] = f16(blk.add(q4k::D));
                        e[b * GROUP + i] = f16(blk.add(q4k::DMIN));
                    }
                    Q2K => {
                        // Scales the low 4 bits, `c_j = m_j` the high 4 bits of each group's byte.
                        let s = |j: usize| *blk.add(q2k::SCALES + j) as u32;
                        for j in 0..16 {
                            sc[(b * 16 + j) * GROUP + i] = (s(j) & 0xF) as i32;
                        }
                        for t in 0..8 {
                            coef[(b * 8 + t) * GROUP + i] = (s(2 * t) >> 4 | (s(2 * t + 1) >> 4) << 16) as i32;
                        }
                        d[b * GROUP + i] = f16(blk.add(q2k::D));
                        e[b * GROUP + i] = f16(blk.add(q2k::DMIN));
                    }
                    Q3K => {
                        // Signed scales as 16-bit values with a zero high half (for `vpdpwssd`);
                        // `c_j = 4 · sc_j`.
                        let s = q3k::scales(std::slice::from_raw_parts(blk, q3k::BYTES));
                        for j in 0..16 {
                            sc[(b * 16 + j) * GROUP + i] = s[j] as i16 as u16 as i32;
                        }
                        for t in 0..8 {
                            let c = |j: usize| (4 * s[j] as i16) as u16 as u32;
                            coef[(b * 8 + t) * GROUP + i] = (c(2 * t) | c(2 * t + 1) << 16) as i32;
                        }
                        d[b * GROUP + i] = f16(blk.add(q3k::D));
                        e[b * GROUP + i] = d[b * GROUP + i];
                    }
                    _ => {
                        // Signed scales; `c_j = 32 · sc_j` (fits 16 bits).
                        let s = |j: usize| *blk.add(q6k::SCALES + j) as i8 as i32;
                        for j in 0..16 {
                            sc[(b * 16 + j) * GROUP + i] = s(j);
                        }
                        for t in 0..8 {
                            let pair = (32 * s(2 * t)) as u16 as u32 | ((32 * s(2 * t + 1)) as u16 as u32) << 16;
                            coef[(b * 8 + t) * GROUP + i] = pair as i32;
                        }
                        d[b * GROUP + i] = f16(blk.add(q6k::D));
                        e[b * GROUP + i] = d[b * GROUP + i];
                    }
                }
            }
        }
    }
}

/// One tile: input rows `r0..r0 + M` × the 32 rows of group `g`, the outputs of its first
/// `rows` weight rows written at `out[r·ldo + i]`.
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL/VNNI, AVX2, FMA and F16C; group `g` of `p` is repacked for
/// `x.k`; input rows `r0..r0 + M` exist in `x`; `out` is writable at `r·ldo + i` for `r < M`,
/// `i < rows <= GROUP`.
#[inline(always)]
unsafe fn tile<const F: u8, const M: usize>(
    p: &Packed,
    g: usize,
    x: &super::QuantRows,
    r0: usize,
    out: *mut f32,
    ldo: usize,
    rows: usize,
) {
    let k = x.k;
    let Dims { nb, ns, no } = Dims::of(F, k);
    // SAFETY: the contract: every read of `p` is inside group `g` (steps `< k / 4`, scale groups
    // `< ns`, blocks `< nb`, offset blocks `< no`), every input read inside rows `r0..r0 + M` (values, scales, 16-value
    // sums), every store a written output (`rows` lanes masked); the features cover the rest.
    unsafe {
        let pw = p.w.as_ptr().add(g * GROUP * k);
        let sc = p.sc.as_ptr().add(g * GROUP * ns);
        let coef = p.coef.as_ptr().add(g * GROUP * 8 * no);
        let (pd, pe) = (p.d.as_ptr().add(g * GROUP * nb), p.e.as_ptr().add(g * GROUP * no));
        let qs = x.qs.as_ptr().add(r0 * k) as *const u8;
        let xd = x.d.as_ptr().add(r0 * k / x.qb);
        let bsum = x.bsum.as_ptr().add(r0 * k / 16);
        let xb = |r: usize, step: usize| _mm512_set1_epi32((qs.add(r * k + 4 * step) as *const i32).read_unaligned());
        let wv = |step: usize, h: usize| _mm512_loadu_si512(pw.add((step * GROUP + 16 * h) * 4) as *const __m512i);
        let ld = |v: *const f32, h: usize| _mm512_loadu_ps(v.add(16 * h));
        let mut acc = [[_mm512_setzero_ps(); 2]; M];
        let mut off = [[_mm512_setzero_ps(); 2]; M];
        for b in 0..nb {
            let mut t = [[_mm512_setzero_si512(); 2]; M];
            if F == Q4_0 || F == Q8_0 {
                // Q4_0/Q8_0: 8 steps of 4 values, then the offset `8 · Σ qx` or `128 · Σ qx`.
                for q in 0..8 {
                    let (w0, w1) = (wv(8 * b + q, 0), wv(8 * b + q, 1));
                    for r in 0..M {
                        let x = xb(r, 8 * b + q);
                        t[r][0] = _mm512_dpbusd_epi32(t[r][0], w0, x);
                        t[r][1] = _mm512_dpbusd_epi32(t[r][1], w1, x);
                    }
                }
                let shift = if F == Q4_0 { 3 } else { 7 };
                for r in 0..M {
                    let bs = bsum.add(r * k / 16 + 2 * b);
                    let o = _mm512_set1_epi32((*bs as i32 + *bs.add(1) as i32) << shift);
                    let dx = _mm512_set1_ps(*xd.add(r * k / 32 + b));
                    for h in 0..2 {
                        let tb = _mm512_cvtepi32_ps(_mm512_sub_epi32(t[r][h], o));
                        acc[r][h] = _mm512_fmadd_ps(tb, _mm512_mul_ps(ld(pd.add(b * GROUP), h), dx), acc[r][h]);
                    }
                }
            } else {
                // Runs of values that share a scale, summed in 32 bits and then scaled: Q4_K 16
                // values (the sum fits 16 bits, see below; its scale covers two runs), Q5_K 32
                // (a whole sub-block: one multiply where 16-value runs would take two), Q2_K,
                // Q3_K and Q6_K 16.
                let (runs, steps) = if F == Q5K { (8, 8) } else { (16, 4) };
                // Scales per block: Q4_K and Q5_K 8, the others 16.
                let per = ns / nb;
                for j in 0..runs {
                    let mut u = [[_mm512_setzero_si512(); 2]; M];
                    for q in 0..steps {
                        let step = 64 * b + steps * j + q;
                        let (w0, w1) = (wv(step, 0), wv(step, 1));
                        for r in 0..M {
                            let x = xb(r, step);
                            u[r][0] = _mm512_dpbusd_epi32(u[r][0], w0, x);
                            u[r][1] = _mm512_dpbusd_epi32(u[r][1], w1, x);
                        }
                    }
                    let s = sc.add((b * per + j * per / runs) * GROUP);
                    for h in 0..2 {
                        let s = _mm512_loadu_si512(s.add(16 * h) as *const __m512i);
                        for r in 0..M {
                            t[r][h] = if F == Q4K || F == Q3K || F == Q2K {
                                // |u| ≤ 16 · 15 · 127 (Q3_K, Q2_K: 16 · 7 · 127, 16 · 3 · 127)
                                // fits the low 16 bits of its lane, and the scale (Q4_K, Q2_K: non-
                                // negative; Q3_K: signed 16 bits) has a zero high half: one
                                // vpdpwssd adds u · sc.
                                // (Q5_K's and Q6_K's sums do not fit: they multiply.)
                                _mm512_dpwssd_epi32(t[r][h], u[r][h], s)
                            } else {
                                _mm512_add_epi32(t[r][h], _mm512_mullo_epi32(u[r][h], s))
                            };
                        }
                    }
                }
                for r in 0..M {
                    let dx = _mm512_set1_ps(*xd.add(r * k / 256 + b));
                    let bs = bsum.add(r * k / 16 + 16 * b) as *const i32;
                    for h in 0..2 {
                        let mut c = _mm512_setzero_si512();
                        for tt in 0..8 {
                            let cf = _mm512_loadu_si512(coef.add((b * 8 + tt) * GROUP + 16 * h) as *const __m512i);
                            c = _mm512_dpwssd_epi32(c, cf, _mm512_set1_epi32(bs.add(tt).read_unaligned()));
                        }
                        // Volatile: the f32 chains live in memory (touched once a block), which
                        // leaves the registers to the integer tile.
                        let a = &raw mut acc[r][h];
                        let tb = _mm512_cvtepi32_ps(t[r][h]);
                        a.write_volatile(_mm512_fmadd_ps(
                            tb,
                            _mm512_mul_ps(ld(pd.add(b * GROUP), h), dx),
                            a.read_volatile(),
                        ));
                        let o = &raw mut off[r][h];
                        let cb = _mm512_cvtepi32_ps(c);
                        o.write_volatile(_mm512_fmadd_ps(
                            cb,
                            _mm512_mul_ps(ld(pe.add(b * GROUP), h), dx),
                            o.read_volatile(),
                        ));
                    }
                }
            }
        }
        for r in 0..M {
            for h in 0..2 {
                let lanes = rows.saturating_sub(16 * h).min(16);
                let mask = ((1u32 << lanes) - 1) as u16;
                _mm512_mask_storeu_ps(out.add(r * ldo + 16 * h), mask, _mm512_sub_ps(acc[r][h], off[r][h]));
            }
        }
    }
}

/// Repacks the call's weight rows into this thread's buffer with `repack(p, g, w, rows)` (group
/// `g` from the rows at `w`), then meets every group with every input row, [`chunk`] input rows
/// at a time, in tiles of up to `mr` input rows: `tile(p, g, x0, out, rows, mr)` (input rows
/// `x0..x0 + mr` of `c.x`, outputs from `out`, the group's first `rows` weight rows). Both
/// instruction sets' kernels run this order.
///
/// # Safety
/// As [`block`], and `repack` and `tile` do what they are given to do within it.
#[inline(always)]
unsafe fn drive<const F: u8>(
    c: Call,
    mr: usize,
    repack: impl Fn(&mut Packed, usize, *const u8, usize),
    tile: impl Fn(&Packed, usize, usize, *mut f32, usize, usize),
) {
    let k = c.x.k;
    let Dims { nb, ns, no } = Dims::of(F, k);
    let groups = c.rows.div_ceil(GROUP);
    PACKED.with(|p| {
        let mut p = p.borrow_mut();
        let p = &mut *p;
        // Sized for this call (a buffer's old contents are overwritten or zeroed by `clear`).
        p.w.resize(groups * GROUP * k, 0);
        p.sc.resize(groups * GROUP * ns, 0);
        p.coef.resize(groups * GROUP * 8 * no, 0);
        p.d.resize(groups * GROUP * nb, 0.0);
        p.e.resize(groups * GROUP * no, 0.0);
        for g in 0..groups {
            // SAFETY: rows `g·GROUP..` + `rows` of the call are readable (the contract).
            repack(
                p,
                g,
                unsafe { c.w.add(g * GROUP * c.row_bytes) },
                (c.rows - g * GROUP).min(GROUP),
            );
        }
        let per = chunk(k);
        for r0 in (0..c.m).step_by(per) {
            let mc = per.min(c.m - r0);
            for g in 0..groups {
                let rows = (c.rows - g * GROUP).min(GROUP);
                let mut r = 0;
                while r < mc {
                    let m = mr.min(mc - r);
                    // SAFETY: outputs `(r0 + r + ·)·ldo + g·GROUP + i` for `i < rows` lie inside
                    // the call's (the contract).
                    let out = unsafe { c.out.add((r0 + r) * c.ldo + g * GROUP) };
                    tile(p, g, c.r0 + r0 + r, out, rows, m);
                    r += m;
                }
            }
        }
    });
}

/// The AVX-512 VNNI kernel of [`block`].
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run<const F: u8>(c: Call) {
    let k = c.x.k;
    // SAFETY: `drive` hands `repack` rows of the call and a group it sized, and `tile` input rows
    // `x0..x0 + mr` inside the call's, outputs inside its, and a group just repacked; the
    // features are this function's (closures inherit them).
    unsafe {
        drive::<F>(
            c,
            MR,
            |p, g, w, rows| repack::<F>(p, g, w, c.row_bytes, rows, k),
            |p, g, x0, out, rows, mr| match mr {
                1 => tile::<F, 1>(p, g, c.x, x0, out, c.ldo, rows),
                2 => tile::<F, 2>(p, g, c.x, x0, out, c.ldo, rows),
                3 => tile::<F, 3>(p, g, c.x, x0, out, c.ldo, rows),
                _ => tile::<F, MR>(p, g, c.x, x0, out, c.ldo, rows),
            },
        )
    }
}

/// See [`super::block`].
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL/VNNI, AVX2, FMA and F16C; the call's `rows` weight rows (of
/// whole `f` blocks covering `x.k`) are readable at `c.w`, its input rows `r0..r0 + m` exist,
/// and `out` is writable at `r·ldo + i` for `r < m`, `i < rows`.
pub(super) unsafe fn block(f: QFormat, c: Call) {
    // SAFETY: the contract is `run`'s, with `F` the format `f` that the rows hold.
    unsafe { by_format!(f, run(c)) }
}
