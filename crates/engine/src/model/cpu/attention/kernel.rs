//! One task of [`super::attend`]: the query rows of one KV head's `group` heads for a tile of
//! positions, in three passes (scores, softmax, weighted sum of values), written once over
//! [`Simd`] and instantiated per instruction set.

use super::simd::Simd;
use super::{Job, Lanes};
use crate::model::cpu::gemm::{reduce, LANES};
use std::cell::RefCell;

/// Calls `$f::<V, R>` for the runtime row count `$rr` (1..=6).
macro_rules! dispatch_rows {
    ($f:ident, $v:ty, $rr:expr, ($($a:expr),*)) => {
        match $rr {
            1 => $f::<$v, 1>($($a),*),
            2 => $f::<$v, 2>($($a),*),
            3 => $f::<$v, 3>($($a),*),
            4 => $f::<$v, 4>($($a),*),
            5 => $f::<$v, 5>($($a),*),
            6 => $f::<$v, 6>($($a),*),
            n => unreachable!("{n} rows"),
        }
    };
}

/// Calls `$f::<V, R, C>` for runtime rows `$rr` (1..=6) and vector chunks `$nc` (1..=4).
macro_rules! dispatch_rows_chunks {
    ($f:ident, $v:ty, $rr:expr, $nc:expr, ($($a:expr),*)) => {
        match ($rr, $nc) {
            (1, 1) => $f::<$v, 1, 1>($($a),*),
            (1, 2) => $f::<$v, 1, 2>($($a),*),
            (1, 3) => $f::<$v, 1, 3>($($a),*),
            (1, 4) => $f::<$v, 1, 4>($($a),*),
            (2, 1) => $f::<$v, 2, 1>($($a),*),
            (2, 2) => $f::<$v, 2, 2>($($a),*),
            (2, 3) => $f::<$v, 2, 3>($($a),*),
            (2, 4) => $f::<$v, 2, 4>($($a),*),
            (3, 1) => $f::<$v, 3, 1>($($a),*),
            (3, 2) => $f::<$v, 3, 2>($($a),*),
            (3, 3) => $f::<$v, 3, 3>($($a),*),
            (3, 4) => $f::<$v, 3, 4>($($a),*),
            (4, 1) => $f::<$v, 4, 1>($($a),*),
            (4, 2) => $f::<$v, 4, 2>($($a),*),
            (4, 3) => $f::<$v, 4, 3>($($a),*),
            (4, 4) => $f::<$v, 4, 4>($($a),*),
            (5, 1) => $f::<$v, 5, 1>($($a),*),
            (5, 2) => $f::<$v, 5, 2>($($a),*),
            (5, 3) => $f::<$v, 5, 3>($($a),*),
            (5, 4) => $f::<$v, 5, 4>($($a),*),
            (6, 1) => $f::<$v, 6, 1>($($a),*),
            (6, 2) => $f::<$v, 6, 2>($($a),*),
            (6, 3) => $f::<$v, 6, 3>($($a),*),
            (6, 4) => $f::<$v, 6, 4>($($a),*),
            (r, c) => unreachable!("{r} rows × {c} chunks"),
        }
    };
}

