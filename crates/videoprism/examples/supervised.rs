//! A learnability check beside the frozen-encoder ladder: trains the quick-size encoder and an
//! attention-pooler probe end to end, with labels, on one task, and prints the loss and the
//! validation accuracy every 50 steps. If supervision cannot teach the encoder a task within a
//! budget, neither pre-training stage will.
//!
//! ```text
//! cargo run --release -p pw-videoprism --example supervised -- TASK [STEPS] [LR] [--random-pos]
//! ```
//! TASK: `appearance` (24 classes), `motion` (8), `direction` (4) on the synthetic clips, or
//! `square` (4): a control of fresh clips each step, a 10-px square of random colour on a flat
//! background moving 2 px per frame right, down, left or up. `--random-pos` starts the learned
//! position tables as N(0, 0.02) instead of the encoder's sin-cos tables.
//! `--easy` trains on fresh synthetic clips each step, only large objects without appear /
//! leave events, with the background flattened to grey (validation likewise): the synthetic
//! task with its clutter removed, between it and the square control. With `--easy`,
//! `--only FACTOR=INDEX` (repeatable; shape, colour, texture, size, speed, event) keeps only the
//! clips with that factor, e.g. `--only shape=0 --only texture=0` for plain squares.

use pw_core::{ReproConfig, Size};
use pw_data::synthvideo::Clip;
use pw_nn::burn;
use pw_nn::burn::module::{Module, Param};
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use pw_nn::train_device;
use pw_nn::vivit::VivitEncoder;
use pw_videoprism::config::{StageConfig, VideoPrismConfig};
use pw_videoprism::data::{Splits, clip_tensor};
use pw_videoprism::model::Probe;
use pw_videoprism::train::optim;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Module, Debug)]
struct Supervised {
    encoder: VivitEncoder,
    probe: Probe,
}

const BATCH: usize = 32;

