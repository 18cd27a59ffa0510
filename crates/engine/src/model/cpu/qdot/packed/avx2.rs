//! Prefill with AVX2 (machines without AVX-512: most laptops): the same repacked weights as the
//! AVX-512 kernel ([`super`]), one 256-bit register holding the same 4 values of 8 rows. Without
//! VNNI, one `vpmaddubsw` meets them with 4 broadcast input bytes, giving each row's products as
//! two 16-bit pair sums, and those sums are added in 16 bits over a run of steps short enough
//! not to overflow, then widened once by `vpmaddwd`, with the K-quants' integer scale as its
//! second operand (`sc · (a + b)` per lane: exact). The f32 steps of the definition then run 8
//! outputs at a time, in the definition's order: the same bits as every other path.
//!
//! Bounds (weights unsigned, `|qx| ≤ 127`): a pair sum is at most `2 · 15 · 127 = 3,810` for the
//! 4-bit formats, so 8 steps (a Q4_0 block, a Q4_K sub-block) stay below 32,767; Q5_K's
//! `2 · 31 · 127 = 7,874` (and Q3_K's and Q2_K's, smaller) allow 4 steps (a 16-value group, one
//! scale), Q6_K's `2 · 63 · 127 = 16,002` 2. Q8_0 as unsigned `q + 128` would overflow one pair
//! sum, so this kernel repacks it signed and multiplies `|q|` by `qx · sign(q)` (`vpsignb`; at
//! most `2 · 128 · 127 = 32,512` a pair, widened every step).
//!
//! With AVX-VNNI (the 256-bit `vpdpbusd` of Intel's laptop cores since Alder Lake), one
//! instruction adds 4 products a lane straight into 32 bits: Q4_0 and Q8_0 sum a block that way,
//! Q4_K a 16-value group (at most `16 · 15 · 127 = 30,480`, so one `vpdpwssd` then applies its
//! scale, as on AVX-512); the other K-quants keep the 16-bit sums.
//!
//! The helpers are `#[inline(always)]` into [`run`] and [`run_vnni`] (through `body!`), whose
//! `#[target_feature]`s enable AVX2, FMA and F16C (and AVX-VNNI); [`block`] is only called when
//! the CPU has them.

// Index loops mirror the layout they fill; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use super::super::{Call, QFormat, QuantRows, Q2K, Q3K, Q4K, Q4_0, Q5K, Q8_0};
use super::{clear, drive, repack_scales, Dims, Packed, GROUP};
use crate::model::cpu::formats::{q2k, q3k, q4_0, q4k, q5k, q6k, q8_0};
use std::arch::x86_64::*;

/// Input rows from which a call is worth repacking its weights on AVX2 (1B Q4_K_M forced to AVX2,
/// prompts of 4 and 6 tokens: the tiles 4% faster at 4, the repacked kernel 3-10% at 6, 20% at 8).
pub const MIN_M: usize = 6;
/// Input rows per tile (each holds 2 input rows × 16 weight rows in 16-bit sums, and as many
/// 32-bit totals for the K-quants: 8 of the 16 registers).
const MR: usize = 2;

/// The 8 × 8 transpose of 32-bit values: value `j` of input `i` becomes value `i` of output `j`.
///
/// # Safety
/// The CPU has AVX2 (it touches no memory).
#[inline(always)]
unsafe fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        let mut t = [_mm256_setzero_si256(); 8];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
        }
        // Within each 128-bit lane: u[4h + c] holds value c (lane 0) and c + 4 (lane 1) of rows
        // 4h..4h + 4.
        let mut u = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let t = &t[4 * h..];
            u[4 * h] = _mm256_unpacklo_epi64(t[0], t[2]);
            u[4 * h + 1] = _mm256_unpackhi_epi64(t[0], t[2]);
            u[4 * h + 2] = _mm256_unpacklo_epi64(t[1], t[3]);
            u[4 * h + 3] = _mm256_unpackhi_epi64(t[1], t[3]);
        }
        let mut o = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            o[c] = _mm256_permute2x128_si256::<0x20>(u[c], u[4 + c]);
            o[4 + c] = _mm256_permute2x128_si256::<0x31>(u[c], u[4 + c]);
        }
        o
    }
}

