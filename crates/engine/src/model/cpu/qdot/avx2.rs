//! AVX2 kernels of the integer dot products in [`super`]: 32 weight integers and 32 input bytes
//! per instruction group (`maddubs` + `madd`), a 32-value block or sub-block as one 8-lane
//! register of 4 products each, in tiles of up to 2 input rows × 2 weight rows (16 registers);
//! each block's lanes are summed into its integer total, and each output's f32 chain runs in a
//! scalar. Decoding (one input row) takes 4 weight rows a tile instead, their totals summed
//! together and their chains run as the lanes of one register, with the next 4 rows' blocks
//! prefetched ([`tile4`]). Prefill from a few rows on takes the repacked kernel
//! (`super::packed::avx2`).
//!
//! Signed weights use `_mm256_sign_epi8`: `|w|` as unsigned bytes times `x · sign(w)` is `w · x`,
//! and `|w| · |x| ≤ 128 · 127` keeps `maddubs`' 16-bit pair sums from saturating.
//!
//! The helpers below, and the formats' integer decoders they call
//! ([`crate::model::cpu::formats`]), are `#[inline(always)]` into [`run`], whose `#[target_feature]` enables
//! AVX2, FMA and F16C; each one's `# Safety` therefore asks for those features, which the CPU
//! has because [`block`] is only called for `Isa::Avx2` or above (see `crate::model::cpu::isa`).

use super::{block_bytes, k4_scales, Call, QFormat, Q2K, Q3K, Q4K, Q4_0, Q5K, Q8_0};
use crate::model::cpu::formats::{f16_ptr as f16, q2k, q3k, q4_0, q4k, q5k, q6k, q8_0};
use std::arch::x86_64::*;

/// Sub-block `s` of the K-quant block at `b` of format `F`: 32 weight integers as unsigned bytes.
///
/// # Safety
/// The block is readable, `s < 8`; the CPU has AVX2.
#[inline(always)]
unsafe fn ksub<const F: u8>(b: *const u8, s: usize) -> __m256i {
    // SAFETY: the contract is each format's decoder's.
    unsafe {
        match F {
            Q2K => q2k::sub_avx2(b, s),
            Q3K => q3k::sub_avx2(b, s),
            Q4K => q4k::sub_avx2(b, s),
            Q5K => q5k::sub_avx2(b, s),
            _ => q6k::sub_avx2(b, s),
        }
    }
}

/// The 8 `i32` lanes of `v` summed (exact).
///
/// # Safety
/// The CPU has AVX2 (it touches no memory).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        let v = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let v = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
        let v = _mm_add_epi32(v, _mm_shuffle_epi32::<1>(v));
        _mm_cvtsi128_si32(v)
    }
}

/// A K-quant block's integer scales (the AVX-512 decoding tile takes them too) as 16-bit values (Q4_K, Q5_K: one per 32-value sub-block, in
/// 0..8; Q2_K, Q3_K, Q6_K: one per 16 values), the offsets' 16 coefficients `c_j` as 16-bit lanes,
/// and its `d` and `e` (see the definition in [`super`]).
///
/// # Safety
/// The block (of format `F`, a K-quant) at `b` is readable; the CPU has AVX2 and F16C.
#[inline(always)]
pub(super) unsafe fn kscales<const F: u8>(b: *const u8) -> ([i16; 16], __m256i, f32, f32) {
    // SAFETY: reads of the block's scales and `d`/`dmin` (the contract), with AVX2 (the contract).
    unsafe {
        if k4_scales(F) {
            // Scales as bytes 0-7, minimums as bytes 8-15; `c_2t = c_2t+1 = m_t`.
            let u = q4k::scales_mins(b.add(q4k::SCALES));
            let v = _mm_loadu_si128(u.as_ptr() as *const __m128i);
            let sc: [i16; 16] = std::mem::transmute(_mm256_cvtepu8_epi16(v));
            let m = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(v));
            let c16 = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
            (sc, c16, f16(b.add(q4k::D)), f16(b.add(q4k::DMIN)))
        } else if F == Q2K {
            // Scales and minimums: the low and high 4 bits of 16 bytes; `c_j = m_j`.
            let v = _mm_loadu_si128(b.add(q2k::SCALES) as *const __m128i);
            let nib = _mm_set1_epi8(0x0F);
            let sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, nib));
            let m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(v), nib));
            (
                std::mem::transmute::<__m256i, [i16; 16]>(sc),
                m,
                f16(b.add(q2k::D)),
                f16(b.add(q2k::DMIN)),
            )
        } else if F == Q3K {
            // Signed scales unpacked from 12 bytes; `c_j = 4 · sc_j`.
            let v = _mm256_cvtepi8_epi16(q3k::scales_sse(b));
            let d = f16(b.add(q3k::D));
            (
                std::mem::transmute::<__m256i, [i16; 16]>(v),
                _mm256_slli_epi16::<2>(v),
                d,
                d,
            )
        } else {
            // Signed scales; `c_j = 32 · sc_j`.
            let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(q6k::SCALES) as *const __m128i));
            let d = f16(b.add(q6k::D));
            (
                std::mem::transmute::<__m256i, [i16; 16]>(v),
                _mm256_slli_epi16::<5>(v),
                d,
                d,
            )
        }
    }
}

