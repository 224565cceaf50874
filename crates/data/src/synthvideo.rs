//! Synthetic captioned videos: the miniature's stand-in for web video-text pairs (VideoPrism)
//! and for long captioned videos (Video ReCap).
//!
//! Each clip shows one object over a textured background. The object has appearance factors
//! (shape, colour, texture, size) and motion factors (direction, speed, an appear / leave
//! event); the background carries static noise and a faint distractor so that no single pixel
//! gives the answer away. Every clip comes with
//! - a caption from a small grammar (several phrasings of the same facts),
//! - a noisy caption, like an ASR transcript: words dropped, fillers inserted, some words
//!   replaced by unrelated or wrong ones,
//! - two labels: the **appearance** task (colour x shape, answerable from any single frame,
//!   the analogue of Kinetics-400) and the **motion** task (direction x speed, answerable only
//!   from how frames change, the analogue of Something-Something v2). The object's position in
//!   the middle frame is drawn independently of its direction, so one frame does not reveal it.
//!
//! Clips are a function of `(seed, index)`, so any subset can be regenerated alone.

use pw_core::seed::derive;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub const SHAPES: [&str; 4] = ["square", "circle", "triangle", "cross"];
pub const COLOURS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];
const RGB: [[f32; 3]; 6] = [
    [0.90, 0.15, 0.12],
    [0.15, 0.80, 0.20],
    [0.15, 0.30, 0.95],
    [0.95, 0.90, 0.15],
    [0.65, 0.20, 0.85],
    [1.00, 0.55, 0.05],
];
pub const TEXTURES: [&str; 2] = ["plain", "striped"];
pub const SIZES: [&str; 2] = ["small", "large"];
pub const DIRECTIONS: [&str; 4] = ["left", "right", "up", "down"];
pub const SPEEDS: [&str; 2] = ["slowly", "quickly"];
pub const EVENTS: [&str; 3] = ["none", "appears", "leaves"];

/// Classes of the appearance task (colour x shape).
pub const APPEARANCE_CLASSES: usize = COLOURS.len() * SHAPES.len();
/// Classes of the motion task (direction x speed).
pub const MOTION_CLASSES: usize = DIRECTIONS.len() * SPEEDS.len();

/// Words of the noisy captions that carry no fact (ASR fillers, off-topic speech).
const FILLERS: [&str; 12] = [
    "um", "uh", "so", "like", "okay", "you", "know", "yeah", "right", "then", "well", "guys",
];
const UNRELATED: [&str; 10] = [
    "today",
    "video",
    "subscribe",
    "kitchen",
    "music",
    "water",
    "street",
    "game",
    "people",
    "thanks",
];

/// Size of the clips.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    pub frames: usize,
    /// Square frames of `size x size` pixels.
    pub size: usize,
    /// Share of the noisy caption's words that are changed (dropped, replaced or wrong).
    pub noise: f32,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            frames: 8,
            size: 32,
            noise: 0.4,
        }
    }
}

/// The factors behind one clip (indices into the constant tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factors {
    pub shape: usize,
    pub colour: usize,
    pub texture: usize,
    pub size: usize,
    pub direction: usize,
    pub speed: usize,
    pub event: usize,
}

impl Factors {
    pub fn appearance_label(&self) -> usize {
        self.colour * SHAPES.len() + self.shape
    }
    pub fn motion_label(&self) -> usize {
        self.direction * SPEEDS.len() + self.speed
    }
}

/// One clip: frames `[frames, size, size, 3]` in [0, 1], its captions and labels.
#[derive(Debug, Clone)]
pub struct Clip {
    pub index: usize,
    pub factors: Factors,
    pub caption: String,
    pub noisy_caption: String,
    pub frames: Vec<f32>,
}

fn draw_factors(rng: &mut StdRng) -> Factors {
    Factors {
        shape: rng.random_range(0..SHAPES.len()),
        colour: rng.random_range(0..COLOURS.len()),
        texture: rng.random_range(0..TEXTURES.len()),
        size: rng.random_range(0..SIZES.len()),
        direction: rng.random_range(0..DIRECTIONS.len()),
        speed: rng.random_range(0..SPEEDS.len()),
        // Most clips keep the object in view; events are the rarer case.
        event: [0, 0, 0, 0, 1, 2][rng.random_range(0..6)],
    }
}

