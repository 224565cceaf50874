//! The video encoder's shapes, masking, position-embedding resize and gradients.

use pw_nn::burn::tensor::{Distribution, Int, Tensor, TensorData};
use pw_nn::train_device;
use pw_nn::vivit::{
    MapPooler, TextEncoder, VivitConfig, VivitEncoder, l2_normalize, resize_matrix,
};

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
    let dev = train_device(false).unwrap();
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
    let dev = train_device(false).unwrap();
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
    let dev = train_device(false).unwrap();
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
    let dev = train_device(true).unwrap();
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

/// The encoder's backward pass agrees with central finite differences of its forward pass,
/// for the input frames and for each position table.
#[test]
fn encoder_gradients_match_finite_differences() {
    check_encoder_gradients(&tiny(), 2, 16);
    // The miniature's shape, where the fused kernels split their work across threads.
    let quick = VivitConfig {
        patch: 8,
        d_model: 64,
        n_heads: 4,
        spatial_layers: 2,
        temporal_layers: 2,
        mlp_dim: 128,
        frames: 8,
        ..tiny()
    };
    check_encoder_gradients(&quick, 8, 32);
}

fn check_encoder_gradients(cfg: &VivitConfig, b: usize, size: usize) {
    use pw_nn::burn::module::{Module, Param};
    let ad = train_device(true).unwrap();
    let plain = train_device(false).unwrap();
    let enc = VivitEncoder::new(cfg, &ad);
    let t = cfg.frames;
    let shape = [b, t, size, size, 3];
    let tokens = t * (size / cfg.patch) * (size / cfg.patch);
    let terms = b * tokens * cfg.d_model;
    let v0 = Tensor::<5>::random(shape, Distribution::Uniform(0.0, 1.0), &plain);
    let r = Tensor::<3>::random(
        [b, tokens, cfg.d_model],
        Distribution::Normal(0.0, 1.0),
        &plain,
    );
    let v = Tensor::<5>::from_data(v0.clone().into_data(), &ad).require_grad();
    let loss = (enc.forward(v.clone()) * Tensor::<3>::from_data(r.clone().into_data(), &ad)).sum();
    let g = loss.backward();
    let gv = v.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let fixed = enc.valid().to_device(&plain);
    let f = |m: &VivitEncoder, v: Tensor<5>| -> f64 {
        (m.forward(v) * r.clone()).sum().into_scalar::<f32>() as f64
    };
    let h = 1e-2f32;
    let check = |name: &str, ad_grad: f32, plus: f64, minus: f64| {
        let fd = (plus - minus) / (2.0 * h as f64);
        // f32 rounding of a sum over every output grows with the number of terms.
        let floor = 0.5 * (terms as f64 / 2048.0).sqrt();
        let tol = 2e-2 * fd.abs().max(ad_grad.abs() as f64).max(floor);
        assert!(
            (fd - ad_grad as f64).abs() < tol,
            "{name}: autodiff {ad_grad} vs finite difference {fd}"
        );
    };
    let vd = v0.clone().into_data().try_to_vec::<f32>().unwrap();
    for i in [0usize, 777, 3001, 6000] {
        let bump = |s: f32| {
            let mut x = vd.clone();
            x[i] += s;
            Tensor::<5>::from_data(TensorData::new(x, shape), &plain)
        };
        check(
            &format!("video[{i}]"),
            gv[i],
            f(&fixed, bump(h)),
            f(&fixed, bump(-h)),
        );
    }
    // Position tables, then one weight of each kind of layer in both stacks.
    type Pick = fn(&mut VivitEncoder) -> &mut Param<Tensor<2>>;
    let params: [(&str, Pick); 7] = [
        ("temporal_pos", |m| &mut m.temporal_pos),
        ("spatial_pos", |m| &mut m.spatial_pos),
        ("patch_projection", |m| &mut m.patch_projection.weight),
        ("spatial.query", |m| &mut m.spatial[0].attn.query.weight),
        ("spatial.fc2", |m| &mut m.spatial[0].fc2.weight),
        ("temporal.key", |m| &mut m.temporal[0].attn.key.weight),
        ("temporal.fc1", |m| &mut m.temporal[0].fc1.weight),
    ];
    for (name, pick) in params {
        let mut probe = enc.clone();
        let grads = pick(&mut probe)
            .grad(&g)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in [0usize, 17, 40] {
            let bump = |s: f32| {
                let mut m = fixed.clone();
                let p = pick(&mut m);
                let t = p.val();
                let dims = t.dims();
                let mut x = t.into_data().try_to_vec::<f32>().unwrap();
                x[i] += s;
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(x, dims), &plain));
                m
            };
            let (plus, minus) = (f(&bump(h), v0.clone()), f(&bump(-h), v0.clone()));
            check(&format!("{name}[{i}]"), grads[i], plus, minus);
        }
    }
}

/// A fresh encoder's position tables are sin-cos: the spatial table's first half encodes the
/// row and its second half the column; no two frames start alike.
#[test]
fn fresh_position_tables_are_sincos_and_distinct() {
    use pw_nn::vivit::{spatial_sincos, temporal_sincos};
    let (gh, gw, d) = (3, 4, 16);
    let s = spatial_sincos(gh, gw, d);
    let row = |p: usize| &s[p * d..(p + 1) * d];
    // Same row, another column: equal row half, different column half.
    assert_eq!(row(1)[..d / 2], row(2)[..d / 2]);
    assert_ne!(row(1)[d / 2..], row(2)[d / 2..]);
    // Same column, another row.
    assert_eq!(row(1)[d / 2..], row(gw + 1)[d / 2..]);
    assert_ne!(row(1)[..d / 2], row(gw + 1)[..d / 2]);
    let t = temporal_sincos(8, d);
    for a in 0..8 {
        for b in 0..a {
            let dist: f32 = (0..d).map(|i| (t[a * d + i] - t[b * d + i]).powi(2)).sum();
            assert!(dist > 0.05, "frames {a} and {b} start too alike: {dist}");
        }
    }
    let dev = train_device(false).unwrap();
    let enc = VivitEncoder::new(&tiny(), &dev);
    let table = enc
        .spatial_pos
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(table, spatial_sincos(4, 4, 16));
}
