//! The released VideoPrism checkpoints: `.npz` archives (zip of `.npy` arrays) whose member
//! names are Flax parameter paths joined by '/'. In the "repeated" files (`scan=True`) the
//! layers of a stack are one array with the layer on the leading axis
//! (`.../transformers_stack/x_layers/...`); unrolled files name each layer
//! (`.../x_layers_0/...`). Both load.
//!
//! Mapping to [`VivitEncoder`] (Flax -> burn):
//! - `patch_projection/linear/kernel [P*P*3, D]` -> `patch_projection.weight` (same layout);
//! - `{spatial,temporal}_pos_emb/emb_var [N, D]` -> the position tables;
//! - per layer: `layer_norm`, `self_attention/{query,key,value}/w [D, heads, head_dim]` ->
//!   `[D, heads * head_dim]`, `self_attention/post/w [D, heads, head_dim]` -> transposed to
//!   `[heads * head_dim, D]`, `ff_layer/layer_norm`, `ff_layer/ffn_layer{1,2}/linear`;
//! - every LayerNorm `scale` `s` becomes the weight `1 + s` (VideoPrism's LayerNorm).
//!
//! Also [`write_npz`], to write checkpoints in that layout (our tests' small random ones).

use pw_core::{Error, IoContext, Result};
use pw_nn::burn::module::Param;
use pw_nn::burn::nn::{LayerNorm, Linear};
use pw_nn::burn::tensor::{Device, Tensor, TensorData};
use pw_nn::vivit::{VivitConfig, VivitEncoder, VpBlock};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// One array: shape and values as f32 (f16 and f64 are converted).
#[derive(Debug, Clone, PartialEq)]
pub struct NpArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parses one `.npy` member (format versions 1-3, little-endian f2/f4/f8, C order).
pub fn parse_npy(bytes: &[u8], what: &str) -> std::result::Result<NpArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{what}: not a .npy array (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(format!("{what}: truncated .npy header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("{what}: unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| format!("{what}: truncated .npy header"))?;
    let header = String::from_utf8_lossy(header);
    let field = |key: &str| -> Option<String> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let descr = field("descr")
        .and_then(|r| {
            r.strip_prefix('\'')
                .map(|s| s.split('\'').next().unwrap_or("").to_string())
        })
        .ok_or_else(|| format!("{what}: .npy header has no descr"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(format!("{what}: Fortran-order arrays are not supported"));
    }
    let shape_s = field("shape").ok_or_else(|| format!("{what}: .npy header has no shape"))?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("{what}: bad shape in .npy header"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("{what}: bad shape {inner:?}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let width = match descr.as_str() {
        "<f4" => 4,
        "<f2" => 2,
        "<f8" => 8,
        d => {
            return Err(format!(
                "{what}: dtype {d} is not supported (f16, f32, f64)"
            ));
        }
    };
    if body.len() != n * width {
        return Err(format!(
            "{what}: {} data bytes for shape {shape:?} of {descr} (expected {})",
            body.len(),
            n * width
        ));
    }
    let data = match width {
        4 => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        8 => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => body
            .chunks_exact(2)
            .map(|c| pw_nn::checkpoint::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
    };
    Ok(NpArray { shape, data })
}

/// Every array of an `.npz` file, by member name without the `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpArray>> {
    let f = std::fs::File::open(path).at(path)?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| Error::invalid(path, format!("not an .npz (zip) archive: {e}")))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::invalid(path, format!("corrupt .npz member {i}: {e}")))?;
        let name = member.name().to_string();
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| Error::invalid(path, format!("{name}: truncated or corrupt: {e}")))?;
        let arr = parse_npy(&bytes, &name).map_err(|e| Error::invalid(path, e))?;
        out.insert(name.trim_end_matches(".npy").to_string(), arr);
    }
    Ok(out)
}

/// `a` as a `.npy` file (version 1, little-endian f32).
pub fn npy_bytes(a: &NpArray) -> Vec<u8> {
    let shape = match a.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts on a 64-byte boundary, newline-terminated, as numpy writes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &a.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `arrays` as an uncompressed `.npz` (what `numpy.savez` writes), atomically.
pub fn write_npz(path: &Path, arrays: &BTreeMap<String, NpArray>) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::FileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(false);
        for (name, a) in arrays {
            zip.start_file(format!("{name}.npy"), opts)
                .map_err(|e| Error::Other(format!("npz {name}: {e}")))?;
            zip.write_all(&npy_bytes(a))
                .map_err(|e| Error::Other(format!("npz {name}: {e}")))?;
        }
        zip.finish()
            .map_err(|e| Error::Other(format!("npz: {e}")))?;
    }
    pw_core::write_atomic(path, buf.get_ref())
}

