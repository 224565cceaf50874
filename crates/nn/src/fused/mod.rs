//! Fused kernels supplied to burn through a backend extension ([`FusedOps`]).
//!
//! A plain burn flex model of the benchmark transformer spends about half its step outside the
//! matrix multiplies, in element-wise work that runs unfused on one thread: exact GELU is five
//! tensor ops forward around a scalar `erff`, layer norm nine, and the generic attention records
//! every intermediate (and rebuilds its causal mask) for autodiff. Each public function here is
//! one op with a hand-written backward node, so autodiff records a single step:
//!
//! - [`gelu`]: exact GELU, one parallel vectorised pass forward and one backward;
//! - [`silu`]: SiLU `x * sigmoid(x)` (p-diff's denoiser), likewise: burn's composes it from
//!   four ops around a scalar `expf`, which was a third of the denoiser's training step;
//! - [`layer_norm`]: row-parallel forward (flex's kernel) and a fused backward producing dx,
//!   dgamma and dbeta in one pass;
//! - [`leaky_relu`]: one pass each way (burn's is a compare, a mask and a select forward, and
//!   as many backward);
//! - [`conv1d`] and [`conv_transpose1d`]: im2col + gemm forward and gradients ([`conv`]) in
//!   place of flex's generic 3-D convolution;
//! - [`capped_attention`]: full (unmasked) attention with logits capped by `cap * tanh(x / cap)`
//!   (VideoPrism's encoders), the same shape of node with the cap folded into the softmax pass;
//! - [`causal_attention`]: the backend's batched matmuls around a parallel masked softmax and its
//!   backward;
//! - [`linear`]: `x W + b` with every leading dim folded into the rows, one gemm each for the
//!   output and the two gradients ([`linear`](mod@linear) module) instead of burn's broadcast
//!   batched matmul.
//!
//! The flex kernels live in [`cpu`]; every other backend (CUDA) gets the composed default built
//! from backend primitives, so results agree across devices. Equivalence with burn's own ops,
//! values and gradients, is tested below.
// burn 0.22 marks LibTorch deprecated; the dispatch code `backend_extension` generates for it
// names the type, so the allowance is module-wide in the `torch` build.
#![cfg_attr(feature = "torch", allow(deprecated))]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig1d;
use burn::nn::conv::{Conv1d, ConvTranspose1d};
use burn::tensor::Tensor;

pub mod conv;
pub mod cpu;
pub mod linear;
pub mod matmul;

const SQRT_1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

// LibTorch (the `torch` feature) takes every default body: the composed operations, which
// libtorch runs with its own kernels.
#[backend_extension(Flex, LibTorch: cfg(feature = "torch"), Autodiff)]
pub trait FusedOps: Backend {
    /// Exact GELU: `x * Phi(x)`.
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_gelu::<Self>(x)
    }

    /// `grad * d gelu(x) / dx`.
    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_gelu_backward::<Self>(x, grad)
    }

    /// SiLU: `x * sigmoid(x)`.
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_silu::<Self>(x)
    }

    /// `grad * d silu(x) / dx`.
    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_silu_backward::<Self>(x, grad)
    }

    /// LeakyReLU: `slope * x` where `x < 0`, `x` elsewhere.
    fn leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        <Self as burn::backend::ops::ActivationOps<Self>>::leaky_relu(x, (slope as f64).into())
    }

    /// `grad * d leaky_relu(x) / dx`: `slope * grad` where `x < 0`, `grad` elsewhere (burn's
    /// convention at 0).
    fn leaky_relu_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f32,
    ) -> FloatTensor<Self> {
        composed_leaky_relu_backward::<Self>(x, grad, slope)
    }

    /// Layer norm over the last dim: `(x - mean) / sqrt(var + eps) * gamma + beta`.
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        Self::layer_norm_op(x, gamma, beta, eps)
    }

    /// Gradients of [`layer_norm`] for upstream gradient `dy`, packed as one [n + 2, d] tensor:
    /// rows 0..n are dx (x flattened to [n, d]), row n is dgamma, row n + 1 is dbeta.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        composed_layer_norm_backward::<Self>(x, gamma, dy, eps)
    }

    /// Causal attention `softmax(q kᵀ * scale, causal) v` over [b, h, t, d] tensors.
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        attention_impl::<Self>(q, k, v, Softmax::Causal { scale }).0
    }

    /// Row softmax of `scores * scale` with the causal mask (column > row is excluded), over
    /// the last two dims of a [.., t, t] tensor.
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        composed_causal_softmax::<Self>(scores, scale)
    }

    /// Gradient of the scores given the softmax output `p` and its gradient `dp`:
    /// `scale * p * (dp - rowsum(dp * p))`.
    fn causal_softmax_backward(
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        composed_causal_softmax_backward::<Self>(p, dp, scale)
    }

    /// Row softmax over the last dim of `cap * tanh(scores * scale / cap)` (no mask).
    fn capped_softmax(scores: FloatTensor<Self>, scale: f32, cap: f32) -> FloatTensor<Self> {
        composed_capped_softmax::<Self>(scores, scale, cap)
    }

    /// Gradient of the scores of [`FusedOps::capped_softmax`] given its output `p` and the
    /// gradient `dp`: `p * (dp - rowsum(dp * p)) * scale * (1 - tanh²)`.
    fn capped_softmax_backward(
        scores: FloatTensor<Self>,
        p: FloatTensor<Self>,
        dp: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self> {
        composed_capped_softmax_backward::<Self>(scores, p, dp, scale, cap)
    }

    /// Attention `capped_softmax(q kᵀ) v` over [b, h, tq, d] / [b, h, s, d] tensors.
    fn capped_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self> {
        attention_impl::<Self>(q, k, v, Softmax::Capped { scale, cap }).0
    }

    /// One AdamW step of a parameter, as burn's `AdamW` computes it, element by element:
    /// `m' = m b1 + g (1 - b1)`, `v' = v b2 + g² (1 - b2)`,
    /// `p' = p decay - lr (m' / c1) / (sqrt(v' / c2) + eps)`, with the bias corrections `c1`,
    /// `c2` and `decay = 1 - lr * weight_decay` given. All inputs hold the same n values; the
    /// result is `[p' | m' | v']` flattened, 3n values.
    ///
    /// A backend without a kernel returns `param` as it is (n values, not 3n):
    /// [`crate::schedule::FusedAdamW`] then takes burn's own AdamW step.
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
        let _ = (
            grad, moment_1, moment_2, beta_1, beta_2, eps, c1, c2, decay, lr,
        );
        param
    }

    /// `op(a) op(b)` over the last two dims of two tensors with the same leading dims, where
    /// `op` transposes the operand whose flag is set: the products inside attention.
    fn batched_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        a_t: bool,
        b_t: bool,
    ) -> FloatTensor<Self> {
        composed_batched_matmul::<Self>(a, b, a_t, b_t)
    }

    /// `x W + b` over the last dim: x `[.., d_in]`, W `[d_in, d_out]`, b `[d_out]` ->
    /// `[.., d_out]` (burn's `Linear` semantics).
    fn linear_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed_linear::<Self>(x, weight, bias)
    }

    /// Gradient of [`FusedOps::linear_fused`] for its input: `dy Wᵀ`, shaped like the input.
    fn linear_fused_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed_linear_x_backward::<Self>(weight, output_grad)
    }

    /// Gradient of [`FusedOps::linear_fused`] for its weight: `xᵀ dy` over all rows.
    fn linear_fused_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed_linear_weight_backward::<Self>(x, output_grad)
    }

    /// Gradient of [`FusedOps::linear_fused`] for its bias: `dy` summed over all rows.
    fn linear_fused_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_linear_bias_backward::<Self>(output_grad)
    }

    /// 1-D convolution with a bias (burn's `conv1d` semantics).
    fn conv1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv1d(x, weight, Some(bias), options)
    }

    /// Gradient of [`FusedOps::conv1d_fused`] for its input.
    fn conv1d_fused_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv1d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`FusedOps::conv1d_fused`] for its weight.
    fn conv1d_fused_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv1d_weight_backward(x, weight, output_grad, options)
    }

    /// 1-D transposed convolution with a bias (burn's `conv_transpose1d` semantics).
    fn conv_transpose1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose1d(x, weight, Some(bias), options)
    }

    /// Gradient of [`FusedOps::conv_transpose1d_fused`] for its input.
    fn conv_transpose1d_fused_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose1d_x_backward(weight, output_grad, options)
    }

    /// Gradient of [`FusedOps::conv_transpose1d_fused`] for its weight.
    fn conv_transpose1d_fused_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose1d_weight_backward(x, weight, output_grad, options)
    }
}

