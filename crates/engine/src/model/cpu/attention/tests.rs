use super::*;
use crate::model::cpu::isa::available;
use candle_core::Device;

fn data(n: usize, seed: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 / 1013.0 - 0.5) * amp)
        .collect()
}

/// Q `(n_head, l, d)` and K/V as narrowed views `(n_kv, t, d)` of a larger cache, like KvState's.
fn inputs(n_head: usize, n_kv: usize, l: usize, t: usize, d: usize) -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let cap = t + 5;
    let q = Tensor::from_vec(data(n_head * l * d, 1, 4.0), (n_head, l, d), &dev).unwrap();
    let kv = |seed| {
        Tensor::from_vec(data(n_kv * cap * d, seed, 3.0), (n_kv, cap, d), &dev)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .narrow(1, 0, t)
            .unwrap()
    };
    (q, kv(2), kv(3))
}

/// Straightforward f64 attention with a causal mask, for accuracy.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Vec<f64> {
    let (n_head, l, d) = q.dims3().unwrap();
    let (n_kv, t, _) = k.dims3().unwrap();
    let q = q.to_vec3::<f32>().unwrap();
    let k = k.to_dtype(DType::F32).unwrap().to_vec3::<f32>().unwrap();
    let v = v.to_dtype(DType::F32).unwrap().to_vec3::<f32>().unwrap();
    let group = n_head / n_kv;
    let mut out = vec![0f64; n_head * l * d];
    for h in 0..n_head {
        let kh = h / group;
        for i in 0..l {
            let limit = t - l + i + 1;
            let s: Vec<f64> = (0..limit)
                .map(|j| (0..d).map(|x| q[h][i][x] as f64 * k[kh][j][x] as f64).sum::<f64>() / (d as f64).sqrt())
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for x in 0..d {
                out[(h * l + i) * d + x] = (0..limit).map(|j| e[j] * v[kh][j][x] as f64).sum::<f64>() / z;
            }
        }
    }
    out
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn exp_is_accurate_on_the_softmax_range() {
    let mut worst = 0f64;
    for i in 0..=200_000 {
        let x = -(i as f32) * 4.0e-4;
        let want = (x as f64).exp();
        worst = worst.max(((exp(x) as f64) - want).abs() / want);
    }
    assert!(worst < 3e-7, "relative error {worst}");
    assert_eq!(exp(0.0), 1.0, "the largest score must weigh exactly 1");
    assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
}

#[test]
fn matches_f64_attention() {
    for (n_head, n_kv, l, t, d) in [
        (9, 3, 20, 20, 64),
        (4, 2, 3, 70, 64),
        (2, 1, 1, 150, 32),
        (3, 3, 5, 9, 24),
    ] {
        let (q, k, v) = inputs(n_head, n_kv, l, t, d);
        let want = reference(&q, &k, &v);
        for isa in available() {
            let got = attend_with(isa, &q, &k, &v).unwrap().unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 2e-5, "{isa:?} ({n_head},{n_kv},{l},{t},{d}): max error {err}");
        }
    }
}

/// The scalar kernel and every vector instantiation this CPU runs for head dimension `d`.
fn every_lanes(d: usize) -> Vec<Lanes> {
    let mut all = vec![Lanes::Scalar];
    for isa in available() {
        let l = lanes(isa, d);
        if !all.contains(&l) {
            all.push(l);
        }
    }
    all
}

#[test]
fn every_path_agrees_bit_for_bit() {
    for (n_head, n_kv, l, t, d) in [
        (9, 3, 40, 100, 64),
        (9, 3, 1, 130, 64),
        (8, 2, 17, 17, 128),
        (6, 3, 7, 29, 16),
        (4, 2, 5, 23, 20),
    ] {
        let (q, k, v) = inputs(n_head, n_kv, l, t, d);
        let first = bits(&attend_lanes(Lanes::Scalar, &q, &k, &v).unwrap().unwrap());
        let paths = every_lanes(d);
        // A vector path must run wherever the CPU has one (NEON on every aarch64 CPU).
        #[cfg(target_arch = "aarch64")]
        assert!(paths.len() > 1, "no vector path for d = {d}: {paths:?}");
        for &lanes in &paths[1..] {
            let got = bits(&attend_lanes(lanes, &q, &k, &v).unwrap().unwrap());
            assert!(
                got == first,
                "{lanes:?} must equal the scalar path bit for bit (shape {n_head},{n_kv},{l},{t},{d})"
            );
        }
    }
}

#[test]
fn a_row_does_not_depend_on_the_rows_beside_it() {
    let (n_head, n_kv, l, t, d) = (9, 3, 37, 101, 64);
    let (q, k, v) = inputs(n_head, n_kv, l, t, d);
    for isa in available() {
        let all = attend_with(isa, &q, &k, &v).unwrap().unwrap();
        // Each position alone (as in decoding), and the rows in uneven chunks (chunked prefill).
        for (start, len) in [(0, 1), (5, 1), (36, 1), (0, 5), (5, 13), (18, 19)] {
            let past = t - l + start;
            let qi = q.narrow(1, start, len).unwrap();
            let (ki, vi) = (k.narrow(1, 0, past + len).unwrap(), v.narrow(1, 0, past + len).unwrap());
            let part = attend_with(isa, &qi, &ki, &vi).unwrap().unwrap();
            assert!(
                bits(&part) == bits(&all.narrow(1, start, len).unwrap()),
                "{isa:?}: rows {start}..{} alone must equal their values in the full call",
                start + len
            );
        }
    }
}