/// The scale register of sub-block `s` (32 values) from [`kscales`]' values: Q4_K's and Q5_K's
/// one scale in every lane, the others' two (one per 16 values) in the two halves.
///
/// # Safety
/// The CPU has AVX2 (it touches no memory but `sc`); `s < 8`.
#[inline(always)]
unsafe fn sub_scale<const F: u8>(sc: &[i16; 16], s: usize) -> __m256i {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        if k4_scales(F) {
            _mm256_set1_epi16(sc[s])
        } else {
            _mm256_set_m128i(_mm_set1_epi16(sc[2 * s + 1]), _mm_set1_epi16(sc[2 * s]))
        }
    }
}

/// One tile: `M` input rows (from `c.r0`) × `NR` weight rows (from `c.w`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `NR` weight rows of `row_bytes` bytes (whole blocks of `F`
/// covering `x.k`) are readable at `c.w`; input rows `c.r0..c.r0 + M` exist in `x`; `c.out` is
/// writable at `r·ldo + i` for `r < M`, `i < NR`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const F: u8, const M: usize, const NR: usize>(c: Call) {
    let (w, row_bytes, x, r0, out, ldo) = c.parts();
    // SAFETY: the contract: every weight block read (`b < k / 32` or `blk < k / 256`, `s < 8`) is
    // inside rows `i < NR`; every input read (values, scales and 16-value sums of block `b` or
    // `blk`) inside rows `r0 + r < r0 + M` of `x`; every store an output of the tile; and the
    // features cover every intrinsic and helper.
    unsafe {
        let k = x.k;
        let qs = x.qs.as_ptr().add(r0 * k) as *const u8;
        let xd = x.d.as_ptr().add(r0 * k / x.qb);
        let xv = |r: usize, c: usize| _mm256_loadu_si256(qs.add(r * k + c) as *const __m256i);
        // One chain per output (see the definition).
        let mut acc = [[0f32; NR]; M];
        let mut off = [[0f32; NR]; M];
        if F == Q4_0 || F == Q8_0 {
            let bytes = block_bytes(F);
            for b in 0..k / 32 {
                let mut wv = [_mm256_setzero_si256(); NR];
                let mut wa = [_mm256_setzero_si256(); NR];
                let mut dw = [0f32; NR];
                for i in 0..NR {
                    let p = w.add(i * row_bytes + b * bytes);
                    wv[i] = if F == Q4_0 {
                        q4_0::block_avx2(p)
                    } else {
                        q8_0::block_avx2(p)
                    };
                    wa[i] = _mm256_abs_epi8(wv[i]);
                    // `d` leads the block (Q4_0 and Q8_0 alike).
                    dw[i] = f16(p);
                }
                for r in 0..M {
                    let xb = xv(r, 32 * b);
                    let dx = *xd.add(r * k / 32 + b);
                    for i in 0..NR {
                        let p = _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(xb, wv[i]));
                        let t = hsum_i32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
                        acc[r][i] = (t as f32).mul_add(dw[i] * dx, acc[r][i]);
                    }
                }
            }
        } else {
            let bytes = block_bytes(F);
            for blk in 0..k / 256 {
                let mut isum = [[[_mm256_setzero_si256(); 2]; NR]; M];
                // Per weight row: each sub-block's scales as 16-bit lanes, and the offsets'
                // coefficients c_j with their scale `e` (see the module doc).
                let mut sc = [[_mm256_setzero_si256(); 8]; NR];
                let mut c16 = [_mm256_setzero_si256(); NR];
                let mut de = [(0f32, 0f32); NR];
                for i in 0..NR {
                    let (s16, c, d, e) = kscales::<F>(w.add(i * row_bytes + blk * bytes));
                    for s in 0..8 {
                        sc[i][s] = sub_scale::<F>(&s16, s);
                    }
                    (c16[i], de[i]) = (c, (d, e));
                }
                for s in 0..8 {
                    let mut wv = [_mm256_setzero_si256(); NR];
                    for i in 0..NR {
                        wv[i] = ksub::<F>(w.add(i * row_bytes + blk * bytes), s);
                    }
                    for r in 0..M {
                        let xb = xv(r, 256 * blk + 32 * s);
                        for i in 0..NR {
                            let d = _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], xb), sc[i][s]);
                            let a = &mut isum[r][i][s % 2];
                            *a = _mm256_add_epi32(*a, d);
                        }
                    }
                }
                for r in 0..M {
                    let dx = *xd.add(r * k / 256 + blk);
                    let bs = _mm256_loadu_si256(x.bsum.as_ptr().add(((r0 + r) * k + 256 * blk) / 16) as *const __m256i);
                    for i in 0..NR {
                        let t = hsum_i32(_mm256_add_epi32(isum[r][i][0], isum[r][i][1]));
                        acc[r][i] = (t as f32).mul_add(de[i].0 * dx, acc[r][i]);
                        let c = hsum_i32(_mm256_madd_epi16(c16[i], bs));
                        off[r][i] = (c as f32).mul_add(de[i].1 * dx, off[r][i]);
                    }
                }
            }
        }
        for r in 0..M {
            for i in 0..NR {
                *out.add(r * ldo + i) = acc[r][i] - off[r][i];
            }
        }
    }
}