/// Repacks weight rows `0..rows` (at most [`GROUP`]) at `w` into group `g` of `p`, rows past
/// `rows` as zeros: the layout of the AVX-512 kernel's repacking (Q8_0's values signed here).
///
/// # Safety
/// The CPU has AVX2 and F16C; `rows` rows of `row_bytes` bytes (whole blocks of `F` covering
/// `k`) are readable at `w`; `p`'s vectors hold group `g`.
#[inline(always)]
unsafe fn repack<const F: u8>(p: &mut Packed, g: usize, w: *const u8, row_bytes: usize, rows: usize, k: usize) {
    let pw = clear::<F>(p, g, rows, k);
    let bb = row_bytes / Dims::of(F, k).nb;
    // SAFETY: every read is inside row `i < rows` (32-value runs `c < k / 32` of blocks `< nb`);
    // every store writes the 32 bytes of rows `8h..8h + 8` at step `8c + j < k / 4` of the group
    // (inside its `GROUP · k` bytes); the features are the contract's.
    unsafe {
        for h in 0..rows.div_ceil(8) {
            for c in 0..k / 32 {
                // Each row's 32 values (8 runs of 4), then the same run of the 8 rows together.
                let mut v = [_mm256_setzero_si256(); 8];
                for i in 0..(rows - 8 * h).min(8) {
                    let row = w.add((8 * h + i) * row_bytes);
                    v[i] = match F {
                        Q4_0 => _mm256_add_epi8(q4_0::block_avx2(row.add(c * bb)), _mm256_set1_epi8(8)),
                        Q8_0 => q8_0::block_avx2(row.add(c * bb)),
                        Q2K => q2k::sub_avx2(row.add(c / 8 * bb), c % 8),
                        Q3K => q3k::sub_avx2(row.add(c / 8 * bb), c % 8),
                        Q4K => q4k::sub_avx2(row.add(c / 8 * bb), c % 8),
                        Q5K => q5k::sub_avx2(row.add(c / 8 * bb), c % 8),
                        _ => q6k::sub_avx2(row.add(c / 8 * bb), c % 8),
                    };
                }
                let o = transpose8(v);
                for j in 0..8 {
                    _mm256_storeu_si256(pw.add(((8 * c + j) * GROUP + 8 * h) * 4) as *mut __m256i, o[j]);
                }
            }
        }
        repack_scales::<F>(p, g, w, row_bytes, rows, k);
    }
}

