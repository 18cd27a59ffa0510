//! The dot products behind every matrix product: `out[r][j] = dot(x[r], w[j])` over f32 rows.
//!
//! The arithmetic, identical on every path: 16 lanes over `k` (lane `l` accumulates the products
//! of `k ≡ l (mod 16)` with one fused multiply-add each, in increasing `k`), then the lanes are
//! summed in a fixed tree: halves (`a[i] + a[i+8]`), quarters, pairs, and the last two. That tree
//! is exactly "add the upper half of the register to the lower half" repeated, so AVX-512 does it
//! in four steps and AVX2 (two 8-lane registers per accumulator) in the same four.
//!
//! The kernels differ only in how many dot products run side by side (register tiles of
//! `MR` input rows × `NR` weight rows), which changes speed, never a value.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::isa::Isa;

/// Lanes of the dot product; `k` must be a multiple of this.
pub const LANES: usize = 16;

/// Input rows the SIMD kernels sweep per group of weight rows: the block (`ROW_BLOCK × k` f32)
/// stays in L2 while the weight rows, in L1, meet all of it.
#[cfg(target_arch = "x86_64")]
const ROW_BLOCK: usize = 64;

/// Most values of `k` the AVX-512 kernel takes in one pass when `k` is longer than twice this:
/// a group of 6 weight rows' part (12 KiB) and a tile of 4 input rows' part (8 KiB) stay in L1.
#[cfg(target_arch = "x86_64")]
const K_PART: usize = 512;

/// The reference dot product (the definition the SIMD kernels reproduce).
#[inline]
pub fn dot(x: &[f32], w: &[f32]) -> f32 {
    debug_assert!(x.len() == w.len() && x.len().is_multiple_of(LANES));
    let mut acc = [0f32; LANES];
    for (xc, wc) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = xc[l].mul_add(wc[l], acc[l]);
        }
    }
    reduce(&acc)
}

/// The fixed reduction tree of the 16 lanes.
#[inline(always)]
pub fn reduce(a: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// `out[r * ldo + j] = dot(x[r], w[j])` for `r < m`, `j < nw`; `x` holds `m` rows and `w` holds
/// `nw` rows, each `k` long and contiguous.
///
/// # Safety
/// `out` must be valid for writes at every `r * ldo + j` above, and no other thread may access
/// those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn block(isa: Isa, x: &[f32], m: usize, w: &[f32], nw: usize, k: usize, out: *mut f32, ldo: usize) {
    assert!(k.is_multiple_of(LANES) && x.len() >= m * k && w.len() >= nw * k);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is only Avx512/Avx2 when the CPU has those features; bounds asserted above.
        Isa::Avx512 => unsafe { avx512::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        _ => {
            for r in 0..m {
                for j in 0..nw {
                    // SAFETY: the caller guarantees `out` is valid here.
                    unsafe { *out.add(r * ldo + j) = dot(&x[r * k..][..k], &w[j * k..][..k]) };
                }
            }
        }
    }
}

