//! Fused CPU kernels supplied to burn through a backend extension.
//!
//! A plain burn flex model of the benchmark transformer spends a large share of its step in
//! element-wise work that runs unfused on one thread: exact GELU alone is five tensor ops
//! forward (each allocating a full activation) and more in autodiff's backward, around a scalar
//! `erff`. [`gelu`] replaces that with one parallel, vectorisable pass forward and one backward,
//! with a hand-written backward node so autodiff records a single op.
//!
//! Backends other than flex (CUDA) use the composed default, so results agree across devices.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

const SQRT_1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

#[cfg_attr(not(feature = "cuda"), backend_extension(Flex, Autodiff))]
#[cfg_attr(feature = "cuda", backend_extension(Flex, Cuda, Autodiff))]
pub trait FusedOps: Backend {
    /// Exact GELU: `x * Phi(x)`.
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_gelu::<Self>(x)
    }

    /// `grad * d gelu(x) / dx`.
    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_gelu_backward::<Self>(x, grad)
    }
}

/// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) from backend primitives.
fn composed_cdf<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let e = B::float_erf(B::float_mul_scalar(x, (SQRT_1_2 as f64).into()));
    B::float_mul_scalar(B::float_add_scalar(e, 1.0f64.into()), 0.5f64.into())
}

fn composed_gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), composed_cdf::<B>(x))
}

fn composed_gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let cdf = composed_cdf::<B>(x.clone());
    let sq = B::float_mul(x.clone(), x.clone());
    let pdf = B::float_mul_scalar(
        B::float_exp(B::float_mul_scalar(sq, (-0.5f64).into())),
        (INV_SQRT_2PI as f64).into(),
    );
    B::float_mul(grad, B::float_add(cdf, B::float_mul(x, pdf)))
}

/// exp(x) for f32 by range reduction and a degree-6 polynomial (relative error about 2e-7),
/// written without branches so the compiler vectorises the loops that call it.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5 * 2^23 trick: `f32::round` is a libm call that blocks
    // vectorisation on baseline x86-64.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_41 + r * (0.008_333_452 + r * 0.001_394_188)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Returns (Phi(x), phi(x)): the standard normal CDF and density. The CDF uses Abramowitz &
/// Stegun 7.1.26 for erf (absolute error below 1.5e-7), sharing one exp with the density.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
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
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
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

multiversion!(gelu_backward_chunk(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
        let (cdf, pdf) = normal_cdf_pdf(v);
        *o = g * (cdf + v * pdf);
    }
});

fn contiguous_f32(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| {
        if t.is_contiguous() {
            t.clone()
        } else {
            t.to_contiguous()
        }
    })
}

fn flex_from_vec(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

impl FusedOps for Flex {
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(x) = contiguous_f32(&x) else {
            return composed_gelu::<Self>(x);
        };
        let src = x.as_slice::<f32>().expect("contiguous f32");
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| gelu_chunk(s, o));
        flex_from_vec(out, &x)
    }

    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let (Some(x), Some(g)) = (contiguous_f32(&x), contiguous_f32(&grad)) else {
            return composed_gelu_backward::<Self>(x, grad);
        };
        let (xs, gs) = (
            x.as_slice::<f32>().expect("f32"),
            g.as_slice::<f32>().expect("f32"),
        );
        assert_eq!(
            xs.len(),
            gs.len(),
            "gelu_backward: input and gradient differ in size"
        );
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
            .for_each(|(o, (xc, gc))| gelu_backward_chunk(xc, gc, o));
        flex_from_vec(out, &x)
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: Backend + FusedOps> Backward<B, 1> for GeluBackward {
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    <B as FusedOps>::gelu_backward(x, grad)
                });
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.into_primitive();
                let out = <B as FusedOps>::gelu(input.clone());
                prep.finish(input, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as FusedOps>::gelu(x.into_primitive())),
        }
    }
}

/// Exact GELU through the fused kernel when the backend has one.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_normal_cdf_are_accurate() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
        // Reference erf: burn flex's libm-based kernel.
        let dev = burn::tensor::Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev);
        let erf_ref = (t * SQRT_1_2)
            .erf()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        for (&x, &erf) in xs.iter().zip(&erf_ref) {
            let e = exp_f32(x);
            assert!(
                ((e - x.exp()) / x.exp()).abs() < 1e-6,
                "exp({x}) = {e} vs {}",
                x.exp()
            );
            let (cdf, pdf) = normal_cdf_pdf(x);
            let want = 0.5 * (1.0 + erf);
            assert!((cdf - want).abs() < 3e-7, "Phi({x}) = {cdf} vs {want}");
            let want_pdf = (-(x as f64).powi(2) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - want_pdf).abs() < 1e-7);
        }
    }

    #[test]
    fn fused_gelu_matches_burn_gelu_forward_and_backward() {
        use burn::tensor::{Device, Distribution};
        let dev = Device::flex().autodiff();
        let x = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<2>::random([64, 300], Distribution::Default, &dev);
        let fused = gelu(x.clone());
        let plain = burn::tensor::activation::gelu(x.clone());
        let f = fused.clone().into_data().try_into_vec_as::<f32>().unwrap();
        let p = plain.clone().into_data().try_into_vec_as::<f32>().unwrap();
        let max_diff = f
            .iter()
            .zip(&p)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 2e-6, "forward differs by {max_diff}");
        let gf = (fused * w.clone()).sum().backward();
        let gf = x
            .grad(&gf)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let gp = (plain * w).sum().backward();
        let gp = x
            .grad(&gp)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let max_diff = gf
            .iter()
            .zip(&gp)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-5, "gradient differs by {max_diff}");
    }
}