/// The bias gradient of a 1-D (transposed) convolution: `output_grad` summed over batch and
/// length, [c_out].
fn conv_bias_grad<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let c_out = output_grad.shape()[1];
    let summed = B::float_sum_dim(B::float_sum_dim(output_grad, 2), 0);
    B::float_reshape(summed, [c_out].into())
}

/// `t` as a `[rows, last dim]` matrix, and its original dims.
fn rows_of<B: Backend>(t: FloatTensor<B>) -> (FloatTensor<B>, Vec<usize>) {
    let dims = t.shape().as_slice().to_vec();
    let d = *dims
        .last()
        .expect("a linear layer's tensors have rank >= 1");
    let rows = dims.iter().product::<usize>() / d.max(1);
    (B::float_reshape(t, [rows, d].into()), dims)
}

fn composed_batched_matmul<B: Backend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    a_t: bool,
    b_t: bool,
) -> FloatTensor<B> {
    let last_two = |t: FloatTensor<B>, flag: bool| {
        let r = t.shape().num_dims();
        if flag {
            B::float_swap_dims(t, r - 2, r - 1)
        } else {
            t
        }
    };
    B::float_matmul(last_two(a, a_t), last_two(b, b_t))
}

fn composed_linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let (x2, mut dims) = rows_of::<B>(x);
    let d_out = weight.shape()[1];
    let y = B::float_add(
        B::float_matmul(x2, weight),
        B::float_reshape(bias, [1, d_out].into()),
    );
    *dims.last_mut().expect("rank >= 1") = d_out;
    B::float_reshape(y, dims.into())
}

fn composed_linear_x_backward<B: Backend>(
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let (dy, mut dims) = rows_of::<B>(output_grad);
    let d_in = weight.shape()[0];
    let dx = B::float_matmul(dy, B::float_swap_dims(weight, 0, 1));
    *dims.last_mut().expect("rank >= 1") = d_in;
    B::float_reshape(dx, dims.into())
}

fn composed_linear_weight_backward<B: Backend>(
    x: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let (x2, _) = rows_of::<B>(x);
    let (dy, _) = rows_of::<B>(output_grad);
    B::float_matmul(B::float_swap_dims(x2, 0, 1), dy)
}

fn composed_linear_bias_backward<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let (dy, dims) = rows_of::<B>(output_grad);
    let d_out = *dims.last().expect("rank >= 1");
    B::float_reshape(B::float_sum_dim(dy, 0), [d_out].into())
}

/// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) from backend primitives.
fn composed_cdf<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let e = B::float_erf(B::float_mul_scalar(x, (SQRT_1_2 as f64).into()));
    B::float_mul_scalar(B::float_add_scalar(e, 1.0f64.into()), 0.5f64.into())
}

trait LayerNormOp: Backend {
    fn layer_norm_op(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        <Self as burn::backend::ops::ModuleOps<Self>>::layer_norm(x, gamma, Some(beta), eps as f64)
    }
}
impl<B: Backend> LayerNormOp for B {}

