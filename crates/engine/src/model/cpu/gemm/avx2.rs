//! The AVX2 kernels of [`super::block`]: each 16-lane accumulator as two 8-lane halves, 3 × 4
//! register tiles (in assembly) and smaller tiles for the edges and for decoding.

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
///
/// # Safety
/// Rows `0..MR` of `x` and `0..NR` of `w` (each `k` floats, `k` floats apart, `k` a multiple
/// of 16) are readable; `out` is writable at `i·ldo + j` for `i < MR`, `j < NR`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const MR: usize, const NR: usize>(x: *const f32, w: *const f32, k: usize, out: *mut f32, ldo: usize) {
    let mut halves = [[[_mm256_setzero_ps(); NR]; MR]; 2];
    for (half, acc) in halves.iter_mut().enumerate() {
        let mut c = half * 8;
        while c < k {
            let mut wv = [_mm256_setzero_ps(); NR];
            for j in 0..NR {
                // SAFETY: `c + 8 <= k` (`c` is `half·8` plus whole 16s, `k` whole 16s): 8
                // floats inside weight row `j < NR`.
                wv[j] = unsafe { _mm256_loadu_ps(w.add(j * k + c)) };
            }
            for i in 0..MR {
                // SAFETY: `c + 8 <= k`: 8 floats inside input row `i < MR`.
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
            // SAFETY: `i < MR`, `j < NR`: inside the tile's outputs, writable by the contract.
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
            // SAFETY: `i < 3`, `j < 4`: inside the tile's outputs, writable by the contract.
            unsafe { *out.add(i * ldo + j) = hsum(halves[0][i * 4 + j], halves[1][i * 4 + j]) };
        }
    }
}

/// See [`super::block`]: tiles of 3 input rows × 4 weight rows, ordered as in AVX-512's
/// block; the last `m % 3` rows (decoding) against 6 weight rows at a time.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds `m` rows and `w` `nw` rows of `k` floats (`k` a
/// multiple of 16); `out` is writable at `r·ldo + j` for `r < m`, `j < nw`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
    let m3 = m / 3 * 3;
    let rows = ROW_BLOCK / 3 * 3;
    for r0 in (0..m3).step_by(rows) {
        let r1 = (r0 + rows).min(m3);
        for j in (0..nw).step_by(4) {
            let nr = (nw - j).min(4);
            for r in (r0..r1).step_by(3) {
                // SAFETY: input rows `r..r + 3 <= m3 <= m` and weight rows `j..j + nr <= nw`
                // exist, and their outputs lie inside the caller's `out`.
                let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                if nr == 4 {
                    // SAFETY: the 3 × 4 rows and outputs above; the features are this function's.
                    unsafe { tile_3x4(xp, wp, k, op, ldo) };
                } else {
                    // SAFETY: the 3 × `nr` rows and outputs above; the features are this
                    // function's.
                    unsafe { dispatch_tile!(tile, 3, nr, (xp, wp, k, op, ldo)) };
                }
            }
        }
    }
    let mr = m - m3;
    if mr > 0 {
        for j in (0..nw).step_by(6) {
            let nr = (nw - j).min(6);
            // SAFETY: the last `mr` input rows `m3..m`, weight rows `j..j + nr <= nw`, and
            // their outputs inside `out`; the features are this function's.
            unsafe {
                let (xp, wp, op) = (x.add(m3 * k), w.add(j * k), out.add(m3 * ldo + j));
                dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo))
            };
        }
    }
}
