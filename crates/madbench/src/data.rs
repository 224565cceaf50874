//! The data: COCO-format annotations (read, and written for the synthetic scenes), benchmark
//! items (our JSONL and the official release's JSON), and the synthetic scene world of the
//! miniature: objects with a shape, colour and size at a position on a background of a named
//! scene type, and for visual confusion a poster inside the scene that shows an object that is
//! not really there.

use pw_core::{Error, IoContext, Result};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The object categories of the synthetic world, each drawn as one shape.
pub const OBJECTS: [&str; 6] = ["ball", "box", "cone", "ring", "brick", "kite"];
pub const COLOURS: [&str; 5] = ["red", "green", "blue", "yellow", "purple"];
pub const SIZES: [&str; 2] = ["small", "large"];
pub const SCENES: [&str; 5] = ["beach", "forest", "street", "kitchen", "snowfield"];
/// Words for counts in prompts and answers.
pub const NUMBER_WORDS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Side of the rendered images, pixels.
pub const IMAGE_SIDE: u32 = 64;

fn rgb_of(colour: &str) -> [u8; 3] {
    match colour {
        "red" => [220, 30, 30],
        "green" => [30, 170, 40],
        "blue" => [30, 60, 220],
        "yellow" => [240, 220, 20],
        "purple" => [150, 40, 180],
        _ => [128, 128, 128],
    }
}

// ---------------------------------------------------------------------------------------------
// COCO format
// ---------------------------------------------------------------------------------------------

/// One image of a COCO file; `scene` is our extension (real COCO has none; the builder then
/// reads the scene from the captions, when given).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    pub file_name: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
}

/// One instance. `attributes` (e.g. `{"color": "red", "size": "large"}`) and `depicted` (the
/// object is only shown in a picture inside the image) are our extensions; an attribute file
/// can supply attributes for real COCO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    #[serde(default)]
    pub area: f64,
    #[serde(default)]
    pub iscrowd: u8,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub depicted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub supercategory: String,
}

/// An instances file (`instances_val2017.json` and the like); unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Coco {
    #[serde(default)]
    pub images: Vec<CocoImage>,
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
    #[serde(default)]
    pub categories: Vec<CocoCategory>,
}

/// A captions file (`captions_val2017.json`): only the annotations are read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CocoCaptions {
    pub annotations: Vec<CocoCaption>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CocoCaption {
    pub image_id: u64,
    #[serde(default)]
    pub id: u64,
    pub caption: String,
}

/// An attribute file: per annotation id, attribute name -> value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CocoAttributes {
    pub annotations: Vec<AttributeRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttributeRow {
    pub annotation_id: u64,
    pub attributes: BTreeMap<String, String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).at(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(path, format!("not a COCO {what} file: {e}")))
}

impl Coco {
    /// Reads an instances file and checks it: every annotation names a known image and
    /// category (an unknown id is one error naming the annotation).
    pub fn read(path: &Path) -> Result<Coco> {
        let c: Coco = read_json(path, "instances")?;
        let images: std::collections::HashSet<u64> = c.images.iter().map(|i| i.id).collect();
        let cats: std::collections::HashSet<u64> = c.categories.iter().map(|k| k.id).collect();
        for a in &c.annotations {
            if !cats.contains(&a.category_id) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "annotation {} (image {}): unknown category id {}",
                        a.id, a.image_id, a.category_id
                    ),
                ));
            }
            if !images.contains(&a.image_id) {
                return Err(Error::invalid(
                    path,
                    format!("annotation {}: unknown image id {}", a.id, a.image_id),
                ));
            }
        }
        Ok(c)
    }

    /// Adds the attributes of an attribute file to the matching annotations.
    pub fn merge_attributes(&mut self, path: &Path) -> Result<usize> {
        let rows: CocoAttributes = read_json(path, "attributes")?;
        let mut by_id: BTreeMap<u64, &mut CocoAnnotation> =
            self.annotations.iter_mut().map(|a| (a.id, a)).collect();
        let mut merged = 0;
        for r in rows.annotations {
            let a = by_id.get_mut(&r.annotation_id).ok_or_else(|| {
                Error::invalid(
                    path,
                    format!("attributes for unknown annotation id {}", r.annotation_id),
                )
            })?;
            a.attributes.extend(r.attributes);
            merged += 1;
        }
        Ok(merged)
    }
}