/// The moving-square control: `[BATCH, 8, 32, 32, 3]` and labels (right, down, left, up).
fn squares(rng: &mut StdRng, device: &Device) -> (Tensor<5>, Vec<usize>) {
    let (t_n, s, side, speed) = (8usize, 32usize, 10usize, 2usize);
    let mut data = vec![0.3f32; BATCH * t_n * s * s * 3];
    let mut labels = Vec::with_capacity(BATCH);
    let room = s - side - (t_n - 1) * speed;
    for b in 0..BATCH {
        let label = rng.random_range(0..4);
        let colour: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..1.0));
        let (x0, y0) = (rng.random_range(0..=room), rng.random_range(0..=room));
        for t in 0..t_n {
            // Labels 2 and 3 play labels 0 and 1 backwards.
            let step = speed * if label >= 2 { t_n - 1 - t } else { t };
            let (ox, oy) = if label % 2 == 0 {
                (x0 + step, y0)
            } else {
                (x0, y0 + step)
            };
            for y in oy..oy + side {
                for x in ox..ox + side {
                    let o = (((b * t_n + t) * s + y) * s + x) * 3;
                    data[o..o + 3].copy_from_slice(&colour);
                }
            }
        }
        labels.push(label);
    }
    let x = Tensor::from_data(TensorData::new(data, [BATCH, t_n, s, s, 3]), device);
    (x, labels)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let random_pos = args.iter().any(|a| a == "--random-pos");
    let easy = args.iter().any(|a| a == "--easy");
    let mut only = vec![("size".to_string(), 1usize), ("event".to_string(), 0)];
    for w in args.windows(2).filter(|w| w[0] == "--only") {
        let (k, v) = w[1].split_once('=').expect("--only FACTOR=INDEX");
        only.push((k.to_string(), v.parse().expect("--only FACTOR=INDEX")));
    }
    let is_easy = |c: &Clip| {
        let f = &c.factors;
        only.iter().all(|(k, v)| {
            *v == match k.as_str() {
                "shape" => f.shape,
                "colour" => f.colour,
                "texture" => f.texture,
                "size" => f.size,
                "speed" => f.speed,
                "event" => f.event,
                other => panic!("--only {other}: shape, colour, texture, size, speed or event"),
            }
        })
    };
    // Positional arguments: not a flag, not the value after `--only`.
    let pos: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--only"))
        .map(|(_, a)| a)
        .collect();
    let task = pos
        .first()
        .map(|s| s.as_str())
        .unwrap_or("motion")
        .to_string();
    let steps: usize = pos.get(1).map_or(300, |s| s.parse().expect("STEPS"));
    let lr: f64 = pos.get(2).map_or(1e-3, |s| s.parse().expect("LR"));
    let (classes, label): (usize, fn(&Clip) -> usize) = match task.as_str() {
        "appearance" => (24, |c| c.factors.appearance_label()),
        "motion" => (8, |c| c.factors.motion_label()),
        "direction" | "square" => (4, |c| c.factors.direction),
        other => panic!("unknown task {other}: appearance | motion | direction | square"),
    };
    let cfg = VideoPrismConfig::for_size(Size::Quick);
    let ad = train_device(true).expect("autodiff device");
    let plain = train_device(false).expect("device");
    let splits = Splits::new(cfg.video, &cfg.splits, 0);
    let (train, mut val) = (splits.range(&splits.pairs), splits.range(&splits.probe_val));
    if easy {
        val.retain(|c| is_easy(c));
        val.iter_mut().for_each(flatten_background);
        println!("{} validation clips with {only:?}", val.len());
    }
    let e = &cfg.model.encoder;
    let mut m = Supervised {
        encoder: VivitEncoder::new(e, &ad),
        probe: Probe::new(e.d_model, e.n_heads, classes, &ad),
    };
    if random_pos {
        let (n, d) = (e.grid.0 * e.grid.1, e.d_model);
        let small = Distribution::Normal(0.0, 0.02);
        m.encoder.spatial_pos = Param::from_tensor(Tensor::random([n, d], small, &ad));
        m.encoder.temporal_pos = Param::from_tensor(Tensor::random([e.frames, d], small, &ad));
    }
    let stage = StageConfig {
        steps,
        batch: BATCH,
        lr,
    };
    let oc = optim(&stage);
    let mut opt = oc.adamw();
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = std::time::Instant::now();
    for step in 0..steps {
        let (x, y) = if task == "square" {
            squares(&mut rng, &ad)
        } else {
            let clips: Vec<Clip> = if easy {
                let mut clips = Vec::with_capacity(BATCH);
                while clips.len() < BATCH {
                    let i = rng.random_range(1_000_000..100_000_000);
                    let mut c = pw_data::synthvideo::clip(&cfg.video, 0, i);
                    if is_easy(&c) {
                        flatten_background(&mut c);
                        clips.push(c);
                    }
                }
                clips
            } else {
                (0..BATCH)
                    .map(|_| train[rng.random_range(0..train.len())].clone())
                    .collect()
            };
            let y = clips.iter().map(label).collect();
            (clip_tensor(&clips, &cfg.video, &ad), y)
        };
        let y: Vec<i64> = y.into_iter().map(|v| v as i64).collect();
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, [BATCH, 1]), &ad);
        let logp = log_softmax(m.probe.forward(m.encoder.forward(x)), 1);
        let loss = -logp.gather(1, y).mean();
        let loss_value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = opt.step(oc.lr_at(step, steps), m, grads);
        if (step + 1) % 50 == 0 {
            let acc = if task == "square" {
                let f = m.valid().to_device(&plain);
                let (x, y) = squares(&mut StdRng::seed_from_u64(99), &plain);
                accuracy(&f, x, &y)
            } else {
                let f = m.valid().to_device(&plain);
                let (mut hit, mut n) = (0.0, 0.0);
                for ch in val.chunks(100) {
                    let y: Vec<usize> = ch.iter().map(label).collect();
                    hit += accuracy(&f, clip_tensor(ch, &cfg.video, &plain), &y) * ch.len() as f64;
                    n += ch.len() as f64;
                }
                hit / n
            };
            println!(
                "step {} loss {loss_value:.3} (chance {:.3}) val {:.1}% ({:.0} s)",
                step + 1,
                (classes as f64).ln(),
                100.0 * acc,
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

/// Every unsaturated pixel (the background: grey plus texture and noise) becomes flat grey.
fn flatten_background(c: &mut Clip) {
    for px in c.frames.chunks_mut(3) {
        let (hi, lo) = px
            .iter()
            .fold((0f32, 1f32), |(hi, lo), &v| (hi.max(v), lo.min(v)));
        if hi - lo <= 0.3 {
            px.fill(0.3);
        }
    }
}

fn accuracy(m: &Supervised, x: Tensor<5>, y: &[usize]) -> f64 {
    let pred = m
        .probe
        .forward(m.encoder.forward(x))
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64");
    let hit = pred
        .iter()
        .zip(y)
        .filter(|(p, y)| **p == **y as i64)
        .count();
    hit as f64 / y.len().max(1) as f64
}
