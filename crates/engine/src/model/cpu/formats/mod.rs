//! The weight formats the CPU kernels read: each format's block code in one file (or one per
//! family where the code is shared), and [`FORMATS`], the one table of what serves each format.
//!
//! A format's file holds its block layout (sizes and byte offsets), its scale unpacking, its
//! portable decoder to f32 (the definition: the operations of candle and ggml in their order),
//! the same decoder for AVX2 (as whole rows, or as blocks in registers, [`BlockAvx2`]) and as
//! AVX-512 sub-blocks ([`Block`]), and, for the formats with an integer path (Q4_0, Q8_0 and the
//! K-quants), its weight integers and the scales that path needs. The formats without one (f16,
//! bf16, Q4_1, Q5_0, Q5_1) decode in registers in the fused decoding kernels of both instruction
//! sets.
//! The kernels hold the loops and tiles and take these pieces: `dequant` (whole rows, for the
//! prefill panels), `gemv` (fused decoding), `qdot` (the integer path). So the decoding and the
//! prefill kernels decode a format with the same code, which is what keeps them bit for bit
//! equal.
//!
//! The format files depend on nothing above them; this file names, for each format, the kernel
//! instances that serve it, and the list of supported types that the GGUF loader's refusal and
//! [`crate::error::EngineError::UnsupportedTensorType`]'s text are derived from.

#[cfg(target_arch = "x86_64")]
use super::dequant::avx2_row;
use super::gemv::Gemv;
use super::qdot::QFormat;
use candle_core::quantized::k_quants::{BlockQ2K, BlockQ3K, BlockQ5K};
use candle_core::quantized::GgmlDType;

/// `Some(e)` on x86-64, where the SIMD paths exist; `None` (and `e` not compiled) elsewhere.
#[cfg(target_arch = "x86_64")]
macro_rules! x86 {
    ($e:expr) => {
        Some($e)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! x86 {
    ($e:expr) => {
        None
    };
}

/// A format's portable decoder compiled for AVX2, as `pub fn $name` (a [`RowDecoder`]). The
/// compiler vectorizes it; Rust never contracts `a * b + c` into a fused multiply-add, so the
/// values are the portable decoder's.
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_instance {
    ($name:ident, $portable:path) => {
        pub fn $name(bytes: &[u8], out: &mut [f32]) {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn inner(bytes: &[u8], out: &mut [f32]) {
                $portable(bytes, out)
            }
            // SAFETY: `decoder` hands this function out only for `Isa::Avx2` or above, which the
            // crate only holds when the CPU has AVX2, FMA and F16C (see `isa`); `inner` itself is
            // safe code.
            unsafe { inner(bytes, out) }
        }
    };
}

mod candle;
mod dense;
pub mod q2k;
pub mod q3k;
pub mod q4_0;
mod q4_1;
pub mod q4k;
mod q5_0;
mod q5_1;
pub mod q5k;
pub mod q6k;
pub mod q8_0;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dense::f16_to_f32;

#[cfg(target_arch = "x86_64")]
pub use x86::{f16_ptr, Block, BlockAvx2};

/// Decodes `out.len()` consecutive values starting at block-aligned byte offset `bytes`.
pub type RowDecoder = fn(bytes: &[u8], out: &mut [f32]);

/// One supported weight format and the kernels that serve it.
#[derive(Debug)]
pub struct Format {
    pub dtype: GgmlDType,
    /// ggml's name for the type, as errors list it.
    pub name: &'static str,
    /// The portable decoder: the definition every other path of the format reproduces.
    pub decode: RowDecoder,
    /// The decoder compiled for AVX2, where the format has one.
    pub decode_avx2: Option<RowDecoder>,
    /// Whole rows decoded with the format's [`Block`] (AVX-512), so that prefill panels see
    /// the values the fused decoding kernel computes.
    pub decode_avx512: Option<RowDecoder>,
    /// The fused decoding kernel over the format's [`Block`] (AVX-512).
    pub gemv_avx512: Option<Gemv>,
    /// The fused decoding kernel over the format's [`BlockAvx2`] (AVX2).
    pub gemv_avx2: Option<Gemv>,
    /// The integer path, for the formats that have one (see `qdot`).
    pub int8: Option<QFormat>,
}

/// One [`Format`]: its type and name, its portable decoder, and optionally its AVX2 row decoder,
/// its [`BlockAvx2`] (for the AVX2 fused decoding kernel), its [`Block`] (for the AVX-512 row
/// decoder and fused decoding kernel) and its integer format.
macro_rules! entry {
    ($dtype:ident, $name:literal, $decode:expr $(, avx2: $avx2:expr)? $(, avx2_gemv: $block2:ty)?
     $(, avx512: $block:ty)? $(, int8: $q:ident)?) => {
        Format {
            dtype: GgmlDType::$dtype,
            name: $name,
            decode: $decode,
            decode_avx2: entry!(@opt $(x86!($avx2))?),
            decode_avx512: entry!(@opt $(x86!(super::dequant::avx512_row::<$block>))?),
            gemv_avx512: entry!(@opt $(x86!(super::gemv::avx512::gemv::<$block>))?),
            gemv_avx2: entry!(@opt $(x86!(super::gemv::avx2::gemv::<$block2>))?),
            int8: entry!(@opt $(Some(QFormat::$q))?),
        }
    };
    (@opt) => { None };
    (@opt $e:expr) => { $e };
}

/// Every supported weight format, in the order errors list them. Q8_1 and Q8_K are absent:
/// ggml quantizes activations to them (the other side of its dot products); they are not
/// weight formats, and a file holding weights in them is refused.
pub static FORMATS: [Format; 13] = [
    entry!(F32, "F32", dense::f32s),
    entry!(F16, "F16", dense::f16s, avx2: dense::f16_avx2, avx2_gemv: dense::F16, avx512: dense::F16),
    entry!(BF16, "BF16", dense::bf16s, avx2: dense::bf16_avx2, avx2_gemv: dense::Bf16, avx512: dense::Bf16),
    entry!(Q4_0, "Q4_0", q4_0::decode, avx2: q4_0::decode_avx2, avx512: q4_0::Q4_0, int8: Q4_0),
    entry!(Q4_1, "Q4_1", q4_1::decode, avx2: avx2_row::<q4_1::Q4_1>, avx2_gemv: q4_1::Q4_1, avx512: q4_1::Q4_1),
    entry!(Q5_0, "Q5_0", q5_0::decode, avx2: avx2_row::<q5_0::Q5_0>, avx2_gemv: q5_0::Q5_0, avx512: q5_0::Q5_0),
    entry!(Q5_1, "Q5_1", q5_1::decode, avx2: avx2_row::<q5_1::Q5_1>, avx2_gemv: q5_1::Q5_1, avx512: q5_1::Q5_1),
    entry!(Q8_0, "Q8_0", q8_0::decode, avx2: q8_0::decode_avx2, avx512: q8_0::Q8_0, int8: Q8_0),
    entry!(Q2K, "Q2_K", candle::blocks::<BlockQ2K>, int8: Q2K),
    entry!(Q3K, "Q3_K", candle::blocks::<BlockQ3K>, int8: Q3K),
    entry!(Q4K, "Q4_K", q4k::decode, avx2: q4k::decode_avx2, avx512: q4k::Q4K, int8: Q4K),
    entry!(Q5K, "Q5_K", candle::blocks::<BlockQ5K>, int8: Q5K),
    entry!(Q6K, "Q6_K", q6k::decode, avx2: q6k::decode_avx2, avx512: q6k::Q6K, int8: Q6K),
];

/// The format of `dtype`, or `None` for types that are not weight formats.
pub fn of(dtype: GgmlDType) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.dtype == dtype)
}