pub fn read_captions(path: &Path) -> Result<CocoCaptions> {
    read_json(path, "captions")
}

// ---------------------------------------------------------------------------------------------
// Benchmark items
// ---------------------------------------------------------------------------------------------

/// The paper's deception categories (and the release's text_recognition), spelled as the
/// release spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Category {
    #[serde(rename = "count_of_object")]
    Count,
    #[serde(rename = "non-existent_object")]
    NonExistent,
    #[serde(rename = "object_attribute")]
    Attribute,
    #[serde(rename = "scene_understanding")]
    Scene,
    #[serde(rename = "spatial_relationship")]
    Spatial,
    #[serde(rename = "visual_confusion")]
    VisualConfusion,
    #[serde(rename = "text_recognition")]
    TextRecognition,
}

impl Category {
    /// The six categories of the paper, in its order.
    pub const PAPER: [Category; 6] = [
        Category::Count,
        Category::NonExistent,
        Category::Attribute,
        Category::Scene,
        Category::Spatial,
        Category::VisualConfusion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Count => "count_of_object",
            Category::NonExistent => "non-existent_object",
            Category::Attribute => "object_attribute",
            Category::Scene => "scene_understanding",
            Category::Spatial => "spatial_relationship",
            Category::VisualConfusion => "visual_confusion",
            Category::TextRecognition => "text_recognition",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        let t = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Some(match t.as_str() {
            "count_of_object" | "count" | "counting" => Category::Count,
            "non_existent_object" | "nonexistent_object" | "non_existent" => Category::NonExistent,
            "object_attribute" | "attribute" => Category::Attribute,
            "scene_understanding" | "scene" => Category::Scene,
            "spatial_relationship" | "spatial" => Category::Spatial,
            "visual_confusion" => Category::VisualConfusion,
            "text_recognition" => Category::TextRecognition,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn word(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// The false premise of a deceptive prompt, with the annotation facts that make it checkable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Premise {
    /// "the 5 cups": there are `actual` objects of `category`, not `claimed`.
    Count {
        category: String,
        claimed: usize,
        actual: usize,
    },
    /// An object of `category` that the image does not hold (`anchor`: one that it does).
    Absent { category: String, anchor: String },
    /// The object of `category` has `attribute` = `actual`, not `claimed`.
    Attribute {
        category: String,
        attribute: String,
        claimed: String,
        actual: String,
    },
    /// The scene is `actual`, not `claimed`.
    Scene { claimed: String, actual: String },
    /// `a` is on the `actual` side of `b`, not the `claimed` one.
    Spatial {
        a: String,
        b: String,
        claimed: Side,
        actual: Side,
    },
    /// The object of `category` is only shown in a picture inside the image.
    Depicted { category: String },
}

/// Where a built item came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The instances file and image id it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coco: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<u64>,
    /// The template (or "official", "paraphrase by <model>").
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub builder: String,
}

/// One benchmark item (our JSONL). `neutral_prompt` asks the same thing without the false
/// premise; `truth` says what makes the deception checkable; both are absent in the official
/// release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchItem {
    pub id: String,
    pub image: String,
    pub category: Category,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutral_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premise: Option<Premise>,
    #[serde(default)]
    pub provenance: Provenance,
}

/// A row of the official release (`mad_bench_prompt_image.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficialRow {
    pub image: String,
    pub instruction: String,
    pub category: String,
}

/// Reads a benchmark: the official release's JSON list or our JSONL, told apart by the first
/// non-space byte. Official image URLs are mapped to `images/<file name>` (nothing is
/// downloaded); relative image paths of our JSONL are taken relative to the bench file.
/// Every image must exist: a missing one is an error naming it and its row.
pub fn read_bench(path: &Path, images: Option<&Path>) -> Result<Vec<BenchItem>> {
    let bytes = std::fs::read(path).at(path)?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = if first == Some(b'[') {
        let rows: Vec<OfficialRow> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(path, format!("not the official release's JSON list: {e}"))
        })?;
        let dir = images.ok_or_else(|| {
            Error::invalid(
                path,
                "the official release names images by URL; give --images DIR holding them by \
                 file name (nothing is downloaded)",
            )
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, r) in rows.into_iter().enumerate() {
            let category = Category::parse(&r.category).ok_or_else(|| {
                Error::invalid(path, format!("row {i}: unknown category {:?}", r.category))
            })?;
            let name = r
                .image
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            if name.is_empty() {
                return Err(Error::invalid(
                    path,
                    format!("row {i}: image {:?} has no file name", r.image),
                ));
            }
            out.push(BenchItem {
                id: format!("official-{i:04}"),
                image: dir.join(&name).display().to_string(),
                category,
                prompt: r.instruction,
                neutral_prompt: None,
                truth: None,
                premise: None,
                provenance: Provenance {
                    template: "official".into(),
                    builder: r.image,
                    ..Provenance::default()
                },
            });
        }
        out
    } else {
        let mut out: Vec<BenchItem> = pw_core::jsonl::read_jsonl(path, "a benchmark item")?;
        for it in &mut out {
            let p = Path::new(&it.image);
            if p.is_relative() {
                let root = images.unwrap_or(base);
                it.image = root.join(p).display().to_string();
            }
        }
        out
    };
    let mut seen = std::collections::HashSet::new();
    for it in &mut items {
        if !seen.insert(it.id.clone()) {
            return Err(Error::invalid(
                path,
                format!("duplicate item id {:?}", it.id),
            ));
        }
        if !Path::new(&it.image).is_file() {
            return Err(Error::invalid(
                path,
                format!("item {}: image {} not found", it.id, it.image),
            ));
        }
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// The synthetic scene world
// ---------------------------------------------------------------------------------------------

/// One object of a synthetic scene (pixel centre and radius).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    pub category: String,
    pub colour: String,
    pub size: String,
    pub cx: f32,
    pub cy: f32,
    pub r: f32,
    /// Drawn inside the poster: not really there.
    pub depicted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub id: u64,
    pub scene: String,
    pub objects: Vec<SceneObject>,
    /// The poster's frame `[x, y, w, h]`, when the scene has one.
    pub poster: Option<[f32; 4]>,
}

impl Scene {
    /// Real (not depicted) objects.
    pub fn real(&self) -> impl Iterator<Item = &SceneObject> {
        self.objects.iter().filter(|o| !o.depicted)
    }

