//! Every path of the integer dot products against the definition ([`super::dot`]).

use super::*;
use crate::model::cpu::isa::available;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

fn weights(n: usize, k: usize, dtype: GgmlDType) -> QTensor {
    let v: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2 + if i % 97 == 0 { 0.3 } else { 0.0 })
        .collect();
    QTensor::quantize(&Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap(), dtype).unwrap()
}

fn inputs(m: usize, k: usize) -> Vec<f32> {
    (0..m * k)
        .map(|i| (((i * 31) % 97) as f32 / 97.0 - 0.5) * if i % 61 == 0 { 9.0 } else { 1.0 })
        .collect()
}

/// The bits `run` writes for input rows `r0..r0 + mm` of `q` against the `n` weight rows in
/// `data` (an `mm × n` output, NaN before).
#[cfg(target_arch = "x86_64")]
fn bits_of(data: &[u8], n: usize, q: &QuantRows, r0: usize, mm: usize, run: &dyn Fn(Call)) -> Vec<u32> {
    let mut got = vec![f32::NAN; mm * n];
    run(Call {
        w: data.as_ptr(),
        row_bytes: data.len() / n,
        rows: n,
        x: q,
        r0,
        m: mm,
        out: got.as_mut_ptr(),
        ldo: n,
    });
    got.iter().map(|v| v.to_bits()).collect()
}

/// The portable kernel without ARM's dot product instructions gives `out`'s bits (`block` took
/// them where the CPU has them, as qemu's does).
#[cfg(target_arch = "aarch64")]
fn without_dotprod_too(f: QFormat, data: &[u8], n: usize, q: &QuantRows, r0: usize, mm: usize, out: &[f32]) {
    let mut plain = vec![f32::NAN; mm * n];
    let call = super::portable::Call {
        w: data,
        row_bytes: data.len() / n,
        rows: n,
        x: q,
        r0,
        m: mm,
        out: plain.as_mut_ptr(),
        ldo: n,
    };
    // SAFETY: `out` points at `plain`, which holds mm × n values, `ldo` = n apart.
    unsafe { super::portable::block_plain(f, call) };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&plain), bits(out), "{f:?} m={mm}: without dotprod");
}

const FORMATS: [(QFormat, GgmlDType); 7] = [
    (QFormat::Q4_0, GgmlDType::Q4_0),
    (QFormat::Q8_0, GgmlDType::Q8_0),
    (QFormat::Q2K, GgmlDType::Q2K),
    (QFormat::Q3K, GgmlDType::Q3K),
    (QFormat::Q4K, GgmlDType::Q4K),
    (QFormat::Q5K, GgmlDType::Q5K),
    (QFormat::Q6K, GgmlDType::Q6K),
];