/// Whether weights of type `dtype` can be loaded (the GGUF loader refuses the others).
pub fn is_supported(dtype: GgmlDType) -> bool {
    of(dtype).is_some()
}

/// Whether weights of the type ggml names `name` (`Q4_K`, `F16`) can be loaded.
pub fn is_supported_name(name: &str) -> bool {
    FORMATS.iter().any(|f| f.name == name)
}

/// The supported types' names, comma-separated, for error messages.
pub fn supported_names() -> String {
    FORMATS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// What the integer path needs of a K-quant block besides its weight integers, per 16-value
/// group `j` of its 256 values (see `qdot`'s definition).
#[derive(Debug)]
pub struct KScales {
    /// The integer scale of group `j`'s values.
    pub sc: [i32; 16],
    /// The offset coefficient `c_j` (met with the inputs' 16-value sums).
    pub c: [i32; 16],
    /// The scale of the integer lanes.
    pub d: f32,
    /// The scale `e` of the offsets.
    pub e: f32,
}

/// The f16 at byte `i` of `b`, as f32 (exact).
#[inline(always)]
pub fn half_at(b: &[u8], i: usize) -> f32 {
    dense::f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// What the K-quant formats' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::KScales;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// Quantizes 8 rows of 256 spread values to `dtype` (a K-quant of `bytes`-byte blocks) with
    /// candle and checks that the integer path's weight integers (`pair_values`) and scales
    /// (`int_scales`) give candle's decoded values bit for bit through
    /// `value(scales, group, integer)`, the format's own formula in candle's order of operations.
    /// Returns the blocks and every weight integer, for the caller's checks of what was exercised.
    pub fn integers_against_candle(
        dtype: GgmlDType,
        bytes: usize,
        pair_values: fn(&[u8], usize) -> [i8; 64],
        int_scales: fn(&[u8]) -> KScales,
        value: fn(&KScales, usize, i32) -> f32,
    ) -> (Vec<u8>, Vec<i32>) {
        let v: Vec<f32> = (0..8 * 256)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0 + (i % 5) as f32 * 0.2)
            .collect();
        let t = Tensor::from_vec(v, (8, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let data = q.data().unwrap().into_owned();
        let mut ints = Vec::new();
        for (b, blk) in data.chunks_exact(bytes).enumerate() {
            let s = int_scales(blk);
            for p in 0..4 {
                for (j, &w) in pair_values(blk, p).iter().enumerate() {
                    let w = w as i32;
                    let got = value(&s, 4 * p + j / 16, w);
                    let at = 256 * b + 64 * p + j;
                    assert_eq!(
                        got.to_bits(),
                        want[at].to_bits(),
                        "{dtype:?} block {b} pair {p} value {j}"
                    );
                    ints.push(w);
                }
            }
        }
        (data, ints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_listed_once_and_only_activation_types_are_refused() {
        for (i, f) in FORMATS.iter().enumerate() {
            assert!(
                FORMATS[..i].iter().all(|g| g.dtype != f.dtype),
                "{:?} must have one entry",
                f.dtype
            );
        }
        assert!(!is_supported(GgmlDType::Q8_1) && !is_supported(GgmlDType::Q8K));
        assert_eq!(
            supported_names(),
            "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K",
            "the list errors show"
        );
        // Every matrix of a K-quant file (`Q2_K` … `Q6_K_M`) takes the integer path.
        let int8: Vec<&str> = FORMATS.iter().filter(|f| f.int8.is_some()).map(|f| f.name).collect();
        assert_eq!(int8, ["Q4_0", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]);
        for f in FORMATS.iter() {
            if let Some(q) = f.int8 {
                let (bytes, values) = q.block();
                assert_eq!(
                    (bytes, values),
                    (f.dtype.type_size(), f.dtype.block_size()),
                    "{}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn block_layouts_are_candles() {
        for (dtype, bytes, values) in [
            (GgmlDType::Q4_0, q4_0::BYTES, q4_0::VALUES),
            (GgmlDType::Q4_1, q4_1::BYTES, q4_1::VALUES),
            (GgmlDType::Q5_0, q5_0::BYTES, q5_0::VALUES),
            (GgmlDType::Q5_1, q5_1::BYTES, q5_1::VALUES),
            (GgmlDType::Q8_0, q8_0::BYTES, q8_0::VALUES),
            (GgmlDType::Q2K, q2k::BYTES, q2k::VALUES),
            (GgmlDType::Q3K, q3k::BYTES, q3k::VALUES),
            (GgmlDType::Q4K, q4k::BYTES, q4k::VALUES),
            (GgmlDType::Q5K, q5k::BYTES, q5k::VALUES),
            (GgmlDType::Q6K, q6k::BYTES, q6k::VALUES),
        ] {
            assert_eq!((dtype.type_size(), dtype.block_size()), (bytes, values), "{dtype:?}");
        }
    }

    /// Every K-quant's SIMD unpackings of its weight integers equal the portable ones.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_k_quants_simd_unpackings_are_the_portable_ones() {
        macro_rules! check {
            ($m:ident) => {{
                /// `sub_avx2` of sub-block `s`, as bytes.
                #[target_feature(enable = "avx2")]
                unsafe fn sub(b: &[u8], s: usize) -> [u8; 32] {
                    // SAFETY: the caller's whole block, `s < 8`; AVX2 enabled here.
                    unsafe { std::mem::transmute($m::sub_avx2(b.as_ptr(), s)) }
                }
                /// `pair_avx512` of pair `p`, as bytes.
                #[target_feature(enable = "avx512f,avx512bw,avx2")]
                unsafe fn pair(b: &[u8], p: usize) -> [u8; 64] {
                    // SAFETY: the caller's whole block, `p < 4`; the features enabled here.
                    unsafe { std::mem::transmute($m::pair_avx512(b.as_ptr(), p)) }
                }
                for seed in 0..4u32 {
                    // Spread bytes: every bit of the packed fields set and clear somewhere.
                    let blk: Vec<u8> = (0..$m::BYTES as u32)
                        .map(|i| (i + 977 * seed).wrapping_mul(2_654_435_761).rotate_left(11) as u8)
                        .collect();
                    for p in 0..4 {
                        let want = $m::pair_values(&blk, p);
                        if std::arch::is_x86_feature_detected!("avx2") {
                            for h in 0..2 {
                                // SAFETY: the whole block, `2p + h < 8`, and AVX2 (detected).
                                let got = unsafe { sub(&blk, 2 * p + h) };
                                for j in 0..32 {
                                    let w = want[32 * h + j] as i32;
                                    assert_eq!(
                                        got[j] as i32,
                                        w,
                                        "{} sub-block {} value {j}",
                                        stringify!($m),
                                        2 * p + h
                                    );
                                }
                            }
                        }
                        if std::arch::is_x86_feature_detected!("avx512bw") {
                            // SAFETY: the whole block, `p < 4`, and AVX-512 F/BW (detected).
                            let got = unsafe { pair(&blk, p) };
                            for j in 0..64 {
                                assert_eq!(
                                    got[j] as i32,
                                    want[j] as i32,
                                    "{} pair {p} value {j}",
                                    stringify!($m)
                                );
                            }
                        }
                    }
                }
            }};
        }
        check!(q2k);
        check!(q3k);
        check!(q4k);
        check!(q5k);
        check!(q6k);
    }
}
