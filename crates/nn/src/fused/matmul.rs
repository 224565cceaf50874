//! Batched matrix products on the CPU with the gemm crate, reading strided views in place and
//! writing fresh buffers that nothing fills first.
//!
//! burn flex's batched matmul zero-fills its output and copies it into an aligned buffer before
//! the gemm writes it, and a transposed or head-split operand (`[b, t, h, d]` viewed as
//! `[b, h, t, d]`) is first copied contiguous. Attention runs four such products per layer and
//! step; the gemm crate takes any row and column strides, so none of those passes is needed.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A `len`-element buffer that `fill` initialises whole (a gemm that writes every element, a
/// kernel that writes every output).
pub(super) fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { v.set_len(len) };
    fill(&mut v);
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `fill` initialised every element, and MaybeUninit<f32> has f32's layout.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// A `len`-element buffer cut into chunks of `chunk` elements, each zeroed and then handed to
/// `kernel(index, chunk)` on the rayon pool.
///
/// Why not `vec![0.0; len]`: when the allocator reuses freed memory (it does every training
/// step), that is a single-threaded memset of the whole buffer before the parallel kernel starts;
/// in a profile of the benchmark transformer it was a quarter of the main thread's time, with
/// the other core idle. Here each core zeroes the chunk it is about to write, while it is hot.
pub(super) fn par_zeroed_chunks(
    len: usize,
    chunk: usize,
    kernel: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    filled(len, |out| {
        out.par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, c)| kernel(i, zero_init(c)))
    })
}

/// Zeroes `c` and returns it as initialised f32s.
pub(super) fn zero_init(c: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    c.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was initialised on the line above, and MaybeUninit<f32> has f32's
    // layout.
    unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `dst[m, n] (+)= a[m, k] b[k, n]`, each operand given as (pointer, row stride, column
/// stride) and `dst` row-major: the one call into the gemm crate of the fused kernels.
///
/// # Safety
/// Every element the strides reach from `a` and `b` must be readable, and `dst` valid for
/// writes of `m * n` values (and reads when `accumulate` is set).
pub(super) unsafe fn gemm_strided(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    accumulate: bool,
    (a, a_rs, a_cs): (*const f32, isize, isize),
    (b, b_rs, b_cs): (*const f32, isize, isize),
    par: Parallelism,
) {
    // SAFETY: the caller vouches for every pointer and stride.
    unsafe {
        gemm(
            m, n, k, dst, 1, n as isize, accumulate, a, a_cs, a_rs, b, b_cs, b_rs, 1.0, 1.0, false,
            false, false, par,
        )
    }
}

/// An f32 tensor of rank >= 3 read in place as a batch of `[rows, cols]` matrices.
struct Matrices<'a> {
    data: &'a [f32],
    /// The element offset of each matrix, batch index in row-major order.
    offsets: Vec<usize>,
    rs: isize,
    cs: isize,
    rows: usize,
    cols: usize,
}

impl<'a> Matrices<'a> {
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let dims = layout.shape().as_slice();
        let r = dims.len();
        if t.dtype() != DType::F32 || r < 3 || layout.strides().iter().any(|&s| s < 0) {
            return None;
        }
        let strides = layout.strides();
        let mut offsets = vec![layout.start_offset()];
        for (&d, &s) in dims[..r - 2].iter().zip(&strides[..r - 2]) {
            offsets = offsets
                .iter()
                .flat_map(|&o| (0..d).map(move |i| o + i * s as usize))
                .collect();
        }
        let (rows, cols) = (dims[r - 2], dims[r - 1]);
        let data = t.storage::<f32>();
        // Every element any matrix reaches lies inside the buffer (gemm reads raw pointers).
        let last = offsets.iter().max().copied().unwrap_or(0)
            + rows.saturating_sub(1) * strides[r - 2] as usize
            + cols.saturating_sub(1) * strides[r - 1] as usize;
        if rows * cols > 0 && !offsets.is_empty() && last >= data.len() {
            return None;
        }
        Some(Matrices {
            data,
            offsets,
            rs: strides[r - 2],
            cs: strides[r - 1],
            rows,
            cols,
        })
    }

    /// (rows, cols, row stride, column stride) of the matrix or of its transpose.
    fn view(&self, transposed: bool) -> (usize, usize, isize, isize) {
        if transposed {
            (self.cols, self.rows, self.cs, self.rs)
        } else {
            (self.rows, self.cols, self.rs, self.cs)
        }
    }
}

