//! Throughput of the CPU matrix product on the shapes of a model's layer, for kernel work:
//!
//! ```text
//! cargo run -p freeze-attn-engine --release --example matmul_speed -- \
//!     [q4_0|q4_1|q8_0|q4k|q6k|f16|bf16] [rows=512] [hidden=576] [ffn=1536] [n]
//! ```
//!
//! Multiplies `rows` input rows by each projection of a layer (q/o, k/v, gate/up, down; or only
//! an `n × hidden` matrix when `n` is given) and prints the best time of `REPS` (environment,
//! default 7) and its GFLOP/s. Random weights: the values do not matter for speed. One row
//! measures the decoding kernels, many rows the prefill kernels; `RAYON_NUM_THREADS=1` measures
//! one core and `FREEZE_ATTN_ISA=avx2|portable` a lower instruction set.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use freeze_attn_engine::model::cpu::matmul::CpuMatrix;
use std::sync::Arc;
use std::time::Instant;

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = match args.first().map(String::as_str).unwrap_or("q4_0") {
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q8_0" => GgmlDType::Q8_0,
        "q4k" => GgmlDType::Q4K,
        "q6k" => GgmlDType::Q6K,
        "f16" => GgmlDType::F16,
        "bf16" => GgmlDType::BF16,
        other => candle_core::bail!("unknown type {other}"),
    };
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (m, hidden, ffn) = (arg(1, 512), arg(2, 576), arg(3, 1536));
    let mut total_flops = 0f64;
    let mut total_secs = 0f64;
    let mut shapes = vec![
        ("q/o", hidden, hidden),
        ("k/v", hidden / 3, hidden),
        ("gate/up", ffn, hidden),
        ("down", hidden, ffn),
    ];
    if let Some(n) = args.get(4).and_then(|s| s.parse().ok()) {
        shapes = vec![("custom", n, hidden)];
    }
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    for (name, n, k) in shapes {
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2)
            .collect();
        let w = QTensor::quantize(&Tensor::from_vec(v, (n, k), &Device::Cpu)?, dtype)?;
        let Some(mat) = CpuMatrix::new(Arc::new(w)) else {
            candle_core::bail!("no CPU kernel for {dtype:?} at {n}×{k}");
        };
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 / 97.0) - 0.5).collect();
        let mut out = vec![0f32; m * n];
        mat.matmul_into(&x, m, &mut out)?;
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            mat.matmul_into(&x, m, &mut out)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (m * n * k) as f64;
        total_flops += flops;
        total_secs += best;
        println!(
            "{name:8} {m}×{k}·({n}×{k})ᵀ  {:8.3} ms  {:7.1} GFLOP/s",
            best * 1e3,
            flops / best / 1e9
        );
    }
    println!("all      {:7.1} GFLOP/s", total_flops / total_secs / 1e9);
    Ok(())
}
