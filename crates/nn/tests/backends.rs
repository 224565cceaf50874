//! The LibTorch backend (the `torch` feature: `--device torch-cpu` / `cuda[:N]`, checked by
//! `make test-gpu`) computes what the default flex backend computes. The flex side runs the fused
//! CPU kernels, the LibTorch side their composed fallbacks on libtorch's kernels, so these tests
//! also pin the fused kernels to an independent implementation.
//!
//! - one transformer with the same weights on both backends, the same batches and the same AdamW
//!   schedule: the losses agree step by step;
//! - the fused operations the paper crates use (1-D convolution and its transpose, group norm,
//!   SiLU, LeakyReLU, GELU, causal attention): outputs and input gradients agree.
#![cfg(feature = "torch")]

use pw_nn::burn::module::Module;
use pw_nn::burn::nn::conv::{Conv1dConfig, ConvTranspose1dConfig};
use pw_nn::burn::nn::loss::CrossEntropyLossConfig;
use pw_nn::burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use pw_nn::checkpoint::{NamedTensors, assign_tensors, module_tensors};
use pw_nn::schedule::OptimConfig;
use pw_nn::train::{StepOutput, train_loop};
use pw_nn::transformer::{CausalLm, TransformerConfig};
use pw_nn::{DeviceKind, device, fused};
use rand::{Rng, SeedableRng};

fn torch_kind() -> DeviceKind {
    // `PW_DEVICE=cuda` runs the same comparison against the GPU on a machine that has one.
    match pw_nn::selected_device().unwrap() {
        DeviceKind::Cpu => DeviceKind::TorchCpu,
        other => other,
    }
}

fn cfg() -> TransformerConfig {
    TransformerConfig {
        vocab_size: 11,
        max_len: 17,
        d_model: 64,
        n_heads: 4,
        n_layers: 2,
        mlp_ratio: 4,
        causal: true,
    }
}

/// The loss of every step of a short AdamW run from `init` on `kind`, on batches drawn from one
/// seed (the digit-reversal task of tests/reversal.rs).
fn losses(kind: DeviceKind, init: &NamedTensors, steps: usize) -> Vec<f32> {
    let dev = device(kind, true).unwrap();
    let model = assign_tensors(
        CausalLm::new(&cfg(), &dev),
        init,
        std::path::Path::new("flex"),
    )
    .unwrap();
    let optim = OptimConfig {
        lr: 3e-3,
        warmup_steps: 5,
        grad_clip: Some(1.0),
        ..Default::default()
    };
    let ce = CrossEntropyLossConfig::new().init(&dev);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (_, logs) = train_loop(
        model,
        steps,
        &optim,
        "parity",
        1,
        |m, _| {
            let mut all = Vec::new();
            for _ in 0..16 {
                let d: Vec<i64> = (0..8).map(|_| rng.random_range(0..10)).collect();
                all.extend(&d);
                all.push(10);
                all.extend(d.iter().rev());
            }
            let t = Tensor::<2, Int>::from_data(TensorData::new(all, [16, 17]), &dev);
            let (x, y) = (t.clone().narrow(1, 0, 16), t.narrow(1, 1, 16));
            let logits = m.forward(x).reshape([16 * 16, 11]);
            StepOutput {
                loss: ce.forward(logits, y.reshape([16 * 16])),
                items: 256,
            }
        },
        |_| true,
    );
    logs.iter().map(|l| l.loss).collect()
}

#[test]
fn a_transformer_trains_to_the_same_losses_on_both_backends() {
    let flex = device(DeviceKind::Cpu, false).unwrap();
    pw_nn::seed_everything(&flex, 3);
    let init = module_tensors(&CausalLm::new(&cfg(), &flex));
    let steps = 30;
    let a = losses(DeviceKind::Cpu, &init, steps);
    let b = losses(torch_kind(), &init, steps);
    assert_eq!((a.len(), b.len()), (steps, steps));
    eprintln!(
        "flex {:?}\n{:?} {:?}",
        &a[..5],
        device(torch_kind(), false).unwrap(),
        &b[..5]
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 2e-3 * x.abs().max(1.0),
            "step {i}: flex loss {x}, libtorch loss {y}\nflex {a:?}\nlibtorch {b:?}"
        );
    }
    assert!(a[steps - 1] < a[0] - 0.3, "the run did not learn: {a:?}");
}

