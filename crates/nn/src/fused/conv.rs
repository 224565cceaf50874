//! 1-D convolution on the CPU as im2col + gemm, forward and both gradients.
//!
//! burn flex runs `conv1d` through its generic 3-D convolution and the gradients through a
//! transposed 3-D convolution: p-diff's autoencoder and denoiser spent 30-45% of their training
//! steps there, at a few GFLOP/s. Here each sample's input is unfolded into a `[c_in * k, l_out]`
//! matrix and multiplied by the `[c_out, c_in * k]` weight with the `gemm` crate (the kernels
//! burn's matmul uses); the input gradient folds `Wᵀ dy` back (col2im), and the weight gradient is
//! `dy colᵀ` summed over the batch in a fixed order, so results do not depend on the thread count.
//!
//! A transposed convolution is the adjoint of a convolution with the same weight read as
//! `[c_in_t, c_out_t, k]`: its forward is [`input_grad`], its input gradient is [`forward`] and its
//! weight gradient is [`weight_grad`] with the roles of input and output swapped.

use super::matmul::gemm_strided;
use gemm::Parallelism;
use rayon::prelude::*;

/// Geometry of a convolution (groups 1, dilation 1): the output position `l` reads the input at
/// `l * stride + k - pad` for `k < kernel`; positions outside `0..len_in` read zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub c_in: usize,
    pub len_in: usize,
    pub c_out: usize,
    pub len_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Samples per task of the weight gradient: the partial sums are added in this fixed grouping.
const GROUP: usize = 4;

impl Geometry {
    fn ck(&self) -> usize {
        self.c_in * self.kernel
    }

    /// The output positions `lo` at which tap `k` reads inside the input.
    fn valid(&self, k: usize) -> std::ops::Range<usize> {
        // lo * stride + k - pad in [0, len_in)  <=>  lo >= ceil((pad - k) / stride) and
        // lo * stride < len_in + pad - k.
        let lo_min = self
            .pad
            .saturating_sub(k)
            .div_ceil(self.stride)
            .min(self.len_out);
        let lo_end = if self.len_in + self.pad > k {
            (self.len_in + self.pad - k).div_ceil(self.stride)
        } else {
            0
        };
        lo_min..lo_end.min(self.len_out).max(lo_min)
    }

    /// Unfolds one sample `x` ([c_in, len_in]) into `col` ([c_in * kernel, len_out]).
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        for c in 0..self.c_in {
            let xr = &x[c * self.len_in..(c + 1) * self.len_in];
            for k in 0..self.kernel {
                let row = &mut col[(c * self.kernel + k) * self.len_out..][..self.len_out];
                let r = self.valid(k);
                row[..r.start].fill(0.0);
                row[r.end..].fill(0.0);
                let first = r.start * self.stride + k - self.pad;
                if self.stride == 1 {
                    row[r.clone()].copy_from_slice(&xr[first..first + r.len()]);
                } else {
                    let src = xr[first..].iter().step_by(self.stride);
                    row[r].iter_mut().zip(src).for_each(|(o, &v)| *o = v);
                }
            }
        }
    }

    /// Adds the folded `col` ([c_in * kernel, len_out]) into one sample's `dx` ([c_in, len_in]).
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        for c in 0..self.c_in {
            let dr = &mut dx[c * self.len_in..(c + 1) * self.len_in];
            for k in 0..self.kernel {
                let row = &col[(c * self.kernel + k) * self.len_out..][..self.len_out];
                let r = self.valid(k);
                let first = r.start * self.stride + k - self.pad;
                if self.stride == 1 {
                    let dst = &mut dr[first..first + r.len()];
                    dst.iter_mut().zip(&row[r]).for_each(|(d, &v)| *d += v);
                } else {
                    let dst = dr[first..].iter_mut().step_by(self.stride);
                    dst.zip(&row[r]).for_each(|(d, &v)| *d += v);
                }
            }
        }
    }

    /// Threads for one gemm: all of them when there are fewer samples than threads to spread.
    fn inner_parallelism(&self) -> Parallelism {
        if self.batch < rayon::current_num_threads() {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        }
    }
}