    /// A caption from the grammar, e.g. "a beach with two red balls and a small blue box".
    pub fn caption(&self) -> String {
        let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
        for o in self.real() {
            *groups
                .entry((o.category.clone(), o.colour.clone()))
                .or_default() += 1;
        }
        let mut parts: Vec<String> = groups
            .into_iter()
            .map(|((cat, col), n)| {
                if n == 1 {
                    format!("a {col} {cat}")
                } else {
                    format!("{} {col} {}", NUMBER_WORDS[n.min(10)], plural(&cat))
                }
            })
            .collect();
        if let Some(o) = self.objects.iter().find(|o| o.depicted) {
            parts.push(format!("a poster of a {} {}", o.colour, o.category));
        }
        let list = match parts.len() {
            0 => "nothing".to_string(),
            1 => parts[0].clone(),
            n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
        };
        format!("a {} with {list}", self.scene)
    }
}

pub fn plural(noun: &str) -> String {
    if noun.ends_with('x') || noun.ends_with('s') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// How many scenes have a poster (visual confusion needs one), out of 1.
pub const POSTER_SHARE: f64 = 0.35;

/// Draws a random scene: 1-4 real objects (a category may repeat, for counting), and with
/// probability [`POSTER_SHARE`] a poster showing one more object.
pub fn random_scene(id: u64, rng: &mut StdRng) -> Scene {
    let side = IMAGE_SIDE as f32;
    let scene = SCENES[rng.random_range(0..SCENES.len())].to_string();
    let mut objects: Vec<SceneObject> = Vec::new();
    let poster = if rng.random_bool(POSTER_SHARE) {
        let w = 22.0;
        let x = if rng.random_bool(0.5) {
            2.0
        } else {
            side - w - 2.0
        };
        Some([x, 2.0, w, w])
    } else {
        None
    };
    if let Some([px, py, pw, ph]) = poster {
        objects.push(SceneObject {
            category: OBJECTS[rng.random_range(0..OBJECTS.len())].to_string(),
            colour: COLOURS[rng.random_range(0..COLOURS.len())].to_string(),
            size: "small".into(),
            cx: px + pw / 2.0,
            cy: py + ph / 2.0,
            r: 6.0,
            depicted: true,
        });
    }
    let n = rng.random_range(1..=4usize);
    // A repeated category is likely, so counts above one are common.
    let main = OBJECTS[rng.random_range(0..OBJECTS.len())];
    let mut tries = 0;
    while objects.iter().filter(|o| !o.depicted).count() < n && tries < 200 {
        tries += 1;
        let category = if rng.random_bool(0.5) {
            main.to_string()
        } else {
            OBJECTS[rng.random_range(0..OBJECTS.len())].to_string()
        };
        let size = SIZES[rng.random_range(0..SIZES.len())];
        let r = if size == "small" { 5.0 } else { 8.0 };
        let cx = rng.random_range(r + 1.0..side - r - 1.0);
        let cy = rng.random_range(r + 1.0..side - r - 1.0);
        let clash = objects
            .iter()
            .any(|o| ((o.cx - cx).powi(2) + (o.cy - cy).powi(2)).sqrt() < o.r + r + 3.0)
            || poster.is_some_and(|[px, py, pw, ph]| {
                cx + r > px - 2.0 && cx - r < px + pw + 2.0 && cy - r < py + ph + 2.0 && cy + r > py
            });
        if clash {
            continue;
        }
        // Objects of one category share a colour, so "the ball" has one colour to ask about.
        let colour = objects
            .iter()
            .find(|o| !o.depicted && o.category == category)
            .map(|o| o.colour.clone())
            .unwrap_or_else(|| COLOURS[rng.random_range(0..COLOURS.len())].to_string());
        objects.push(SceneObject {
            category,
            colour,
            size: size.into(),
            cx,
            cy,
            r,
            depicted: false,
        });
    }
    Scene {
        id,
        scene,
        objects,
        poster,
    }
}

/// An RGB image, row-major.
pub struct Rgb {
    pub w: u32,
    pub h: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    fn put(&mut self, x: i32, y: i32, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.w && (y as u32) < self.h {
            let i = ((y as u32 * self.w + x as u32) * 3) as usize;
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.w, self.h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| Error::Other(format!("png: {e}")))?;
            w.write_image_data(&self.data)
                .map_err(|e| Error::Other(format!("png: {e}")))?;
        }
        Ok(out)
    }

    /// Decodes a PNG (8-bit grey, grey+alpha, RGB or RGBA) to RGB.
    pub fn from_png(bytes: &[u8], what: &str) -> std::result::Result<Rgb, String> {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec
            .read_info()
            .map_err(|e| format!("{what}: not a readable PNG ({e})"))?;
        let mut buf = vec![0u8; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("{what}: corrupt PNG ({e})"))?;
        if info.bit_depth != png::BitDepth::Eight {
            return Err(format!("{what}: only 8-bit PNGs are read"));
        }
        let (w, h) = (info.width, info.height);
        let n = (w * h) as usize;
        let src = &buf[..info.buffer_size()];
        let data: Vec<u8> = match info.color_type {
            png::ColorType::Rgb => src.to_vec(),
            png::ColorType::Rgba => src.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            png::ColorType::Grayscale => src.iter().flat_map(|&g| [g, g, g]).collect(),
            png::ColorType::GrayscaleAlpha => {
                src.chunks(2).flat_map(|p| [p[0], p[0], p[0]]).collect()
            }
            png::ColorType::Indexed => {
                return Err(format!("{what}: palette PNGs are not read"));
            }
        };
        if data.len() != n * 3 {
            return Err(format!("{what}: PNG data is shorter than its size"));
        }
        Ok(Rgb { w, h, data })
    }
}

fn background(scene: &str, x: u32, y: u32) -> [u8; 3] {
    let side = IMAGE_SIDE;
    match scene {
        "beach" => {
            if y < side * 2 / 5 {
                [135, 200, 235]
            } else {
                [225, 200, 150]
            }
        }
        "forest" => {
            if x % 11 < 2 {
                [90, 60, 30]
            } else {
                [40, 95, 45]
            }
        }
        "street" => {
            if y % 16 < 2 && x % 12 < 6 {
                [240, 240, 240]
            } else {
                [95, 95, 100]
            }
        }
        "kitchen" => {
            if (x / 8 + y / 8).is_multiple_of(2) {
                [235, 225, 205]
            } else {
                [200, 185, 160]
            }
        }
        _ => {
            // snowfield
            let n = (x * 31 + y * 17) % 7;
            [230 + n as u8 * 3, 235 + n as u8 * 2, 245]
        }
    }
}

fn inside(shape: &str, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        "ball" => dx * dx + dy * dy <= r * r,
        "box" => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
        // A triangle pointing up.
        "cone" => dy <= r && dy >= -r && dx.abs() <= (dy + r) * 0.5,
        "ring" => {
            let d = (dx * dx + dy * dy).sqrt();
            d <= r && d >= r * 0.5
        }
        "brick" => dx.abs() <= r && dy.abs() <= r * 0.45,
        // A diamond.
        _ => dx.abs() / r + dy.abs() / (r * 1.2) <= 1.0,
    }
}