/// The 8 `i32` lanes of each of `t[0..4]` summed, as the 4 lanes of one register (exact).
///
/// # Safety
/// The CPU has AVX2 (it touches no memory).
#[inline(always)]
unsafe fn hsum4_i32(t: [__m256i; 4]) -> __m128i {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        // Per 128-bit lane: pairs of lanes of rows 0, 1 | 2, 3, then the four rows' sums of that
        // lane's four; the two lanes added last.
        let a = _mm256_hadd_epi32(t[0], t[1]);
        let b = _mm256_hadd_epi32(t[2], t[3]);
        let c = _mm256_hadd_epi32(a, b);
        _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c))
    }
}

/// Decoding's tile: one input row (`c.r0`) × 4 weight rows, the 4 rows' block totals summed
/// together ([`hsum4_i32`]) and their f32 chains run as the 4 lanes of one register, in the
/// definition's order. With `prefetch`, the same blocks of the next 4 rows are prefetched
/// (decoding streams the weights from memory once; without it the loads of each block stall).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; 4 weight rows of `row_bytes` bytes (whole blocks of `F`
/// covering `x.k`) are readable at `c.w`, and 4 more after them when `prefetch`; input row
/// `c.r0` exists in `x`; `c.out` is writable at `0..4`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile4<const F: u8>(c: Call, prefetch: bool) {
    let (w, row_bytes, x, r0, out, _) = c.parts();
    // SAFETY: the contract: every weight block read (`b < k / 32` or `blk < k / 256`, `s < 8`) is
    // inside rows `i < 4`; every input read (values, scales and 16-value sums of block `b` or
    // `blk`) inside row `r0` of `x`, every prefetch inside the next 4 rows (only when `prefetch`);
    // the store writes the tile's 4 outputs; and the features cover every intrinsic and helper.
    unsafe {
        let k = x.k;
        let qs = x.qs.as_ptr().add(r0 * k) as *const u8;
        let xd = x.d.as_ptr().add(r0 * k / x.qb);
        let xv = |c: usize| _mm256_loadu_si256(qs.add(c) as *const __m256i);
        let mut acc = _mm_setzero_ps();
        let mut off = _mm_setzero_ps();
        let row = |i: usize| w.add(i * row_bytes);
        // Per-row f32 values as the 4 lanes of one register.
        let lanes = |v: [f32; 4]| _mm_loadu_ps(v.as_ptr());
        // The block at `at` of the next 4 rows, `bytes` long.
        let ahead = |at: usize, bytes: usize| {
            if prefetch {
                for i in 4..8 {
                    let b = row(i).add(at);
                    for line in (0..bytes).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(b.add(line) as *const i8);
                    }
                    _mm_prefetch::<_MM_HINT_T0>(b.add(bytes - 1) as *const i8);
                }
            }
        };
        if F == Q4_0 || F == Q8_0 {
            let bytes = block_bytes(F);
            for b in 0..k / 32 {
                if b % 2 == 0 {
                    ahead(b * bytes, 2 * bytes);
                }
                let xb = xv(32 * b);
                let mut t = [_mm256_setzero_si256(); 4];
                let mut d = [0f32; 4];
                for i in 0..4 {
                    let p = row(i).add(b * bytes);
                    let wv = if F == Q4_0 {
                        q4_0::block_avx2(p)
                    } else {
                        q8_0::block_avx2(p)
                    };
                    let pr = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xb, wv));
                    t[i] = _mm256_madd_epi16(pr, _mm256_set1_epi16(1));
                    // `d` leads the block (Q4_0 and Q8_0 alike).
                    d[i] = f16(p);
                }
                let s = _mm_mul_ps(lanes(d), _mm_set1_ps(*xd.add(b)));
                acc = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4_i32(t)), s, acc);
            }
        } else {
            let bytes = block_bytes(F);
            for blk in 0..k / 256 {
                ahead(blk * bytes, bytes);
                let b = |i: usize| row(i).add(blk * bytes);
                let mut sc = [[0i16; 16]; 4];
                let mut c = [_mm256_setzero_si256(); 4];
                let (mut d, mut e) = ([0f32; 4], [0f32; 4]);
                let bs = _mm256_loadu_si256(x.bsum.as_ptr().add((r0 * k + 256 * blk) / 16) as *const __m256i);
                for i in 0..4 {
                    let c16;
                    (sc[i], c16, d[i], e[i]) = kscales::<F>(b(i));
                    c[i] = _mm256_madd_epi16(c16, bs);
                }
                let mut t = [_mm256_setzero_si256(); 4];
                for s in 0..8 {
                    let xb = xv(256 * blk + 32 * s);
                    for i in 0..4 {
                        let wv = ksub::<F>(b(i), s);
                        let scale = sub_scale::<F>(&sc[i], s);
                        t[i] = _mm256_add_epi32(t[i], _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xb), scale));
                    }
                }
                let dx = _mm_set1_ps(*xd.add(blk));
                acc = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4_i32(t)), _mm_mul_ps(lanes(d), dx), acc);
                off = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4_i32(c)), _mm_mul_ps(lanes(e), dx), off);
            }
        }
        _mm_storeu_ps(out, _mm_sub_ps(acc, off));
    }
}