fn clip_rng(seed: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(derive(seed, &format!("synthvideo/{index}")))
}

/// The factors of clip `index` without rendering it (cheap: for grouping a corpus).
pub fn factors(seed: u64, index: usize) -> Factors {
    draw_factors(&mut clip_rng(seed, index))
}

/// The clip `index` of the stream seeded by `seed`.
pub fn clip(spec: &SynthSpec, seed: u64, index: usize) -> Clip {
    let mut rng = clip_rng(seed, index);
    let factors = draw_factors(&mut rng);
    let frames = render(spec, &factors, &mut rng);
    let caption = caption(&factors, &mut rng);
    let noisy_caption = noisy(&caption, spec.noise, &mut rng);
    Clip {
        index,
        factors,
        caption,
        noisy_caption,
        frames,
    }
}

/// Frames `[frames, size, size, 3]` of a clip with the given factors (Video ReCap composes
/// long videos from such clips); position, background and noise are drawn from `seed`.
pub fn render_factors(spec: &SynthSpec, f: &Factors, seed: u64) -> Vec<f32> {
    render(spec, f, &mut StdRng::seed_from_u64(seed))
}

/// Clips `range` of the stream seeded by `seed`, rendered in parallel.
pub fn clips(spec: &SynthSpec, seed: u64, range: std::ops::Range<usize>) -> Vec<Clip> {
    use rayon::prelude::*;
    range.into_par_iter().map(|i| clip(spec, seed, i)).collect()
}

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        0 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
        1 => dx * dx + dy * dy <= r * r,
        // Upward triangle: apex at -r, base at +r.
        2 => dy >= -r && dy <= r && dx.abs() <= (dy + r) * 0.5,
        _ => (dx.abs() <= r && dy.abs() <= r * 0.33) || (dy.abs() <= r && dx.abs() <= r * 0.33),
    }
}

