//! The AVX-512 kernels of [`super::block`]: 16-lane accumulators, 4 × 6 register tiles (the
//! bulk of a prefill, in assembly) and smaller tiles for the edges and for decoding.

use super::{LANES, ROW_BLOCK};
use std::arch::x86_64::*;

/// Most values of `k` the AVX-512 kernel takes in one pass when `k` is longer than twice this:
/// a group of 6 weight rows' part (12 KiB) and a tile of 4 input rows' part (8 KiB) stay in L1.
const K_PART: usize = 512;

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
///
/// # Safety
/// Rows `0..MR` of `x` and `0..NR` of `w` (each `k` floats, `k` floats apart, `k` a multiple
/// of 16) are readable; `out` is writable at `i·ldo + j` for `i < MR`, `j < NR`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn tile<const MR: usize, const NR: usize>(x: *const f32, w: *const f32, k: usize, out: *mut f32, ldo: usize) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let mut c = 0;
    while c < k {
        let mut wv = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            // SAFETY: `c + 16 <= k` (k is whole 16s): 16 floats inside weight row `j < NR`.
            wv[j] = unsafe { _mm512_loadu_ps(w.add(j * k + c)) };
        }
        for i in 0..MR {
            // SAFETY: `c + 16 <= k`: 16 floats inside input row `i < MR`.
            let xv = unsafe { _mm512_loadu_ps(x.add(i * k + c)) };
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
        c += LANES;
    }
    for i in 0..MR {
        for j in 0..NR {
            // SAFETY: `i < MR`, `j < NR`: inside the tile's outputs, writable by the contract.
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
    // SAFETY: the two stores fill `sums` (32 floats) exactly; each copy reads 6 of them
    // (`6·3 + 6 <= 32`) and writes row `i < 4` of the 4 × 6 outputs the caller vouches for.
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
///
/// # Safety
/// The CPU has AVX-512 F/DQ, AVX2 and FMA; `x` holds `m` rows and `w` `nw` rows of `k`
/// floats (`k` a multiple of 16); `out` is writable at `r·ldo + j` for `r < m`, `j < nw`.
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
                    // SAFETY: input rows `r..r + 4 <= m4 <= m` and weight rows `j..j + nr <= nw`
                    // exist, and their outputs lie inside the caller's `out`.
                    let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                    // SAFETY: those rows and outputs are the tile's (as above); the features
                    // are this function's.
                    unsafe { dispatch_tile!(tile, 4, nr, (xp, wp, k, op, ldo)) };
                }
                continue;
            }
            if part == k {
                // One pass: each tile's accumulators go straight to the output.
                for r in (r0..r1).step_by(4) {
                    let mut acc = [_mm512_setzero_ps(); 24];
                    // SAFETY: input rows `r..r + 4 <= m` and weight rows `j..j + 6 <= nw`, all
                    // `k` floats readable, `k` whole 16s.
                    unsafe { tile_4x6(x.add(r * k), w.add(j * k), k, k, &mut acc) };
                    // SAFETY: outputs of rows `r..r + 4`, columns `j..j + 6`: inside `out`.
                    unsafe { store_4x6(&acc, out.add(r * ldo + j), ldo) };
                }
                continue;
            }
            let mut accs = [[_mm512_setzero_ps(); 24]; ROW_BLOCK / 2 / 4];
            for k0 in (0..k).step_by(part.max(LANES)) {
                let len = part.min(k - k0);
                for (t, acc) in accs[..tiles].iter_mut().enumerate() {
                    // SAFETY: tile `t` covers input rows `r0 + 4t..r0 + 4t + 4 <= r1 <= m` and
                    // weight rows `j..j + 6 <= nw`; values `k0..k0 + len <= k` of each (`len`
                    // whole 16s, as `part` and `k` are).
                    unsafe {
                        let (xp, wp) = (x.add((r0 + 4 * t) * k + k0), w.add(j * k + k0));
                        tile_4x6(xp, wp, k, len, acc)
                    };
                }
            }
            for (t, acc) in accs[..tiles].iter().enumerate() {
                // SAFETY: outputs of rows `r0 + 4t..r0 + 4t + 4`, columns `j..j + 6`: inside `out`.
                unsafe { store_4x6(acc, out.add((r0 + 4 * t) * ldo + j), ldo) };
            }
        }
    }
    let mr = m - m4;
    if mr > 0 {
        let nr_max = if mr == 3 { 6 } else { 8 };
        for j in (0..nw).step_by(nr_max) {
            let nr = (nw - j).min(nr_max);
            // SAFETY: the last `mr` input rows `m4..m`, weight rows `j..j + nr <= nw`, and
            // their outputs inside `out`; the features are this function's.
            unsafe {
                let (xp, wp, op) = (x.add(m4 * k), w.add(j * k), out.add(m4 * ldo + j));
                dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo))
            };
        }
    }
}