/// One tile: input rows `r0..r0 + M` × the 16 weight rows `16·hh..` of group `g`, the outputs of
/// the group's first `rows` weight rows among them written at `out[r·ldo + i]` (`i` counted from
/// the group's first row).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; group `g` of `p` is repacked for `x.k`; input rows
/// `r0..r0 + M` exist in `x`; `out` is writable at `r·ldo + i` for `r < M`, `i < rows <= GROUP`;
/// `hh < 2`; with `VNNI`, the CPU has AVX-VNNI.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const F: u8, const M: usize, const VNNI: bool>(
    p: &Packed,
    g: usize,
    x: &QuantRows,
    r0: usize,
    out: *mut f32,
    ldo: usize,
    rows: usize,
    hh: usize,
) {
    let k = x.k;
    let Dims { nb, ns, no } = Dims::of(F, k);
    // SAFETY: the contract: every read of `p` is inside group `g` (steps `< k / 4`, scale groups
    // `< ns`, blocks `< nb`, offset blocks `< no`, rows `16·hh + 8·h + 0..8 < GROUP`), every input read inside rows
    // `r0..r0 + M` (values, scales, 16-value sums), every store a written output; the features
    // cover the rest.
    unsafe {
        let row0 = 16 * hh;
        let pw = p.w.as_ptr().add(g * GROUP * k);
        // Q4_0 and Q8_0 have no `sc`, `coef` or `e` (empty vectors): those pointers are formed
        // with `wrapping_add` and never read for them.
        let sc = p.sc.as_ptr().wrapping_add(g * GROUP * ns + row0);
        let coef = p.coef.as_ptr().wrapping_add(g * GROUP * 8 * no + row0);
        let pd = p.d.as_ptr().add(g * GROUP * nb + row0);
        let pe = p.e.as_ptr().wrapping_add(g * GROUP * no + row0);
        let qs = x.qs.as_ptr().add(r0 * k) as *const u8;
        let xd = x.d.as_ptr().add(r0 * k / x.qb);
        let bsum = x.bsum.as_ptr().add(r0 * k / 16);
        let xb = |r: usize, step: usize| _mm256_set1_epi32((qs.add(r * k + 4 * step) as *const i32).read_unaligned());
        let wv =
            |step: usize, h: usize| _mm256_loadu_si256(pw.add((step * GROUP + row0 + 8 * h) * 4) as *const __m256i);
        let ld = |v: *const f32, h: usize| _mm256_loadu_ps(v.add(8 * h));
        let ldi = |v: *const i32, h: usize| _mm256_loadu_si256(v.add(8 * h) as *const __m256i);
        // `steps` steps of 4 values from `step`, as 16-bit pair sums per input row and half.
        let sums = |step: usize, steps: usize| {
            let mut s = [[_mm256_setzero_si256(); 2]; M];
            for q in step..step + steps {
                let (w0, w1) = (wv(q, 0), wv(q, 1));
                for r in 0..M {
                    let x = xb(r, q);
                    s[r][0] = _mm256_add_epi16(s[r][0], _mm256_maddubs_epi16(w0, x));
                    s[r][1] = _mm256_add_epi16(s[r][1], _mm256_maddubs_epi16(w1, x));
                }
            }
            s
        };
        // `steps` steps of 4 values from `step` added into `t`, 32 bits a lane: with AVX-VNNI one
        // `vpdpbusd` a step, without it `vpmaddubsw` widened by `vpmaddwd` every step (Q8_0,
        // whose pair sums cannot be added in 16 bits). Q8_0 as `|q| · (qx · sign(q))`.
        let dots = |mut t: [[__m256i; 2]; M], step: usize, steps: usize| {
            for q in step..step + steps {
                let (w0, w1) = (wv(q, 0), wv(q, 1));
                let (a0, a1) = if F == Q8_0 {
                    (_mm256_abs_epi8(w0), _mm256_abs_epi8(w1))
                } else {
                    (w0, w1)
                };
                for r in 0..M {
                    let x = xb(r, q);
                    let (x0, x1) = if F == Q8_0 {
                        (_mm256_sign_epi8(x, w0), _mm256_sign_epi8(x, w1))
                    } else {
                        (x, x)
                    };
                    if VNNI {
                        t[r][0] = _mm256_dpbusd_avx_epi32(t[r][0], a0, x0);
                        t[r][1] = _mm256_dpbusd_avx_epi32(t[r][1], a1, x1);
                    } else {
                        let one = _mm256_set1_epi16(1);
                        t[r][0] = _mm256_add_epi32(t[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(a0, x0), one));
                        t[r][1] = _mm256_add_epi32(t[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(a1, x1), one));
                    }
                }
            }
            t
        };
        let mut acc = [[_mm256_setzero_ps(); 2]; M];
        let mut off = [[_mm256_setzero_ps(); 2]; M];
        for b in 0..nb {
            let mut t = [[_mm256_setzero_si256(); 2]; M];
            match F {
                Q4_0 | Q8_0 => {
                    // One block: 8 steps (Q4_0 without VNNI in 16 bits, widened once), then for
                    // Q4_0 `T_b = Σ q · qx − 8 · Σ qx`.
                    t = if F == Q4_0 && !VNNI {
                        sums(8 * b, 8).map(|s| s.map(|s| _mm256_madd_epi16(s, _mm256_set1_epi16(1))))
                    } else {
                        dots(t, 8 * b, 8)
                    };
                    if F == Q4_0 {
                        for r in 0..M {
                            let bs = bsum.add(r * k / 16 + 2 * b);
                            let o = _mm256_set1_epi32((*bs as i32 + *bs.add(1) as i32) << 3);
                            for h in 0..2 {
                                t[r][h] = _mm256_sub_epi32(t[r][h], o);
                            }
                        }
                    }
                }
                Q4K if VNNI => {
                    // 16 groups of 4 steps, each group's sum (below 2^15) times its sub-block's
                    // scale (below 64, the lane's high half zero) by one vpdpwssd.
                    for j in 0..16 {
                        let u = dots([[_mm256_setzero_si256(); 2]; M], 64 * b + 4 * j, 4);
                        for h in 0..2 {
                            let v = ldi(sc.add((b * 8 + j / 2) * GROUP), h);
                            for r in 0..M {
                                t[r][h] = _mm256_dpwssd_avx_epi32(t[r][h], u[r][h], v);
                            }
                        }
                    }
                }
                Q4K => {
                    // 8 sub-blocks of 8 steps, each widened with its scale (below 64) in both
                    // 16-bit halves of a lane.
                    for j in 0..8 {
                        let s = sums(64 * b + 8 * j, 8);
                        for h in 0..2 {
                            let v = ldi(sc.add((b * 8 + j) * GROUP), h);
                            let v = _mm256_or_si256(v, _mm256_slli_epi32::<16>(v));
                            for r in 0..M {
                                t[r][h] = _mm256_add_epi32(t[r][h], _mm256_madd_epi16(s[r][h], v));
                            }
                        }
                    }
                }
                Q2K | Q3K | Q5K => {
                    // 16 groups of 4 steps, each widened with its scale (Q5_K: its sub-block's,
                    // below 64; Q2_K, Q3_K: its own, 4 bits or signed 16 bits) in both 16-bit
                    // halves of a lane.
                    let per = ns / nb;
                    for j in 0..16 {
                        let s = sums(64 * b + 4 * j, 4);
                        for h in 0..2 {
                            let v = ldi(sc.add((b * per + j * per / 16) * GROUP), h);
                            let v = _mm256_or_si256(v, _mm256_slli_epi32::<16>(v));
                            for r in 0..M {
                                t[r][h] = _mm256_add_epi32(t[r][h], _mm256_madd_epi16(s[r][h], v));
                            }
                        }
                    }
                }
                _ => {
                    // 16 groups of 16 values (signed scales), each as two runs of 2 steps.
                    for j in 0..16 {
                        for half in 0..2 {
                            let s = sums(64 * b + 4 * j + 2 * half, 2);
                            for h in 0..2 {
                                let v = ldi(sc.add((b * 16 + j) * GROUP), h);
                                let v = _mm256_or_si256(
                                    _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)),
                                    _mm256_slli_epi32::<16>(v),
                                );
                                for r in 0..M {
                                    t[r][h] = _mm256_add_epi32(t[r][h], _mm256_madd_epi16(s[r][h], v));
                                }
                            }
                        }
                    }
                }
            }
            if F == Q4_0 || F == Q8_0 {
                for r in 0..M {
                    let dx = _mm256_set1_ps(*xd.add(r * k / 32 + b));
                    for h in 0..2 {
                        let tb = _mm256_cvtepi32_ps(t[r][h]);
                        acc[r][h] = _mm256_fmadd_ps(tb, _mm256_mul_ps(ld(pd.add(b * GROUP), h), dx), acc[r][h]);
                    }
                }
            } else {
                for r in 0..M {
                    let dx = _mm256_set1_ps(*xd.add(r * k / 256 + b));
                    let bs = bsum.add(r * k / 16 + 16 * b) as *const i32;
                    for h in 0..2 {
                        // `C_b`: the offsets' coefficients in 16-bit pairs against pairs of sums.
                        let mut c = _mm256_setzero_si256();
                        for tt in 0..8 {
                            let cf = ldi(coef.add((b * 8 + tt) * GROUP), h);
                            c = _mm256_add_epi32(
                                c,
                                _mm256_madd_epi16(cf, _mm256_set1_epi32(bs.add(tt).read_unaligned())),
                            );
                        }
                        let tb = _mm256_cvtepi32_ps(t[r][h]);
                        acc[r][h] = _mm256_fmadd_ps(tb, _mm256_mul_ps(ld(pd.add(b * GROUP), h), dx), acc[r][h]);
                        let cb = _mm256_cvtepi32_ps(c);
                        off[r][h] = _mm256_fmadd_ps(cb, _mm256_mul_ps(ld(pe.add(b * GROUP), h), dx), off[r][h]);
                    }
                }
            }
        }
        for r in 0..M {
            for h in 0..2 {
                let first = row0 + 8 * h;
                let lanes = rows.saturating_sub(first).min(8);
                if lanes == 0 {
                    continue;
                }
                let mut v = [0f32; 8];
                _mm256_storeu_ps(v.as_mut_ptr(), _mm256_sub_ps(acc[r][h], off[r][h]));
                std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(r * ldo + first), lanes);
            }
        }
    }
}