/// Renders a scene to an RGB image of [`IMAGE_SIDE`] pixels.
pub fn render(scene: &Scene) -> Rgb {
    let side = IMAGE_SIDE;
    let mut img = Rgb {
        w: side,
        h: side,
        data: vec![0; (side * side * 3) as usize],
    };
    for y in 0..side {
        for x in 0..side {
            img.put(x as i32, y as i32, background(&scene.scene, x, y));
        }
    }
    if let Some([px, py, pw, ph]) = scene.poster {
        for y in py as i32..(py + ph) as i32 {
            for x in px as i32..(px + pw) as i32 {
                let edge = x < px as i32 + 2
                    || y < py as i32 + 2
                    || x >= (px + pw) as i32 - 2
                    || y >= (py + ph) as i32 - 2;
                img.put(x, y, if edge { [110, 70, 30] } else { [250, 250, 245] });
            }
        }
    }
    for o in &scene.objects {
        let c = rgb_of(&o.colour);
        let r = o.r;
        for y in (o.cy - r - 1.0) as i32..=(o.cy + r + 1.0) as i32 {
            for x in (o.cx - r - 1.0) as i32..=(o.cx + r + 1.0) as i32 {
                let (dx, dy) = (x as f32 + 0.5 - o.cx, y as f32 + 0.5 - o.cy);
                if inside(&o.category, dx, dy, r) {
                    img.put(x, y, c);
                }
            }
        }
    }
    img
}

