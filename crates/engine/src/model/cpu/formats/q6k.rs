//! Q6_K: blocks of 256 values, value `(d · sc) · (q − 32)` with a 6-bit `q`, a signed 8-bit
//! scale `sc` per 16 values and one f16 `d`.
//!
//! Layout (210 bytes): the 4 low bits of each value in `ql` (128 bytes at 0), its 2 high bits
//! in `qh` (64 bytes at 128), the 16 scales at 192, `d` at 208. Each half of 128 values takes 64
//! bytes of `ql` and 32 of `qh`; within a half, sub-block `t` (of 4, 32 values each) is the low
//! (`t < 2`) or high nibbles of `ql` bytes `32·(t & 1)..`, with bits `2t..2t + 2` of `qh`. The
//! integer path uses `q` as the weight integer, and the offset of 32 as its offsets.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::{half_at, KScales};

/// Bytes of a block.
pub const BYTES: usize = 210;
/// Values of a block.
pub const VALUES: usize = 256;
/// Byte offset of the low 4 bits `ql`.
pub const QL: usize = 0;
/// Byte offset of the high 2 bits `qh`.
pub const QH: usize = 128;
/// Byte offset of the 16 signed 8-bit scales.
pub const SCALES: usize = 192;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 208;

/// `(d · sc) · (q - 32)` per sub-block of 16.
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let (ql, rest) = blk.split_at(QH);
        let (qh, rest) = rest.split_at(SCALES - QH);
        let (sc, d) = rest.split_at(D - SCALES);
        let d = half_at(d, 0);
        for half in 0..2 {
            let ys = &mut ys[half * 128..][..128];
            let sc = &sc[8 * half..];
            let ql = &ql[64 * half..];
            let qh = &qh[32 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                ys[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                ys[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                ys[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                ys[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
avx2_instance!(decode_avx2, decode);

/// The weight integers `q` (the offset of 32 apart) of pair `p` (sub-blocks `2p`, `2p + 1`) of
/// the block `blk`.
#[inline(always)]
pub fn pair_values(blk: &[u8], p: usize) -> [i8; 64] {
    let mut w = [0i8; 64];
    for h in 0..2 {
        let s = 2 * p + h;
        let (half, t) = (s / 4, s % 4);
        let ql = &blk[QL + 64 * half + 32 * (t & 1)..][..32];
        let qh = &blk[QH + 32 * half..][..32];
        for j in 0..32 {
            let lo = (ql[j] >> (4 * (t / 2))) & 0xF;
            let hi = (qh[j] >> (2 * t)) & 3;
            w[32 * h + j] = (lo | hi << 4) as i8;
        }
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values take their signed scale, the
/// offsets `c_j = 32 · sc_j` (the offset of 32 taken out of `q`) with `e = d`.
#[inline(always)]
pub fn int_scales(blk: &[u8]) -> KScales {
    let sc = |j: usize| blk[SCALES + j] as i8 as i32;
    let d = half_at(blk, D);
    KScales {
        sc: std::array::from_fn(sc),
        c: std::array::from_fn(|j| 32 * sc(j)),
        d,
        e: d,
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, sub_avx2, Q6K};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{bits_avx2, bits_avx512, f16_ptr, Block};
    use super::{BYTES, D, QH, QL, SCALES};
    use std::arch::x86_64::*;

    /// Sub-block `s` (32 values) takes two scales, one per 16 values.
    pub struct Q6K;
    impl Block for Q6K {
        const BYTES: usize = BYTES;
        const SUBS: usize = 8;
        #[inline(always)]
        unsafe fn decode(p: *const u8, s: usize) -> (__m512, __m512) {
            // SAFETY: with `s < 8`, reads `ql` below byte 128, `qh` in 128..192, the two scales in
            // 192..208 and `d` at 208..210 of the 210-byte block, all readable by the contract,
            // with the contract's CPU features.
            unsafe {
                let (half, t) = (s / 4, s % 4);
                let ql = p.add(QL + 64 * half + 32 * (t & 1));
                let qh = p.add(QH + 32 * half);
                let sc = p.add(SCALES + 8 * half + 2 * t);
                let d = f16_ptr(p.add(D));
                // The 6-bit values of all 32 positions as bytes: (4 bits of ql) | (2 bits of qh) << 4,
                // minus 32. Shifts are 16-bit wide; the masks drop what crosses a byte.
                let l = _mm256_loadu_si256(ql as *const __m256i);
                let l = _mm256_and_si256(
                    _mm256_srl_epi16(l, _mm_cvtsi32_si128(4 * (t / 2) as i32)),
                    _mm256_set1_epi8(0x0F),
                );
                let h = _mm256_loadu_si256(qh as *const __m256i);
                let h = if t <= 2 {
                    _mm256_sll_epi16(h, _mm_cvtsi32_si128((4 - 2 * t) as i32))
                } else {
                    _mm256_srli_epi16::<2>(h)
                };
                let h = _mm256_and_si256(h, _mm256_set1_epi8(0x30));
                let q = _mm256_sub_epi8(_mm256_or_si256(l, h), _mm256_set1_epi8(32));
                let values = |i: usize, q: __m128i| {
                    // (d · sc) · q, as the reference decoder groups it.
                    let ds = d * (*sc.add(i) as i8) as f32;
                    _mm512_mul_ps(_mm512_set1_ps(ds), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)))
                };
                (
                    values(0, _mm256_castsi256_si128(q)),
                    values(1, _mm256_extracti128_si256::<1>(q)),
                )
            }
        }
    }

    /// Sub-block `s` of the block `b`: 32 unsigned 6-bit values, for the integer path.
    ///
    /// # Safety
    /// The 210 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: for `s < 8` (the contract), reads 32 bytes of `ql` ending by byte 128 and 32 of
        // `qh` ending by byte 192 of the 210-byte block, with AVX2 (the contract).
        unsafe {
            let (half, t) = (s / 4, s % 4);
            let ql = bits_avx2(b.add(QL + 64 * half + 32 * (t & 1)), 4 * (t / 2), 0x0F);
            let qh = bits_avx2(b.add(QH + 32 * half), 2 * t, 3);
            _mm256_or_si256(ql, _mm256_slli_epi16::<4>(qh))
        }
    }

    /// Pair `p` of the block `b`: the 64 unsigned 6-bit values (the offset of 32 apart), for
    /// the integer path.
    ///
    /// # Safety
    /// The 210 bytes of the block are readable, `p < 4`; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8, p: usize) -> __m512i {
        // SAFETY: for `p < 4` (the contract), reads 64 bytes of `ql` ending by byte 128 and 32 of
        // `qh` ending by byte 192 of the 210-byte block, with the contract's features.
        unsafe {
            let half = p / 2;
            let t = 2 * (p % 2);
            let ql = _mm512_loadu_si512(b.add(QL + 64 * half) as *const __m512i);
            let ql = _mm512_and_si512(
                _mm512_srl_epi16(ql, _mm_cvtsi32_si128(4 * (p % 2) as i32)),
                _mm512_set1_epi8(0x0F),
            );
            let qh = bits_avx512(b.add(QH + 32 * half), 2 * t, 2 * t + 2, 3);
            _mm512_or_si512(ql, _mm512_slli_epi16::<4>(qh))
        }
    }
}
