//! The builder: deceptive prompts in the paper's six categories from COCO-format annotations,
//! each with a paired neutral prompt (the same question without the false premise), the
//! structured premise ([`Premise`]) and a truth sentence that is itself a correct answer ("there
//! are two balls, not five"). Also the truthful QA the tiny model learns from, and the remedy
//! paragraph.

use crate::data::{BenchItem, Scene};
use crate::data::{
    Category, Coco, CocoCaptions, CocoImage, NUMBER_WORDS, OBJECTS, Premise, Provenance, SCENES,
    Side, plural,
};
use pw_core::{Error, Result};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The remedy paragraph (our wording of the paper's): added before the question, it asks the
/// model to check the question's premise against the image first.
pub const REMEDY: &str = "Before you answer, look carefully at the image and check whether \
everything the question assumes is really there. If the question mentions an object, a number, \
a colour, a place or a position that does not match the image, say so plainly and describe \
what the image really shows instead of going along with the question.";

/// Colour words a real-image attribute may take (the claimed colour is drawn from these).
pub const COLOUR_WORDS: [&str; 10] = [
    "red", "green", "blue", "yellow", "purple", "white", "black", "orange", "brown", "pink",
];

/// Scene words matched in captions when an image has no `scene` field (real COCO).
pub const SCENE_WORDS: [&str; 16] = [
    "beach",
    "forest",
    "street",
    "kitchen",
    "snowfield",
    "bathroom",
    "bedroom",
    "living room",
    "office",
    "park",
    "airport",
    "field",
    "restaurant",
    "river",
    "city",
    "mountain",
];

fn number(n: usize) -> String {
    NUMBER_WORDS
        .get(n)
        .map(|s| s.to_string())
        .unwrap_or_else(|| n.to_string())
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("one {noun}")
    } else {
        format!("{} {}", number(n), plural(noun))
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A built prompt before it becomes an item.
#[derive(Debug, Clone)]
pub struct Built {
    pub category: Category,
    pub template: usize,
    pub prompt: String,
    pub neutral: String,
    pub truth: String,
    pub premise: Premise,
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> (usize, &'a str) {
    let i = rng.random_range(0..xs.len());
    (i, xs[i])
}

/// The facts of one image the builder needs, from its annotations.
#[derive(Debug, Clone)]
pub struct Facts {
    pub scene: Option<String>,
    /// Real objects per category: (count, the colour all of them share, if they do).
    pub counts: BTreeMap<String, (usize, Option<String>)>,
    /// Categories present only as pictures.
    pub depicted: Vec<String>,
    /// (category, centre x) of categories with exactly one real object.
    pub singles: Vec<(String, f32)>,
    pub width: f32,
}

impl Facts {
    pub fn of(scene: &Scene, width: f32) -> Facts {
        let mut counts: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
        let mut colours: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut xs: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for o in scene.real() {
            counts.entry(o.category.clone()).or_insert((0, None)).0 += 1;
            colours
                .entry(o.category.clone())
                .or_default()
                .push(o.colour.clone());
            xs.entry(o.category.clone()).or_default().push(o.cx);
        }
        for (cat, cs) in &colours {
            let first = &cs[0];
            if !first.is_empty() && cs.iter().all(|c| c == first) {
                counts.get_mut(cat).expect("counted above").1 = Some(first.clone());
            }
        }
        let depicted = scene
            .objects
            .iter()
            .filter(|o| o.depicted && !counts.contains_key(&o.category))
            .map(|o| o.category.clone())
            .collect();
        let singles = xs
            .into_iter()
            .filter(|(_, v)| v.len() == 1)
            .map(|(k, v)| (k, v[0]))
            .collect();
        Facts {
            scene: (!scene.scene.is_empty()).then(|| scene.scene.clone()),
            counts,
            depicted,
            singles,
            width,
        }
    }
}

/// Builds the deceptive prompt of `category` for an image, or `None` when its annotations do
/// not support one (no attribute, one object only, no poster, ...). `vocabulary`: the
/// categories of the file (absent objects are drawn from it); `scenes`: the scene words.
pub fn build_one(
    facts: &Facts,
    category: Category,
    vocabulary: &[String],
    scenes: &[&str],
    rng: &mut StdRng,
) -> Option<Built> {
    let present: Vec<&String> = facts.counts.keys().collect();
    if present.is_empty() {
        return None;
    }
    match category {
        Category::Count => {
            let (cat, (actual, _)) = {
                let i = rng.random_range(0..present.len());
                let k = present[i];
                (k.clone(), facts.counts[k].clone())
            };
            let mut claimed = actual + rng.random_range(1..=3usize);
            if actual >= 3 && rng.random_bool(0.4) {
                claimed = actual - rng.random_range(1..=actual - 2);
            }
            let claimed = claimed.max(2);
            if claimed == actual {
                return None;
            }
            let (t, tpl) = pick(
                rng,
                &[
                    "What are the {n} {cats} in the image doing?",
                    "Describe the {n} {cats} in this picture.",
                    "Why are there {n} {cats} here?",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl
                    .replace("{n}", &number(claimed))
                    .replace("{cats}", &plural(&cat)),
                neutral: format!("How many {} are in the image?", plural(&cat)),
                truth: if actual == 1 {
                    format!("there is one {cat}, not {}", number(claimed))
                } else {
                    format!(
                        "there are {}, not {}",
                        counted(actual, &cat),
                        number(claimed)
                    )
                },
                premise: Premise::Count {
                    category: cat,
                    claimed,
                    actual,
                },
            })
        }
        Category::NonExistent => {
            let absent: Vec<&String> = vocabulary
                .iter()
                .filter(|c| !facts.counts.contains_key(*c) && !facts.depicted.contains(c))
                .collect();
            if absent.is_empty() {
                return None;
            }
            let a = absent[rng.random_range(0..absent.len())].clone();
            let anchor = present[rng.random_range(0..present.len())].clone();
            let (t, tpl) = pick(
                rng,
                &[
                    "What colour is the {a} next to the {b}?",
                    "Where is the {a} that is beside the {b}?",
                    "How big is the {a} in this image?",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl.replace("{a}", &a).replace("{b}", &anchor),
                neutral: format!("Is there {} {a} in the image?", article(&a)),
                truth: format!("there is no {a} in the image"),
                premise: Premise::Absent {
                    category: a,
                    anchor,
                },
            })
        }
        Category::Attribute => {
            let coloured: Vec<(&String, &String)> = facts
                .counts
                .iter()
                .filter_map(|(k, (_, c))| c.as_ref().map(|c| (k, c)))
                .collect();
            if coloured.is_empty() {
                return None;
            }
            let (cat, actual) = coloured[rng.random_range(0..coloured.len())];
            let others: Vec<&&str> = COLOUR_WORDS.iter().filter(|c| **c != actual).collect();
            let claimed = others[rng.random_range(0..others.len())].to_string();
            let (t, tpl) = pick(
                rng,
                &[
                    "What is the {c} {x} next to?",
                    "How large is the {c} {x}?",
                    "Why is the {c} {x} in this picture?",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl.replace("{c}", &claimed).replace("{x}", cat),
                neutral: format!("What colour is the {cat}?"),
                truth: format!("the {cat} is {actual}, not {claimed}"),
                premise: Premise::Attribute {
                    category: cat.clone(),
                    attribute: "color".into(),
                    claimed,
                    actual: actual.clone(),
                },
            })
        }
        Category::Scene => {
            let actual = facts.scene.clone()?;
            let others: Vec<&&str> = scenes.iter().filter(|s| **s != actual).collect();
            if others.is_empty() {
                return None;
            }
            let claimed = others[rng.random_range(0..others.len())].to_string();
            let x = present[rng.random_range(0..present.len())];
            let (t, tpl) = pick(
                rng,
                &[
                    "What is the {x} doing in this {s}?",
                    "Why is there {ax} {x} in the {s}?",
                    "Describe the {s} in this picture.",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl
                    .replace("{ax}", article(x))
                    .replace("{x}", x)
                    .replace("{s}", &claimed),
                neutral: "Where was this picture taken?".into(),
                truth: format!(
                    "this is {} {actual}, not {} {claimed}",
                    article(&actual),
                    article(&claimed)
                ),
                premise: Premise::Scene { claimed, actual },
            })
        }
        Category::Spatial => {
            // Two single objects far enough apart left-right that the side is clear.
            let gap = facts.width * 0.15;
            let mut pairs = Vec::new();
            for (i, (a, xa)) in facts.singles.iter().enumerate() {
                for (b, xb) in facts.singles.iter().skip(i + 1) {
                    if (xa - xb).abs() >= gap {
                        pairs.push((a.clone(), *xa, b.clone(), *xb));
                    }
                }
            }
            if pairs.is_empty() {
                return None;
            }
            let (mut a, mut xa, mut b, mut xb) = pairs[rng.random_range(0..pairs.len())].clone();
            if rng.random_bool(0.5) {
                std::mem::swap(&mut a, &mut b);
                std::mem::swap(&mut xa, &mut xb);
            }
            let actual = if xa < xb { Side::Left } else { Side::Right };
            let claimed = actual.other();
            let (t, tpl) = pick(
                rng,
                &[
                    "Why is the {a} to the {side} of the {b}?",
                    "What is the {a} on the {side} of the {b} made of?",
                    "How far is the {a} to the {side} of the {b}?",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl
                    .replace("{a}", &a)
                    .replace("{b}", &b)
                    .replace("{side}", claimed.word()),
                neutral: format!("Is the {a} to the left or to the right of the {b}?"),
                truth: format!(
                    "the {a} is to the {} of the {b}, not the {}",
                    actual.word(),
                    claimed.word()
                ),
                premise: Premise::Spatial {
                    a,
                    b,
                    claimed,
                    actual,
                },
            })
        }
        Category::VisualConfusion => {
            if facts.depicted.is_empty() {
                return None;
            }
            let x = facts.depicted[rng.random_range(0..facts.depicted.len())].clone();
            let (t, tpl) = pick(
                rng,
                &[
                    "What is the {x} in the room doing?",
                    "How heavy is the real {x} standing here?",
                    "Is the {x} in this place moving?",
                ],
            );
            Some(Built {
                category,
                template: t,
                prompt: tpl.replace("{x}", &x),
                neutral: format!("Is the {x} in the image a real object or only a picture?"),
                truth: format!("the {x} is only a picture on a poster, not a real {x}"),
                premise: Premise::Depicted { category: x },
            })
        }
        Category::TextRecognition => None,
    }
}

/// Whether a premise is false for an image's facts: what the builder's test checks for
/// every item it writes.
pub fn premise_is_false(p: &Premise, facts: &Facts) -> bool {
    let count = |c: &str| facts.counts.get(c).map(|x| x.0).unwrap_or(0);
    match p {
        Premise::Count {
            category,
            claimed,
            actual,
        } => count(category) == *actual && actual != claimed,
        Premise::Absent { category, anchor } => count(category) == 0 && count(anchor) > 0,
        Premise::Attribute {
            category,
            claimed,
            actual,
            ..
        } => {
            facts.counts.get(category).and_then(|x| x.1.as_deref()) == Some(actual.as_str())
                && claimed != actual
        }
        Premise::Scene { claimed, actual } => {
            facts.scene.as_deref() == Some(actual.as_str()) && claimed != actual
        }
        Premise::Spatial {
            a,
            b,
            claimed,
            actual,
        } => {
            let x = |c: &str| facts.singles.iter().find(|(k, _)| k == c).map(|s| s.1);
            match (x(a), x(b)) {
                (Some(xa), Some(xb)) => {
                    let side = if xa < xb { Side::Left } else { Side::Right };
                    side == *actual && claimed != actual
                }
                _ => false,
            }
        }
        Premise::Depicted { category } => count(category) == 0 && facts.depicted.contains(category),
    }
}

/// What the builder wrote and what it could not build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildSummary {
    pub images: usize,
    pub items: usize,
    pub per_category: BTreeMap<String, usize>,
    /// Images per category whose annotations did not support a prompt of it.
    pub unsupported: BTreeMap<String, usize>,
}

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub categories: Vec<Category>,
    pub seed: u64,
    /// Where the instances file is, for provenance.
    pub source: String,
}

/// The scene of an image, from its `scene` field or the first scene word of its captions.
fn scene_word(image: &CocoImage, captions: Option<&BTreeMap<u64, Vec<String>>>) -> Option<String> {
    if let Some(s) = &image.scene {
        return Some(s.clone());
    }
    let caps = captions?.get(&image.id)?;
    for c in caps {
        let lc = c.to_lowercase();
        for w in SCENE_WORDS {
            if lc.contains(w) {
                return Some(w.to_string());
            }
        }
    }
    None
}

/// Builds items for every image and category of `coco`. Every image must exist under
/// `images` (a missing file is one error naming it and its id).
pub fn build(
    coco: &Coco,
    captions: Option<&CocoCaptions>,
    images: &Path,
    opts: &BuildOptions,
) -> Result<(Vec<BenchItem>, BuildSummary)> {
    let caps: Option<BTreeMap<u64, Vec<String>>> = captions.map(|c| {
        let mut m: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for a in &c.annotations {
            m.entry(a.image_id).or_default().push(a.caption.clone());
        }
        m
    });
    let vocabulary: Vec<String> = coco.categories.iter().map(|c| c.name.clone()).collect();
    let synthetic = vocabulary.iter().all(|c| OBJECTS.contains(&c.as_str()));
    let scene_vocab: Vec<&str> = if synthetic {
        SCENES.to_vec()
    } else {
        SCENE_WORDS.to_vec()
    };
    let mut items = Vec::new();
    let mut summary = BuildSummary::default();
    for image in &coco.images {
        let path = images.join(&image.file_name);
        if !path.is_file() {
            return Err(Error::invalid(
                &path,
                format!("image {} of {} not found", image.id, opts.source),
            ));
        }
        summary.images += 1;
        let mut scene = crate::data::scene_of(coco, image);
        scene.scene = scene_word(image, caps.as_ref()).unwrap_or_default();
        let width = if image.width > 0 {
            image.width as f32
        } else {
            crate::data::IMAGE_SIDE as f32
        };
        let facts = Facts::of(&scene, width);
        for &cat in &opts.categories {
            let mut rng = StdRng::seed_from_u64(pw_core::seed::derive(
                opts.seed,
                &format!("madbench/build/{}/{}", image.id, cat.name()),
            ));
            match build_one(&facts, cat, &vocabulary, &scene_vocab, &mut rng) {
                Some(b) => {
                    debug_assert!(premise_is_false(&b.premise, &facts));
                    *summary.per_category.entry(cat.name().into()).or_default() += 1;
                    items.push(BenchItem {
                        id: format!("{}-{}", image.id, cat.name()),
                        image: path.display().to_string(),
                        category: cat,
                        prompt: b.prompt,
                        neutral_prompt: Some(b.neutral),
                        truth: Some(b.truth),
                        premise: Some(b.premise),
                        provenance: Provenance {
                            coco: Some(opts.source.clone()),
                            image_id: Some(image.id),
                            template: format!("{}#{}", cat.name(), b.template),
                            builder: format!("paperworks {}", env!("CARGO_PKG_VERSION")),
                        },
                    });
                }
                None => *summary.unsupported.entry(cat.name().into()).or_default() += 1,
            }
        }
    }
    summary.items = items.len();
    Ok((items, summary))
}

/// Truthful question-answer pairs about a synthetic scene (the only kind of data the tiny
/// model is trained on, as the paper's open models were): every neutral question of the six
/// categories with its true answer, a yes and a no existence question, and a description.
pub fn truthful_qa(scene: &Scene, rng: &mut StdRng) -> Vec<(String, String)> {
    let facts = Facts::of(scene, crate::data::IMAGE_SIDE as f32);
    let mut qa = Vec::new();
    qa.push(("Describe the image.".to_string(), scene.caption()));
    for (cat, (n, colour)) in &facts.counts {
        qa.push((
            format!("How many {} are in the image?", plural(cat)),
            if *n == 1 {
                format!("there is one {cat}")
            } else {
                format!("there are {}", counted(*n, cat))
            },
        ));
        qa.push((
            format!("Is there {} {cat} in the image?", article(cat)),
            format!("yes, there is {} {cat}", article(cat)),
        ));
        if let Some(c) = colour {
            qa.push((
                format!("What colour is the {cat}?"),
                format!("the {cat} is {c}"),
            ));
        }
    }
    let absent: Vec<&str> = OBJECTS
        .iter()
        .copied()
        .filter(|c| !facts.counts.contains_key(*c) && !facts.depicted.iter().any(|d| d == c))
        .collect();
    if !absent.is_empty() {
        let a = absent[rng.random_range(0..absent.len())];
        qa.push((
            format!("Is there {} {a} in the image?", article(a)),
            format!("no, there is no {a} in the image"),
        ));
    }
    if let Some(s) = &facts.scene {
        qa.push((
            "Where was this picture taken?".into(),
            format!("this is {} {s}", article(s)),
        ));
    }
    for (i, (a, xa)) in facts.singles.iter().enumerate() {
        for (b, xb) in facts.singles.iter().skip(i + 1) {
            if (xa - xb).abs() >= facts.width * 0.15 {
                let (a, b, xa, xb) = if rng.random_bool(0.5) {
                    (a, b, xa, xb)
                } else {
                    (b, a, xb, xa)
                };
                let side = if xa < xb { "left" } else { "right" };
                qa.push((
                    format!("Is the {a} to the left or to the right of the {b}?"),
                    format!("the {a} is to the {side} of the {b}"),
                ));
            }
        }
    }
    for d in &facts.depicted {
        qa.push((
            format!("Is the {d} in the image a real object or only a picture?"),
            format!("the {d} is only a picture on a poster"),
        ));
    }
    for cat in facts.counts.keys() {
        qa.push((
            format!("Is the {cat} in the image a real object or only a picture?"),
            format!("the {cat} is a real object"),
        ));
    }
    qa
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate_scenes;

    #[test]
    fn every_built_premise_is_false_for_its_scene() {
        let vocab: Vec<String> = OBJECTS.iter().map(|s| s.to_string()).collect();
        let mut built = BTreeMap::new();
        for s in generate_scenes(300, 1, 11) {
            let f = Facts::of(&s, 64.0);
            for cat in Category::PAPER {
                let mut rng = StdRng::seed_from_u64(s.id);
                if let Some(b) = build_one(&f, cat, &vocab, &SCENES, &mut rng) {
                    assert!(premise_is_false(&b.premise, &f), "{b:?} for {s:?}");
                    assert!(!b.prompt.is_empty() && !b.neutral.is_empty());
                    *built.entry(cat).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(built.len(), 6, "{built:?}");
        assert!(built.values().all(|n| *n >= 20), "{built:?}");
    }

    #[test]
    fn truthful_qa_never_asserts_a_false_count() {
        let mut rng = StdRng::seed_from_u64(1);
        for s in generate_scenes(50, 1, 5) {
            for (q, a) in truthful_qa(&s, &mut rng) {
                if let Some(rest) = q.strip_prefix("How many ") {
                    let noun = rest.split(' ').next().unwrap();
                    let n = s.real().filter(|o| plural(&o.category) == noun).count();
                    assert!(
                        a.contains(&number(n)) || (n == 1 && a.contains("one")),
                        "{q} {a}"
                    );
                }
            }
        }
    }
}