/// The arrays of one checkpoint with their prefix (`params/`, `vision_encoder/`) removed.
pub struct Checkpoint<'a> {
    path: &'a Path,
    arrays: BTreeMap<String, NpArray>,
}

impl<'a> Checkpoint<'a> {
    pub fn open(path: &'a Path) -> Result<Self> {
        let raw = read_npz(path)?;
        let arrays = raw
            .into_iter()
            .map(|(k, v)| {
                let k = k.strip_prefix("params/").unwrap_or(&k).to_string();
                let k = k.strip_prefix("vision_encoder/").unwrap_or(&k).to_string();
                (k, v)
            })
            .collect();
        Ok(Checkpoint { path, arrays })
    }

    fn get(&self, name: &str) -> Result<&NpArray> {
        self.arrays
            .get(name)
            .ok_or_else(|| Error::invalid(self.path, format!("parameter {name} is missing")))
    }

    /// `name`, checked to have `shape`.
    fn take(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let a = self.get(name)?;
        if a.shape != shape {
            return Err(Error::invalid(
                self.path,
                format!(
                    "parameter {name} has shape {:?}, expected {shape:?}",
                    a.shape
                ),
            ));
        }
        Ok(a.data.clone())
    }

    /// Layer `i` of stack `stack`'s parameter `leaf` with per-layer `shape`, from either layout.
    fn layer(&self, stack: &str, i: usize, leaf: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let unrolled = format!("{stack}/transformers_stack/x_layers_{i}/{leaf}");
        if self.arrays.contains_key(&unrolled) {
            return self.take(&unrolled, shape);
        }
        let name = format!("{stack}/transformers_stack/x_layers/{leaf}");
        let a = self.get(&name)?;
        if a.shape.len() != shape.len() + 1 || a.shape[1..] != *shape || a.shape[0] <= i {
            return Err(Error::invalid(
                self.path,
                format!(
                    "parameter {name} has shape {:?}, expected [layers > {i}] + {shape:?}",
                    a.shape
                ),
            ));
        }
        let n: usize = shape.iter().product();
        Ok(a.data[i * n..(i + 1) * n].to_vec())
    }

    /// Layers in a stack (from the stacked array's leading axis, or by counting names).
    fn layers(&self, stack: &str) -> usize {
        let stacked = format!("{stack}/transformers_stack/x_layers/layer_norm/scale");
        if let Some(a) = self.arrays.get(&stacked) {
            return a.shape.first().copied().unwrap_or(0);
        }
        (0..)
            .take_while(|i| {
                self.arrays.contains_key(&format!(
                    "{stack}/transformers_stack/x_layers_{i}/layer_norm/scale"
                ))
            })
            .count()
    }

    /// The encoder's shape read from the arrays (`logit_cap` is not stored: the released
    /// models use 50).
    pub fn config(&self, logit_cap: f64) -> Result<VivitConfig> {
        let k = self.get("patch_projection/linear/kernel")?;
        let (pin, d) = match k.shape[..] {
            [a, b] => (a, b),
            _ => {
                return Err(Error::invalid(
                    self.path,
                    "patch_projection/linear/kernel is not 2-D",
                ));
            }
        };
        let patch = ((pin / 3) as f64).sqrt().round() as usize;
        if patch * patch * 3 != pin {
            return Err(Error::invalid(
                self.path,
                format!("patch projection input {pin} is not 3 * p^2"),
            ));
        }
        let s = self.get("spatial_pos_emb/emb_var")?.shape.clone();
        let side = (s[0] as f64).sqrt().round() as usize;
        if side * side != s[0] {
            return Err(Error::invalid(
                self.path,
                format!("spatial_pos_emb has {} rows, not a square grid", s[0]),
            ));
        }
        let t = self.get("temporal_pos_emb/emb_var")?.shape[0];
        let q = self.first_layer_shape("spatial_encoder", "self_attention/query/w")?;
        let m = self.first_layer_shape("spatial_encoder", "ff_layer/ffn_layer1/linear/kernel")?;
        let cfg = VivitConfig {
            patch,
            d_model: d,
            n_heads: q[1],
            spatial_layers: self.layers("spatial_encoder"),
            temporal_layers: self.layers("temporal_encoder"),
            mlp_dim: m[1],
            grid: (side, side),
            frames: t,
            logit_cap,
        };
        cfg.validate().map_err(|e| Error::invalid(self.path, e))?;
        Ok(cfg)
    }

