//! Which SIMD instruction set the kernels use, chosen once at run time.
//!
//! Release binaries are built for baseline x86-64 (no `-C target-cpu=native`), so every SIMD path
//! is a `#[target_feature]` function picked here from what the CPU reports. All paths compute the
//! same arithmetic bit for bit; the choice only changes speed. `FREEZE_ATTN_ISA=portable|avx2`
//! lowers the choice (to measure or test a path on a machine that has a better one); it can never
//! raise it above what the CPU supports. `avx2` means plain AVX2 (as on AMD before Zen 4 and Intel
//! before its 12th generation); `avx2-vnni` AVX2 with AVX-VNNI where the CPU has it (Intel's
//! laptop cores since Alder Lake), which the AVX2 kernels then use ([`avx_vnni`]).
//!
//! The soundness of every SIMD path rests on one invariant: an [`Isa`] above `Portable` that
//! reaches a kernel came from [`isa`] or `available` (tests), both bounded by what `detect`
//! found on this CPU. `Avx2` therefore means the CPU has AVX2, FMA and F16C, and `Avx512` means
//! it also has AVX-512 F/BW/DQ/VL. The `unsafe` blocks that enter `#[target_feature]` code
//! rely on it; a public entry point that takes an `Isa` from outside lowers it with
//! [`supported`] first.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust; the reference every SIMD path must equal.
    Portable,
    /// AVX2 + FMA + F16C (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/DQ/VL on top of AVX2.
    Avx512,
}

/// The best instruction set this CPU supports (lowered by `FREEZE_ATTN_ISA`).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = supported();
        match requested().as_deref() {
            Some("portable") => Isa::Portable,
            Some("avx2") | Some("avx2-vnni") => best.min(Isa::Avx2),
            _ => best,
        }
    })
}

/// Whether the AVX2 kernels use AVX-VNNI (the 256-bit `vpdpbusd`): the CPU has it and
/// `FREEZE_ATTN_ISA=avx2` does not ask for plain AVX2. Detected once.
pub fn avx_vnni() -> bool {
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if requested().as_deref() != Some("avx2") {
            return std::arch::is_x86_feature_detected!("avxvnni");
        }
        false
    })
}

/// What `FREEZE_ATTN_ISA` asks for, if set.
fn requested() -> Option<String> {
    std::env::var("FREEZE_ATTN_ISA").ok()
}

/// Every instruction set this CPU can run, for tests that compare paths.
#[cfg(test)]
pub fn available() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= supported())
        .collect()
}

/// The best instruction set the CPU has (not lowered by `FREEZE_ATTN_ISA`), detected once.
pub fn supported() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(detect)
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Isa::Avx512;
            }
            return Isa::Avx2;
        }
    }
    Isa::Portable
}
