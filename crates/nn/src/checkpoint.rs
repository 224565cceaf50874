//! Module checkpoints as safetensors files, named by module path (`trunk.blocks.0.ln1.gamma`),
//! so they open in Python (`safetensors.torch.load_file`) and any other tool. Written atomically;
//! loading checks every name and shape and names the file and tensor at fault.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use pw_core::{Error, IoContext, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Named f32 tensors: name -> (shape, values).
pub type NamedTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

struct Collect {
    path: Vec<String>,
    out: NamedTensors,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("float parameters convert to f32");
        self.out.insert(self.path.join("."), (shape, values));
    }
}

/// Every float parameter of `module` by its path.
pub fn module_tensors<M: Module>(module: &M) -> NamedTensors {
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Serialises named tensors to safetensors bytes (F32), with optional string metadata.
pub fn to_safetensors_bytes(
    tensors: &NamedTensors,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    to_safetensors_bytes_as(tensors, &BTreeMap::new(), metadata)
}

/// [`to_safetensors_bytes`] with each tensor in the dtype `dtypes` names for it (`F16`,
/// `BF16`, `F64`; F32, written without a copy, when absent or unknown), rounding to nearest
/// even.
pub fn to_safetensors_bytes_as(
    tensors: &NamedTensors,
    dtypes: &BTreeMap<String, String>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    use std::borrow::Cow;
    // In the map's order, zipped with it below.
    let encoded: Vec<(Dtype, Cow<'_, [u8]>)> = tensors
        .iter()
        .map(|(name, (_, values))| {
            let (dt, b): (Dtype, Cow<'_, [u8]>) = match dtypes.get(name).map(String::as_str) {
                Some("F16") => (
                    Dtype::F16,
                    values
                        .iter()
                        .flat_map(|&v| f32_to_f16(v).to_le_bytes())
                        .collect(),
                ),
                Some("BF16") => (
                    Dtype::BF16,
                    values
                        .iter()
                        .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
                        .collect(),
                ),
                Some("F64") => (
                    Dtype::F64,
                    values
                        .iter()
                        .flat_map(|&v| (v as f64).to_le_bytes())
                        .collect(),
                ),
                _ => (Dtype::F32, Cow::Borrowed(bytemuck::cast_slice(values))),
            };
            (dt, b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&encoded)
        .map(|((name, (shape, _)), (dt, b))| {
            TensorView::new(*dt, shape.clone(), b).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Other(format!("safetensors: {e}")))?;
    safetensors::serialize(views, metadata).map_err(|e| Error::Other(format!("safetensors: {e}")))
}

/// Writes `tensors` to `path` atomically, each in the dtype `dtypes` names for it (see
/// [`to_safetensors_bytes_as`]).
pub fn save_tensors_as(
    path: &Path,
    tensors: &NamedTensors,
    dtypes: &BTreeMap<String, String>,
) -> Result<()> {
    pw_core::write_atomic(path, &to_safetensors_bytes_as(tensors, dtypes, None)?)
}

/// f32 to bfloat16, rounding to nearest even (NaN stays NaN).
pub fn f32_to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// f32 to IEEE half, rounding to nearest even; overflow becomes infinity.
pub fn f32_to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let mant = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // subnormal: shift the mantissa (with its implicit 1) into place, rounding to even
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // a carry into the exponent is the right rounding (up to infinity)
    }
    sign | h as u16
}

/// Writes `tensors` to `path` atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &NamedTensors,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    pw_core::write_atomic(path, &to_safetensors_bytes(tensors, metadata)?)
}

/// Reads every tensor of a safetensors file as f32 (F32, F16, BF16 and F64 are converted); a
/// tensor of another dtype is an error naming it.
pub fn load_tensors(path: &Path) -> Result<NamedTensors> {
    let (out, others) = load_float_tensors(path)?;
    if let Some((name, dtype)) = others.iter().next() {
        return Err(Error::invalid(
            path,
            format!("tensor {name}: dtype {dtype} is not a float type"),
        ));
    }
    Ok(out)
}

/// The float tensors of a safetensors file as f32, and the names and dtypes of the others: a
/// PyTorch state dict holds integer buffers too (BatchNorm's `num_batches_tracked` is I64),
/// which a caller that models float parameters leaves out.
pub fn load_float_tensors(path: &Path) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let (out, _, others) = load_float_tensors_typed(path)?;
    Ok((out, others))
}

/// Float tensors, their stored dtypes by name, and the dtypes of the non-float tensors left out.
pub type TypedTensors = (
    NamedTensors,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

/// [`load_float_tensors`], with each float tensor's stored dtype (`F32`, `F16`, `BF16`, `F64`)
/// so what is written back can keep it.
pub fn load_float_tensors_typed(path: &Path) -> Result<TypedTensors> {
    let bytes = std::fs::read(path).at(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::invalid(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    let mut others = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            other => {
                others.insert(name, format!("{other:?}"));
                continue;
            }
        };
        dtypes.insert(name.clone(), format!("{:?}", view.dtype()));
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok((out, dtypes, others))
}

/// IEEE half to f32 (safetensors F16 and numpy `<f2` arrays).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

struct Assign<'a> {
    path: Vec<String>,
    tensors: &'a NamedTensors,
    used: usize,
    errors: Vec<String>,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some((shape, values)) = self.tensors.get(&name) else {
            self.errors.push(format!("tensor {name} is missing"));
            return param;
        };
        let want = param.lazy_shape().dims::<D>().to_vec();
        if *shape != want {
            self.errors.push(format!(
                "tensor {name} has shape {shape:?}, the model expects {want:?}"
            ));
            return param;
        }
        self.used += 1;
        let device = param.lazy_device();
        let t = Tensor::<D>::from_data(TensorData::new(values.clone(), shape.clone()), &device);
        let id = param.id;
        param.transform_for_load(t, id)
    }
}

/// Loads `tensors` into `module` by path. Missing tensors, wrong shapes and unused tensors are
/// errors naming `source` and the tensor.
pub fn assign_tensors<M: Module>(module: M, tensors: &NamedTensors, source: &Path) -> Result<M> {
    let mut a = Assign {
        path: Vec::new(),
        tensors,
        used: 0,
        errors: Vec::new(),
    };
    let module = module.map(&mut a);
    if let Some(e) = a.errors.first() {
        let more = if a.errors.len() > 1 {
            format!(" (and {} more)", a.errors.len() - 1)
        } else {
            String::new()
        };
        return Err(Error::invalid(source, format!("{e}{more}")));
    }
    if a.used != tensors.len() {
        let known = module_tensors(&module);
        let extra: Vec<&String> = tensors
            .keys()
            .filter(|k| !known.contains_key(*k))
            .take(3)
            .collect();
        return Err(Error::invalid(
            source,
            format!("holds tensors the model does not have: {extra:?}"),
        ));
    }
    Ok(module)
}

/// Saves `module` to `path` (safetensors, atomic).
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    save_tensors(path, &module_tensors(module), None)
}