    fn first_layer_shape(&self, stack: &str, leaf: &str) -> Result<Vec<usize>> {
        let unrolled = format!("{stack}/transformers_stack/x_layers_0/{leaf}");
        if let Some(a) = self.arrays.get(&unrolled) {
            return Ok(a.shape.clone());
        }
        let a = self.get(&format!("{stack}/transformers_stack/x_layers/{leaf}"))?;
        Ok(a.shape[1..].to_vec())
    }
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn set_linear(
    lin: &mut Linear,
    w: Vec<f32>,
    b: Vec<f32>,
    din: usize,
    dout: usize,
    device: &Device,
) {
    lin.weight = Param::from_tensor(tensor(w, [din, dout], device));
    lin.bias = Some(Param::from_tensor(tensor(b, [dout], device)));
}

fn set_ln(ln: &mut LayerNorm, scale: Vec<f32>, bias: Vec<f32>, device: &Device) {
    let d = scale.len();
    let w: Vec<f32> = scale.iter().map(|s| 1.0 + s).collect();
    ln.gamma = Param::from_tensor(tensor(w, [d], device));
    ln.beta = Some(Param::from_tensor(tensor(bias, [d], device)));
}

/// `[D, N, H]` -> `[N * H, D]` (the output projection's burn layout).
fn transpose_post(w: &[f32], d: usize, nh: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for i in 0..d {
        for j in 0..nh {
            out[j * d + i] = w[i * nh + j];
        }
    }
    out
}

fn load_block(
    ck: &Checkpoint,
    block: &mut VpBlock,
    stack: &str,
    i: usize,
    cfg: &VivitConfig,
    device: &Device,
) -> Result<()> {
    let (d, h, m) = (cfg.d_model, cfg.n_heads, cfg.mlp_dim);
    let hd = d / h;
    let l = |leaf: &str, shape: &[usize]| ck.layer(stack, i, leaf, shape);
    set_ln(
        &mut block.ln1,
        l("layer_norm/scale", &[d])?,
        l("layer_norm/bias", &[d])?,
        device,
    );
    for (name, lin) in [
        ("query", &mut block.attn.query),
        ("key", &mut block.attn.key),
        ("value", &mut block.attn.value),
    ] {
        let w = l(&format!("self_attention/{name}/w"), &[d, h, hd])?;
        let b = l(&format!("self_attention/{name}/b"), &[h, hd])?;
        set_linear(lin, w, b, d, d, device);
    }
    let w = l("self_attention/post/w", &[d, h, hd])?;
    let b = l("self_attention/post/b", &[d])?;
    set_linear(
        &mut block.attn.post,
        transpose_post(&w, d, d),
        b,
        d,
        d,
        device,
    );
    set_ln(
        &mut block.ln2,
        l("ff_layer/layer_norm/scale", &[d])?,
        l("ff_layer/layer_norm/bias", &[d])?,
        device,
    );
    set_linear(
        &mut block.fc1,
        l("ff_layer/ffn_layer1/linear/kernel", &[d, m])?,
        l("ff_layer/ffn_layer1/linear/bias", &[m])?,
        d,
        m,
        device,
    );
    set_linear(
        &mut block.fc2,
        l("ff_layer/ffn_layer2/linear/kernel", &[m, d])?,
        l("ff_layer/ffn_layer2/linear/bias", &[d])?,
        m,
        d,
        device,
    );
    Ok(())
}

/// Loads the video encoder of a released checkpoint (or one written in its layout). Every
/// parameter is checked by name and shape; an error names the file and the parameter.
pub fn load_encoder(
    path: &Path,
    logit_cap: f64,
    device: &Device,
) -> Result<(VivitEncoder, VivitConfig)> {
    let ck = Checkpoint::open(path)?;
    let cfg = ck.config(logit_cap)?;
    let (d, p) = (cfg.d_model, cfg.patch);
    let mut enc = VivitEncoder::new(&cfg, device);
    set_linear(
        &mut enc.patch_projection,
        ck.take("patch_projection/linear/kernel", &[p * p * 3, d])?,
        ck.take("patch_projection/linear/bias", &[d])?,
        p * p * 3,
        d,
        device,
    );
    let n = cfg.grid.0 * cfg.grid.1;
    enc.spatial_pos = Param::from_tensor(tensor(
        ck.take("spatial_pos_emb/emb_var", &[n, d])?,
        [n, d],
        device,
    ));
    enc.temporal_pos = Param::from_tensor(tensor(
        ck.take("temporal_pos_emb/emb_var", &[cfg.frames, d])?,
        [cfg.frames, d],
        device,
    ));
    for (i, b) in enc.spatial.iter_mut().enumerate() {
        load_block(&ck, b, "spatial_encoder", i, &cfg, device)?;
    }
    for (i, b) in enc.temporal.iter_mut().enumerate() {
        load_block(&ck, b, "temporal_encoder", i, &cfg, device)?;
    }
    set_ln(
        &mut enc.spatial_ln,
        ck.take("spatial_ln/scale", &[d])?,
        ck.take("spatial_ln/bias", &[d])?,
        device,
    );
    set_ln(
        &mut enc.temporal_ln,
        ck.take("temporal_ln/scale", &[d])?,
        ck.take("temporal_ln/bias", &[d])?,
        device,
    );
    Ok((enc, cfg))
}

/// A random checkpoint of `cfg` in the released "repeated" layout (layers stacked), seeded:
/// what the numerics check feeds to both the official model and ours.
pub fn random_official(cfg: &VivitConfig, seed: u64) -> BTreeMap<String, NpArray> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, rng: &mut rand::rngs::StdRng| {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale)
            .collect();
        out.insert(name, NpArray { shape, data });
    };
    let (d, h, m, p) = (cfg.d_model, cfg.n_heads, cfg.mlp_dim, cfg.patch);
    let hd = d / h;
    let wd = 1.0 / (d as f32).sqrt();
    put(
        "patch_projection/linear/kernel".into(),
        vec![p * p * 3, d],
        1.0 / (p as f32),
        &mut rng,
    );
    put(
        "patch_projection/linear/bias".into(),
        vec![d],
        0.1,
        &mut rng,
    );
    put(
        "spatial_pos_emb/emb_var".into(),
        vec![cfg.grid.0 * cfg.grid.1, d],
        0.5,
        &mut rng,
    );
    put(
        "temporal_pos_emb/emb_var".into(),
        vec![cfg.frames, d],
        0.5,
        &mut rng,
    );
    for (stack, layers) in [
        ("spatial_encoder", cfg.spatial_layers),
        ("temporal_encoder", cfg.temporal_layers),
    ] {
        let s = |leaf: &str| format!("{stack}/transformers_stack/x_layers/{leaf}");
        put(s("layer_norm/scale"), vec![layers, d], 0.2, &mut rng);
        put(s("layer_norm/bias"), vec![layers, d], 0.2, &mut rng);
        for q in ["query", "key", "value", "post"] {
            put(
                s(&format!("self_attention/{q}/w")),
                vec![layers, d, h, hd],
                1.5 * wd,
                &mut rng,
            );
        }
        for q in ["query", "key", "value"] {
            put(
                s(&format!("self_attention/{q}/b")),
                vec![layers, h, hd],
                0.1,
                &mut rng,
            );
        }
        put(s("self_attention/post/b"), vec![layers, d], 0.1, &mut rng);
        put(
            s("ff_layer/layer_norm/scale"),
            vec![layers, d],
            0.2,
            &mut rng,
        );
        put(
            s("ff_layer/layer_norm/bias"),
            vec![layers, d],
            0.2,
            &mut rng,
        );
        put(
            s("ff_layer/ffn_layer1/linear/kernel"),
            vec![layers, d, m],
            wd,
            &mut rng,
        );
        put(
            s("ff_layer/ffn_layer1/linear/bias"),
            vec![layers, m],
            0.1,
            &mut rng,
        );
        put(
            s("ff_layer/ffn_layer2/linear/kernel"),
            vec![layers, m, d],
            1.0 / (m as f32).sqrt(),
            &mut rng,
        );
        put(
            s("ff_layer/ffn_layer2/linear/bias"),
            vec![layers, d],
            0.1,
            &mut rng,
        );
    }
    for ln in ["spatial_ln", "temporal_ln"] {
        put(format!("{ln}/scale"), vec![d], 0.2, &mut rng);
        put(format!("{ln}/bias"), vec![d], 0.2, &mut rng);
    }
    out
}
