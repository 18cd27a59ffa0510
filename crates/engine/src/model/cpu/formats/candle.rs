//! Q2_K, Q3_K and Q5_K to f32: decoded by candle's own `to_float`, which is their definition.
//! Their products take the integer path (`qdot`), which never decodes to f32, so they have no
//! SIMD decoders and no fused f32 decoding kernel.

use candle_core::quantized::k_quants::GgmlType;

/// Whole blocks of `T` decoded by candle (from a copy when `bytes` is not aligned for `T`).
pub fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    let n = out.len() / T::BLCK_SIZE;
    let size = std::mem::size_of::<T>();
    assert!(bytes.len() >= n * size);
    if (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        // SAFETY: the block types are `repr(C)` plain data; the pointer is aligned and `n`
        // blocks of `size` bytes are in bounds.
        let xs = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) };
        T::to_float(xs, out);
    } else {
        let mut tmp: Vec<T> = (0..n).map(|_| T::zeros()).collect();
        // SAFETY: as above, copying into an aligned buffer of the same byte length.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), tmp.as_mut_ptr() as *mut u8, n * size) };
        T::to_float(&tmp, out);
    }
}