/// The COCO category list of the synthetic world (ids from 1, in [`OBJECTS`] order).
pub fn synthetic_categories() -> Vec<CocoCategory> {
    OBJECTS
        .iter()
        .enumerate()
        .map(|(i, n)| CocoCategory {
            id: i as u64 + 1,
            name: n.to_string(),
            supercategory: "shape".into(),
        })
        .collect()
}

/// The scenes as a COCO instances file, and their grammar captions as a captions file.
pub fn to_coco(scenes: &[Scene]) -> (Coco, CocoCaptions) {
    let cats = synthetic_categories();
    let cat_id = |name: &str| {
        cats.iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
            .unwrap_or(0)
    };
    let mut coco = Coco {
        categories: cats.clone(),
        ..Coco::default()
    };
    let mut caps = CocoCaptions::default();
    let mut ann_id = 1;
    for s in scenes {
        coco.images.push(CocoImage {
            id: s.id,
            file_name: image_file_name(s.id),
            width: IMAGE_SIDE,
            height: IMAGE_SIDE,
            scene: Some(s.scene.clone()),
        });
        for o in &s.objects {
            let (x, y, d) = (o.cx - o.r, o.cy - o.r, 2.0 * o.r);
            let mut attributes = BTreeMap::new();
            attributes.insert("color".to_string(), o.colour.clone());
            attributes.insert("size".to_string(), o.size.clone());
            coco.annotations.push(CocoAnnotation {
                id: ann_id,
                image_id: s.id,
                category_id: cat_id(&o.category),
                bbox: [x as f64, y as f64, d as f64, d as f64],
                area: (d * d) as f64,
                iscrowd: 0,
                attributes,
                depicted: o.depicted,
            });
            ann_id += 1;
        }
        caps.annotations.push(CocoCaption {
            image_id: s.id,
            id: s.id,
            caption: s.caption(),
        });
    }
    (coco, caps)
}

pub fn image_file_name(id: u64) -> String {
    format!("{id:06}.png")
}

/// What [`write_scenes`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ScenesSummary {
    pub scenes: usize,
    pub with_poster: usize,
    pub instances: PathBuf,
    pub captions: PathBuf,
    pub images: PathBuf,
}