fn composed_layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    dy: FloatTensor<B>,
    eps: f32,
) -> FloatTensor<B> {
    let dims = x.shape();
    let d = dims[dims.num_dims() - 1];
    let n = dims.num_elements() / d;
    let x = B::float_reshape(x, [n, d].into());
    let dy = B::float_reshape(dy, [n, d].into());
    let mean = B::float_mean_dim(x.clone(), 1);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, (eps as f64).into())));
    let xhat = B::float_mul(centered, rstd.clone());
    let g = B::float_mul(dy.clone(), B::float_reshape(gamma, [1, d].into()));
    let mean_g = B::float_mean_dim(g.clone(), 1);
    let mean_gx = B::float_mean_dim(B::float_mul(g.clone(), xhat.clone()), 1);
    let dx = B::float_mul(
        rstd,
        B::float_sub(B::float_sub(g, mean_g), B::float_mul(xhat.clone(), mean_gx)),
    );
    let dgamma = B::float_sum_dim(B::float_mul(dy.clone(), xhat), 0);
    let dbeta = B::float_sum_dim(dy, 0);
    B::float_cat(vec![dx, dgamma, dbeta], 0)
}

fn capped_logits<B: Backend>(scores: FloatTensor<B>, scale: f32, cap: f32) -> FloatTensor<B> {
    let t = B::float_tanh(B::float_mul_scalar(scores, ((scale / cap) as f64).into()));
    B::float_mul_scalar(t, (cap as f64).into())
}

fn composed_capped_softmax<B: Backend>(
    scores: FloatTensor<B>,
    scale: f32,
    cap: f32,
) -> FloatTensor<B> {
    let z = capped_logits::<B>(scores, scale, cap);
    let last = z.shape().num_dims() - 1;
    let e = B::float_exp(B::float_sub(z.clone(), B::float_max_dim(z, last)));
    B::float_div(e.clone(), B::float_sum_dim(e, last))
}

fn composed_capped_softmax_backward<B: Backend>(
    scores: FloatTensor<B>,
    p: FloatTensor<B>,
    dp: FloatTensor<B>,
    scale: f32,
    cap: f32,
) -> FloatTensor<B> {
    let last = p.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), last);
    let dz = B::float_mul(p, B::float_sub(dp, dot));
    let t = B::float_tanh(B::float_mul_scalar(scores, ((scale / cap) as f64).into()));
    let slope = B::float_add_scalar(B::float_neg(B::float_mul(t.clone(), t)), 1.0f64.into());
    B::float_mul_scalar(B::float_mul(dz, slope), (scale as f64).into())
}

fn composed_causal_softmax<B: Backend>(scores: FloatTensor<B>, scale: f32) -> FloatTensor<B> {
    let dims = scores.shape().dims::<4>();
    let t = dims[2];
    let device = scores.device();
    let settings = burn::backend::get_or_init_device_settings::<B>(&device);
    let rows = B::int_reshape(
        B::int_arange(0..t as i64, &device, settings.int_dtype),
        [t, 1].into(),
    );
    let cols = B::int_reshape(
        B::int_arange(0..t as i64, &device, settings.int_dtype),
        [1, t].into(),
    );
    let mask = B::int_lower(rows, cols, settings.bool_dtype);
    let mask = B::bool_expand(B::bool_reshape(mask, [1, 1, t, t].into()), dims.into());
    let s = B::float_mask_fill(
        B::float_mul_scalar(scores, (scale as f64).into()),
        mask,
        f32::NEG_INFINITY.into(),
    );
    let max = B::float_max_dim(s.clone(), 3);
    let e = B::float_exp(B::float_sub(s, max));
    let sum = B::float_sum_dim(e.clone(), 3);
    B::float_div(e, sum)
}

fn composed_causal_softmax_backward<B: Backend>(
    p: FloatTensor<B>,
    dp: FloatTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let dot = B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), 3);
    B::float_mul_scalar(
        B::float_mul(p, B::float_sub(dp, dot)),
        (scale as f64).into(),
    )
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

pub(crate) fn composed_leaky_relu_backward<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    slope: f32,
) -> FloatTensor<B> {
    let bool_dtype = burn::backend::get_or_init_device_settings::<B>(&x.device()).bool_dtype;
    let negative = B::float_lower_elem(x, 0f32.into(), bool_dtype);
    let scaled = B::float_mul_scalar(grad.clone(), (slope as f64).into());
    B::float_mask_where(grad, negative, scaled)
}

fn composed_sigmoid<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let e = B::float_exp(B::float_neg(x));
    B::float_recip(B::float_add_scalar(e, 1.0f64.into()))
}

fn composed_silu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), composed_sigmoid::<B>(x))
}

/// `grad * s * (1 + x (1 - s))` with `s = sigmoid(x)`.
fn composed_silu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let s = composed_sigmoid::<B>(x.clone());
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0f64.into());
    let inner = B::float_add_scalar(B::float_mul(x, one_minus), 1.0f64.into());
    B::float_mul(grad, B::float_mul(s, inner))
}

/// The autodiff node of an element-wise op: keeps the input, and its backward is `backward(x,
/// grad)` of the inner backend.
struct ElementwiseBackward<B: Backend> {
    backward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend> std::fmt::Debug for ElementwiseBackward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ElementwiseBackward")
    }
}

impl<B: Backend> Backward<B, 1> for ElementwiseBackward<B> {
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            (self.backward)(x, grad)
        });
    }
}