/// `dst[m, n] (+)= a[m, k] * b[k, n]` for row-major slices with the given strides (`a_t`/`b_t`:
/// read the operand transposed from a row-major `[k, m]` / `[n, k]` buffer).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    par: Parallelism,
) {
    assert!(dst.len() >= m * n);
    // SAFETY: dst is initialised and holds m * n values.
    unsafe { matmul_raw(m, n, k, dst.as_mut_ptr(), accumulate, a, a_t, b, b_t, par) }
}

/// [`matmul`] into an uninitialised `dst` (`accumulate = false`: gemm writes every element
/// without reading it).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    par: Parallelism,
) {
    assert!(dst.len() >= m * n);
    // SAFETY: dst holds m * n elements, and without accumulation gemm only writes them.
    unsafe { matmul_raw(m, n, k, dst.as_mut_ptr().cast(), false, a, a_t, b, b_t, par) }
}

/// # Safety
/// `dst` must be valid for writes of `m * n` f32 values, and for reads of them when
/// `accumulate` is set.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    accumulate: bool,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    par: Parallelism,
) {
    assert!(a.len() >= m * k && b.len() >= k * n);
    let (a_rs, a_cs) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the assertion above bounds every index the strides reach in a and b, the caller
    // vouches for dst.
    unsafe {
        gemm_strided(
            [m, n, k],
            dst,
            accumulate,
            (a.as_ptr(), a_rs, a_cs),
            (b.as_ptr(), b_rs, b_cs),
            par,
        )
    }
}

/// `y[b, o, l] = bias[o] + sum_{i, k} w[o, i, k] x[b, i, l * stride + k - pad]`.
pub fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.c_in * g.len_in, "conv1d input size");
    assert_eq!(w.len(), g.c_out * g.ck(), "conv1d weight size");
    let (xs, ys) = (g.c_in * g.len_in, g.c_out * g.len_out);
    let mut y = vec![0f32; g.batch * ys];
    let par = g.inner_parallelism();
    y.par_chunks_mut(ys).zip(x.par_chunks(xs)).for_each_init(
        || vec![0f32; g.ck() * g.len_out],
        |col, (yb, xb)| {
            g.im2col(xb, col);
            matmul(
                g.c_out,
                g.len_out,
                g.ck(),
                yb,
                false,
                w,
                false,
                col,
                false,
                par,
            );
            if let Some(bias) = bias {
                for (row, &bv) in yb.chunks_exact_mut(g.len_out).zip(bias) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
        },
    );
    y
}

/// The input gradient of [`forward`]: `dx = col2im(wᵀ dy)`, [batch, c_in, len_in].
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(
        dy.len(),
        g.batch * g.c_out * g.len_out,
        "conv1d output-gradient size"
    );
    assert_eq!(w.len(), g.c_out * g.ck(), "conv1d weight size");
    let (xs, ys) = (g.c_in * g.len_in, g.c_out * g.len_out);
    let mut dx = vec![0f32; g.batch * xs];
    let par = g.inner_parallelism();
    dx.par_chunks_mut(xs).zip(dy.par_chunks(ys)).for_each_init(
        || vec![0f32; g.ck() * g.len_out],
        |col, (dxb, dyb)| {
            matmul(
                g.ck(),
                g.len_out,
                g.c_out,
                col,
                false,
                w,
                true,
                dyb,
                false,
                par,
            );
            g.col2im(col, dxb);
        },
    );
    dx
}