/// Renders `n` seeded scenes (ids from `first_id`) into `dir/images/*.png` and writes
/// `dir/instances.json` and `dir/captions.json`. Images are written atomically; a rerun
/// rewrites identical files.
pub fn write_scenes(dir: &Path, n: usize, first_id: u64, seed: u64) -> Result<ScenesSummary> {
    write_scene_files(dir, &generate_scenes(n, first_id, seed))
}

/// Renders `scenes` into `dir/images/*.png` and writes their COCO instances and captions.
pub fn write_scene_files(dir: &Path, scenes: &[Scene]) -> Result<ScenesSummary> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).at(&images)?;
    use rayon::prelude::*;
    scenes.par_iter().try_for_each(|s| {
        let png = render(s).to_png()?;
        pw_core::write_atomic(images.join(image_file_name(s.id)), &png)
    })?;
    let (coco, caps) = to_coco(scenes);
    let instances = dir.join("instances.json");
    let captions = dir.join("captions.json");
    pw_core::write_json_atomic(&instances, &coco)?;
    pw_core::write_json_atomic(&captions, &caps)?;
    Ok(ScenesSummary {
        scenes: scenes.len(),
        with_poster: scenes.iter().filter(|s| s.poster.is_some()).count(),
        instances,
        captions,
        images,
    })
}

/// `n` scenes drawn from one seeded generator.
pub fn generate_scenes(n: usize, first_id: u64, seed: u64) -> Vec<Scene> {
    use rand::SeedableRng;
    let mut rng = StdRng::seed_from_u64(pw_core::seed::derive(seed, "madbench/scenes"));
    (0..n)
        .map(|i| random_scene(first_id + i as u64, &mut rng))
        .collect()
}

/// The scene of a COCO image back in the synthetic world's terms (used to render truthful QA
/// for the tiny model from the same annotations the builder reads).
pub fn scene_of(coco: &Coco, image: &CocoImage) -> Scene {
    let names: BTreeMap<u64, &str> = coco
        .categories
        .iter()
        .map(|c| (c.id, c.name.as_str()))
        .collect();
    let objects = coco
        .annotations
        .iter()
        .filter(|a| a.image_id == image.id)
        .map(|a| {
            let [x, y, w, h] = a.bbox;
            SceneObject {
                category: names.get(&a.category_id).unwrap_or(&"object").to_string(),
                colour: a.attributes.get("color").cloned().unwrap_or_default(),
                size: a.attributes.get("size").cloned().unwrap_or_default(),
                cx: (x + w / 2.0) as f32,
                cy: (y + h / 2.0) as f32,
                r: (w.max(h) / 2.0) as f32,
                depicted: a.depicted,
            }
        })
        .collect();
    Scene {
        id: image.id,
        scene: image.scene.clone().unwrap_or_default(),
        objects,
        poster: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_render_and_round_trip_through_png() {
        let scenes = generate_scenes(20, 1, 7);
        assert!(scenes.iter().all(|s| s.real().count() >= 1));
        let img = render(&scenes[0]);
        let back = Rgb::from_png(&img.to_png().unwrap(), "x").unwrap();
        assert_eq!(back.data, img.data);
        // A real object's centre pixel has its colour.
        let o = scenes[0].real().next().unwrap();
        if o.category != "ring" {
            let i = ((o.cy as u32 * IMAGE_SIDE + o.cx as u32) * 3) as usize;
            assert_eq!(&img.data[i..i + 3], &rgb_of(&o.colour));
        }
    }

    #[test]
    fn coco_of_scenes_reads_back_with_the_same_facts() {
        let scenes = generate_scenes(10, 1, 3);
        let (coco, caps) = to_coco(&scenes);
        assert_eq!(caps.annotations.len(), 10);
        let bytes = serde_json::to_vec(&coco).unwrap();
        let back: Coco = serde_json::from_slice(&bytes).unwrap();
        for (s, im) in scenes.iter().zip(&back.images) {
            let t = scene_of(&back, im);
            assert_eq!(t.real().count(), s.real().count());
            assert_eq!(t.scene, s.scene);
        }
    }

    #[test]
    fn caption_counts_with_number_words() {
        let s = Scene {
            id: 1,
            scene: "beach".into(),
            objects: vec![
                SceneObject {
                    category: "box".into(),
                    colour: "red".into(),
                    size: "small".into(),
                    cx: 10.0,
                    cy: 10.0,
                    r: 5.0,
                    depicted: false,
                };
                2
            ],
            poster: None,
        };
        assert_eq!(s.caption(), "a beach with two red boxes");
    }
}