/// Every tile of the call: weight rows two at a time, input rows two at a time within each.
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<const F: u8>(c: Call) {
    // SAFETY: each tile covers weight rows `i..i + g <= rows` and input rows `r..r + mr <= m` of
    // the call (so `c.at(i, r)` is in range); decoding's tiles prefetch only when the next 4 rows
    // are inside the call (`i + 8 <= rows`); the features the tiles need are this function's.
    unsafe {
        let mut i = 0;
        if c.m == 1 {
            // Decoding: 4 weight rows a tile, the rest below.
            while i + 4 <= c.rows {
                tile4::<F>(c.at(i, 0), i + 8 <= c.rows);
                i += 4;
            }
        }
        while i < c.rows {
            let g = (c.rows - i).min(2);
            let mut r = 0;
            while r < c.m {
                let mr = (c.m - r).min(2);
                let t = c.at(i, r);
                match (mr, g) {
                    (1, 1) => tile::<F, 1, 1>(t),
                    (1, 2) => tile::<F, 1, 2>(t),
                    (2, 1) => tile::<F, 2, 1>(t),
                    _ => tile::<F, 2, 2>(t),
                }
                r += mr;
            }
            i += g;
        }
    }
}

/// See [`super::block`].
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; the call's `rows` weight rows (of whole `f` blocks covering
/// `x.k`) are readable at `c.w`, its input rows `r0..r0 + m` exist, and `out` is writable at
/// `r·ldo + i` for `r < m`, `i < rows`.
pub(super) unsafe fn block(f: QFormat, c: Call) {
    // SAFETY: the contract is `run`'s, with `F` the format `f` that the rows hold.
    unsafe { by_format!(f, run(c)) }
}