/// Loads `path` into `module`, checking names and shapes.
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let tensors = load_tensors(path)?;
    assign_tensors(module, &tensors, path)
}

/// The stage checkpoint of every long run: the module saved at `path`, loaded into
/// `template()`; when there is none yet, `train()` runs first and its result is saved there
/// (atomically), so a killed run resumes after the last finished model. Either way the module
/// returned is the one read from `path`, on the template's device.
pub fn load_or_train<M: Module>(
    path: &Path,
    template: impl FnOnce() -> M,
    train: impl FnOnce() -> Result<M>,
) -> Result<M> {
    if path.exists() {
        tracing::info!("reusing {}", path.display());
    } else {
        let trained = train()?;
        save_module(&trained, path)?;
    }
    load_module(template(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn half_and_bfloat_conversions_round_trip_and_round_to_even() {
        for v in [
            0.0f32, -0.0, 1.0, -2.5, 0.1, 65504.0, 6.1e-5, 5.96e-8, 1e-3, 2.71,
        ] {
            let h = f16_to_f32(f32_to_f16(v));
            assert!((h - v).abs() <= v.abs() * 1e-3 + 6e-8, "f16 {v} -> {h}");
            let b = f32::from_bits((f32_to_bf16(v) as u32) << 16);
            assert!((b - v).abs() <= v.abs() * 8e-3, "bf16 {v} -> {b}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00, "overflow is infinity");
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even (1.0)
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let mut t = NamedTensors::new();
        t.insert("a".into(), (vec![2], vec![0.5, -1.25]));
        t.insert("b".into(), (vec![1], vec![3.0]));
        t.insert("c".into(), (vec![1], vec![0.75]));
        let dtypes: BTreeMap<String, String> = [("a", "F16"), ("b", "BF16")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        save_tensors_as(&p, &t, &dtypes).unwrap();
        let (back, kinds, others) = load_float_tensors_typed(&p).unwrap();
        assert!(others.is_empty());
        assert_eq!(back, t, "exact for values the narrow types hold");
        assert_eq!(kinds["a"], "F16");
        assert_eq!(kinds["b"], "BF16");
        assert_eq!(kinds["c"], "F32");
    }
}