/// `forward(x)` on the inner backend as one autodiff node with `backward`.
fn elementwise<B: Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    backward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let node = ElementwiseBackward { backward };
    match node.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let input = x.into_primitive();
            let out = forward(input.clone());
            prep.finish(input, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

#[cfg(feature = "torch")]
#[allow(deprecated)]
impl FusedOps for burn::backend::LibTorch {}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(x, <B as FusedOps>::gelu, <B as FusedOps>::gelu_backward)
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::<B, C>(x, <B as FusedOps>::silu, <B as FusedOps>::silu_backward)
    }

    fn leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        match LeakyReluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.into_primitive();
                let out = <B as FusedOps>::leaky_relu(input.clone(), slope);
                prep.finish((input, slope), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<B as FusedOps>::leaky_relu(x.into_primitive(), slope))
            }
        }
    }

    fn linear_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w) = (x.into_primitive(), weight.into_primitive());
                let out =
                    <B as FusedOps>::linear_fused(x.clone(), w.clone(), bias.into_primitive());
                prep.finish((x, w), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as FusedOps>::linear_fused(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }

    fn conv1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        conv_node::<B, C, Conv>(x, weight, bias, options)
    }

    fn conv_transpose1d_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<1>,
    ) -> FloatTensor<Self> {
        conv_node::<B, C, ConvTranspose>(x, weight, bias, options)
    }

    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
                let out = <B as FusedOps>::layer_norm(
                    x.clone(),
                    gamma.clone(),
                    beta.into_primitive(),
                    eps,
                );
                prep.finish((x, gamma, eps), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as FusedOps>::layer_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
            )),
        }
    }

    fn capped_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        cap: f32,
    ) -> FloatTensor<Self> {
        attention_node::<B, C>(q, k, v, Softmax::Capped { scale, cap })
    }

    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        attention_node::<B, C>(q, k, v, Softmax::Causal { scale })
    }
}

/// Layer norm of `x` over its last dim with a burn `LayerNorm`'s parameters (epsilon
/// [`LAYER_NORM_EPS`](crate::transformer::LAYER_NORM_EPS), the one every model here is built
/// with), as one fused autodiff node.
pub fn layer_norm<const D: usize>(ln: &burn::nn::LayerNorm, x: Tensor<D>) -> Tensor<D> {
    layer_norm_eps(ln, x, crate::transformer::LAYER_NORM_EPS)
}

/// [`layer_norm`] with another epsilon (VideoPrism's layers use 1e-6).
pub fn layer_norm_eps<const D: usize>(
    ln: &burn::nn::LayerNorm,
    x: Tensor<D>,
    eps: f64,
) -> Tensor<D> {
    let gamma = ln.gamma.val();
    let beta = match &ln.beta {
        Some(b) => b.val(),
        None => Tensor::zeros(gamma.shape(), &gamma.device()),
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps as f32,
    ))
}

/// `gn.forward(x)` for [batch, channels, length] through the fused layer norm: each group of
/// channels is one row of a layer norm without affine, then the per-channel affine. burn's
/// GroupNorm composes it from a dozen ops, each recorded for autodiff.
pub fn group_norm(gn: &burn::nn::GroupNorm, x: Tensor<3>) -> Tensor<3> {
    let [b, c, l] = x.dims();
    let g = gn.num_groups;
    if g == 0 || !c.is_multiple_of(g) || c != gn.num_channels {
        return gn.forward(x);
    }
    let h = c / g * l;
    let device = x.device();
    let normed = Tensor::<3>::from_dispatch(<Dispatch as FusedOps>::layer_norm(
        x.reshape([b, g, h]).into_dispatch(),
        Tensor::<1>::ones([h], &device).into_dispatch(),
        Tensor::<1>::zeros([h], &device).into_dispatch(),
        gn.epsilon as f32,
    ))
    .reshape([b, c, l]);
    match (&gn.gamma, &gn.beta) {
        (Some(gamma), Some(beta)) if gn.affine => {
            normed * gamma.val().reshape([1, c, 1]) + beta.val().reshape([1, c, 1])
        }
        _ => normed,
    }
}

/// Causal attention over [batch, heads, seq, head_dim] tensors with scale 1/sqrt(head_dim).
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f32).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
    ))
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for LayerNormBackward {
    /// x, gamma, epsilon.
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, f32);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, eps) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        let n = shape.num_elements() / d;
        let packed = <B as FusedOps>::layer_norm_backward(x, gamma, dy, eps);
        let rows = |start: usize, len: usize| {
            B::float_slice(
                packed.clone(),
                &[
                    burn::tensor::Slice::new(start as isize, Some((start + len) as isize), 1),
                    burn::tensor::Slice::from(..),
                ],
            )
        };
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            grads.register::<B>(node.id, B::float_reshape(rows(0, n), shape));
        }
        if let Some(node) = pg {
            grads.register::<B>(node.id, B::float_reshape(rows(n, 1), [d].into()));
        }
        if let Some(node) = pb {
            grads.register::<B>(node.id, B::float_reshape(rows(n + 1, 1), [d].into()));
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for LinearBackward {
    /// x, weight.
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [px, pw, pb] = ops.parents;
        if let Some(node) = pb {
            grads.register::<B>(
                node.id,
                <B as FusedOps>::linear_fused_bias_backward(dy.clone()),
            );
        }
        if let Some(node) = pw {
            let dw = <B as FusedOps>::linear_fused_weight_backward(x, dy.clone());
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = px {
            grads.register::<B>(node.id, <B as FusedOps>::linear_fused_x_backward(w, dy));
        }
    }
}

#[derive(Debug)]
struct LeakyReluBackward;

impl<B: Backend + FusedOps> Backward<B, 1> for LeakyReluBackward {
    /// x, slope.
    type State = (B::FloatTensorPrimitive, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, slope) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            <B as FusedOps>::leaky_relu_backward(x, grad, slope)
        });
    }
}

/// A 1-D convolution or transposed convolution as the fused node sees it: its options, its
/// forward and its two gradients on the inner backend.
trait ConvOp<B: Backend + FusedOps>: std::fmt::Debug + Send + 'static {
    type Options: Clone + Send + std::fmt::Debug + 'static;
    fn forward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        b: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B>;
    fn x_backward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B>;
    fn weight_backward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B>;
}

#[derive(Debug)]
struct Conv;

