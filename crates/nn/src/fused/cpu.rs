//! The flex (CPU) side of [`FusedOps`]: parallel, vectorisable kernels over contiguous f32 data.
//! Anything else (other dtypes, strided views the copy cannot fix) falls back to the composed
//! implementation in the parent module.

use super::conv::{self, Geometry};
use super::linear;
use super::matmul;
use super::{
    CHUNK, FusedOps, INV_SQRT_2PI, SQRT_1_2, composed_capped_softmax,
    composed_capped_softmax_backward, composed_causal_softmax, composed_causal_softmax_backward,
    composed_gelu, composed_gelu_backward, composed_layer_norm_backward,
    composed_leaky_relu_backward, composed_silu, composed_silu_backward,
};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// exp(x) for f32 by range reduction and a degree-6 polynomial (relative error about 2e-7),
/// written without branches so the compiler vectorises the loops that call it.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5 * 2^23 trick: `f32::round` is a libm call that blocks
    // vectorisation on baseline x86-64.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // The integer n sits in t's low mantissa bits; reading it there instead of `n as i32`
    // (a saturating conversion, which LLVM leaves scalar) keeps the whole function in vectors.
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_41 + r * (0.008_333_452 + r * 0.001_394_188)))));
    p * f32::from_bits(((ni + 127) as u32) << 23)
}

/// Returns (Phi(x), phi(x)): the standard normal CDF and density. The CDF uses Abramowitz &
/// Stegun 7.1.26 for erf (absolute error below 1.5e-7), sharing one exp with the density.
#[inline(always)]
pub(super) fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    let z = x * SQRT_1_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let e = exp_f32(-z * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * e;
    let erf = erf_abs.copysign(z);
    (0.5 * (1.0 + erf), e * INV_SQRT_2PI)
}

/// Defines `$name(args)`: the loop `$body` compiled twice, for AVX2+FMA (chosen at run time
/// when the CPU has it) and for the baseline target.
macro_rules! multiversion {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        #[allow(clippy::too_many_arguments)] // kernels take their buffers explicitly
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body
        }
    };
}

multiversion!(gelu_chunk(src: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = v * normal_cdf_pdf(v).0;
    }
});

multiversion!(gelu_in_place_chunk(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v *= normal_cdf_pdf(*v).0;
    }
});

/// GELU (exact-erf form, as the fused training kernel) of every value, in place: the
/// decoder's MLP activation, so decoding computes what the trained model computes.
pub fn gelu_in_place(xs: &mut [f32]) {
    gelu_in_place_chunk(xs)
}

multiversion!(silu_chunk(src: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = v / (1.0 + exp_f32(-v));
    }
});

multiversion!(silu_backward_chunk(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
        let s = 1.0 / (1.0 + exp_f32(-v));
        *o = g * s * (1.0 + v * (1.0 - s));
    }
});

multiversion!(leaky_chunk(src: &[f32], out: &mut [f32], slope: f32) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = if v < 0.0 { slope * v } else { v };
    }
});

multiversion!(leaky_backward_chunk(xs: &[f32], gs: &[f32], out: &mut [f32], slope: f32) {
    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
        *o = if v < 0.0 { slope * g } else { g };
    }
});

multiversion!(gelu_backward_chunk(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
        let (cdf, pdf) = normal_cdf_pdf(v);
        *o = g * (cdf + v * pdf);
    }
});

/// Sum with eight independent accumulators: the shape LLVM vectorises (a plain float `sum()`
/// is a sequential dependency it may not reorder).
#[inline(always)]
fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Dot product with eight independent accumulators (see [`sum8`]).
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + rest
}

multiversion!(layer_norm_backward_rows(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    g: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    eps: f32
) {
    let d = gamma.len();
    let inv_d = 1.0 / d as f32;
    for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        let mean = sum8(xr) * inv_d;
        for (o, &v) in dxr.iter_mut().zip(xr) {
            *o = v - mean;
        }
        let rstd = 1.0 / (dot8(dxr, dxr) * inv_d + eps).sqrt();
        for o in dxr.iter_mut() {
            *o *= rstd; // xhat
        }
        for ((o, &dv), &gv) in g.iter_mut().zip(dyr).zip(gamma) {
            *o = dv * gv;
        }
        let mean_g = sum8(g) * inv_d;
        let mean_gx = dot8(g, dxr) * inv_d;
        for ((((o, &gv), &dv), dga), dbe) in dxr.iter_mut().zip(g.iter()).zip(dyr).zip(dgamma.iter_mut()).zip(dbeta.iter_mut()) {
            let xhat = *o;
            *dga += dv * xhat;
            *dbe += dv;
            *o = rstd * (gv - mean_g - xhat * mean_gx);
        }
    }
});