/// Per-thread buffers, reused across calls.
#[derive(Default)]
struct Scratch {
    /// Scores, then `exp(s - max)`, one row per query row.
    s: Vec<f32>,
    /// A block of keys, transposed (`d × kb`).
    kt: Vec<f32>,
    /// A block of values (`kb × d`).
    vb: Vec<f32>,
    /// Unnormalized outputs (`rows × d`).
    o: Vec<f32>,
    /// `1 / Σ e` per row.
    inv: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Rows `i0..i1` (positions `past + i`) of the query heads of KV head `h`.
///
/// # Safety
/// The pointers in `job` must be valid for the shapes it describes (`q` and `out`: `n_head × l ×
/// d` floats; `k` and `v`: `past + l` rows of `d` values for each KV head), `h` a KV head,
/// `i0 < i1 <= l`, and no other task may write the same output rows. `lanes` must be
/// [`Lanes::Scalar`] or come from [`super::lanes`] for `job.d` and an `isa` the CPU runs (see
/// [`crate::model::cpu::isa`]).
pub(super) unsafe fn task(lanes: Lanes, job: &Job, h: usize, i0: usize, i1: usize) {
    SCRATCH.with(|sc| {
        let sc = &mut *sc.borrow_mut();
        match lanes {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `lanes` returns Avx512 only for an `isa` of Avx512, which the CPU has (the
            // contract), and only when `d` is whole 16s, as `run::<F32x16>` needs; the job's
            // bounds are the caller's.
            Lanes::Avx512 => unsafe { x86::avx512(job, h, i0, i1, sc) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `lanes` returns Avx2 only for an `isa` of Avx2 or above, which the CPU has
            // (the contract), and only when `d` is whole 8s, as `run::<F32x8>` needs; the job's
            // bounds are the caller's.
            Lanes::Avx2 => unsafe { x86::avx2(job, h, i0, i1, sc) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is part of every aarch64 target (enabled at compile time), and
            // `lanes` returns Neon only when `d` is whole 4s, as `run::<F32x4>` needs; the job's
            // bounds are the caller's.
            Lanes::Neon => unsafe { run::<super::simd::F32x4>(job, h, i0, i1, sc) },
            // SAFETY: the scalar lanes need no CPU feature and take any `d`; the job's bounds are
            // the caller's.
            Lanes::Scalar => unsafe { run::<f32>(job, h, i0, i1, sc) },
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::simd::{F32x16, F32x8};
    use super::{run, Job, Scratch};

    /// [`run`] with 16 lanes.
    ///
    /// # Safety
    /// As [`run`]; the CPU has the features enabled here and `job.d` is a multiple of 16.
    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn avx512(job: &Job, h: usize, i0: usize, i1: usize, sc: &mut Scratch) {
        // SAFETY: this function enables every feature `F32x16` needs (AVX-512 F/DQ, AVX2, FMA,
        // F16C), `d` is whole 16s, and the job's bounds are the caller's.
        unsafe { run::<F32x16>(job, h, i0, i1, sc) }
    }

    /// [`run`] with 8 lanes.
    ///
    /// # Safety
    /// As [`run`]; the CPU has the features enabled here and `job.d` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn avx2(job: &Job, h: usize, i0: usize, i1: usize, sc: &mut Scratch) {
        // SAFETY: this function enables every feature `F32x8` needs (AVX2, FMA, F16C), `d` is
        // whole 8s, and the job's bounds are the caller's.
        unsafe { run::<F32x8>(job, h, i0, i1, sc) }
    }
}

/// The query rows of a task, ordered by position then head: row `r` is head `h·group + r % group`
/// at position `past + i0 + r / group`, so limits never decrease with `r`.
struct Rows<'a> {
    job: &'a Job,
    h: usize,
    i0: usize,
}

impl Rows<'_> {
    fn index(&self, r: usize) -> usize {
        let j = self.job;
        ((self.h * j.group + r % j.group) * j.l + self.i0 + r / j.group) * j.d
    }
    /// Keys visible to row `r`.
    fn limit(&self, r: usize) -> usize {
        self.job.past + self.i0 + r / self.job.group + 1
    }
    /// Query row `r`.
    ///
    /// # Safety
    /// `r < group · (i1 - i0)` for the task's `i1 <= l`, so that the row is inside `job.q`.
    unsafe fn q(&self, r: usize) -> *const f32 {
        // SAFETY: with `r` in the task (the contract), head `h·group + r % group < n_head` and
        // position `i0 + r / group < l`: the offset is inside the `n_head × l × d` queries.
        unsafe { self.job.q.add(self.index(r)) }
    }
    /// Output row `r`.
    ///
    /// # Safety
    /// As [`Rows::q`], for `job.out`.
    unsafe fn out(&self, r: usize) -> *mut f32 {
        // SAFETY: as in `q`: the offset is inside the `n_head × l × d` outputs.
        unsafe { self.job.out.add(self.index(r)) }
    }
}

/// The three passes for query rows `i0..i1` of KV head `h`'s query heads.
///
/// # Safety
/// [`task`]'s contract for `job`, `h`, `i0`, `i1`; the CPU has `V`'s features and `job.d` is a
/// multiple of `V::W` (the [`Simd`] contract).
#[inline(always)]
unsafe fn run<V: Simd>(job: &Job, h: usize, i0: usize, i1: usize, sc: &mut Scratch) {
    let (w, d) = (V::W, job.d);
    let kb = 4 * w;
    let rows = Rows { job, h, i0 };
    let nr = job.group * (i1 - i0);
    let nkeys = job.past + i1;
    let nkp = nkeys.next_multiple_of(kb);
    for (buf, len) in [
        (&mut sc.s, nr * nkp),
        (&mut sc.kt, d * kb),
        (&mut sc.vb, kb * d),
        (&mut sc.o, nr * d),
    ] {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
    let (s, kt, vb, o) = (
        sc.s.as_mut_ptr(),
        sc.kt.as_mut_ptr(),
        sc.vb.as_mut_ptr(),
        sc.o.as_mut_ptr(),
    );

    // Scores, one block of keys at a time, transposed so a register holds `w` keys.
    for b0 in (0..nkeys).step_by(kb) {
        let kc = kb.min(nkeys - b0);
        // SAFETY: keys `b0..b0 + kc <= nkeys = past + i1 <= past + l` of head `h` exist (the
        // contract); `kt` holds `d × kb` floats (resized above); `d` and `kb = 4·W` are whole
        // `W`s; `V`'s features are the contract's.
        unsafe { V::transpose_keys(job.k.row(h, b0), job.k.row_stride, kc, d, kt, kb) };
        let mut r0 = 0;
        while r0 < nr {
            let rr = V::R.min(nr - r0);
            if b0 < rows.limit(r0 + rr - 1) {
                // SAFETY: rows `r0..r0 + rr <= nr` of the task; their scores at `b0..b0 + kb <=
                // nkp` (`nkp` is whole blocks) lie inside `s` (`nr × nkp`, resized above); `kt`
                // holds the block; `V`'s features are the contract's.
                unsafe {
                    let s0 = s.add(r0 * nkp + b0);
                    dispatch_rows!(qk, V, rr, (&rows, r0, kt, kb, d, s0, nkp, job.scale))
                };
            }
            r0 += rr;
        }
    }

    // Softmax numerators in place, and each row's 1 / Σ.
    if sc.inv.len() < nr {
        sc.inv.resize(nr, 0.0);
    }
    let inv = &mut sc.inv;
    for r in 0..nr {
        // SAFETY: row `r < nr` of `s` holds `nkp` floats, and its limit (at most `nkeys`)
        // rounded up to whole `W`s stays within `nkp` (whole blocks of `4·W`); `V`'s features
        // are the contract's.
        inv[r] = unsafe { softmax::<V>(s.add(r * nkp), rows.limit(r)) };
    }

    // Weighted sum of values, one block of keys at a time.
    // SAFETY: `o` holds at least `nr × d` floats (resized above); zero bytes are 0.0.
    unsafe { std::ptr::write_bytes(o, 0, nr * d) };
    for b0 in (0..nkeys).step_by(kb) {
        let kc = kb.min(nkeys - b0);
        for j in 0..kc {
            // SAFETY: value row `b0 + j < nkeys <= past + l` of head `h` exists (the contract).
            let src = unsafe { job.v.row(h, b0 + j) };
            for t in (0..d).step_by(w) {
                // SAFETY: `t + W <= d` (`d` is whole `W`s): `W` values inside the row, and `W`
                // floats inside row `j < kb` of `vb` (`kb × d`); `V`'s features are the contract's.
                unsafe { V::load_f16(src.add(t)).store(vb.add(j * d + t)) };
            }
        }
        let cnt = |r: usize| rows.limit(r).saturating_sub(b0).min(kc);
        let mut r0 = 0;
        while r0 < nr {
            let rr = V::R.min(nr - r0);
            let (jmin, jmax) = (cnt(r0), cnt(r0 + rr - 1));
            if jmax > 0 {
                for c0 in (0..d).step_by(4 * w) {
                    let nc = ((d - c0) / w).min(4);
                    // SAFETY: row `r0 < nr`, key `b0 < nkp` of `s`; row `r0`, column `c0 < d` of
                    // `o` (`nr × d`); column `c0` of `vb`.
                    let (e0, o0, v0) = unsafe { (s.add(r0 * nkp + b0), o.add(r0 * d + c0), vb.add(c0)) };
                    if jmin > 0 {
                        // SAFETY: rows `r0..r0 + rr <= nr` of `s` and `o`, keys `0..jmin <= kc` of
                        // the block (in `s` and `vb`), columns `c0..c0 + nc·W <= d`; `V`'s
                        // features are the contract's.
                        unsafe { dispatch_rows_chunks!(pv, V, rr, nc, (e0, nkp, v0, d, 0, jmin, o0)) };
                    }
                    // Rows that see more of this block than the first one (the diagonal).
                    for i in 0..rr {
                        let ci = cnt(r0 + i);
                        if ci > jmin {
                            // SAFETY: row `r0 + i < nr` of `s` and `o`, keys `jmin..ci <= kc`,
                            // columns `c0..c0 + nc·W <= d`; `V`'s features are the contract's.
                            unsafe {
                                let (e1, o1) = (e0.add(i * nkp), o0.add(i * d));
                                dispatch_rows_chunks!(pv, V, 1, nc, (e1, nkp, v0, d, jmin, ci, o1))
                            };
                        }
                    }
                }
            }
            r0 += rr;
        }
    }

    for r in 0..nr {
        // SAFETY: row `r < nr` of `o` and output row `r` of the task (`Rows::out`'s contract);
        // `V`'s features are the contract's.
        let (src, dst, f) = unsafe { (o.add(r * d), rows.out(r), V::splat(inv[r])) };
        for t in (0..d).step_by(w) {
            // SAFETY: `t + W <= d`: inside both rows of `d` floats; `V`'s features as above.
            unsafe { V::mul(V::load(src.add(t)), f).store(dst.add(t)) };
        }
    }
}

/// Scores of rows `r0..r0+R` against the `4·W` keys of a transposed block: `s[i·nkp + j]`.
///
/// # Safety
/// Rows `r0..r0 + R` are the task's ([`Rows::q`]); `kt` holds `d × kb` floats with `kb = 4·W`;
/// `s` is writable at `i·nkp + j` for `i < R`, `j < 4·W`; the CPU has `V`'s features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn qk<V: Simd, const R: usize>(
    rows: &Rows,
    r0: usize,
    kt: *const f32,
    kb: usize,
    d: usize,
    s: *mut f32,
    nkp: usize,
    scale: f32,
) {
    // SAFETY: the contract: query rows `r0 + i` (read at `t < d`), `kt` read at `t·kb + v·W +
    // W <= d·kb`, `s` written at `i·nkp + v·W`, `v < 4`, `i < R`; `V`'s features for every
    // `V` method.
    unsafe {
        let w = V::W;
        let mut q = [std::ptr::null::<f32>(); R];
        for i in 0..R {
            q[i] = rows.q(r0 + i);
        }
        let mut acc = [[V::zero(); 4]; R];
        for t in 0..d {
            let mut k = [V::zero(); 4];
            for v in 0..4 {
                k[v] = V::load(kt.add(t * kb + v * w));
            }
            for i in 0..R {
                let qb = V::splat(*q[i].add(t));
                for v in 0..4 {
                    acc[i][v] = V::fma(qb, k[v], acc[i][v]);
                }
            }
        }
        let f = V::splat(scale);
        for i in 0..R {
            for v in 0..4 {
                V::mul(acc[i][v], f).store(s.add(i * nkp + v * w));
            }
        }
    }
}

/// `o[i] += Σ_{j0 ≤ j < j1} e[i][j] · vb[j]` over `C` vectors of the head dimension, one fused
/// multiply-add per key in order, for rows `i < R` (`e` rows `ld` apart, `o` rows `d` apart).
///
/// # Safety
/// `e` is readable at `i·ld + j`, `vb` at `j·d + c·W` (`W` floats), and `o` readable and
/// writable at `i·d + c·W` (`W` floats), for `i < R`, `j0 <= j < j1`, `c < C`; the CPU has
/// `V`'s features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv<V: Simd, const R: usize, const C: usize>(
    e: *const f32,
    ld: usize,
    vb: *const f32,
    d: usize,
    j0: usize,
    j1: usize,
    o: *mut f32,
) {
    // SAFETY: every access is one the contract names (`i < R`, `j0 <= j < j1`, `c < C`), and
    // `V`'s features are the contract's.
    unsafe {
        let w = V::W;
        let mut acc = [[V::zero(); C]; R];
        for i in 0..R {
            for c in 0..C {
                acc[i][c] = V::load(o.add(i * d + c * w));
            }
        }
        for j in j0..j1 {
            let mut v = [V::zero(); C];
            for c in 0..C {
                v[c] = V::load(vb.add(j * d + c * w));
            }
            for i in 0..R {
                let eb = V::splat(*e.add(i * ld + j));
                for c in 0..C {
                    acc[i][c] = V::fma(eb, v[c], acc[i][c]);
                }
            }
        }
        for i in 0..R {
            for c in 0..C {
                acc[i][c].store(o.add(i * d + c * w));
            }
        }
    }
}

/// Replaces `s[..limit]` by `exp(s - max)` (and the rest of its last vector by zeros); returns
/// `1 / Σ`.
///
/// # Safety
/// `s` is readable and writable for `limit` rounded up to whole `W`s; the CPU has `V`'s
/// features.
#[inline(always)]
unsafe fn softmax<V: Simd>(s: *mut f32, limit: usize) -> f32 {
    // SAFETY: vector accesses start at `j < limit` and end by `limit` rounded up to whole `W`s,
    // scalar ones below `limit`: all inside the contract's span; `V`'s features are the
    // contract's.
    unsafe {
        let w = V::W;
        let full = limit / w * w;
        let mut mv = V::splat(f32::NEG_INFINITY);
        for j in (0..full).step_by(w) {
            mv = V::max(mv, V::load(s.add(j)));
        }
        let mut m = V::hmax(mv);
        for j in full..limit {
            let x = *s.add(j);
            if x > m {
                m = x;
            }
        }
        let mv = V::splat(m);
        for j in (0..limit).step_by(w) {
            let e = exp_v(V::sub(V::load(s.add(j)), mv));
            let e = if j + w > limit { V::keep_first(e, limit - j) } else { e };
            e.store(s.add(j));
        }
        let mut acc = [0f32; LANES];
        let mut j = 0;
        while j + LANES <= limit {
            for l in 0..LANES {
                acc[l] += *s.add(j + l);
            }
            j += LANES;
        }
        for l in 0..limit - j {
            acc[l] += *s.add(j + l);
        }
        1.0 / reduce(&acc)
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n · LN2_HI` is exact (Cephes).
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` polynomial for `e^r - 1 - r` on `|r| ≤ ln2 / 2`, highest degree first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `e^x` for `x ≤ 0` (larger inputs are not needed here), about 1 ulp; inputs below ≈ -87.3
/// give `e^-87.3` rather than a subnormal or zero.
///
/// # Safety
/// The CPU has `V`'s features (it touches no memory).
#[inline(always)]
unsafe fn exp_v<V: Simd>(x: V) -> V {
    // SAFETY: register arithmetic only, with `V`'s features (the contract).
    unsafe {
        let x = V::max(x, V::splat(-87.336_54));
        let n = V::round_even(V::mul(x, V::splat(LOG2E)));
        let r = V::fma(n, V::splat(-LN2_HI), x);
        let r = V::fma(n, V::splat(-LN2_LO), r);
        let mut y = V::splat(P[0]);
        for &c in &P[1..] {
            y = V::fma(y, r, V::splat(c));
        }
        let y = V::add(V::fma(y, V::mul(r, r), r), V::splat(1.0));
        V::mul(y, V::pow2(n))
    }
}

/// The softmax exponential, as every path computes it.
pub fn exp(x: f32) -> f32 {
    // SAFETY: the scalar lanes need no CPU feature, and `exp_v` touches no memory.
    unsafe { exp_v::<f32>(x) }
}