impl<B: Backend + FusedOps> ConvOp<B> for Conv {
    type Options = ConvOptions<1>;
    fn forward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        b: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv1d_fused(x, w, b, o)
    }
    fn x_backward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv1d_fused_x_backward(x, w, dy, o)
    }
    fn weight_backward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv1d_fused_weight_backward(x, w, dy, o)
    }
}

#[derive(Debug)]
struct ConvTranspose;

impl<B: Backend + FusedOps> ConvOp<B> for ConvTranspose {
    type Options = ConvTransposeOptions<1>;
    fn forward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        b: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv_transpose1d_fused(x, w, b, o)
    }
    fn x_backward(
        _: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv_transpose1d_fused_x_backward(w, dy, o)
    }
    fn weight_backward(
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        dy: FloatTensor<B>,
        o: Self::Options,
    ) -> FloatTensor<B> {
        B::conv_transpose1d_fused_weight_backward(x, w, dy, o)
    }
}

#[derive(Debug)]
struct ConvBackward<K>(std::marker::PhantomData<K>);

impl<B: Backend + FusedOps, K: ConvOp<B>> Backward<B, 3> for ConvBackward<K> {
    /// x, weight, options.
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, K::Options);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, options) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [px, pw, pb] = ops.parents;
        if let Some(node) = pb {
            grads.register::<B>(node.id, conv_bias_grad::<B>(dy.clone()));
        }
        if let Some(node) = pw {
            let dw = K::weight_backward(x.clone(), w.clone(), dy.clone(), options.clone());
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = px {
            grads.register::<B>(node.id, K::x_backward(x, w, dy, options));
        }
    }
}

/// `K::forward(x, weight, bias)` as one autodiff node.
fn conv_node<B: Backend + FusedOps, C: CheckpointStrategy, K: ConvOp<B>>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    options: K::Options,
) -> FloatTensor<Autodiff<B, C>> {
    match ConvBackward::<K>(std::marker::PhantomData)
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, w) = (x.into_primitive(), weight.into_primitive());
            let out = K::forward(x.clone(), w.clone(), bias.into_primitive(), options.clone());
            prep.finish((x, w, options), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(K::forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            options,
        )),
    }
}

/// The softmax between the two matmuls of a fused attention.
#[derive(Debug, Clone, Copy)]
enum Softmax {
    /// Causal mask, logits times `scale`.
    Causal { scale: f32 },
    /// No mask, logits `cap * tanh(x * scale / cap)`.
    Capped { scale: f32, cap: f32 },
}

/// `(out, scores, p)`: `p = softmax(q kᵀ)` as `kind` says, `out = p v`.
fn attention_impl<B: Backend + FusedOps>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    kind: Softmax,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let scores = B::batched_matmul(q, k, false, true);
    let p = match kind {
        Softmax::Causal { scale } => <B as FusedOps>::causal_softmax(scores.clone(), scale),
        Softmax::Capped { scale, cap } => {
            <B as FusedOps>::capped_softmax(scores.clone(), scale, cap)
        }
    };
    (B::batched_matmul(p.clone(), v, false, false), scores, p)
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for AttentionBackward {
    /// q, k, v, the scores (kept for the capped softmax only), the softmax output, the kind.
    type State = (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        Option<B::FloatTensorPrimitive>,
        B::FloatTensorPrimitive,
        Softmax,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, scores, p, kind) = ops.state;
        let d_out = grads.consume::<B>(&ops.node);
        let [pq, pk, pv] = ops.parents;
        if let Some(node) = pv {
            grads.register::<B>(
                node.id,
                B::batched_matmul(p.clone(), d_out.clone(), true, false),
            );
        }
        if pq.is_none() && pk.is_none() {
            return;
        }
        let dp = B::batched_matmul(d_out, v, false, true);
        let ds = match (kind, scores) {
            (Softmax::Capped { scale, cap }, Some(scores)) => {
                <B as FusedOps>::capped_softmax_backward(scores, p, dp, scale, cap)
            }
            (Softmax::Causal { scale }, _) => {
                <B as FusedOps>::causal_softmax_backward(p, dp, scale)
            }
            (Softmax::Capped { .. }, None) => unreachable!("capped attention keeps its scores"),
        };
        if let Some(node) = pq {
            grads.register::<B>(node.id, B::batched_matmul(ds.clone(), k, false, false));
        }
        if let Some(node) = pk {
            grads.register::<B>(node.id, B::batched_matmul(ds, q, true, false));
        }
    }
}

/// Attention as one autodiff node.
fn attention_node<B: Backend + FusedOps, C: CheckpointStrategy>(
    q: FloatTensor<Autodiff<B, C>>,
    k: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
    kind: Softmax,
) -> FloatTensor<Autodiff<B, C>> {
    match AttentionBackward
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
            let (out, scores, p) = attention_impl::<B>(q.clone(), k.clone(), v.clone(), kind);
            let scores = matches!(kind, Softmax::Capped { .. }).then_some(scores);
            prep.finish((q, k, v, scores, p, kind), out)
        }
        OpsKind::UnTracked(prep) => {
            let (out, _, _) = attention_impl::<B>(
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                kind,
            );
            prep.finish(out)
        }
    }
}

/// Attention over [batch, heads, tq, d] queries and [batch, heads, s, d] keys / values with
/// logits `cap * tanh(q kᵀ * scale / cap)`, no mask, through the fused kernels when the
/// backend has them.
pub fn capped_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f32,
    cap: f32,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::capped_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
        cap,
    ))
}

/// Exact GELU through the fused kernel when the backend has one.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu(x.into_dispatch()))
}