/// `op(a) op(b)` for every matrix of two tensors with the same leading dims, `op` transposing
/// where its flag is set: a contiguous `[.., m, n]` tensor, or `None` when the operands are not
/// f32 views of rank >= 3 with matching shapes (the caller falls back to burn's matmul).
pub fn batched(a: &FlexTensor, a_t: bool, b: &FlexTensor, b_t: bool) -> Option<FlexTensor> {
    let (ma, mb) = (Matrices::of(a)?, Matrices::of(b)?);
    let (da, db) = (a.layout().shape().as_slice(), b.layout().shape().as_slice());
    if da.len() != db.len() || da[..da.len() - 2] != db[..db.len() - 2] {
        return None;
    }
    let (m, k, a_rs, a_cs) = ma.view(a_t);
    let (k2, n, b_rs, b_cs) = mb.view(b_t);
    if k != k2 {
        return None;
    }
    let mut dims = da[..da.len() - 2].to_vec();
    dims.extend([m, n]);
    let size = m * n;
    let batches = ma.offsets.len();
    if size == 0 || k == 0 {
        return Some(flex(vec![0f32; batches * size], dims));
    }
    let product = |dst: &mut [MaybeUninit<f32>], oa: usize, ob: usize, par: Parallelism| {
        // SAFETY: `Matrices::of` checked that every element either view reaches is inside its
        // buffer; dst holds m * n elements and gemm (without accumulation) only writes them.
        unsafe {
            gemm_strided(
                [m, n, k],
                dst.as_mut_ptr().cast::<f32>(),
                false,
                (ma.data.as_ptr().add(oa), a_rs, a_cs),
                (mb.data.as_ptr().add(ob), b_rs, b_cs),
                par,
            )
        }
    };
    let out = filled(batches * size, |out| {
        if batches >= rayon::current_num_threads() {
            out.par_chunks_mut(size)
                .enumerate()
                .for_each(|(i, o)| product(o, ma.offsets[i], mb.offsets[i], Parallelism::None));
        } else {
            let pairs = ma.offsets.iter().zip(&mb.offsets);
            for (o, (&oa, &ob)) in out.chunks_mut(size).zip(pairs) {
                product(o, oa, ob, Parallelism::Rayon(0));
            }
        }
    });
    Some(flex(out, dims))
}

/// A contiguous f32 tensor of `values` with `dims`.
pub(super) fn flex(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::backend::ops::FloatTensorOps;

    fn tensor(dims: [usize; 4], seed: u32) -> FlexTensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 997) as f32 / 498.0 - 1.0)
            .collect();
        FlexTensor::from_data(TensorData::new(v, dims))
    }

    fn values(t: FlexTensor) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn strided_and_transposed_products_match_burns_matmul() {
        // q [b, t, h, d] viewed as [b, h, t, d] (the attention's head split), k likewise.
        let (b, t, h, d) = (2, 7, 3, 5);
        let q = Flex::float_swap_dims(tensor([b, t, h, d], 1), 1, 2);
        let k = Flex::float_swap_dims(tensor([b, t, h, d], 2), 1, 2);
        for (a_t, b_t) in [(false, true), (true, false), (false, false), (true, true)] {
            let lhs = if a_t {
                Flex::float_swap_dims(q.clone(), 2, 3)
            } else {
                q.clone()
            };
            let rhs = if b_t {
                Flex::float_swap_dims(k.clone(), 2, 3)
            } else {
                k.clone()
            };
            // Shapes only agree for some flag pairs at t != d; skip the rest.
            let (ld, rd) = (lhs.layout().shape()[3], rhs.layout().shape()[2]);
            if ld != rd {
                assert!(batched(&q, a_t, &k, b_t).is_none());
                continue;
            }
            let want = values(Flex::float_matmul(lhs, rhs));
            let got = values(batched(&q, a_t, &k, b_t).expect("fused product"));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{a_t} {b_t}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn mismatched_batches_are_left_to_the_caller() {
        let a = tensor([2, 3, 4, 5], 1);
        let b = tensor([3, 3, 5, 4], 2);
        assert!(batched(&a, false, &b, false).is_none());
    }
}
