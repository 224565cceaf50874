//! The decoder's row kernels: matrix products through `matrixmultiply`, layer norm, one query
//! row's causal attention over a cache, and the fused kernels' GELU.

pub(super) use crate::fused::cpu::gelu_in_place;

/// `out = x · w` (+ `out` when `beta` is 1): `x` is [m, k], `w` is [k, n], row-major.
pub(super) fn matmul(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
    beta: f32,
) {
    assert!(x.len() >= m * k && w.len() >= k * n && out.len() >= m * n);
    // SAFETY: the slices hold m*k, k*n and m*n floats with the strides given (asserted above),
    // and `out` does not alias the inputs (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            n as isize,
            1,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `out = x · w + bias`, or `out += x · w + bias` when `accumulate` (the residual stream).
#[allow(clippy::too_many_arguments)] // a matrix product's shapes and buffers
pub(super) fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    for row in out[..m * n].chunks_mut(n) {
        if accumulate {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        } else {
            row.copy_from_slice(bias);
        }
    }
    matmul(x, m, k, w, n, out, 1.0);
}

pub(super) fn layer_norm_rows(
    x: &[f32],
    out: &mut [f32],
    g: &[f32],
    b: &[f32],
    d: usize,
    eps: f32,
) {
    for (xr, orow) in x.chunks(d).zip(out.chunks_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for c in 0..d {
            orow[c] = (xr[c] - mean) * inv * g[c] + b[c];
        }
    }
}

/// Causal attention of one query row over `keys`/`values` ([len, d]) for every head.
pub(super) fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    heads: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = q.len();
    let hd = d / heads;
    let len = keys.len() / d;
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..heads {
        let qh = &q[h * hd..(h + 1) * hd];
        let mut max = f32::NEG_INFINITY;
        for (j, sc) in scores[..len].iter_mut().enumerate() {
            let kh = &keys[j * d + h * hd..j * d + (h + 1) * hd];
            let dot: f32 = qh.iter().zip(kh).map(|(a, b)| a * b).sum();
            *sc = dot * scale;
            max = max.max(*sc);
        }
        let mut sum = 0.0;
        for sc in scores[..len].iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        let oh = &mut out[h * hd..(h + 1) * hd];
        oh.iter_mut().for_each(|o| *o = 0.0);
        for (j, sc) in scores[..len].iter().enumerate() {
            let p = sc / sum;
            let vh = &values[j * d + h * hd..j * d + (h + 1) * hd];
            oh.iter_mut().zip(vh).for_each(|(o, v)| *o += p * v);
        }
    }
}
