//! CPU kernels of our own: matrix products with quantized weights and f32 activations, and
//! attention over the f16 cache.
//!
//! Both compute every output row on its own with a fixed order of floating-point operations, so
//! a row's value never depends on how many rows share the call. Prefill, chunked prefill and
//! token-by-token decoding therefore produce the same K/V and logits bit for bit, which is what
//! lets a thawed attention state continue exactly as an uninterrupted run would.
//!
//! SIMD paths (AVX-512, AVX2) are chosen at run time ([`isa`]) and compute exactly what the
//! portable code does; the unit tests compare every path the machine can run.

pub mod attention;
mod dequant;
mod formats;
mod gemm;
mod gemv;
pub mod isa;
pub mod matmul;
mod pool;
pub mod qdot;

pub(crate) use formats::{is_supported, is_supported_name, supported_names};
