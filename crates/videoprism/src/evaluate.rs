//! Evaluation with the encoder frozen, as the paper evaluates (§4): its tokens are computed
//! once per split, then an attention-pooler probe (MAP + linear) is trained per task on the
//! training split; the probe kept is the one with the best validation accuracy among
//! `probe_evals` checks, and only that one is scored on the test split. Zero-shot video-text
//! retrieval uses the stage-1 model's two towers.

use crate::config::StageConfig;
use crate::model::{Probe, VideoTextModel};
use crate::train::{optim, text_batch};
use pw_nn::burn::module::Module;
use pw_nn::burn::optim::GradientsParams;
use pw_nn::burn::tensor::activation::log_softmax;
use pw_nn::burn::tensor::{Device, Int, Tensor, TensorData};
use pw_nn::tokenizer::WordTokenizer;
use pw_nn::vivit::VivitEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Frozen tokens of `n` clips: `[n, tokens, d]` row-major.
#[derive(Debug, Clone)]
pub struct Features {
    pub n: usize,
    pub tokens: usize,
    pub d: usize,
    pub data: Vec<f32>,
}

impl Features {
    pub fn batch(&self, idx: &[usize], device: &Device) -> Tensor<3> {
        let row = self.tokens * self.d;
        let mut v = Vec::with_capacity(idx.len() * row);
        for &i in idx {
            v.extend_from_slice(&self.data[i * row..(i + 1) * row]);
        }
        Tensor::from_data(TensorData::new(v, [idx.len(), self.tokens, self.d]), device)
    }
}

/// Encodes `n` clips through `video(range)` (a `[b, t, h, w, 3]` batch) in batches of `batch`.
pub fn features(
    enc: &VivitEncoder,
    n: usize,
    batch: usize,
    video: impl Fn(std::ops::Range<usize>) -> Tensor<5>,
) -> Features {
    let mut data = Vec::new();
    let (mut tokens, mut d) = (0, enc.d_model());
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let y = enc.forward(video(start..end));
        let dims = y.dims();
        tokens = dims[1];
        d = dims[2];
        data.extend(y.into_data().try_to_vec::<f32>().expect("f32 tokens"));
        start = end;
    }
    Features { n, tokens, d, data }
}

/// What a probe run measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProbeScore {
    pub val_acc: f64,
    pub test_acc: f64,
    /// Probe step at which the kept (best-validation) probe was taken.
    pub best_step: usize,
    /// The kept probe is the last check's: it was still improving when training stopped, so
    /// more steps may raise it.
    pub still_improving: bool,
}

fn accuracy(probe: &Probe, f: &Features, labels: &[usize], device: &Device) -> f64 {
    let mut correct = 0usize;
    let idx: Vec<usize> = (0..f.n).collect();
    for chunk in idx.chunks(256) {
        let logits = probe.forward(f.batch(chunk, device));
        let pred = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("i64");
        correct += chunk
            .iter()
            .zip(pred)
            .filter(|(i, p)| labels[**i] as i64 == *p)
            .count();
    }
    correct as f64 / f.n.max(1) as f64
}