#[test]
fn the_definition_is_close_to_the_dequantized_product() {
    for (f, dt) in FORMATS {
        let (n, k, m) = (5, 512, 3);
        let w = weights(n, k, dt);
        let wd = w.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let data = w.data().unwrap();
        let x = inputs(m, k);
        let q = QuantRows::new(&x, m, k, f.input_block(), Isa::Portable);
        let row_bytes = data.len() / n;
        for r in 0..m {
            for i in 0..n {
                let want: f32 = (0..k).map(|j| x[r * k + j] * wd[i][j]).sum();
                let scale: f32 = (0..k).map(|j| (x[r * k + j] * wd[i][j]).abs()).sum();
                let got = dot(f, &data[i * row_bytes..][..row_bytes], &q, r);
                assert!(
                    (got - want).abs() <= 0.02 * scale,
                    "{f:?} [{r},{i}]: {got} vs {want} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn zero_rows_quantize_to_zero_and_extremes_to_127() {
    let mut x = vec![0f32; 64];
    x[40] = -3.0;
    x[41] = 1.5;
    let q = QuantRows::new(&x, 1, 64, 32, Isa::Portable);
    assert_eq!(q.d[0], 0.0);
    assert!(q.qs[..32].iter().all(|&v| v == 0));
    assert_eq!((q.qs[40], q.qs[41]), (-127, 64), "1.5 · 127/3 = 63.5 rounds to even");
    assert_eq!(q.bsum[2], -63);
}

#[test]
fn every_path_quantizes_inputs_alike() {
    for (m, k, qb) in [(3, 256, 32), (70, 512, 256), (1, 64, 32)] {
        let mut x = inputs(m, k);
        x[5] = 0.5 / 127.0 * 3.0; // ties and exact values
        x[k - 1] = -x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let want = QuantRows::new(&x, m, k, qb, Isa::Portable);
        for isa in available() {
            let got = QuantRows::new(&x, m, k, qb, isa);
            assert_eq!(got.qs, want.qs, "{isa:?} values");
            assert_eq!(got.bsum, want.bsum, "{isa:?} sums");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.d), bits(&want.d), "{isa:?} scales");
        }
    }
}

#[test]
fn every_path_equals_the_definition_bit_for_bit() {
    for (f, dt) in FORMATS {
        // Weight rows around the repacked groups of 32 and the tiles; input rows past 16 (the
        // repacked path) and past its chunks of 64.
        for (n, k, m) in [
            (13, 256, 9),
            (7, 2048, 5),
            (9, 512, 1),
            (45, 512, 21),
            (70, 256, 67),
            (32, 1024, 16),
        ] {
            let w = weights(n, k, dt);
            let data = w.data().unwrap();
            let row_bytes = data.len() / n;
            let q = QuantRows::new(&inputs(m, k), m, k, f.input_block(), Isa::Portable);
            for isa in available() {
                for (r0, mm) in [(0, m), (m - 1, 1)] {
                    let mut out = vec![f32::NAN; mm * n];
                    // SAFETY: out holds mm × n values.
                    unsafe { block(f, isa, &data, row_bytes, n, &q, r0, mm, out.as_mut_ptr(), n) };
                    // The other kernels the machine runs, on the same call.
                    #[cfg(target_arch = "x86_64")]
                    {
                        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                        let through = |run: &dyn Fn(Call)| bits_of(&data, n, &q, r0, mm, run);
                        // Each kernel below: its output holds mm × n values, the weights and
                        // inputs are the call's, and the CPU has what it needs (`available`, and
                        // VNNI where detected).
                        if isa == Isa::Avx2 && mm >= super::packed::avx2::MIN_M {
                            // `block` took the repacked kernel: the tiles must give the same bits.
                            assert!(repacks(isa, mm));
                            let tiles = through(&|c| {
                                // SAFETY: see above.
                                unsafe { avx2::block(f, c) }
                            });
                            assert_eq!(tiles, bits, "{f:?} n={n} k={k} m={mm}: AVX2 tiles and repacked kernel");
                            for vnni in [false, std::arch::is_x86_feature_detected!("avxvnni")] {
                                let packed = through(&|c| {
                                    // SAFETY: see above.
                                    unsafe { super::packed::avx2::block(f, vnni, c) }
                                });
                                assert_eq!(packed, bits, "{f:?} n={n} k={k} m={mm}: AVX2 repacked, VNNI {vnni}");
                            }
                        }
                        if isa == Isa::Avx512 {
                            // Without VNNI too (the machine may have it).
                            let plain = through(&|c| {
                                // SAFETY: see above.
                                unsafe { avx512::block(f, false, c) }
                            });
                            assert_eq!(plain, bits, "{f:?}: AVX-512 without VNNI must equal the path with it");
                            if std::arch::is_x86_feature_detected!("avx512vnni") {
                                // The repacked path at every size, and the tiles' at sizes it takes.
                                let packed = through(&|c| {
                                    // SAFETY: see above.
                                    unsafe { super::packed::block(f, c) }
                                });
                                assert_eq!(packed, bits, "{f:?} n={n} k={k} m={mm}: repacked kernel");
                                let tiles = through(&|c| {
                                    // SAFETY: see above.
                                    unsafe { avx512::block(f, true, c) }
                                });
                                assert_eq!(tiles, bits, "{f:?} n={n} k={k} m={mm}: VNNI tiles");
                            }
                        }
                    }
                    #[cfg(target_arch = "aarch64")]
                    without_dotprod_too(f, &data, n, &q, r0, mm, &out);
                    for r in 0..mm {
                        for i in 0..n {
                            let want = dot(f, &data[i * row_bytes..][..row_bytes], &q, r0 + r);
                            assert_eq!(
                                out[r * n + i].to_bits(),
                                want.to_bits(),
                                "{f:?} {isa:?} n={n} k={k} row {} weight {i}",
                                r0 + r
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn extreme_weight_bytes_give_the_definition_on_every_path() {
    // A file may hold any bytes: Q8_0 values of -128 (the quantizer never writes them) and the
    // largest 4-bit values, against inputs at ±127, must not saturate any 16-bit sum.
    let (n, k, m) = (40, 512, 9);
    for (f, dt) in FORMATS {
        let w = weights(n, k, dt);
        let mut data = w.data().unwrap().into_owned();
        let (bytes, _) = f.block();
        for (b, blk) in data.chunks_exact_mut(bytes).enumerate() {
            match f {
                // After the f16 scale: every value -128, or every other one.
                QFormat::Q8_0 => blk[2..].iter_mut().enumerate().for_each(|(j, q)| {
                    if b % 2 == 0 || j % 2 == 0 {
                        *q = 0x80
                    }
                }),
                // Every nibble 15 (Q4_0 value 7; Q4_K 15), Q5_K's high bits too (31), Q6_K's
                // low bits too.
                QFormat::Q4_0 => blk[2..].fill(0xFF),
                QFormat::Q4K | QFormat::Q5K => blk[16..].fill(0xFF),
                QFormat::Q6K => blk[..192].fill(0xFF),
                // Every value 7 (all high bits and 2-bit values set), scales left as quantized.
                QFormat::Q3K => blk[..96].fill(0xFF),
                // Every value 3, every scale and minimum 15.
                QFormat::Q2K => blk[..80].fill(0xFF),
            }
        }
        let row_bytes = data.len() / n;
        // Inputs all 127 (every product at its largest, one sign), then signs in runs of 3.
        for sign in [
            |_: usize| 1.0,
            |i: usize| if (i / 3).is_multiple_of(2) { 1.0 } else { -1.0 },
        ] {
            let x: Vec<f32> = (0..m * k).map(sign).collect();
            let q = QuantRows::new(&x, m, k, f.input_block(), Isa::Portable);
            for isa in available() {
                for (r0, mm) in [(0, m), (m - 1, 1)] {
                    let mut out = vec![f32::NAN; mm * n];
                    // SAFETY: out holds mm × n values.
                    unsafe { block(f, isa, &data, row_bytes, n, &q, r0, mm, out.as_mut_ptr(), n) };
                    #[cfg(target_arch = "aarch64")]
                    without_dotprod_too(f, &data, n, &q, r0, mm, &out);
                    for r in 0..mm {
                        for i in 0..n {
                            let want = dot(f, &data[i * row_bytes..][..row_bytes], &q, r0 + r);
                            assert_eq!(out[r * n + i].to_bits(), want.to_bits(), "{f:?} {isa:?} m={mm} row {i}");
                        }
                    }
                    // The AVX-512 repacked kernel, which `block` takes only from more input rows.
                    #[cfg(target_arch = "x86_64")]
                    if isa == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512vnni") {
                        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                        let got = bits_of(&data, n, &q, r0, mm, &|c| {
                            // SAFETY: the output holds mm × n values; the CPU has AVX-512
                            // (`available`) and VNNI (detected).
                            unsafe { super::packed::block(f, c) }
                        });
                        assert_eq!(got, bits, "{f:?}: AVX-512 repacked");
                    }
                    // The AVX2 repacked kernel with and without AVX-VNNI (`block` took one of them).
                    #[cfg(target_arch = "x86_64")]
                    if isa == Isa::Avx2 && mm >= super::packed::avx2::MIN_M {
                        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                        for vnni in [false, std::arch::is_x86_feature_detected!("avxvnni")] {
                            let got = bits_of(&data, n, &q, r0, mm, &|c| {
                                // SAFETY: the output holds mm × n values; the CPU has AVX2
                                // (`available`) and AVX-VNNI when `vnni` (detected).
                                unsafe { super::packed::avx2::block(f, vnni, c) }
                            });
                            assert_eq!(got, bits, "{f:?}: AVX2 repacked, VNNI {vnni}");
                        }
                    }
                }
            }
        }
    }
}