fn render(spec: &SynthSpec, f: &Factors, rng: &mut StdRng) -> Vec<f32> {
    let (t_n, s) = (spec.frames, spec.size);
    let scale = s as f32 / 32.0;
    let r = if f.size == 0 { 4.0 } else { 6.5 } * scale;
    // Slow clips move 1.5 px per frame (about one 8-px patch over 8 frames), fast ones 3 px:
    // motion shows at the scale of the encoder's patches.
    let speed = if f.speed == 0 { 1.5 } else { 3.0 } * scale;
    let (vx, vy) = match f.direction {
        0 => (-speed, 0.0),
        1 => (speed, 0.0),
        2 => (0.0, -speed),
        _ => (0.0, speed),
    };
    // The middle-frame position is uniform over the positions that keep the whole path in
    // view, drawn without looking at the direction's sign.
    let half_path = speed * (t_n as f32 - 1.0) / 2.0;
    let lo = r + 0.5;
    let hi = s as f32 - r - 0.5;
    let along = |rng: &mut StdRng| {
        let (a, b) = (lo + half_path, hi - half_path);
        if a < b {
            rng.random_range(a..b)
        } else {
            s as f32 / 2.0
        }
    };
    let across = |rng: &mut StdRng| rng.random_range(lo..hi);
    let (cx, cy) = if vx != 0.0 {
        (along(rng), across(rng))
    } else {
        (across(rng), along(rng))
    };
    let base: [f32; 3] = {
        let g = rng.random_range(0.15..0.45);
        [
            g + rng.random_range(-0.05..0.05),
            g + rng.random_range(-0.05..0.05),
            g + rng.random_range(-0.05..0.05),
        ]
    };
    // Static background texture: low-frequency blobs plus pixel noise.
    let (fx, fy, ph) = (
        rng.random_range(0.1..0.4),
        rng.random_range(0.1..0.4),
        rng.random_range(0.0..std::f32::consts::TAU),
    );
    let mut background = vec![0f32; s * s * 3];
    for y in 0..s {
        for x in 0..s {
            let wave = 0.06 * ((x as f32 * fx + ph).sin() + (y as f32 * fy).cos());
            for c in 0..3 {
                background[(y * s + x) * 3 + c] =
                    (base[c] + wave + rng.random_range(-0.03..0.03)).clamp(0.0, 1.0);
            }
        }
    }
    let colour = RGB[f.colour];
    let stripe_phase: i32 = rng.random_range(0..4);
    // The event's frame: appears (from the middle on) or leaves (before the middle).
    let visible = |t: usize| match f.event {
        1 => t >= t_n / 2,
        2 => t < t_n / 2,
        _ => true,
    };
    let mut out = Vec::with_capacity(t_n * s * s * 3);
    let mid = (t_n as f32 - 1.0) / 2.0;
    for t in 0..t_n {
        let mut frame = background.clone();
        if visible(t) {
            let ox = cx + vx * (t as f32 - mid);
            let oy = cy + vy * (t as f32 - mid);
            let (x0, x1) = (
                (ox - r - 1.0).max(0.0) as usize,
                ((ox + r + 2.0) as usize).min(s),
            );
            let (y0, y1) = (
                (oy - r - 1.0).max(0.0) as usize,
                ((oy + r + 2.0) as usize).min(s),
            );
            for y in y0..y1 {
                for x in x0..x1 {
                    let (dx, dy) = (x as f32 + 0.5 - ox, y as f32 + 0.5 - oy);
                    if inside(f.shape, dx, dy, r) {
                        let shade = if f.texture == 1
                            && ((x as i32 + y as i32 + stripe_phase) / 2) % 2 == 0
                        {
                            0.5
                        } else {
                            1.0
                        };
                        for c in 0..3 {
                            frame[(y * s + x) * 3 + c] = colour[c] * shade;
                        }
                    }
                }
            }
        }
        for v in frame.iter_mut() {
            *v = (*v + rng.random_range(-0.02..0.02)).clamp(0.0, 1.0);
        }
        out.extend_from_slice(&frame);
    }
    out
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// One phrasing of the clip's facts.
pub fn caption(f: &Factors, rng: &mut StdRng) -> String {
    let (shape, colour, size) = (SHAPES[f.shape], COLOURS[f.colour], SIZES[f.size]);
    let texture = if f.texture == 1 { "striped " } else { "" };
    let speed = match (f.speed, rng.random_range(0..2)) {
        (0, 0) => "slowly",
        (0, _) => "gently",
        (_, 0) => "quickly",
        _ => "fast",
    };
    let dir = DIRECTIONS[f.direction];
    let dir_phrase = match (f.direction, rng.random_range(0..2)) {
        (0 | 1, 0) => format!("to the {dir}"),
        (2, 0) => "upwards".to_string(),
        (3, 0) => "downwards".to_string(),
        _ => dir.to_string(),
    };
    let verb = pick(rng, &["moves", "slides", "drifts", "travels"]);
    let object = format!("{size} {texture}{colour} {shape}");
    let motion = match rng.random_range(0..3) {
        0 => format!("a {object} {verb} {speed} {dir_phrase}"),
        1 => format!("the {object} {verb} {dir_phrase} {speed}"),
        _ => format!("a {object} is seen moving {speed} {dir_phrase}"),
    };
    match f.event {
        1 => format!("{motion} after it appears"),
        2 => format!("{motion} and then it leaves"),
        _ => motion,
    }
}

/// An ASR-like corruption of `caption`: each word is kept with probability `1 - noise`,
/// otherwise dropped, replaced by a filler or an unrelated word, or by a wrong fact word
/// (another colour, shape or direction); fillers are sprinkled in.
pub fn noisy(caption: &str, noise: f32, rng: &mut StdRng) -> String {
    let mut out: Vec<&str> = Vec::new();
    for w in caption.split_whitespace() {
        if rng.random::<f32>() >= noise {
            out.push(w);
            continue;
        }
        match rng.random_range(0..4) {
            0 => {}
            1 => out.push(pick(rng, &FILLERS)),
            2 => out.push(pick(rng, &UNRELATED)),
            _ => {
                let wrong = if COLOURS.contains(&w) {
                    pick(rng, &COLOURS)
                } else if SHAPES.contains(&w) {
                    pick(rng, &SHAPES)
                } else if DIRECTIONS.contains(&w) {
                    pick(rng, &DIRECTIONS)
                } else {
                    w
                };
                out.push(wrong);
            }
        }
        if rng.random::<f32>() < noise * 0.25 {
            out.push(pick(rng, &FILLERS));
        }
    }
    if out.is_empty() {
        out.push(pick(rng, &FILLERS));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_deterministic_and_in_range() {
        let spec = SynthSpec::default();
        let a = clip(&spec, 7, 3);
        let b = clip(&spec, 7, 3);
        assert_eq!(a.frames, b.frames);
        assert_eq!(a.caption, b.caption);
        assert_eq!(a.frames.len(), 8 * 32 * 32 * 3);
        assert!(a.frames.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_ne!(clip(&spec, 7, 4).frames, a.frames);
    }

    #[test]
    fn captions_name_the_factors() {
        let spec = SynthSpec::default();
        for i in 0..50 {
            let c = clip(&spec, 1, i);
            let f = c.factors;
            assert!(c.caption.contains(COLOURS[f.colour]), "{}", c.caption);
            assert!(c.caption.contains(SHAPES[f.shape]), "{}", c.caption);
            assert!(c.caption.contains(SIZES[f.size]), "{}", c.caption);
            let dir_word = ["left", "right", "up", "down"][f.direction];
            assert!(c.caption.contains(dir_word), "{}", c.caption);
            assert!(f.appearance_label() < APPEARANCE_CLASSES);
            assert!(f.motion_label() < MOTION_CLASSES);
        }
    }

    #[test]
    fn the_object_moves_in_its_direction() {
        // Centre of mass of the object's colour across frames follows the direction.
        let spec = SynthSpec {
            noise: 0.0,
            ..Default::default()
        };
        let mut checked = 0;
        for i in 0..40 {
            let c = clip(&spec, 3, i);
            if c.factors.event != 0 {
                continue;
            }
            let rgb = RGB[c.factors.colour];
            let centre = |t: usize| {
                let (s, mut sx, mut sy, mut n) = (spec.size, 0.0, 0.0, 0.0);
                let frame = &c.frames[t * s * s * 3..(t + 1) * s * s * 3];
                for y in 0..s {
                    for x in 0..s {
                        let p = &frame[(y * s + x) * 3..(y * s + x) * 3 + 3];
                        let d: f32 = (0..3).map(|k| (p[k] - rgb[k]).abs()).sum();
                        let half: f32 = (0..3).map(|k| (p[k] - rgb[k] * 0.5).abs()).sum();
                        if d < 0.12 || half < 0.12 {
                            sx += x as f32;
                            sy += y as f32;
                            n += 1.0;
                        }
                    }
                }
                (sx / n, sy / n)
            };
            let ((x0, y0), (x1, y1)) = (centre(0), centre(spec.frames - 1));
            let ok = match c.factors.direction {
                0 => x1 < x0 - 3.0,
                1 => x1 > x0 + 3.0,
                2 => y1 < y0 - 3.0,
                _ => y1 > y0 + 3.0,
            };
            assert!(
                ok,
                "clip {i}: {} from ({x0},{y0}) to ({x1},{y1})",
                c.caption
            );
            checked += 1;
        }
        assert!(checked > 20);
    }

    #[test]
    fn noisy_captions_change_words_but_keep_most() {
        let mut rng = StdRng::seed_from_u64(5);
        let clean = "a large red square moves quickly to the left";
        let n = noisy(clean, 0.4, &mut rng);
        assert_ne!(n, clean);
        assert_eq!(noisy(clean, 0.0, &mut rng), clean);
    }
}
