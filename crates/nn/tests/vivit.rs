//! The video encoder's shapes, masking, position-embedding resize and gradients.

use pw_nn::burn::tensor::{Distribution, Int, Tensor, TensorData};
use pw_nn::vivit::{
    MapPooler, TextEncoder, VivitConfig, VivitEncoder, l2_normalize, resize_matrix,
};
use pw_nn::{DeviceKind, device};

fn tiny() -> VivitConfig {
    VivitConfig {
        patch: 4,
        d_model: 16,
        n_heads: 2,
        spatial_layers: 1,
        temporal_layers: 1,
        mlp_dim: 32,
        grid: (4, 4),
        frames: 4,
        logit_cap: 50.0,
    }
}

#[test]
fn encoder_keeps_every_space_time_token() {
    let dev = device(DeviceKind::Cpu, false).unwrap();
    let enc = VivitEncoder::new(&tiny(), &dev);
    let v = Tensor::<5>::random([2, 4, 16, 16, 3], Distribution::Uniform(0.0, 1.0), &dev);
    let y = enc.forward(v.clone());
    assert_eq!(y.dims(), [2, 4 * 16, 16]);
    // Other frame counts and sizes go through the interpolated position embeddings.
    let v2 = Tensor::<5>::random([1, 6, 24, 24, 3], Distribution::Uniform(0.0, 1.0), &dev);
    assert_eq!(enc.forward(v2).dims(), [1, 6 * 36, 16]);
}

#[test]
fn patchify_orders_rows_then_columns_then_channels() {
    let dev = device(DeviceKind::Cpu, false).unwrap();
    let enc = VivitEncoder::new(&tiny(), &dev);
    let vals: Vec<f32> = (0..8 * 8 * 3).map(|i| i as f32).collect();
    let v = Tensor::<5>::from_data(TensorData::new(vals, [1, 1, 8, 8, 3]), &dev);
    let p = enc.patchify(v).into_data().try_to_vec::<f32>().unwrap();
    // Patch 1 (row 0, col 1) starts at pixel (0, 4); its 5th value is pixel (0, 5) channel 1.
    let patch_len = 4 * 4 * 3;
    let px = |y: usize, x: usize, c: usize| ((y * 8 + x) * 3 + c) as f32;
    assert_eq!(p[patch_len], px(0, 4, 0));
    assert_eq!(p[patch_len + 4], px(0, 5, 1));
    // Its 13th value is pixel (1, 4) channel 0.
    assert_eq!(p[patch_len + 12], px(1, 4, 0));
}

#[test]
fn visible_positions_encode_the_same_as_a_gathered_input() {
    let dev = device(DeviceKind::Cpu, false).unwrap();
    let cfg = VivitConfig {
        spatial_layers: 0,
        temporal_layers: 0,
        ..tiny()
    };
    let enc = VivitEncoder::new(&cfg, &dev);
    let v = Tensor::<5>::random([1, 4, 16, 16, 3], Distribution::Uniform(0.0, 1.0), &dev);
    let full = enc
        .forward(v.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 9], [1, 2]), &dev);
    let part = enc
        .encode_patches(enc.patchify(v), 1, 4, (4, 4), Some(idx))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    // With no layers the encoder is per-token (plus norms), so each visible token equals the
    // full encoding's token at that position: frame 2, position 9.
    let d = 16;
    let (tok_full, tok_part) = ((2 * 16 + 9) * d, (2 * 2 + 1) * d);
    for k in 0..d {
        assert!((full[tok_full + k] - part[tok_part + k]).abs() < 1e-5);
    }
}

#[test]
fn resize_matches_jax_bilinear_on_known_cases() {
    // Identity.
    let m = resize_matrix(3, 3);
    assert_eq!(m, vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
    // Upsampling 2 -> 4: jax.image.resize([a, b], (4,), "bilinear") = [a, .75a+.25b, .25a+.75b, b].
    let m = resize_matrix(2, 4);
    let want = [1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0];
    for (a, b) in m.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{m:?}");
    }
    // Downsampling 4 -> 2 is antialiased: the triangle is twice as wide (weights .75, .75,
    // .25 at distances .5, .5, 1.5 from the sample at 0.5), renormalised over the input.
    let m = resize_matrix(4, 2);
    let want = [3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0, 0.0];
    for (a, b) in m[..4].iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{m:?}");
    }
}

#[test]
fn pooler_and_text_encoder_shapes_and_gradients() {
    let dev = device(DeviceKind::Cpu, true).unwrap();
    let pool = MapPooler::new(16, 64, 2, 1, &dev);
    let tokens =
        Tensor::<3>::random([3, 10, 16], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let y = pool.forward(tokens.clone(), None);
    assert_eq!(y.dims(), [3, 1, 16]);
    let text = TextEncoder::new(50, 16, 1, 2, 0.0, &dev);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![2i64, 3, 0, 4, 5, 6], [2, 3]), &dev);
    let pad = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 0, 1, 0, 0, 0], [2, 3]), &dev)
        .equal_elem(1);
    let t = l2_normalize(text.forward(ids, pad));
    assert_eq!(t.dims(), [2, 16]);
    let loss = y.reshape([3, 16]).sum() + t.sum();
    let g = loss.backward();
    assert!(tokens.grad(&g).is_some());
}