/// Causal softmax of one [t, t] score matrix: row i sees columns 0..=i; the rest are 0.
fn causal_softmax_matrix(src: &[f32], out: &mut [f32], t: usize, scale: f32) {
    for i in 0..t {
        let row = &src[i * t..i * t + i + 1];
        let o = &mut out[i * t..(i + 1) * t];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
        let sum = exp_row(row, &mut o[..=i], scale, max);
        let inv = 1.0 / sum;
        o[..=i].iter_mut().for_each(|v| *v *= inv);
    }
}

multiversion!(exp_row_impl(row: &[f32], out: &mut [f32], scale: f32, max: f32, sum: &mut f32) {
    for (o, &v) in out.iter_mut().zip(row) {
        *o = exp_f32(v * scale - max);
    }
    *sum = sum8(out);
});

/// Writes `exp(row * scale - max)` and returns its sum.
fn exp_row(row: &[f32], out: &mut [f32], scale: f32, max: f32) -> f32 {
    let mut sum = 0.0;
    exp_row_impl(row, out, scale, max, &mut sum);
    sum
}

/// `scale * p * (dp - rowsum(dp * p))` for one [t, t] matrix (zeros above the diagonal).
fn causal_softmax_backward_matrix(p: &[f32], dp: &[f32], out: &mut [f32], t: usize, scale: f32) {
    for i in 0..t {
        let (pr, dr) = (&p[i * t..i * t + i + 1], &dp[i * t..i * t + i + 1]);
        let dot = dot8(pr, dr);
        for ((o, &pv), &dv) in out[i * t..i * t + i + 1].iter_mut().zip(pr).zip(dr) {
            *o = scale * pv * (dv - dot);
        }
    }
}

/// tanh by its exponential form: `1 - 2 / (exp(2x) + 1)` (absolute error about 1e-7).
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    1.0 - 2.0 / (exp_f32(2.0 * x) + 1.0)
}

multiversion!(capped_softmax_rows(src: &[f32], out: &mut [f32], s: usize, scale: f32, cap: f32) {
    let k = scale / cap;
    for (row, o) in src.chunks_exact(s).zip(out.chunks_exact_mut(s)) {
        for (ov, &v) in o.iter_mut().zip(row) {
            *ov = cap * tanh_f32(v * k);
        }
        let max = o.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in o.iter_mut() {
            *v = exp_f32(*v - max);
        }
        let inv = 1.0 / sum8(o);
        o.iter_mut().for_each(|v| *v *= inv);
    }
});

multiversion!(capped_softmax_backward_rows(
    scores: &[f32],
    p: &[f32],
    dp: &[f32],
    out: &mut [f32],
    s: usize,
    scale: f32,
    cap: f32
) {
    let k = scale / cap;
    for (((sr, pr), dr), o) in scores
        .chunks_exact(s)
        .zip(p.chunks_exact(s))
        .zip(dp.chunks_exact(s))
        .zip(out.chunks_exact_mut(s))
    {
        let dot = dot8(pr, dr);
        for (((ov, &sv), &pv), &dv) in o.iter_mut().zip(sr).zip(pr).zip(dr) {
            let t = tanh_f32(sv * k);
            *ov = pv * (dv - dot) * scale * (1.0 - t * t);
        }
    }
});

/// Rows per parallel task of the capped softmax: about [`CHUNK`] values.
fn rows_per_task(s: usize) -> usize {
    (CHUNK / s.max(1)).max(1)
}

fn contiguous_f32(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| {
        if t.is_contiguous() {
            t.clone()
        } else {
            t.to_contiguous()
        }
    })
}

/// The `i`-th chunk of `n` elements of `s` (the last one may be shorter), as `par_chunks` cuts.
fn chunk_of(s: &[f32], i: usize, n: usize) -> &[f32] {
    &s[i * n..((i + 1) * n).min(s.len())]
}

