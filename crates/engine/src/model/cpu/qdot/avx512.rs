//! AVX-512 (BW) kernels of the integer dot products in [`super`], over the weights as stored:
//! decoding, and prefill without VNNI (with it, prefill repacks: `super::packed`). 64 weight
//! integers and 64 input bytes per instruction group, `maddubs` + `madd` into 16 lanes of 4
//! products each (with the K-quants' sub-block scales folded into the `madd`), in register tiles
//! of input rows × weight rows; the lanes of up to 4 weight rows are then summed together into
//! their blocks' integer totals ([`half_sums`]), and those rows' f32 chains run side by side in
//! one register. With VNNI, one `vpdpbusd` replaces `maddubs` + `madd` where no scale is folded
//! in, and `vpdpwssd` the scaled `madd` + `add` of the K-quants.
//!
//! Signed weights use the sign trick: `|w|` as unsigned bytes times `x · sign(w)` is `w · x`,
//! and `|w| · |x| ≤ 128 · 127` keeps `maddubs`' 16-bit pair sums from saturating.
//!
//! The helpers below, and the formats' integer decoders they call
//! ([`crate::model::cpu::formats`]), are `#[inline(always)]` into `run_bw` or `run_vnni`, whose
//! `#[target_feature]`s enable AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C (and VNNI); each one's
//! `# Safety` therefore asks for those features, which the CPU has because [`block`] is only
//! called for `Isa::Avx512` (and with `vnni` only when VNNI was detected; see
//! `crate::model::cpu::isa`).

use super::{block_bytes, k4_scales, Call, QFormat, Q2K, Q3K, Q4K, Q4_0, Q5K, Q8_0};
use crate::model::cpu::formats::{f16_ptr as f16, q2k, q3k, q4_0, q4k, q5k, q6k, q8_0};
use std::arch::x86_64::*;

/// `x · sign(w)` where `w < 0` (elsewhere `x`: a zero `w` contributes `|w| = 0` anyway).
///
/// # Safety
/// The CPU has AVX-512 BW (it touches no memory).
#[inline(always)]
unsafe fn sign(x: __m512i, w: __m512i) -> __m512i {
    // SAFETY: register operations only, with AVX-512 BW (the contract).
    unsafe { _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x) }
}

/// The 16 lanes `Σ_{t<4} u[4l+t] · s[4l+t]` (u unsigned, s signed), exact.
///
/// # Safety
/// The CPU has AVX-512 BW, and VNNI when `VNNI` (it touches no memory).
#[inline(always)]
unsafe fn dot4<const VNNI: bool>(u: __m512i, s: __m512i) -> __m512i {
    // SAFETY: register operations only; `dpbusd` runs only when `VNNI`, and the contract then
    // promises VNNI; the rest needs AVX-512 BW (the contract).
    unsafe {
        if VNNI {
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
        } else {
            _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1))
        }
    }
}

/// The integer vectors of up to 4 weight rows summed by halves: lane `i` of the first result is
/// the sum of lanes 0–7 of `d[i]`, of the second the sum of lanes 8–15 (exact).
///
/// # Safety
/// The CPU has AVX-512 F and AVX2 (it touches no memory).
#[inline(always)]
unsafe fn half_sums(d: [__m512i; 4]) -> (__m128i, __m128i) {
    // SAFETY: register operations only, with the contract's features.
    unsafe {
        // Per 128-bit lane: [d0 0+2, d1 0+2, d0 1+3, d1 1+3], then the four rows' lane sums.
        let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
        let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
        let v = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
        let (lo, hi) = (_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        (
            _mm_add_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256::<1>(lo)),
            _mm_add_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256::<1>(hi)),
        )
    }
}

/// The f16 scales at `b + i·row_bytes` of up to 4 weight rows (`NR`) as f32 lanes (0 beyond).
///
/// # Safety
/// Two bytes are readable at each of the `NR` addresses; the CPU has F16C.
#[inline(always)]
unsafe fn row_scales<const NR: usize>(b: *const u8, row_bytes: usize) -> __m128 {
    // SAFETY: reads the `NR` scales of the contract.
    unsafe {
        let v: [f32; 4] = std::array::from_fn(|i| if i < NR { f16(b.add(i * row_bytes)) } else { 0.0 });
        _mm_loadu_ps(v.as_ptr())
    }
}