/// [`block`]'s work for format `$f`, with AVX-VNNI when `$vnni`, written out inside [`run`] and
/// [`run_vnni`] (a macro, not a function: closures take the target features of the function
/// they are written in, and the tiles' intrinsics must inline into them).
macro_rules! body {
    ($f:ident, $vnni:expr, $c:expr) => {{
        let c: Call = $c;
        let k = c.x.k;
        // SAFETY: `drive` hands `repack` rows of the call and a group it sized, and the tiles
        // input rows `x0..x0 + mr` inside the call's, outputs inside its, and a group just
        // repacked; the features are the enclosing function's.
        unsafe {
            drive::<$f>(
                c,
                MR,
                |p, g, w, rows| repack::<$f>(p, g, w, c.row_bytes, rows, k),
                |p, g, x0, out, rows, mr| {
                    for hh in 0..rows.div_ceil(16) {
                        match mr {
                            1 => tile::<$f, 1, $vnni>(p, g, c.x, x0, out, c.ldo, rows, hh),
                            _ => tile::<$f, MR, $vnni>(p, g, c.x, x0, out, c.ldo, rows, hh),
                        }
                    }
                },
            )
        }
    }};
}

/// The AVX2 kernel of [`block`].
///
/// # Safety
/// As [`block`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run<const F: u8>(c: Call) {
    body!(F, false, c)
}

/// The AVX2 kernel of [`block`] with AVX-VNNI.
///
/// # Safety
/// As [`block`], and the CPU has AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn run_vnni<const F: u8>(c: Call) {
    body!(F, true, c)
}

/// See [`super::super::block`]: the call's outputs through the repacked weights.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and AVX-VNNI when `vnni`; the call's `rows` weight rows (of
/// whole `f` blocks covering `x.k`) are readable at `c.w`, its input rows `r0..r0 + m` exist, and
/// `out` is writable at `r·ldo + i` for `r < m`, `i < rows`.
pub(in super::super) unsafe fn block(f: QFormat, vnni: bool, c: Call) {
    // SAFETY: the contract is `run`'s (and `run_vnni`'s when `vnni`), with `F` the format `f`
    // that the rows hold.
    unsafe {
        if vnni {
            by_format!(f, run_vnni(c))
        } else {
            by_format!(f, run(c))
        }
    }
}