fn flex_from_vec(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

/// `kernel` over contiguous f32 chunks in parallel, or `fallback` for anything else.
fn map_unary(
    x: FlexTensor,
    kernel: impl Fn(&[f32], &mut [f32]) + Sync,
    fallback: impl FnOnce(FlexTensor) -> FlexTensor,
) -> FlexTensor {
    let Some(x) = contiguous_f32(&x) else {
        return fallback(x);
    };
    let src = x.as_slice::<f32>().expect("contiguous f32");
    let out =
        matmul::par_zeroed_chunks(src.len(), CHUNK, |i, o| kernel(chunk_of(src, i, CHUNK), o));
    flex_from_vec(out, &x)
}

/// The backward of an element-wise op: `kernel(x, grad, out)` over contiguous f32 chunks in
/// parallel, or `fallback` for anything else.
fn map_backward(
    x: FlexTensor,
    grad: FlexTensor,
    kernel: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
    fallback: impl FnOnce(FlexTensor, FlexTensor) -> FlexTensor,
) -> FlexTensor {
    let (Some(x), Some(g)) = (contiguous_f32(&x), contiguous_f32(&grad)) else {
        return fallback(x, grad);
    };
    let (xs, gs) = (
        x.as_slice::<f32>().expect("f32"),
        g.as_slice::<f32>().expect("f32"),
    );
    assert_eq!(
        xs.len(),
        gs.len(),
        "element-wise backward: input and gradient differ in size"
    );
    let out = matmul::par_zeroed_chunks(xs.len(), CHUNK, |i, o| {
        kernel(chunk_of(xs, i, CHUNK), chunk_of(gs, i, CHUNK), o)
    });
    flex_from_vec(out, &x)
}

/// The geometry of `conv1d(x, weight)` when the fused kernels apply (f32, groups 1,
/// dilation 1), with the contiguous operands.
fn conv_geometry(
    x: &FlexTensor,
    w: &FlexTensor,
    options: &ConvOptions<1>,
) -> Option<(Geometry, FlexTensor, FlexTensor)> {
    if options.groups != 1 || options.dilation != [1] {
        return None;
    }
    let (x, w) = (contiguous_f32(x)?, contiguous_f32(w)?);
    let ([batch, c_in, len_in], [c_out, c_in_w, kernel]) = (dims3(&x)?, dims3(&w)?);
    let (pl, pr) = options.padding[0];
    let stride = options.stride[0];
    if c_in_w != c_in || len_in + pl + pr < kernel {
        return None;
    }
    let len_out = (len_in + pl + pr - kernel) / stride + 1;
    let g = Geometry {
        batch,
        c_in,
        len_in,
        c_out,
        len_out,
        kernel,
        stride,
        pad: pl,
    };
    Some((g, x, w))
}

/// The geometry of the convolution whose adjoint is `conv_transpose1d(x, weight)`: its input is
/// the transposed convolution's output, its output the transposed convolution's input.
fn conv_transpose_geometry(
    x: &FlexTensor,
    w: &FlexTensor,
    options: &ConvTransposeOptions<1>,
) -> Option<(Geometry, FlexTensor, FlexTensor)> {
    if options.groups != 1 || options.dilation != [1] {
        return None;
    }
    let (x, w) = (contiguous_f32(x)?, contiguous_f32(w)?);
    let ([batch, c_in_t, len_t], [c_in_w, c_out_t, kernel]) = (dims3(&x)?, dims3(&w)?);
    let (stride, pad, pad_out) = (
        options.stride[0],
        options.padding[0],
        options.padding_out[0],
    );
    let full = (len_t.checked_sub(1)?) * stride + kernel + pad_out;
    if c_in_w != c_in_t || full < 2 * pad || pad_out >= stride {
        return None;
    }
    let g = Geometry {
        batch,
        c_in: c_out_t,
        len_in: full - 2 * pad,
        c_out: c_in_t,
        len_out: len_t,
        kernel,
        stride,
        pad,
    };
    Some((g, x, w))
}

fn dims3(t: &FlexTensor) -> Option<[usize; 3]> {
    t.layout().shape().as_slice().try_into().ok()
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32")
}

fn flex_vec(values: Vec<f32>, shape: [usize; 3]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `(rows, d_in, d_out)` of `linear_fused(x, w)` when the fused kernels apply: f32, w `[d_in,
/// d_out]`, x's last dim `d_in`.
fn linear_geometry(x: &FlexTensor, w: &FlexTensor) -> Option<(usize, usize, usize)> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let (xd, wd) = (x.layout().shape().as_slice(), w.layout().shape().as_slice());
    let (&d_in, &[w_in, d_out]) = (xd.last()?, wd) else {
        return None;
    };
    (w_in == d_in && d_in > 0).then(|| (xd.iter().product::<usize>() / d_in, d_in, d_out))
}

/// `values` shaped like `like` with its last dim replaced by `last`.
fn flex_like_rows(values: Vec<f32>, like: &FlexTensor, last: usize) -> FlexTensor {
    let mut dims = like.layout().shape().as_slice().to_vec();
    *dims.last_mut().expect("rank >= 1") = last;
    matmul::flex(values, dims)
}

impl FusedOps for Flex {
    fn batched_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        a_t: bool,
        b_t: bool,
    ) -> FloatTensor<Self> {
        match matmul::batched(&a, a_t, &b, b_t) {
            Some(out) => out,
            None => super::composed_batched_matmul::<Self>(a, b, a_t, b_t),
        }
    }

    fn linear_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some((rows, d_in, d_out)), Some(xc), Some(wc), Some(b)) = (
            linear_geometry(&x, &weight),
            contiguous_f32(&x),
            contiguous_f32(&weight),
            contiguous_f32(&bias),
        ) else {
            return super::composed_linear::<Self>(x, weight, bias);
        };
        if f32s(&b).len() != d_out {
            return super::composed_linear::<Self>(x, weight, bias);
        }
        let y = linear::forward(rows, d_in, d_out, f32s(&xc), f32s(&wc), Some(f32s(&b)));
        flex_like_rows(y, &x, d_out)
    }

    fn linear_fused_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let wd = weight.layout().shape().as_slice().to_vec();
        let (Some(wc), Some(dy), &[d_in, d_out]) = (
            contiguous_f32(&weight),
            contiguous_f32(&output_grad),
            wd.as_slice(),
        ) else {
            return super::composed_linear_x_backward::<Self>(weight, output_grad);
        };
        let dys = f32s(&dy);
        if d_out == 0 || dy.layout().shape().as_slice().last() != Some(&d_out) {
            return super::composed_linear_x_backward::<Self>(weight, output_grad);
        }
        let dx = linear::input_grad(dys.len() / d_out, d_in, d_out, dys, f32s(&wc));
        flex_like_rows(dx, &dy, d_in)
    }

    fn linear_fused_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(xc), Some(dy)) = (contiguous_f32(&x), contiguous_f32(&output_grad)) else {
            return super::composed_linear_weight_backward::<Self>(x, output_grad);
        };
        let (xs, dys) = (f32s(&xc), f32s(&dy));
        let d_in = *xc.layout().shape().as_slice().last().unwrap_or(&0);
        let d_out = *dy.layout().shape().as_slice().last().unwrap_or(&0);
        let rows = xs.len().checked_div(d_in).unwrap_or(0);
        if d_in == 0 || d_out == 0 || dys.len() != rows * d_out {
            return super::composed_linear_weight_backward::<Self>(x, output_grad);
        }
        let dw = linear::weight_grad(rows, d_in, d_out, xs, dys);
        matmul::flex(dw, vec![d_in, d_out])
    }

    fn linear_fused_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(dy) = contiguous_f32(&output_grad) else {
            return super::composed_linear_bias_backward::<Self>(output_grad);
        };
        let d_out = *dy.layout().shape().as_slice().last().unwrap_or(&0);
        if d_out == 0 {
            return super::composed_linear_bias_backward::<Self>(output_grad);
        }
        let dys = f32s(&dy);
        let db = linear::bias_grad(dys.len() / d_out, d_out, dys);
        matmul::flex(db, vec![d_out])
    }

    fn conv1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        let (Some((g, xc, wc)), Some(b)) =
            (conv_geometry(&x, &weight, &options), contiguous_f32(&bias))
        else {
            return <Self as ModuleOps<Self>>::conv1d(x, weight, Some(bias), options);
        };
        let y = conv::forward(&g, f32s(&xc), f32s(&wc), Some(f32s(&b)));
        flex_vec(y, [g.batch, g.c_out, g.len_out])
    }

    fn conv1d_fused_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        let (Some((g, _, wc)), Some(dy)) = (
            conv_geometry(&x, &weight, &options),
            contiguous_f32(&output_grad),
        ) else {
            return <Self as ModuleOps<Self>>::conv1d_x_backward(x, weight, output_grad, options);
        };
        let dx = conv::input_grad(&g, f32s(&dy), f32s(&wc));
        flex_vec(dx, [g.batch, g.c_in, g.len_in])
    }

    fn conv1d_fused_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        let (Some((g, xc, _)), Some(dy)) = (
            conv_geometry(&x, &weight, &options),
            contiguous_f32(&output_grad),
        ) else {
            return <Self as ModuleOps<Self>>::conv1d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        };
        let dw = conv::weight_grad(&g, f32s(&xc), f32s(&dy));
        flex_vec(dw, [g.c_out, g.c_in, g.kernel])
    }

    fn conv_transpose1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        let (Some((g, xc, wc)), Some(b)) = (
            conv_transpose_geometry(&x, &weight, &options),
            contiguous_f32(&bias),
        ) else {
            return <Self as ModuleOps<Self>>::conv_transpose1d(x, weight, Some(bias), options);
        };
        let mut y = conv::input_grad(&g, f32s(&xc), f32s(&wc));
        for (row, &bv) in y.chunks_exact_mut(g.len_in).zip(f32s(&b).iter().cycle()) {
            row.iter_mut().for_each(|v| *v += bv);
        }
        flex_vec(y, [g.batch, g.c_in, g.len_in])
    }

    fn conv_transpose1d_fused_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        // The input length is not passed: it is the length the adjoint convolution produces.
        let geometry = (|| {
            if options.groups != 1 || options.dilation != [1] {
                return None;
            }
            let ([batch, c_out_t, len], [c_in_t, c_out_w, kernel]) =
                (dims3(&output_grad)?, dims3(&weight)?);
            let (stride, pad) = (options.stride[0], options.padding[0]);
            let len_out = (len + 2 * pad).checked_sub(kernel)? / stride + 1;
            (c_out_w == c_out_t).then_some(Geometry {
                batch,
                c_in: c_out_t,
                len_in: len,
                c_out: c_in_t,
                len_out,
                kernel,
                stride,
                pad,
            })
        })();
        let (Some(g), Some(wc), Some(dy)) = (
            geometry,
            contiguous_f32(&weight),
            contiguous_f32(&output_grad),
        ) else {
            return <Self as ModuleOps<Self>>::conv_transpose1d_x_backward(
                weight,
                output_grad,
                options,
            );
        };
        let dx = conv::forward(&g, f32s(&dy), f32s(&wc), None);
        flex_vec(dx, [g.batch, g.c_out, g.len_out])
    }

    fn conv_transpose1d_fused_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        let (Some((g, xc, _)), Some(dy)) = (
            conv_transpose_geometry(&x, &weight, &options),
            contiguous_f32(&output_grad),
        ) else {
            return <Self as ModuleOps<Self>>::conv_transpose1d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        };
        // The adjoint convolution reads the output gradient and writes the input.
        let dw = conv::weight_grad(&g, f32s(&dy), f32s(&xc));
        flex_vec(dw, [g.c_out, g.c_in, g.kernel])
    }

    #[allow(clippy::too_many_arguments)]
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        beta_1: f32,
        beta_2: f32,
        eps: f32,
        c1: f32,
        c2: f32,
        decay: f32,
        lr: f32,
    ) -> FloatTensor<Self> {
        let (Some(p), Some(g), Some(m), Some(v)) = (
            contiguous_f32(&param),
            contiguous_f32(&grad),
            contiguous_f32(&moment_1),
            contiguous_f32(&moment_2),
        ) else {
            return param;
        };
        let (ps, gs, ms, vs) = (f32s(&p), f32s(&g), f32s(&m), f32s(&v));
        let n = ps.len();
        assert!(
            gs.len() == n && ms.len() == n && vs.len() == n,
            "AdamW step: parameter, gradient and moments differ in size"
        );
        // burn's AdamW computes these in f32 the same way, so the step is bitwise its step.
        let (f1, f2) = (1.0 - beta_1, 1.0 - beta_2);
        let out = matmul::filled(3 * n, |out| {
            let (po, rest) = out.split_at_mut(n);
            let (mo, vo) = rest.split_at_mut(n);
            po.par_chunks_mut(CHUNK)
                .zip(mo.par_chunks_mut(CHUNK))
                .zip(vo.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(i, ((po, mo), vo))| {
                    let part = |s| chunk_of(s, i, CHUNK);
                    let (p, g, m, v) = (part(ps), part(gs), part(ms), part(vs));
                    let outs = po.iter_mut().zip(mo.iter_mut()).zip(vo.iter_mut());
                    let ins = p.iter().zip(g).zip(m.iter().zip(v));
                    for (((po, mo), vo), ((&p, &g), (&m, &v))) in outs.zip(ins) {
                        let m1 = m * beta_1 + g * f1;
                        let v1 = v * beta_2 + (g * g) * f2;
                        let delta = (m1 / c1) / ((v1 / c2).sqrt() + eps);
                        po.write(p * decay - delta * lr);
                        mo.write(m1);
                        vo.write(v1);
                    }
                })
        });
        FlexTensor::from_data(TensorData::new(out, [3 * n]))
    }

    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_unary(x, gelu_chunk, composed_gelu::<Self>)
    }

    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        map_backward(x, grad, gelu_backward_chunk, composed_gelu_backward::<Self>)
    }

    fn leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        map_unary(
            x,
            |s, o| leaky_chunk(s, o, slope),
            |x| <Flex as ActivationOps<Flex>>::leaky_relu(x, (slope as f64).into()),
        )
    }

    fn leaky_relu_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f32,
    ) -> FloatTensor<Self> {
        map_backward(
            x,
            grad,
            |xs, gs, o| leaky_backward_chunk(xs, gs, o, slope),
            |x, g| composed_leaky_relu_backward::<Flex>(x, g, slope),
        )
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_unary(x, silu_chunk, composed_silu::<Self>)
    }

    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        map_backward(x, grad, silu_backward_chunk, composed_silu_backward::<Self>)
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let (Some(xc), Some(gc), Some(dc)) = (
            contiguous_f32(&x),
            contiguous_f32(&gamma),
            contiguous_f32(&dy),
        ) else {
            return composed_layer_norm_backward::<Self>(x, gamma, dy, eps);
        };
        let (xs, gs, ds) = (
            xc.as_slice::<f32>().expect("f32"),
            gc.as_slice::<f32>().expect("f32"),
            dc.as_slice::<f32>().expect("f32"),
        );
        let d = gs.len();
        let n = xs.len() / d;
        const ROWS: usize = 64;
        // One partial [dgamma | dbeta] per 64-row chunk in one buffer, summed in chunk order
        // into the output's last two rows: rayon's `reduce` groups partials by however the work
        // was stolen, which makes the float sums, and so a training run, differ between runs.
        let mut partials = vec![0f32; n.div_ceil(ROWS) * 2 * d];
        // dx's chunks are zeroed by the core that then writes them (see
        // `matmul::par_zeroed_chunks`), not by one memset of the whole output first.
        let out = matmul::filled((n + 2) * d, |out| {
            let (dx, params) = out.split_at_mut(n * d);
            dx.par_chunks_mut(ROWS * d)
                .zip(xs.par_chunks(ROWS * d).zip(ds.par_chunks(ROWS * d)))
                .zip(partials.par_chunks_mut(2 * d))
                // The scratch row is overwritten per row: one per rayon job, not one per chunk.
                .for_each_init(
                    || vec![0f32; d],
                    |scratch, ((o, (xr, dr)), acc)| {
                        let (dgamma, dbeta) = acc.split_at_mut(d);
                        layer_norm_backward_rows(
                            xr,
                            dr,
                            gs,
                            matmul::zero_init(o),
                            scratch,
                            dgamma,
                            dbeta,
                            eps,
                        );
                    },
                );
            let params = matmul::zero_init(params);
            for acc in partials.chunks_exact(2 * d) {
                params.iter_mut().zip(acc).for_each(|(x, y)| *x += y);
            }
        });
        FlexTensor::from_data(TensorData::new(out, [n + 2, d]))
    }

    fn capped_softmax(scores: FloatTensor<Self>, scale: f32, cap: f32) -> FloatTensor<Self> {
        let Some(sc) = contiguous_f32(&scores) else {
            return composed_capped_softmax::<Self>(scores, scale, cap);
        };
        let s = *sc.layout().shape().as_slice().last().expect("rank >= 1");
        let src = sc.as_slice::<f32>().expect("f32");
        let n = rows_per_task(s) * s;
        let out = matmul::par_zeroed_chunks(src.len(), n, |i, o| {
            capped_softmax_rows(chunk_of(src, i, n), o, s, scale, cap)
        });
        flex_from_vec(out, &sc)
    }

    fn capped_softmax_backward(
        scores: FloatTensor<Self>,
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self> {
        let (Some(sc), Some(pc), Some(dc)) = (
            contiguous_f32(&scores),
            contiguous_f32(&p),
            contiguous_f32(&dp),
        ) else {
            return composed_capped_softmax_backward::<Self>(scores, p, dp, scale, cap);
        };
        let s = *sc.layout().shape().as_slice().last().expect("rank >= 1");
        let (ss, ps, ds) = (f32s(&sc), f32s(&pc), f32s(&dc));
        assert!(
            ss.len() == ps.len() && ps.len() == ds.len(),
            "capped softmax backward sizes"
        );
        let n = rows_per_task(s) * s;
        let out = matmul::par_zeroed_chunks(ss.len(), n, |i, o| {
            let part = |v| chunk_of(v, i, n);
            capped_softmax_backward_rows(part(ss), part(ps), part(ds), o, s, scale, cap)
        });
        flex_from_vec(out, &sc)
    }

    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        let Some(s) = contiguous_f32(&scores) else {
            return composed_causal_softmax::<Self>(scores, scale);
        };
        let t = s.layout().shape()[3];
        let src = s.as_slice::<f32>().expect("f32");
        // One task per [t, t] matrix: rows of a matrix share the mask pattern.
        let out = matmul::par_zeroed_chunks(src.len(), t * t, |i, o| {
            causal_softmax_matrix(chunk_of(src, i, t * t), o, t, scale)
        });
        flex_from_vec(out, &s)
    }

    fn causal_softmax_backward(
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (Some(pc), Some(dpc)) = (contiguous_f32(&p), contiguous_f32(&dp)) else {
            return composed_causal_softmax_backward::<Self>(p, dp, scale);
        };
        let t = pc.layout().shape()[3];
        let (ps, ds) = (
            pc.as_slice::<f32>().expect("f32"),
            dpc.as_slice::<f32>().expect("f32"),
        );
        let out = matmul::par_zeroed_chunks(ps.len(), t * t, |i, o| {
            let part = |v| chunk_of(v, i, t * t);
            causal_softmax_backward_matrix(part(ps), part(ds), o, t, scale)
        });
        flex_from_vec(out, &pc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dgamma and dbeta are bitwise the chunk-order sum on every pool size, so a training run
    /// gives the same model on every run with the same seed.
    #[test]
    fn layer_norm_parameter_gradients_are_the_chunk_order_sum_on_any_pool() {
        let (n, d, eps) = (64 * 37 + 5, 48, 1e-5);
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        };
        let x: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let dy: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let gamma: Vec<f32> = (0..d).map(|_| next()).collect();
        let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
        let mut dx = vec![0f32; 64 * d];
        for (xr, dr) in x.chunks(64 * d).zip(dy.chunks(64 * d)) {
            let (mut g, mut b, mut scratch) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
            let dx = &mut dx[..xr.len()];
            layer_norm_backward_rows(xr, dr, &gamma, dx, &mut scratch, &mut g, &mut b, eps);
            dgamma.iter_mut().zip(&g).for_each(|(s, v)| *s += v);
            dbeta.iter_mut().zip(&b).for_each(|(s, v)| *s += v);
        }
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let out = pool.install(|| {
                <Flex as FusedOps>::layer_norm_backward(
                    FlexTensor::from_data(TensorData::new(x.clone(), [n, d])),
                    FlexTensor::from_data(TensorData::new(gamma.clone(), [d])),
                    FlexTensor::from_data(TensorData::new(dy.clone(), [n, d])),
                    eps,
                )
            });
            let out = out.as_slice::<f32>().unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&out[n * d..(n + 1) * d]),
                bits(&dgamma),
                "{threads} threads"
            );
            assert_eq!(bits(&out[(n + 1) * d..]), bits(&dbeta), "{threads} threads");
        }
    }
}