/// Calls `$f::<MR, NR>` for the runtime `($mr, $nr)`, both at most the given maxima.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch_tile {
    ($f:ident, $mr:expr, $nr:expr, ($($args:expr),*)) => {
        match ($mr, $nr) {
            (1, 1) => $f::<1, 1>($($args),*),
            (1, 2) => $f::<1, 2>($($args),*),
            (1, 3) => $f::<1, 3>($($args),*),
            (1, 4) => $f::<1, 4>($($args),*),
            (1, 5) => $f::<1, 5>($($args),*),
            (1, 6) => $f::<1, 6>($($args),*),
            (1, 7) => $f::<1, 7>($($args),*),
            (1, 8) => $f::<1, 8>($($args),*),
            (2, 1) => $f::<2, 1>($($args),*),
            (2, 2) => $f::<2, 2>($($args),*),
            (2, 3) => $f::<2, 3>($($args),*),
            (2, 4) => $f::<2, 4>($($args),*),
            (2, 5) => $f::<2, 5>($($args),*),
            (2, 6) => $f::<2, 6>($($args),*),
            (2, 7) => $f::<2, 7>($($args),*),
            (2, 8) => $f::<2, 8>($($args),*),
            (3, 1) => $f::<3, 1>($($args),*),
            (3, 2) => $f::<3, 2>($($args),*),
            (3, 3) => $f::<3, 3>($($args),*),
            (3, 4) => $f::<3, 4>($($args),*),
            (3, 5) => $f::<3, 5>($($args),*),
            (3, 6) => $f::<3, 6>($($args),*),
            (4, 1) => $f::<4, 1>($($args),*),
            (4, 2) => $f::<4, 2>($($args),*),
            (4, 3) => $f::<4, 3>($($args),*),
            (4, 4) => $f::<4, 4>($($args),*),
            (4, 5) => $f::<4, 5>($($args),*),
            (4, 6) => $f::<4, 6>($($args),*),
            _ => unreachable!("tile {}x{}", $mr, $nr),
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{K_PART, LANES, ROW_BLOCK};
    use std::arch::x86_64::*;

    /// The reduction tree of one 16-lane accumulator.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub fn hsum(v: __m512) -> f32 {
        let h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }

    /// [`hsum`] of 16 accumulators at once: lane `t` of the result is `hsum(a[t])`, bit for bit.
    /// Each step adds the same pairs of values as [`hsum`] (upper half onto lower half), with
    /// the halves of several accumulators gathered into one register: 15 additions instead of
    /// 64 for the 16 sums.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub fn hsum16(a: &[__m512; 16]) -> __m512 {
        // The last step leaves result `4e + c` in lane `4c + e`; feeding the accumulators in that
        // (self-inverse) order puts every result in its own lane.
        let at = |t: usize| a[t % 4 * 4 + t / 4];
        // a[i] + a[i+8]: 256-bit halves of two accumulators side by side.
        let h: [__m512; 8] = std::array::from_fn(|u| {
            let (x, y) = (at(2 * u), at(2 * u + 1));
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
            )
        });
        // h[i] + h[i+4]: 128-bit halves of four accumulators.
        let q: [__m512; 4] = std::array::from_fn(|v| {
            let (x, y) = (h[2 * v], h[2 * v + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
            )
        });
        // q[i] + q[i+2] within each 128-bit lane.
        let p: [__m512; 2] = std::array::from_fn(|w| {
            let (x, y) = (q[2 * w], q[2 * w + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(x, y),
                _mm512_shuffle_ps::<0b11_10_11_10>(x, y),
            )
        });
        // p[0] + p[1].
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(p[0], p[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(p[0], p[1]),
        )
    }

    /// One `MR × NR` tile over the whole of `k`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn tile<const MR: usize, const NR: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        let mut c = 0;
        while c < k {
            let mut wv = [_mm512_setzero_ps(); NR];
            for j in 0..NR {
                wv[j] = unsafe { _mm512_loadu_ps(w.add(j * k + c)) };
            }
            for i in 0..MR {
                let xv = unsafe { _mm512_loadu_ps(x.add(i * k + c)) };
                for j in 0..NR {
                    acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
                }
            }
            c += LANES;
        }
        for i in 0..MR {
            for j in 0..NR {
                unsafe { *out.add(i * ldo + j) = hsum(acc[i][j]) };
            }
        }
    }

    /// The 4 × 6 tile, the bulk of a prefill, in assembly: compiled from [`tile`], some of its 24
    /// accumulators are spilled to the stack every step (which halved the speed). Continues the
    /// accumulators `acc` (accumulator `i * 6 + j` for input row `i`, weight row `j`) over `len`
    /// values of rows `stride` floats apart: the same fused multiply-adds in the same order as
    /// [`tile`], so a row split into consecutive parts gives the same values as a whole one.
    ///
    /// # Safety
    /// `len` floats of rows `0..4` of `x` and `0..6` of `w` are readable; `len % 16 == 0`.
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn tile_4x6(x: *const f32, w: *const f32, stride: usize, len: usize, acc: &mut [__m512; 24]) {
        // SAFETY: reads `len / 16` chunks of 16 floats from each of the 4 + 6 rows (caller's
        // bounds); accumulator `i * 6 + j` is zmm(i * 6 + j), input row i is zmm(24 + i).
        unsafe {
            std::arch::asm!(
                "test {n}, {n}",
                "jz 3f",
                "2:",
                "vmovups zmm24, zmmword ptr [{x}]",
                "vmovups zmm25, zmmword ptr [{x}+{xs}]",
                "vmovups zmm26, zmmword ptr [{x}+{xs}*2]",
                "vmovups zmm27, zmmword ptr [{x3}]",
                "vmovups zmm28, zmmword ptr [{w}]",
                "vfmadd231ps zmm0, zmm24, zmm28",
                "vfmadd231ps zmm6, zmm25, zmm28",
                "vfmadd231ps zmm12, zmm26, zmm28",
                "vfmadd231ps zmm18, zmm27, zmm28",
                "vmovups zmm29, zmmword ptr [{w}+{ws}]",
                "vfmadd231ps zmm1, zmm24, zmm29",
                "vfmadd231ps zmm7, zmm25, zmm29",
                "vfmadd231ps zmm13, zmm26, zmm29",
                "vfmadd231ps zmm19, zmm27, zmm29",
                "vmovups zmm28, zmmword ptr [{w}+{ws}*2]",
                "vfmadd231ps zmm2, zmm24, zmm28",
                "vfmadd231ps zmm8, zmm25, zmm28",
                "vfmadd231ps zmm14, zmm26, zmm28",
                "vfmadd231ps zmm20, zmm27, zmm28",
                "vmovups zmm29, zmmword ptr [{w3}]",
                "vfmadd231ps zmm3, zmm24, zmm29",
                "vfmadd231ps zmm9, zmm25, zmm29",
                "vfmadd231ps zmm15, zmm26, zmm29",
                "vfmadd231ps zmm21, zmm27, zmm29",
                "vmovups zmm28, zmmword ptr [{w3}+{ws}]",
                "vfmadd231ps zmm4, zmm24, zmm28",
                "vfmadd231ps zmm10, zmm25, zmm28",
                "vfmadd231ps zmm16, zmm26, zmm28",
                "vfmadd231ps zmm22, zmm27, zmm28",
                "vmovups zmm29, zmmword ptr [{w3}+{ws}*2]",
                "vfmadd231ps zmm5, zmm24, zmm29",
                "vfmadd231ps zmm11, zmm25, zmm29",
                "vfmadd231ps zmm17, zmm26, zmm29",
                "vfmadd231ps zmm23, zmm27, zmm29",
                "add {x}, 64",
                "add {x3}, 64",
                "add {w}, 64",
                "add {w3}, 64",
                "dec {n}",
                "jnz 2b",
                "3:",
                x = inout(reg) x => _,
                x3 = inout(reg) x.add(3 * stride) => _,
                w = inout(reg) w => _,
                w3 = inout(reg) w.add(3 * stride) => _,
                xs = in(reg) stride * 4,
                ws = in(reg) stride * 4,
                n = inout(reg) len / LANES => _,
                inout("zmm0") acc[0],
                inout("zmm1") acc[1],
                inout("zmm2") acc[2],
                inout("zmm3") acc[3],
                inout("zmm4") acc[4],
                inout("zmm5") acc[5],
                inout("zmm6") acc[6],
                inout("zmm7") acc[7],
                inout("zmm8") acc[8],
                inout("zmm9") acc[9],
                inout("zmm10") acc[10],
                inout("zmm11") acc[11],
                inout("zmm12") acc[12],
                inout("zmm13") acc[13],
                inout("zmm14") acc[14],
                inout("zmm15") acc[15],
                inout("zmm16") acc[16],
                inout("zmm17") acc[17],
                inout("zmm18") acc[18],
                inout("zmm19") acc[19],
                inout("zmm20") acc[20],
                inout("zmm21") acc[21],
                inout("zmm22") acc[22],
                inout("zmm23") acc[23],
                out("zmm24") _,
                out("zmm25") _,
                out("zmm26") _,
                out("zmm27") _,
                out("zmm28") _,
                out("zmm29") _,
                options(nostack, readonly),
            );
        }
    }

    /// Writes the 24 sums of a 4 × 6 tile's accumulators to `out` (row `i` at `out + i·ldo`).
    ///
    /// # Safety
    /// `out` is valid for 4 rows × 6 columns.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn store_4x6(acc: &[__m512; 24], out: *mut f32, ldo: usize) {
        // Outputs in row order: 16 sums, then the last 8 (with 8 unused lanes).
        let mut sums = [0f32; 32];
        let zero = _mm512_setzero_ps();
        let first = std::array::from_fn(|t| acc[t]);
        let rest = std::array::from_fn(|t| if t < 8 { acc[16 + t] } else { zero });
        unsafe {
            _mm512_storeu_ps(sums.as_mut_ptr(), hsum16(&first));
            _mm512_storeu_ps(sums.as_mut_ptr().add(16), hsum16(&rest));
            for i in 0..4 {
                std::ptr::copy_nonoverlapping(sums.as_ptr().add(6 * i), out.add(i * ldo), 6);
            }
        }
    }

    /// See [`super::block`]. Input rows 4 at a time against weight rows 6 at a time: for each
    /// group of 6 weight rows, every 4-row tile of a block of input rows, `k` in parts of at
    /// most [`K_PART`] values (the group's part in L1 while every tile of the block passes over
    /// it, the block in L2). The last `m % 4` rows (decoding: 1 to 3 rows) against 8 weight rows
    /// at a time (6 for 3 rows).
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
        let m4 = m / 4 * 4;
        // Accumulators of a block's tiles stay in L1 with the parts they meet: fewer rows per
        // block when `k` is split.
        let (part, rows) = if k <= 2 * K_PART {
            (k, ROW_BLOCK)
        } else {
            (K_PART, ROW_BLOCK / 2)
        };
        for r0 in (0..m4).step_by(rows) {
            let r1 = (r0 + rows).min(m4);
            let tiles = (r1 - r0) / 4;
            for j in (0..nw).step_by(6) {
                let nr = (nw - j).min(6);
                if nr < 6 {
                    for r in (r0..r1).step_by(4) {
                        let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                        unsafe { dispatch_tile!(tile, 4, nr, (xp, wp, k, op, ldo)) };
                    }
                    continue;
                }
                if part == k {
                    // One pass: each tile's accumulators go straight to the output.
                    for r in (r0..r1).step_by(4) {
                        let mut acc = [_mm512_setzero_ps(); 24];
                        unsafe { tile_4x6(x.add(r * k), w.add(j * k), k, k, &mut acc) };
                        unsafe { store_4x6(&acc, out.add(r * ldo + j), ldo) };
                    }
                    continue;
                }
                let mut accs = [[_mm512_setzero_ps(); 24]; ROW_BLOCK / 2 / 4];
                for k0 in (0..k).step_by(part.max(LANES)) {
                    let len = part.min(k - k0);
                    for (t, acc) in accs[..tiles].iter_mut().enumerate() {
                        let (xp, wp) = unsafe { (x.add((r0 + 4 * t) * k + k0), w.add(j * k + k0)) };
                        unsafe { tile_4x6(xp, wp, k, len, acc) };
                    }
                }
                for (t, acc) in accs[..tiles].iter().enumerate() {
                    unsafe { store_4x6(acc, out.add((r0 + 4 * t) * ldo + j), ldo) };
                }
            }
        }
        let mr = m - m4;
        if mr > 0 {
            let nr_max = if mr == 3 { 6 } else { 8 };
            for j in (0..nw).step_by(nr_max) {
                let nr = (nw - j).min(nr_max);
                let (xp, wp, op) = unsafe { (x.add(m4 * k), w.add(j * k), out.add(m4 * ldo + j)) };
                unsafe { dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo)) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{LANES, ROW_BLOCK};
    use std::arch::x86_64::*;

    /// The reduction tree of one 16-lane accumulator held as two 8-lane halves.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn hsum(lo: __m256, hi: __m256) -> f32 {
        let h = _mm256_add_ps(lo, hi);
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }

    /// One `MR × NR` tile: the low 8 lanes of every accumulator over all of `k`, then the high 8
    /// (16 registers do not hold both halves of a useful tile).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const MR: usize, const NR: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut halves = [[[_mm256_setzero_ps(); NR]; MR]; 2];
        for (half, acc) in halves.iter_mut().enumerate() {
            let mut c = half * 8;
            while c < k {
                let mut wv = [_mm256_setzero_ps(); NR];
                for j in 0..NR {
                    wv[j] = unsafe { _mm256_loadu_ps(w.add(j * k + c)) };
                }
                for i in 0..MR {
                    let xv = unsafe { _mm256_loadu_ps(x.add(i * k + c)) };
                    for j in 0..NR {
                        acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
                    }
                }
                c += LANES;
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                unsafe { *out.add(i * ldo + j) = hsum(halves[0][i][j], halves[1][i][j]) };
            }
        }
    }

    /// The 3 × 4 tile in assembly (the compiled [`tile`] spills accumulators): for each half,
    /// the same fused multiply-adds in the same order as [`tile`], so the same values.
    ///
    /// # Safety
    /// Rows `0..3` of `x` and `0..4` of `w` (`k` floats apart) are readable; `out` as in `tile`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_3x4(x: *const f32, w: *const f32, k: usize, out: *mut f32, ldo: usize) {
        let mut halves = [[_mm256_setzero_ps(); 12]; 2];
        for (half, acc) in halves.iter_mut().enumerate() {
            // SAFETY: reads 8 of every 16 floats of the 3 + 4 rows (caller's bounds); accumulator
            // `i * 4 + j` is ymm(i * 4 + j), input row i is ymm(12 + i).
            unsafe {
                std::arch::asm!(
                    "vxorps xmm0, xmm0, xmm0",
                    "vxorps xmm1, xmm1, xmm1",
                    "vxorps xmm2, xmm2, xmm2",
                    "vxorps xmm3, xmm3, xmm3",
                    "vxorps xmm4, xmm4, xmm4",
                    "vxorps xmm5, xmm5, xmm5",
                    "vxorps xmm6, xmm6, xmm6",
                    "vxorps xmm7, xmm7, xmm7",
                    "vxorps xmm8, xmm8, xmm8",
                    "vxorps xmm9, xmm9, xmm9",
                    "vxorps xmm10, xmm10, xmm10",
                    "vxorps xmm11, xmm11, xmm11",
                    "test {n}, {n}",
                    "jz 3f",
                    "2:",
                    "vmovups ymm12, ymmword ptr [{x}]",
                    "vmovups ymm13, ymmword ptr [{x}+{xs}]",
                    "vmovups ymm14, ymmword ptr [{x}+{xs}*2]",
                    "vmovups ymm15, ymmword ptr [{w}]",
                    "vfmadd231ps ymm0, ymm12, ymm15",
                    "vfmadd231ps ymm4, ymm13, ymm15",
                    "vfmadd231ps ymm8, ymm14, ymm15",
                    "vmovups ymm15, ymmword ptr [{w}+{ws}]",
                    "vfmadd231ps ymm1, ymm12, ymm15",
                    "vfmadd231ps ymm5, ymm13, ymm15",
                    "vfmadd231ps ymm9, ymm14, ymm15",
                    "vmovups ymm15, ymmword ptr [{w}+{ws}*2]",
                    "vfmadd231ps ymm2, ymm12, ymm15",
                    "vfmadd231ps ymm6, ymm13, ymm15",
                    "vfmadd231ps ymm10, ymm14, ymm15",
                    "vmovups ymm15, ymmword ptr [{w3}]",
                    "vfmadd231ps ymm3, ymm12, ymm15",
                    "vfmadd231ps ymm7, ymm13, ymm15",
                    "vfmadd231ps ymm11, ymm14, ymm15",
                    "add {x}, 64",
                    "add {w}, 64",
                    "add {w3}, 64",
                    "dec {n}",
                    "jnz 2b",
                    "3:",
                    x = inout(reg) x.add(half * 8) => _,
                    w = inout(reg) w.add(half * 8) => _,
                    w3 = inout(reg) w.add(3 * k + half * 8) => _,
                    xs = in(reg) k * 4,
                    ws = in(reg) k * 4,
                    n = inout(reg) k / LANES => _,
                    out("ymm0") acc[0],
                    out("ymm1") acc[1],
                    out("ymm2") acc[2],
                    out("ymm3") acc[3],
                    out("ymm4") acc[4],
                    out("ymm5") acc[5],
                    out("ymm6") acc[6],
                    out("ymm7") acc[7],
                    out("ymm8") acc[8],
                    out("ymm9") acc[9],
                    out("ymm10") acc[10],
                    out("ymm11") acc[11],
                    out("ymm12") _,
                    out("ymm13") _,
                    out("ymm14") _,
                    out("ymm15") _,
                    options(nostack, readonly),
                );
            }
        }
        for i in 0..3 {
            for j in 0..4 {
                unsafe { *out.add(i * ldo + j) = hsum(halves[0][i * 4 + j], halves[1][i * 4 + j]) };
            }
        }
    }

    /// See [`super::block`]: tiles of 3 input rows × 4 weight rows, ordered as in AVX-512's
    /// block; the last `m % 3` rows (decoding) against 6 weight rows at a time.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
        let m3 = m / 3 * 3;
        let rows = ROW_BLOCK / 3 * 3;
        for r0 in (0..m3).step_by(rows) {
            let r1 = (r0 + rows).min(m3);
            for j in (0..nw).step_by(4) {
                let nr = (nw - j).min(4);
                for r in (r0..r1).step_by(3) {
                    let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                    if nr == 4 {
                        unsafe { tile_3x4(xp, wp, k, op, ldo) };
                    } else {
                        unsafe { dispatch_tile!(tile, 3, nr, (xp, wp, k, op, ldo)) };
                    }
                }
            }
        }
        let mr = m - m3;
        if mr > 0 {
            for j in (0..nw).step_by(6) {
                let nr = (nw - j).min(6);
                let (xp, wp, op) = unsafe { (x.add(m3 * k), w.add(j * k), out.add(m3 * ldo + j)) };
                unsafe { dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 / 1013.0 - 0.5) * 1.7)
            .collect()
    }

    #[test]
    fn every_path_equals_the_reference_bit_for_bit_for_every_tile_shape() {
        for (m, nw, k) in [
            (1, 1, 16),
            (1, 9, 48),
            (2, 17, 64),
            (3, 13, 96),
            (5, 7, 32),
            (7, 19, 160),
            (13, 23, 576),
            (12, 12, 32),
            (70, 25, 48),
            (131, 14, 64),
            (9, 13, 1040),
            (70, 7, 2096),
        ] {
            let x = data(m * k, 1);
            let w = data(nw * k, 2);
            let want: Vec<f32> = (0..m * nw)
                .map(|i| dot(&x[i / nw * k..][..k], &w[i % nw * k..][..k]))
                .collect();
            for isa in available() {
                let mut got = vec![f32::NAN; m * nw];
                // SAFETY: `got` has m × nw elements, ldo = nw.
                unsafe { block(isa, &x, m, &w, nw, k, got.as_mut_ptr(), nw) };
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{isa:?} m={m} nw={nw} k={k}: every path must compute the reference arithmetic"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_sums_at_once_equal_sixteen_reductions() {
        if !available().contains(&Isa::Avx512) {
            return;
        }
        use std::arch::x86_64::*;
        let v = data(256, 5);
        let accs: Vec<[f32; LANES]> = v.chunks_exact(LANES).map(|c| c.try_into().unwrap()).collect();
        // SAFETY: the CPU has AVX-512 (checked above); loads and stores stay within the arrays.
        let got = unsafe {
            let a: [__m512; 16] = std::array::from_fn(|t| _mm512_loadu_ps(accs[t].as_ptr()));
            let mut out = [0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), avx512::hsum16(&a));
            out
        };
        for t in 0..16 {
            assert_eq!(got[t].to_bits(), reduce(&accs[t]).to_bits(), "lane {t}");
        }
    }

    #[test]
    fn the_reference_is_a_dot_product() {
        let x = data(576, 3);
        let w = data(576, 4);
        let exact: f64 = x.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((dot(&x, &w) as f64 - exact).abs() < 1e-4);
    }
}
