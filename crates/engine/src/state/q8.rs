//! The `q8` stored dtype: blocks of 32 values along the head dimension, each an f16 scale
//! (absolute maximum / 127) and 32 signed bytes. 1.0625 bytes per value instead of 2.

use half::f16;

pub const BLOCK: usize = 32;

/// Quantizes `x` (a multiple of 32 long) into `q` (same length) and `scales` (len/32).
pub fn quantize(x: &[f32], q: &mut Vec<i8>, scales: &mut Vec<f16>) {
    for blk in x.chunks(BLOCK) {
        let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(amax / 127.0);
        let s = scale.to_f32();
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        scales.push(scale);
        q.extend(blk.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8));
    }
}

/// Dequantizes into f16 values, straight from the stored bytes: `q` holds the i8 values and
/// `scales` one little-endian f16 per block.
pub fn dequantize(q: &[u8], scales: &[u8], out: &mut [f16]) {
    for ((blk, s), o) in q.chunks(BLOCK).zip(scales.chunks_exact(2)).zip(out.chunks_mut(BLOCK)) {
        let s = f16::from_le_bytes([s[0], s[1]]).to_f32();
        for (v, o) in blk.iter().zip(o.iter_mut()) {
            *o = f16::from_f32(*v as i8 as f32 * s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.07).collect();
        let (mut q, mut s) = (Vec::new(), Vec::new());
        quantize(&x, &mut q, &mut s);
        assert_eq!((q.len(), s.len()), (256, 8));
        let mut out = vec![f16::ZERO; 256];
        let q_bytes: Vec<u8> = q.iter().map(|v| *v as u8).collect();
        let s_bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
        dequantize(&q_bytes, &s_bytes, &mut out);
        for (i, (a, b)) in x.iter().zip(&out).enumerate() {
            let step = s[i / BLOCK].to_f32();
            assert!((a - b.to_f32()).abs() <= step * 0.5 + 1e-3, "{i}: {a} vs {b}");
        }
    }
}