/// One tile: `M` input rows (from `c.r0`) × `NR` weight rows (from `c.w`); with `prefetch`,
/// the same blocks of the next `NR` weight rows are prefetched.
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C, and VNNI when `VNNI`; `NR` weight rows
/// of `row_bytes` bytes (whole blocks of `F` covering `x.k`) are readable at `c.w`, and `NR`
/// more after them when `prefetch`; input rows `c.r0..c.r0 + M` exist in `x`; `c.out` is
/// writable at `r·ldo + i` for `r < M`, `i < NR`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const F: u8, const VNNI: bool, const M: usize, const NR: usize>(c: Call, prefetch: bool) {
    let (w, row_bytes, x, r0, out, ldo) = c.parts();
    // SAFETY: the contract: every weight pair or block read (`p < k / 64`, `blk < k / 256`) is
    // inside rows `i < NR`, every prefetch address inside the next `NR` rows (only when
    // `prefetch`); every input read (values, scales and 16-value sums) inside rows
    // `r0..r0 + M` of `x`; every store an output of the tile; the features cover every
    // intrinsic and helper.
    unsafe {
        let k = x.k;
        let qs = x.qs.as_ptr().add(r0 * k) as *const u8;
        let xd = x.d.as_ptr().add(r0 * k / x.qb);
        // Lane `i`: weight row `i`'s chain (see the definition).
        let mut acc = [_mm_setzero_ps(); M];
        // The K-quants' offsets: rows 2h and 2h+1 in lanes 0–7 and 8–15 of `off[r][h]`.
        let mut off = [[_mm512_setzero_ps(); 2]; M];
        let xv = |r: usize, c: usize| _mm512_loadu_si512(qs.add(r * k + c) as *const __m512i);
        if F == Q4_0 || F == Q8_0 {
            let bytes = block_bytes(F);
            for p in 0..k / 64 {
                if prefetch {
                    // The same place in the next NR rows: decoding streams the weights from
                    // memory once, and the hardware prefetcher alone left it short of bandwidth.
                    for i in 0..NR {
                        let b = w.add((NR + i) * row_bytes + 2 * p * bytes);
                        _mm_prefetch::<_MM_HINT_T0>(b as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(b.add(2 * bytes - 1) as *const i8);
                    }
                }
                let mut wa = [_mm512_setzero_si512(); NR];
                let mut ws = [_mm512_setzero_si512(); NR];
                for i in 0..NR {
                    let b = w.add(i * row_bytes + 2 * p * bytes);
                    let v = if F == Q4_0 {
                        q4_0::pair_avx512(b)
                    } else {
                        q8_0::pair_avx512(b)
                    };
                    (wa[i], ws[i]) = (_mm512_abs_epi8(v), v);
                }
                // `d` leads each block (Q4_0 and Q8_0 alike).
                let b = w.add(2 * p * bytes);
                let (dwa, dwb) = (
                    row_scales::<NR>(b, row_bytes),
                    row_scales::<NR>(b.add(bytes), row_bytes),
                );
                for r in 0..M {
                    let x = xv(r, 64 * p);
                    let mut d = [_mm512_setzero_si512(); 4];
                    for i in 0..NR {
                        d[i] = dot4::<VNNI>(wa[i], sign(x, ws[i]));
                    }
                    // The pair's two blocks, in order.
                    let (ta, tb) = half_sums(d);
                    let xb = xd.add(r * k / 32 + 2 * p);
                    acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(ta), _mm_mul_ps(dwa, _mm_set1_ps(*xb)), acc[r]);
                    acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(tb), _mm_mul_ps(dwb, _mm_set1_ps(*xb.add(1))), acc[r]);
                }
            }
        } else {
            let bytes = block_bytes(F);
            for blk in 0..k / 256 {
                if prefetch {
                    for i in 0..NR {
                        let b = w.add((NR + i) * row_bytes + blk * bytes);
                        for line in (0..bytes).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(b.add(line) as *const i8);
                        }
                        _mm_prefetch::<_MM_HINT_T0>(b.add(bytes - 1) as *const i8);
                    }
                }
                let mut isum = [[_mm512_setzero_si512(); NR]; M];
                // Per weight row: the scales as 16-bit values (for the lanes), `d`, and the 16
                // offset coefficients `c_j`, two rows to a register; `e` likewise.
                let mut sc = [_mm512_setzero_si512(); NR];
                let mut dv = [0f32; 4];
                let mut cpair = [_mm512_setzero_si512(); 2];
                let mut epair = [_mm512_setzero_ps(); 2];
                for i in 0..NR {
                    let b = w.add(i * row_bytes + blk * bytes);
                    // The block's scales as 16-bit values, `c_j` and `d`, `e`: the AVX2 kernel's.
                    let (s16, c16, d, e) = super::avx2::kscales::<F>(b);
                    sc[i] = _mm512_castsi256_si512(_mm256_loadu_si256(s16.as_ptr() as *const __m256i));
                    dv[i] = d;
                    if i % 2 == 0 {
                        cpair[i / 2] = _mm512_castsi256_si512(c16);
                        epair[i / 2] = _mm512_set1_ps(e);
                    } else {
                        cpair[i / 2] = _mm512_inserti64x4::<1>(cpair[i / 2], c16);
                        epair[i / 2] = _mm512_mask_blend_ps(0xFF00, epair[i / 2], _mm512_set1_ps(e));
                    }
                }
                for p in 0..4 {
                    // 16-bit lane j of the pair takes the scale of value 2j's lane: sub-block
                    // 2p + j/16 for Q4_K and Q5_K, scale 4p + j/8 for Q2_K, Q3_K and Q6_K.
                    let idx = if k4_scales(F) {
                        _mm512_inserti64x4::<1>(_mm512_set1_epi16(2 * p as i16), _mm256_set1_epi16(2 * p as i16 + 1))
                    } else {
                        const S: [i64; 4] = [0, 0x0001_0001_0001_0001, 0x0002_0002_0002_0002, 0x0003_0003_0003_0003];
                        _mm512_add_epi16(
                            _mm512_set1_epi16(4 * p as i16),
                            _mm512_set_epi64(S[3], S[3], S[2], S[2], S[1], S[1], S[0], S[0]),
                        )
                    };
                    let mut wv = [_mm512_setzero_si512(); NR];
                    let mut s16 = [_mm512_setzero_si512(); NR];
                    for i in 0..NR {
                        let b = w.add(i * row_bytes + blk * bytes);
                        wv[i] = match F {
                            Q2K => q2k::pair_avx512(b, p),
                            Q3K => q3k::pair_avx512(b, p),
                            Q4K => q4k::pair_avx512(b, p),
                            Q5K => q5k::pair_avx512(b, p),
                            _ => q6k::pair_avx512(b, p),
                        };
                        s16[i] = _mm512_permutexvar_epi16(idx, sc[i]);
                    }
                    for r in 0..M {
                        let x = xv(r, 256 * blk + 64 * p);
                        for i in 0..NR {
                            let p = _mm512_maddubs_epi16(wv[i], x);
                            isum[r][i] = if VNNI {
                                // madd and add in one (VNNI's dpwssd does not saturate).
                                _mm512_dpwssd_epi32(isum[r][i], p, s16[i])
                            } else {
                                _mm512_add_epi32(isum[r][i], _mm512_madd_epi16(p, s16[i]))
                            };
                        }
                    }
                }
                let dv = _mm_loadu_ps(dv.as_ptr());
                for r in 0..M {
                    let dx = _mm512_set1_ps(*xd.add(r * k / 256 + blk));
                    let mut t4 = [_mm512_setzero_si512(); 4];
                    t4[..NR].copy_from_slice(&isum[r]);
                    let (a, b) = half_sums(t4);
                    let dd = _mm_mul_ps(dv, _mm512_castps512_ps128(dx));
                    // Volatile: the accumulators live in memory (touched once a block), which
                    // leaves the registers to the integer tile (the compiler spilled it).
                    let a_ = &raw mut acc[r];
                    a_.write_volatile(_mm_fmadd_ps(
                        _mm_cvtepi32_ps(_mm_add_epi32(a, b)),
                        dd,
                        a_.read_volatile(),
                    ));
                    let bs = x.bsum.as_ptr().add(((r0 + r) * k + 256 * blk) / 16);
                    let bs = _mm512_broadcast_i64x4(_mm256_loadu_si256(bs as *const __m256i));
                    for h in 0..NR.div_ceil(2) {
                        // C of rows 2h and 2h+1, summed within each 256-bit half (exact).
                        let v = _mm512_madd_epi16(cpair[h], bs);
                        let v = _mm512_add_epi32(v, _mm512_shuffle_epi32::<0b01_00_11_10>(v));
                        let v = _mm512_add_epi32(v, _mm512_shuffle_epi32::<0b10_11_00_01>(v));
                        let v = _mm512_add_epi32(v, _mm512_shuffle_i64x2::<0b10_11_00_01>(v, v));
                        let e = _mm512_mul_ps(epair[h], dx);
                        let o = &raw mut off[r][h];
                        o.write_volatile(_mm512_fmadd_ps(_mm512_cvtepi32_ps(v), e, o.read_volatile()));
                    }
                }
            }
        }
        for r in 0..M {
            let a: [f32; 4] = std::mem::transmute(acc[r]);
            for i in 0..NR {
                let o = off[r][i / 2];
                let o = if i % 2 == 0 {
                    o
                } else {
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(o, o)
                };
                *out.add(r * ldo + i) = a[i] - _mm512_cvtss_f32(o);
            }
        }
    }
}