/// The weight gradient of [`forward`]: `dw = sum_b dy_b col_bᵀ`, [c_out, c_in, kernel].
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.c_in * g.len_in, "conv1d input size");
    assert_eq!(
        dy.len(),
        g.batch * g.c_out * g.len_out,
        "conv1d output-gradient size"
    );
    let (xs, ys, ws) = (g.c_in * g.len_in, g.c_out * g.len_out, g.c_out * g.ck());
    let par = if g.batch.div_ceil(GROUP) < rayon::current_num_threads() {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let partials: Vec<Vec<f32>> = x
        .par_chunks(GROUP * xs)
        .zip(dy.par_chunks(GROUP * ys))
        .map(|(xg, dyg)| {
            let mut col = vec![0f32; g.ck() * g.len_out];
            let mut dw = vec![0f32; ws];
            for (i, (xb, dyb)) in xg.chunks_exact(xs).zip(dyg.chunks_exact(ys)).enumerate() {
                g.im2col(xb, &mut col);
                matmul(
                    g.c_out,
                    g.ck(),
                    g.len_out,
                    &mut dw,
                    i > 0,
                    dyb,
                    false,
                    &col,
                    true,
                    par,
                );
            }
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; ws]);
    for p in parts {
        dw.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one multiply-add at a time.
    fn naive(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; g.batch * g.c_out * g.len_out];
        for b in 0..g.batch {
            for o in 0..g.c_out {
                for l in 0..g.len_out {
                    let mut acc = 0f32;
                    for i in 0..g.c_in {
                        for k in 0..g.kernel {
                            let p = (l * g.stride + k) as isize - g.pad as isize;
                            if p >= 0 && (p as usize) < g.len_in {
                                acc += w[(o * g.c_in + i) * g.kernel + k]
                                    * x[(b * g.c_in + i) * g.len_in + p as usize];
                            }
                        }
                    }
                    y[(b * g.c_out + o) * g.len_out + l] = acc;
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn forward_and_gradients_match_the_definition_and_its_adjoint() {
        for (stride, pad, kernel, len_in, len_out) in [
            (1, 1, 3, 11, 11),
            (2, 2, 5, 16, 8),
            (2, 2, 5, 17, 9),
            (3, 0, 4, 13, 4),
            (1, 0, 1, 5, 5),
            // A transposed convolution's backward: more outputs than the input reaches.
            (2, 2, 5, 8, 6),
        ] {
            let g = Geometry {
                batch: 5,
                c_in: 3,
                len_in,
                c_out: 4,
                len_out,
                kernel,
                stride,
                pad,
            };
            let x = values(g.batch * g.c_in * g.len_in, 1);
            let w = values(g.c_out * g.c_in * g.kernel, 2);
            let dy = values(g.batch * g.c_out * g.len_out, 3);
            let y = forward(&g, &x, &w, None);
            let want = naive(&g, &x, &w);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{g:?}: {a} vs {b}");
            }
            // <dy, conv(x, w)> is linear in x and in w: its gradients are input_grad and
            // weight_grad, so <dy, conv(x, w)> = <input_grad(dy), x> = <weight_grad(x, dy), w>.
            let lhs = dot(&dy, &y);
            let dx = input_grad(&g, &dy, &w);
            let dw = weight_grad(&g, &x, &dy);
            assert!(
                (lhs - dot(&dx, &x)).abs() < 1e-3 * lhs.abs().max(1.0),
                "{g:?} dx"
            );
            assert!(
                (lhs - dot(&dw, &w)).abs() < 1e-3 * lhs.abs().max(1.0),
                "{g:?} dw"
            );
        }
    }

    #[test]
    fn bias_is_added_per_output_channel() {
        let g = Geometry {
            batch: 2,
            c_in: 1,
            len_in: 4,
            c_out: 2,
            len_out: 4,
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        let y = forward(&g, &[1.0; 8], &[2.0, 3.0], Some(&[10.0, 20.0]));
        assert_eq!(&y[..8], &[12.0, 12.0, 12.0, 12.0, 23.0, 23.0, 23.0, 23.0]);
    }

    #[test]
    fn weight_gradient_does_not_depend_on_the_thread_count() {
        let g = Geometry {
            batch: 13,
            c_in: 3,
            len_in: 40,
            c_out: 5,
            len_out: 20,
            kernel: 5,
            stride: 2,
            pad: 2,
        };
        let x = values(g.batch * g.c_in * g.len_in, 4);
        let dy = values(g.batch * g.c_out * g.len_out, 5);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| weight_grad(&g, &x, &dy))
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
    }
}