/// Held while a probe seeds the backend's RNG and draws its starting weights.
static PROBE_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains an attention-pooler probe on frozen features and scores the best-validation one.
/// Safe to call from several threads at once (see [`PROBE_INIT`]).
#[allow(clippy::too_many_arguments)]
pub fn probe(
    train: (&Features, &[usize]),
    val: (&Features, &[usize]),
    test: (&Features, &[usize]),
    classes: usize,
    heads: usize,
    stage: &StageConfig,
    evals: usize,
    seed: u64,
    (ad, plain): (&Device, &Device),
) -> ProbeScore {
    let (ft, lt) = train;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = {
        // The backend's RNG is one per process: seeding it and drawing the probe's starting
        // weights is one step, so that probes trained on several threads start as they would
        // one after another.
        let _init = PROBE_INIT.lock().unwrap_or_else(|e| e.into_inner());
        ad.seed(seed);
        let m = Probe::new(ft.d, heads, classes, ad);
        pw_nn::materialize(&m);
        m
    };
    let oc = optim(stage);
    let mut opt = oc.adamw();
    let every = stage.steps.div_ceil(evals.max(1)).max(1);
    let mut best = ProbeScore {
        val_acc: -1.0,
        test_acc: 0.0,
        best_step: 0,
        still_improving: false,
    };
    for step in 0..stage.steps {
        let idx: Vec<usize> = (0..stage.batch)
            .map(|_| rng.random_range(0..ft.n))
            .collect();
        let x = ft.batch(&idx, ad);
        let y: Vec<i64> = idx.iter().map(|&i| lt[i] as i64).collect();
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, [idx.len(), 1]), ad);
        let logp = log_softmax(model.forward(x), 1);
        let loss = -logp.gather(1, y).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(oc.lr_at(step, stage.steps), model, grads);
        if (step + 1) % every == 0 || step + 1 == stage.steps {
            let frozen = model.valid().to_device(plain);
            let va = accuracy(&frozen, val.0, val.1, plain);
            if va > best.val_acc {
                best = ProbeScore {
                    val_acc: va,
                    test_acc: accuracy(&frozen, test.0, test.1, plain),
                    best_step: step + 1,
                    still_improving: step + 1 == stage.steps,
                };
            }
        }
    }
    best
}

/// Zero-shot retrieval figures (percent), and each text query's top-1 clip.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieval {
    pub text_to_video_r1: f64,
    pub text_to_video_r5: f64,
    pub video_to_text_r1: f64,
    pub video_to_text_r5: f64,
    pub queries: usize,
    /// Index of the best-scoring clip for each text query.
    #[serde(skip)]
    pub text_top1: Vec<usize>,
}

/// Retrieval over `n` clips with captions `texts`; a hit is a clip whose facts equal the
/// query's (`same(i, j)`), since a synthetic corpus repeats fact combinations.
pub fn retrieval(
    model: &VideoTextModel,
    tok: &WordTokenizer,
    max_len: usize,
    video_emb: &[Vec<f32>],
    texts: &[&str],
    same: impl Fn(usize, usize) -> bool,
    device: &Device,
) -> Retrieval {
    let n = texts.len();
    let mut text_emb: Vec<Vec<f32>> = Vec::with_capacity(n);
    for chunk in texts.chunks(256) {
        let (ids, pad) = text_batch(tok, chunk, max_len, device);
        let e = model.embed_text(ids, pad);
        let d = e.dims()[1];
        let v = e.into_data().try_to_vec::<f32>().expect("f32");
        text_emb.extend(v.chunks(d).map(|c| c.to_vec()));
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let rank_hits = |queries: &[Vec<f32>], keys: &[Vec<f32>]| -> (f64, f64, Vec<usize>) {
        let (mut r1, mut r5) = (0usize, 0usize);
        let mut top1 = Vec::with_capacity(queries.len());
        for (qi, q) in queries.iter().enumerate() {
            let mut scored: Vec<(f32, usize)> = keys
                .iter()
                .enumerate()
                .map(|(k, key)| (dot(q, key), k))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            top1.push(scored[0].1);
            if same(qi, scored[0].1) {
                r1 += 1;
            }
            if scored.iter().take(5).any(|&(_, k)| same(qi, k)) {
                r5 += 1;
            }
        }
        (
            100.0 * r1 as f64 / n as f64,
            100.0 * r5 as f64 / n as f64,
            top1,
        )
    };
    let (t1, t5, text_top1) = rank_hits(&text_emb, video_emb);
    let (v1, v5, _) = rank_hits(video_emb, &text_emb);
    Retrieval {
        text_to_video_r1: t1,
        text_to_video_r5: t5,
        video_to_text_r1: v1,
        video_to_text_r5: v5,
        queries: n,
        text_top1,
    }
}

/// L2-normalised video embeddings of clips, through the stage-1 model.
pub fn video_embeddings(
    model: &VideoTextModel,
    n: usize,
    batch: usize,
    video: impl Fn(std::ops::Range<usize>) -> Tensor<5>,
) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let (_, g) = model.embed_video(video(start..end));
        let d = g.dims()[1];
        let v = g.into_data().try_to_vec::<f32>().expect("f32");
        out.extend(v.chunks(d).map(|c| c.to_vec()));
        start = end;
    }
    out
}

pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, v.sqrt())
}