macro_rules! entry {
    ($name:ident, $vnni:literal, $features:literal) => {
        /// [`run`] compiled for the features named here.
        ///
        /// # Safety
        /// As [`block`], with the CPU having every feature enabled here.
        #[target_feature(enable = $features)]
        unsafe fn $name<const F: u8>(c: Call) {
            // SAFETY: this function enables what `run` (inlined here) needs, VNNI included
            // exactly when `run` uses it; the call's bounds are the caller's.
            unsafe { run::<F, $vnni>(c) }
        }
    };
}
entry!(run_bw, false, "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c");
entry!(
    run_vnni,
    true,
    "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c"
);

/// Every tile over the call's weight rows × input rows, weight groups outermost so a group
/// stays in L1 while the input rows pass.
///
/// # Safety
/// As [`block`], and the CPU has VNNI when `VNNI`.
#[inline(always)]
unsafe fn run<const F: u8, const VNNI: bool>(c: Call) {
    let (rows, m) = (c.rows, c.m);
    // SAFETY: each tile covers weight rows `i..i + g <= rows` and input rows `r..r + mr <= m`
    // of the call (so `c.at(i, r)` is in range); it prefetches only when the next group of `g`
    // rows is inside the call (`i + 2·g <= rows`); the features are the contract's.
    unsafe {
        // Decoding (a few input rows) takes 4 weight rows at a time; prefill tiles are 4 input
        // rows × 3 weight rows (the K-quants: 6 × 2, whose integer tile needs more registers).
        let (nr, mr_max) = match (m <= 3, F != Q4_0 && F != Q8_0) {
            (true, _) => (4, 3),
            (false, true) => (2, 8),
            (false, false) => (3, 4),
        };
        let mut i = 0;
        while i < rows {
            let g = nr.min(rows - i);
            // Decoding prefetches the next group (when it is whole and inside this call's rows).
            let pf = m <= 3 && i + 2 * g <= rows;
            let mut r = 0;
            while r < m {
                let mr = (m - r).min(mr_max);
                let t = c.at(i, r);
                macro_rules! go {
                    ($($mm:literal, $nn:literal);*) => {
                        match (mr, g) {
                            $(($mm, $nn) => tile::<F, VNNI, $mm, $nn>(t, pf),)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 3, 1; 3, 2; 3, 3; 3, 4; 4, 1; 4, 2; 4, 3;
                    5, 1; 5, 2; 6, 1; 6, 2; 7, 1; 7, 2; 8, 1; 8, 2);
                r += mr;
            }
            i += g;
        }
    }
}

/// See [`super::block`].
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C, and VNNI when `vnni`; the call's `rows`
/// weight rows (of whole `f` blocks covering `x.k`) are readable at `c.w`, its input rows
/// `r0..r0 + m` exist, and `out` is writable at `r·ldo + i` for `r < m`, `i < rows`.
pub(super) unsafe fn block(f: QFormat, vnni: bool, c: Call) {
    // SAFETY: `run_vnni` (which enables VNNI) is called only when `vnni`, so the CPU has it
    // (the contract), `run_bw` otherwise; `F` is the format `f` the rows hold; the bounds are
    // the contract's.
    unsafe {
        if vnni {
            by_format!(f, run_vnni(c))
        } else {
            by_format!(f, run_bw(c))
        }
    }
}