/// `f` on the same input on flex and on the LibTorch device: outputs and the gradient of
/// `sum(out * w)` (a fixed random `w`) with respect to the input. Prints the largest relative
/// difference of each and returns the parts that miss the tolerance, so one run (a GPU run is
/// short) shows every operation's figure.
fn check<const D: usize>(
    what: &str,
    shape: [usize; D],
    f: impl Fn(Tensor<D>, &Device) -> Tensor<D>,
) -> Vec<String> {
    let flex = device(DeviceKind::Cpu, true).unwrap();
    let torch = device(torch_kind(), true).unwrap();
    pw_nn::seed_everything(&flex, 5);
    let x = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &flex);
    let run = |dev: &Device| {
        let x = Tensor::<D>::from_data(x.to_data(), dev).require_grad();
        let y = f(x.clone(), dev);
        let w = Tensor::<D>::from_data(
            TensorData::new(
                (0..y.shape().num_elements())
                    .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
                    .collect::<Vec<f32>>(),
                y.shape(),
            ),
            dev,
        );
        let grads = (y.clone() * w).sum().backward();
        let gx = x.grad(&grads).unwrap();
        (
            y.into_data().try_to_vec::<f32>().unwrap(),
            gx.into_data().try_to_vec::<f32>().unwrap(),
        )
    };
    let (ya, ga) = run(&flex);
    let (yb, gb) = run(&torch);
    let close = |a: &[f32], b: &[f32], part: &str| {
        assert_eq!(a.len(), b.len(), "{what} {part}: lengths");
        let worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs() / p.abs().max(1.0))
            .fold(0f32, f32::max);
        eprintln!("{what} {part}: largest difference {worst:.2e}");
        (worst > 1e-4).then(|| format!("{what} {part}: largest difference {worst}"))
    };
    [close(&ya, &yb, "output"), close(&ga, &gb, "input gradient")]
        .into_iter()
        .flatten()
        .collect()
}

/// A module made on flex with seeded weights, moved to `dev` through its tensors.
fn on<M: Module>(m: M, make: impl Fn(&Device) -> M, dev: &Device) -> M {
    assign_tensors(make(dev), &module_tensors(&m), std::path::Path::new("flex")).unwrap()
}

#[test]
fn the_fused_operations_agree_with_libtorch() {
    let flex = device(DeviceKind::Cpu, false).unwrap();
    pw_nn::seed_everything(&flex, 9);
    let conv = |d: &Device| {
        Conv1dConfig::new(6, 8, 5)
            .with_stride(2)
            .with_padding(pw_nn::burn::nn::PaddingConfig1d::Explicit(2, 2))
            .init(d)
    };
    let base = conv(&flex);
    let mut missed = check("conv1d", [3, 6, 40], |x, d| {
        fused::conv1d(&on(base.clone(), conv, d), x)
    });
    let tconv = |d: &Device| {
        ConvTranspose1dConfig::new([8, 6], 4)
            .with_stride(2)
            .with_padding(1)
            .init(d)
    };
    let tbase = tconv(&flex);
    missed.extend(check("conv_transpose1d", [3, 8, 20], |x, d| {
        fused::conv_transpose1d(&on(tbase.clone(), tconv, d), x)
    }));
    let gn = |d: &Device| pw_nn::burn::nn::GroupNormConfig::new(2, 6).init(d);
    let gbase = gn(&flex);
    missed.extend(check("group_norm", [3, 6, 10], |x, d| {
        fused::group_norm(&on(gbase.clone(), gn, d), x)
    }));
    missed.extend(check("silu", [4, 33], |x, _| fused::silu(x)));
    missed.extend(check("gelu", [4, 33], |x, _| fused::gelu(x)));
    missed.extend(check("leaky_relu", [4, 33], |x, _| {
        fused::leaky_relu(x, 0.2)
    }));
    missed.extend(check("causal_attention", [2, 2, 7, 8], |x, _| {
        fused::causal_attention(x.clone(), x.clone() * 0.5, x)
    }));
    assert!(
        missed.is_empty(),
        "beyond the 1e-4 tolerance on {:?}:\n{}",
        torch_kind(),
        missed.join("\n")
    );
}