/// `lin.forward(x)` as one autodiff node whose forward and gradients are single gemms over all
/// rows of `x` ([.., d_in] -> [.., d_out]) on a backend with the fused kernel. A layer without a
/// bias adds a zero bias, which takes no gradient.
pub fn linear<const D: usize>(lin: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    let weight = lin.weight.val();
    let bias = match &lin.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([weight.dims()[1]], &weight.device()),
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::linear_fused(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// `conv.forward(x)` through the fused convolution when the backend has one. A convolution
/// without a bias or with `Same` padding takes burn's own path.
pub fn conv1d(conv: &Conv1d, x: Tensor<3>) -> Tensor<3> {
    let padding = match conv.padding {
        PaddingConfig1d::Explicit(l, r) => (l, r),
        PaddingConfig1d::Valid => (0, 0),
        PaddingConfig1d::Same => return conv.forward(x),
    };
    let Some(bias) = &conv.bias else {
        return conv.forward(x);
    };
    let options = ConvOptions {
        stride: [conv.stride],
        padding: [padding],
        dilation: [conv.dilation],
        groups: conv.groups,
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::conv1d_fused(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

/// `conv.forward(x)` through the fused transposed convolution when the backend has one. One
/// without a bias takes burn's own path.
pub fn conv_transpose1d(conv: &ConvTranspose1d, x: Tensor<3>) -> Tensor<3> {
    let Some(bias) = &conv.bias else {
        return conv.forward(x);
    };
    let options = ConvTransposeOptions::new(
        [conv.stride],
        [conv.padding],
        [conv.padding_out],
        [conv.dilation],
        conv.groups,
    );
    Tensor::from_dispatch(<Dispatch as FusedOps>::conv_transpose1d_fused(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

/// LeakyReLU with `slope` through the fused kernel when the backend has one.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::leaky_relu(x.into_dispatch(), slope))
}

/// SiLU (`x * sigmoid(x)`) through the fused kernel when the backend has one.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::silu(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::cpu::{exp_f32, normal_cdf_pdf};
    use super::*;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution, TensorData};

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let a = a.into_data().try_into_vec_as::<f32>().unwrap();
        let b = b.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: f32, what: &str) {
        let d = max_abs_diff(a, b);
        assert!(d < tol, "{what} differs by {d}");
    }

    #[test]
    fn fast_exp_and_normal_cdf_are_accurate() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
        // Reference erf: burn flex's libm-based kernel.
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &Device::flex());
        let erf_ref = (t * SQRT_1_2)
            .erf()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        for (&x, &erf) in xs.iter().zip(&erf_ref) {
            let e = exp_f32(x);
            assert!(((e - x.exp()) / x.exp()).abs() < 1e-6, "exp({x}) = {e}");
            let (cdf, pdf) = normal_cdf_pdf(x);
            let want = 0.5 * (1.0 + erf);
            assert!((cdf - want).abs() < 3e-7, "Phi({x}) = {cdf} vs {want}");
            let want_pdf = (-(x as f64).powi(2) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((pdf as f64 - want_pdf).abs() < 1e-7);
        }
    }

    #[test]
    fn fused_gelu_matches_burn_gelu_forward_and_backward() {
        let dev = Device::flex().autodiff();
        let x = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<2>::random([64, 300], Distribution::Default, &dev);
        let fused = gelu(x.clone());
        let plain = burn::tensor::activation::gelu(x.clone());
        assert_close(fused.clone(), plain.clone(), 2e-6, "forward");
        let gf = (fused * w.clone()).sum().backward();
        let gp = (plain * w).sum().backward();
        assert_close(x.grad(&gf).unwrap(), x.grad(&gp).unwrap(), 1e-5, "gradient");
    }

    #[test]
    fn fused_silu_matches_burn_silu_forward_and_backward() {
        let dev = Device::flex().autodiff();
        let x =
            Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 30.0), &dev).require_grad();
        let w = Tensor::<2>::random([64, 300], Distribution::Default, &dev);
        let fused = silu(x.clone());
        let plain = burn::tensor::activation::silu(x.clone());
        assert_close(fused.clone(), plain.clone(), 1e-5, "forward");
        let gf = (fused * w.clone()).sum().backward();
        let gp = (plain * w).sum().backward();
        assert_close(x.grad(&gf).unwrap(), x.grad(&gp).unwrap(), 1e-5, "gradient");
        // The composed fallback (other backends) computes the same function.
        let plain_dev = Device::flex();
        let x2 = Tensor::<2>::from_data(x.clone().into_data(), &plain_dev);
        let composed = Tensor::<2>::from_dispatch(composed_silu::<Dispatch>(x2.into_dispatch()));
        assert_close(
            Tensor::<2>::from_data(composed.into_data(), &dev),
            silu(x.detach()),
            1e-5,
            "composed",
        );
    }

    #[test]
    fn fused_leaky_relu_matches_burn_forward_and_backward() {
        let dev = Device::flex().autodiff();
        let x = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<2>::random([64, 300], Distribution::Default, &dev);
        let fused = leaky_relu(x.clone(), 0.2);
        let plain = burn::tensor::activation::leaky_relu(x.clone(), 0.2);
        assert_close(fused.clone(), plain.clone(), 1e-6, "forward");
        let gf = (fused * w.clone()).sum().backward();
        let gp = (plain * w).sum().backward();
        assert_close(x.grad(&gf).unwrap(), x.grad(&gp).unwrap(), 1e-6, "gradient");
    }

    #[test]
    fn fused_group_norm_matches_burn_forward_and_backward() {
        use burn::nn::GroupNormConfig;
        let dev = Device::flex().autodiff();
        dev.seed(5);
        for (groups, channels, affine) in [(8, 32, true), (1, 6, true), (2, 4, false)] {
            let mut gn = GroupNormConfig::new(groups, channels)
                .with_affine(affine)
                .init(&dev);
            if affine {
                // Not the identity initialisation, so the affine's gradients are exercised.
                gn.gamma = gn.gamma.map(|p| {
                    p.map(|t| t.random_like(Distribution::Normal(1.0, 0.5)).require_grad())
                });
                gn.beta = gn.beta.map(|p| {
                    p.map(|t| t.random_like(Distribution::Normal(0.0, 0.5)).require_grad())
                });
            }
            let x = Tensor::<3>::random([5, channels, 23], Distribution::Normal(0.5, 2.0), &dev)
                .require_grad();
            let fused = group_norm(&gn, x.clone());
            let plain = gn.forward(x.clone());
            assert_close(fused.clone(), plain.clone(), 1e-4, "group norm forward");
            let w = Tensor::<3>::random(plain.shape(), Distribution::Default, &dev);
            let gf = (fused * w.clone()).sum().backward();
            let gp = (plain * w).sum().backward();
            assert_close(
                x.grad(&gf).unwrap(),
                x.grad(&gp).unwrap(),
                1e-4,
                "group norm dx",
            );
            if let (Some(g), Some(b)) = (&gn.gamma, &gn.beta) {
                assert_close(g.grad(&gf).unwrap(), g.grad(&gp).unwrap(), 1e-3, "dgamma");
                assert_close(b.grad(&gf).unwrap(), b.grad(&gp).unwrap(), 1e-3, "dbeta");
            }
        }
    }

    #[test]
    fn fused_capped_attention_matches_burn_attention_forward_and_backward() {
        let dev = Device::flex().autodiff();
        dev.seed(9);
        for (tq, s, cap) in [(16, 16, 50.0), (8, 8, 5.0), (5, 7, 2.0)] {
            let mk = |t| {
                Tensor::<4>::random([3, 2, t, 8], Distribution::Normal(0.0, 2.0), &dev)
                    .require_grad()
            };
            let (q, k, v) = (mk(tq), mk(s), mk(s));
            let scale = 0.35;
            let opts = AttentionModuleOptions {
                scale: Some(scale as f64),
                softcap: Some(cap as f64),
                is_causal: false,
            };
            let fused = capped_attention(q.clone(), k.clone(), v.clone(), scale, cap);
            let plain = attention(q.clone(), k.clone(), v.clone(), None, None, opts);
            // Values are ~N(0, 2) and the logits reach cap = 50: the polynomial tanh's 1e-7
            // becomes a few 1e-6 at the output.
            assert_close(fused.clone(), plain.clone(), 5e-5, "output");
            let w = Tensor::<4>::random(plain.shape(), Distribution::Default, &dev);
            let gf = (fused * w.clone()).sum().backward();
            let gp = (plain * w).sum().backward();
            for (t, name) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                assert_close(t.grad(&gf).unwrap(), t.grad(&gp).unwrap(), 2e-4, name);
            }
            // The composed fallback (other backends) computes the same softmax.
            let plain_dev = Device::flex();
            let sc = Tensor::<4>::random([2, 2, tq, s], Distribution::Normal(0.0, 3.0), &plain_dev);
            let composed = Tensor::<4>::from_dispatch(composed_capped_softmax::<Dispatch>(
                sc.clone().into_dispatch(),
                scale,
                cap,
            ));
            let fast = Tensor::<4>::from_dispatch(<Dispatch as FusedOps>::capped_softmax(
                sc.into_dispatch(),
                scale,
                cap,
            ));
            assert_close(composed, fast, 1e-6, "composed softmax");
        }
    }

    #[test]
    fn fused_convolutions_match_burn_forward_and_backward() {
        use burn::nn::conv::{Conv1dConfig, ConvTranspose1dConfig};
        let dev = Device::flex().autodiff();
        dev.seed(3);
        // (c_in, c_out, kernel, stride, padding, length): p-diff's encoder and denoiser shapes,
        // an odd length and a batch smaller than the thread count.
        for (batch, c_in, c_out, kernel, stride, pad, len) in [
            (5, 1, 8, 5, 2, 2, 64),
            (5, 8, 4, 5, 1, 2, 16),
            (3, 4, 6, 3, 1, 1, 23),
            (1, 6, 6, 5, 2, 2, 31),
            (4, 3, 5, 4, 3, 0, 20),
        ] {
            let conv = Conv1dConfig::new(c_in, c_out, kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .init(&dev);
            let x = Tensor::<3>::random([batch, c_in, len], Distribution::Normal(0.0, 1.0), &dev)
                .require_grad();
            let fused = conv1d(&conv, x.clone());
            let plain = conv.forward(x.clone());
            assert_close(fused.clone(), plain.clone(), 1e-4, "conv1d forward");
            let w = Tensor::<3>::random(plain.shape(), Distribution::Default, &dev);
            let gf = (fused * w.clone()).sum().backward();
            let gp = (plain * w).sum().backward();
            assert_close(
                x.grad(&gf).unwrap(),
                x.grad(&gp).unwrap(),
                1e-4,
                "conv1d dx",
            );
            let (wf, wp) = (
                conv.weight.grad(&gf).unwrap(),
                conv.weight.grad(&gp).unwrap(),
            );
            assert_close(wf, wp, 1e-3, "conv1d dw");
            let b = conv.bias.as_ref().unwrap();
            assert_close(
                b.grad(&gf).unwrap(),
                b.grad(&gp).unwrap(),
                1e-3,
                "conv1d db",
            );

            if pad >= kernel {
                continue;
            }
            let ct = ConvTranspose1dConfig::new([c_in, c_out], kernel)
                .with_stride(stride)
                .with_padding(pad)
                .with_padding_out(stride - 1)
                .init(&dev);
            let fused = conv_transpose1d(&ct, x.clone());
            let plain = ct.forward(x.clone());
            assert_close(
                fused.clone(),
                plain.clone(),
                1e-4,
                "conv_transpose1d forward",
            );
            let w = Tensor::<3>::random(plain.shape(), Distribution::Default, &dev);
            let gf = (fused * w.clone()).sum().backward();
            let gp = (plain * w).sum().backward();
            assert_close(
                x.grad(&gf).unwrap(),
                x.grad(&gp).unwrap(),
                1e-4,
                "transposed dx",
            );
            let (wf, wp) = (ct.weight.grad(&gf).unwrap(), ct.weight.grad(&gp).unwrap());
            assert_close(wf, wp, 1e-3, "transposed dw");
            let b = ct.bias.as_ref().unwrap();
            assert_close(
                b.grad(&gf).unwrap(),
                b.grad(&gp).unwrap(),
                1e-3,
                "transposed db",
            );
        }
    }

    #[test]
    fn fused_linear_matches_burn_linear_forward_and_backward() {
        use burn::nn::LinearConfig;
        let dev = Device::flex().autodiff();
        dev.seed(5);
        // A transformer's shapes at small size, a rank-2 input, one row, and a layer without bias.
        for (dims, d_in, d_out, bias) in [
            (vec![3, 17], 24, 40, true),
            (vec![37], 24, 40, true),
            (vec![1], 8, 5, true),
            (vec![4, 9], 16, 11, false),
        ] {
            let lin = LinearConfig::new(d_in, d_out).with_bias(bias).init(&dev);
            let xs: Vec<usize> = dims.iter().copied().chain([d_in]).collect();
            let ys: Vec<usize> = dims.iter().copied().chain([d_out]).collect();
            macro_rules! run {
                ($r:literal) => {{
                    let x = Tensor::<$r>::random(
                        <[usize; $r]>::try_from(xs.clone()).unwrap(),
                        Distribution::Normal(0.0, 1.0),
                        &dev,
                    )
                    .require_grad();
                    let w = Tensor::<$r>::random(
                        <[usize; $r]>::try_from(ys.clone()).unwrap(),
                        Distribution::Default,
                        &dev,
                    );
                    let fused = linear(&lin, x.clone());
                    let plain = lin.forward(x.clone());
                    assert_close(fused.clone(), plain.clone(), 1e-5, "linear forward");
                    let gf = (fused * w.clone()).sum().backward();
                    let gp = (plain * w).sum().backward();
                    assert_close(
                        x.grad(&gf).unwrap(),
                        x.grad(&gp).unwrap(),
                        1e-5,
                        "linear dx",
                    );
                    let (wf, wp) = (lin.weight.grad(&gf).unwrap(), lin.weight.grad(&gp).unwrap());
                    assert_close(wf, wp, 1e-4, "linear dw");
                    if let Some(b) = &lin.bias {
                        assert_close(
                            b.grad(&gf).unwrap(),
                            b.grad(&gp).unwrap(),
                            1e-4,
                            "linear db",
                        );
                    }
                }};
            }
            match xs.len() {
                2 => run!(2),
                3 => run!(3),
                _ => unreachable!(),
            }
        }
        // Without autodiff the same kernel runs directly.
        let plain_dev = Device::flex();
        let lin = LinearConfig::new(6, 7).init(&plain_dev);
        let x = Tensor::<3>::random([2, 5, 6], Distribution::Normal(0.0, 1.0), &plain_dev);
        assert_close(
            linear(&lin, x.clone()),
            lin.forward(x),
            1e-5,
            "plain-device output",
        );
    }

    #[test]
    fn fused_causal_attention_matches_burn_attention_forward_and_backward() {
        let dev = Device::flex().autodiff();
        let mk = || {
            Tensor::<4>::random([3, 2, 17, 8], Distribution::Normal(0.0, 1.0), &dev).require_grad()
        };
        let (q, k, v) = (mk(), mk(), mk());
        let w = Tensor::<4>::random([3, 2, 17, 8], Distribution::Default, &dev);
        let opts = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let fused = causal_attention(q.clone(), k.clone(), v.clone());
        let plain = attention(q.clone(), k.clone(), v.clone(), None, None, opts);
        assert_close(fused.clone(), plain.clone(), 1e-5, "output");
        let gf = (fused * w.clone()).sum().backward();
        let gp = (plain * w).sum().backward();
        for (t, name) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
            assert_close(t.grad(&gf).unwrap(), t.grad(&gp).unwrap(), 1e-4, name);
        }
        // Without autodiff the same kernels run directly.
        let plain_dev = Device::flex();
        let [q2, k2, v2] =
            [&q, &k, &v].map(|t| Tensor::<4>::from_data(t.clone().into_data(), &plain_dev));
        let expected = attention(q2.clone(), k2.clone(), v2.clone(), None, None, opts);
        assert_close(
            causal_attention(q2, k2, v2),
            expected,
            1e-5,
            "plain-device output",
        );
    }

    #[test]
    fn fused_layer_norm_matches_burn_layer_norm_forward_and_backward() {
        use burn::module::Param;
        let dev = Device::flex().autodiff();
        let mut ln = burn::nn::LayerNormConfig::new(24).init(&dev);
        // Non-trivial gamma/beta so their gradients are tested too.
        ln.gamma = Param::from_tensor(Tensor::<1>::random(
            [24],
            Distribution::Normal(1.0, 0.5),
            &dev,
        ));
        ln.beta = Some(Param::from_tensor(Tensor::<1>::random(
            [24],
            Distribution::Normal(0.0, 0.5),
            &dev,
        )));
        let x =
            Tensor::<3>::random([5, 70, 24], Distribution::Normal(0.5, 2.0), &dev).require_grad();
        let w = Tensor::<3>::random([5, 70, 24], Distribution::Default, &dev);
        let fused = layer_norm(&ln, x.clone());
        let plain = ln.forward(x.clone());
        assert_close(fused.clone(), plain.clone(), 1e-5, "output");
        let gf = (fused * w.clone()).sum().backward();
        let gp = (plain * w).sum().backward();
        assert_close(x.grad(&gf).unwrap(), x.grad(&gp).unwrap(), 1e-4, "dx");
        let (g, b) = (ln.gamma.val(), ln.beta.as_ref().unwrap().val());
        assert_close(g.grad(&gf).unwrap(), g.grad(&gp).unwrap(), 1e-3, "dgamma");
        assert_close(b.grad(&gf).unwrap(), b.grad(&gp).unwrap(), 1e-3, "dbeta");
    }
}
