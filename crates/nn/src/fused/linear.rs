//! A linear layer `y = x W + b` on the CPU as one gemm over all rows, forward and gradients.
//!
//! burn's `Linear` on a `[batch, seq, d_in]` input broadcasts the weight into a batched matmul:
//! `batch` small gemms forward, and backward a batched weight gradient summed over the batch.
//! burn flex also zero-fills every matmul output and copies it once more into an aligned buffer.
//! The profile of the benchmark transformer on a 2-core Xeon put 15% of the step in those fills
//! and copies, and the batch-sized gemms packed their operands once per batch. Here the rows of
//! every leading dim are one `[rows, d_in]` matrix, so each of the three products is a single
//! large gemm (the kernels burn's matmul uses), the bias is the initial value of the output, and
//! no buffer is written before the gemm writes it.

use super::conv::{matmul, matmul_uninit};
use super::matmul::filled;
use gemm::Parallelism;
use rayon::prelude::*;

/// Below this many multiply-adds one thread does the product: handing out work costs more.
const PARALLEL_MACS: usize = 1 << 18;

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// `y[r, o] = bias[o] + sum_i x[r, i] w[i, o]`: x `[rows, d_in]`, w `[d_in, d_out]`.
pub fn forward(
    rows: usize,
    d_in: usize,
    d_out: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "linear input size");
    assert_eq!(w.len(), d_in * d_out, "linear weight size");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), d_out, "linear bias size");
    }
    if rows * d_out == 0 {
        return Vec::new();
    }
    if d_in == 0 {
        return bias.map_or_else(|| vec![0f32; rows * d_out], |b| b.repeat(rows));
    }
    let par = parallelism(rows, d_out, d_in);
    match bias {
        Some(bias) => {
            let mut y = filled(rows * d_out, |y| {
                y.par_chunks_mut(d_out * 64).for_each(|c| {
                    for row in c.chunks_exact_mut(d_out) {
                        row.iter_mut().zip(bias).for_each(|(o, &b)| {
                            o.write(b);
                        });
                    }
                })
            });
            matmul(rows, d_out, d_in, &mut y, true, x, false, w, false, par);
            y
        }
        None => filled(rows * d_out, |y| {
            matmul_uninit(rows, d_out, d_in, y, x, false, w, false, par)
        }),
    }
}

/// `dx = dy wᵀ`, `[rows, d_in]`.
pub fn input_grad(rows: usize, d_in: usize, d_out: usize, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), rows * d_out, "linear output-gradient size");
    assert_eq!(w.len(), d_in * d_out, "linear weight size");
    if d_out == 0 {
        return vec![0f32; rows * d_in];
    }
    let par = parallelism(rows, d_in, d_out);
    filled(rows * d_in, |dx| {
        matmul_uninit(rows, d_in, d_out, dx, dy, false, w, true, par)
    })
}

/// `dw = xᵀ dy`, `[d_in, d_out]`: one product over all rows, so the sum over rows happens inside
/// gemm's blocked accumulation, in an order that does not depend on the thread count.
pub fn weight_grad(rows: usize, d_in: usize, d_out: usize, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "linear input size");
    assert_eq!(dy.len(), rows * d_out, "linear output-gradient size");
    if rows == 0 || d_in * d_out == 0 {
        return vec![0f32; d_in * d_out];
    }
    let par = parallelism(d_in, d_out, rows);
    filled(d_in * d_out, |dw| {
        matmul_uninit(d_in, d_out, rows, dw, x, true, dy, false, par)
    })
}

/// Rows per partial sum of [`bias_grad`].
const BIAS_ROWS: usize = 256;

/// `db[o] = sum_r dy[r, o]`: partial sums over fixed groups of rows, each streamed in memory
/// order, then added group by group, so the result does not depend on the thread count.
pub fn bias_grad(rows: usize, d_out: usize, dy: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), rows * d_out, "linear output-gradient size");
    if rows == 0 || d_out == 0 {
        return vec![0f32; d_out];
    }
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(BIAS_ROWS * d_out)
        .map(|group| {
            let mut acc = vec![0f32; d_out];
            for row in group.chunks_exact(d_out) {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
            acc
        })
        .collect();
    let mut db = vec![0f32; d_out];
    for p in &partials {
        db.iter_mut().zip(p).for_each(|(a, &v)| *a += v);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(rows: usize, d_in: usize, d_out: usize, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; rows * d_out];
        for r in 0..rows {
            for o in 0..d_out {
                y[r * d_out + o] = (0..d_in).map(|i| x[r * d_in + i] * w[i * d_out + o]).sum();
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn products_match_the_definition_at_small_and_parallel_sizes() {
        for (rows, d_in, d_out) in [(1, 3, 2), (7, 5, 9), (130, 70, 150), (512, 64, 96)] {
            let (x, w, dy) = (
                values(rows * d_in, 1),
                values(d_in * d_out, 2),
                values(rows * d_out, 3),
            );
            let b = values(d_out, 4);
            let tol = 1e-4 * d_in.max(rows) as f32;
            let y = forward(rows, d_in, d_out, &x, &w, Some(&b));
            let want = naive(rows, d_in, d_out, &x, &w);
            for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!((a - e - b[i % d_out]).abs() < tol, "y[{i}]");
            }
            let y0 = forward(rows, d_in, d_out, &x, &w, None);
            assert!(y0.iter().zip(&want).all(|(a, e)| (a - e).abs() < tol));
            // dx = dy wᵀ: the product with the transposed weight, [d_out, d_in].
            let wt: Vec<f32> = (0..d_out * d_in)
                .map(|j| w[(j % d_in) * d_out + j / d_in])
                .collect();
            let dx = input_grad(rows, d_in, d_out, &dy, &w);
            let want = naive(rows, d_out, d_in, &dy, &wt);
            assert!(dx.iter().zip(&want).all(|(a, e)| (a - e).abs() < tol));
            // dw = xᵀ dy.
            let xt: Vec<f32> = (0..d_in * rows)
                .map(|j| x[(j % rows) * d_in + j / rows])
                .collect();
            let dw = weight_grad(rows, d_in, d_out, &x, &dy);
            let want = naive(d_in, rows, d_out, &xt, &dy);
            assert!(dw.iter().zip(&want).all(|(a, e)| (a - e).abs() < tol));
            let db = bias_grad(rows, d_out, &dy);
            for (o, g) in db.iter().enumerate() {
                let want: f32 = (0..rows).map(|r| dy[r * d_out + o]).sum();
                assert!((g - want).abs() < tol, "db[{o}]");
            }
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let (rows, d_in, d_out) = (1000, 48, 72);
        let (x, dy) = (values(rows * d_in, 5), values(rows * d_out, 6));
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        weight_grad(rows, d_in, d_out, &x, &dy),
                        bias_grad(rows, d_out, &dy),
                    )
                })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads differ from one");
        }
    }

    #[test]
    fn empty_inputs_give_empty_or_zero_results() {
        assert!(forward(0, 4, 3, &[], &values(12, 1), None).is_empty());
        assert_eq!(weight_grad(0, 4, 3, &[], &[]), vec![0.0; 12]);
        assert_eq!(bias_grad(0, 3, &[]), vec![0.0; 3]);
    }
}
