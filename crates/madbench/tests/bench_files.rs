//! The benchmark files: the builder on a hand-made 5-image COCO file (every category
//! produced, every false premise checked against the annotations by hand-written rules here),
//! its clear errors, and a 20-row excerpt in the official release's format.

use pw_madbench::data::{Coco, Premise, Side, read_bench};
use pw_madbench::prompts::{BuildOptions, build};
use pw_madbench::{Category, Variant};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn hand_made(dir: &Path) -> std::path::PathBuf {
    let cats = [
        "dog", "cup", "cat", "sofa", "horse", "umbrella", "car", "person", "bench",
    ];
    let categories: Vec<_> = cats
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": i + 1, "name": n, "supercategory": "thing"}))
        .collect();
    let images = json!([
        {"id": 1, "file_name": "1.jpg", "width": 320, "height": 240, "scene": "kitchen"},
        {"id": 2, "file_name": "2.jpg", "width": 320, "height": 240},
        {"id": 3, "file_name": "3.jpg", "width": 320, "height": 240, "scene": "beach"},
        {"id": 4, "file_name": "4.jpg", "width": 320, "height": 240, "scene": "street"},
        {"id": 5, "file_name": "5.jpg", "width": 320, "height": 240, "scene": "park"},
    ]);
    // (id, image, category, x, colour, depicted)
    let anns: Vec<(u64, u64, u64, f64, &str, bool)> = vec![
        (1, 1, 2, 100.0, "white", false),
        (2, 1, 2, 140.0, "white", false),
        (3, 1, 2, 180.0, "white", false),
        (4, 1, 1, 10.0, "brown", false),
        (5, 1, 3, 250.0, "black", false),
        (6, 2, 3, 40.0, "black", false),
        (7, 2, 4, 200.0, "red", false),
        (8, 2, 5, 120.0, "brown", true),
        (9, 3, 1, 30.0, "brown", false),
        (10, 3, 1, 90.0, "brown", false),
        (11, 3, 6, 220.0, "blue", false),
        (12, 4, 7, 20.0, "blue", false),
        (13, 4, 8, 250.0, "", false),
        (14, 5, 1, 50.0, "yellow", false),
        (15, 5, 5, 150.0, "white", true),
        (16, 5, 9, 260.0, "green", false),
    ];
    let annotations: Vec<_> = anns
        .iter()
        .map(|(id, img, cat, x, col, dep)| {
            let mut a = json!({"id": id, "image_id": img, "category_id": cat,
                               "bbox": [x, 100.0, 30.0, 30.0], "area": 900.0, "iscrowd": 0,
                               "segmentation": [[1, 2, 3, 4]]});
            if !col.is_empty() {
                a["attributes"] = json!({"color": col});
            }
            if *dep {
                a["depicted"] = json!(true);
            }
            a
        })
        .collect();
    let coco = json!({"info": {"year": 2026}, "licenses": [], "images": images,
                      "annotations": annotations, "categories": categories});
    let p = dir.join("instances.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&coco).unwrap()).unwrap();
    std::fs::write(
        dir.join("captions.json"),
        serde_json::to_vec(&json!({"annotations": [
            {"image_id": 2, "id": 1, "caption": "A cat sleeps on a red sofa in the living room."}
        ]}))
        .unwrap(),
    )
    .unwrap();
    let imgs = dir.join("images");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 1..=5 {
        std::fs::write(imgs.join(format!("{i}.jpg")), b"\xff\xd8\xff fake").unwrap();
    }
    p
}

#[test]
fn every_category_is_built_and_every_premise_is_false_by_the_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let path = hand_made(dir.path());
    let coco = Coco::read(&path).unwrap();
    let caps = pw_madbench::data::read_captions(&dir.path().join("captions.json")).unwrap();
    let (items, summary) = build(
        &coco,
        Some(&caps),
        &dir.path().join("images"),
        &BuildOptions {
            categories: Category::PAPER.to_vec(),
            seed: 0,
            source: "instances.json".into(),
        },
    )
    .unwrap();
    assert_eq!(summary.images, 5);
    for c in Category::PAPER {
        assert!(
            items.iter().any(|i| i.category == c),
            "no {c} item: {summary:?}"
        );
    }
    // The annotations, read here by hand: real objects per image and category, colours,
    // x centres, depicted categories, scenes.
    let name = |id: u64| {
        coco.categories
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .name
            .clone()
    };
    for it in &items {
        let img = it.provenance.image_id.unwrap();
        let anns: Vec<_> = coco
            .annotations
            .iter()
            .filter(|a| a.image_id == img)
            .collect();
        let real = |c: &str| {
            anns.iter()
                .filter(|a| !a.depicted && name(a.category_id) == c)
                .count()
        };
        let premise = it.premise.as_ref().unwrap();
        let ok = match premise {
            Premise::Count {
                category,
                claimed,
                actual,
            } => {
                real(category) == *actual && claimed != actual && it.prompt.contains(&category[..2])
            }
            Premise::Absent { category, anchor } => {
                real(category) == 0
                    && !anns.iter().any(|a| name(a.category_id) == *category)
                    && real(anchor) > 0
                    && it.prompt.contains(category.as_str())
            }
            Premise::Attribute {
                category,
                claimed,
                actual,
                ..
            } => {
                anns.iter()
                    .filter(|a| name(a.category_id) == *category && !a.depicted)
                    .all(|a| a.attributes.get("color") == Some(actual))
                    && claimed != actual
                    && it.prompt.contains(claimed.as_str())
            }
            Premise::Scene { claimed, actual } => {
                let expected = match img {
                    1 => "kitchen",
                    2 => "living room",
                    3 => "beach",
                    4 => "street",
                    _ => "park",
                };
                actual == expected && claimed != actual && it.prompt.contains(claimed.as_str())
            }
            Premise::Spatial {
                a,
                b,
                claimed,
                actual,
            } => {
                let x = |c: &str| {
                    anns.iter()
                        .find(|n| name(n.category_id) == c)
                        .map(|n| n.bbox[0])
                        .unwrap()
                };
                let truth = if x(a) < x(b) { Side::Left } else { Side::Right };
                real(a) == 1 && real(b) == 1 && truth == *actual && claimed != actual
            }
            Premise::Depicted { category } => {
                real(category) == 0
                    && anns
                        .iter()
                        .any(|a| a.depicted && name(a.category_id) == *category)
            }
        };
        assert!(ok, "premise not false for image {img}: {it:?}");
        assert!(it.neutral_prompt.is_some() && it.truth.is_some());
        // The truth sentence is itself judged correct for the deceptive prompt.
        assert!(
            pw_madbench::judge::exact(premise, it.truth.as_deref().unwrap()).correct(),
            "{it:?}"
        );
        assert!(
            pw_madbench::evaluate::variant_text(it, Variant::Remedy)
                .unwrap()
                .ends_with(&it.prompt)
        );
    }
    // Written and read back as our JSONL, relative to nothing: the paths are absolute.
    let out = dir.path().join("bench.jsonl");
    pw_core::jsonl::write_jsonl(&out, &items).unwrap();
    assert_eq!(read_bench(&out, None).unwrap(), items);
}

#[test]
fn unknown_category_ids_and_missing_images_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = hand_made(dir.path());
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["annotations"][3]["category_id"] = json!(99);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = Coco::read(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.json")
            && e.contains("unknown category id 99")
            && e.contains("annotation 4"),
        "{e}"
    );
    assert!(!e.contains('\n'));

    std::fs::remove_file(dir.path().join("images/3.jpg")).unwrap();
    let coco = Coco::read(&path).unwrap();
    let e = build(
        &coco,
        None,
        &dir.path().join("images"),
        &BuildOptions {
            categories: Category::PAPER.to_vec(),
            seed: 0,
            source: "instances.json".into(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("3.jpg") && e.contains("image 3") && e.contains("not found"),
        "{e}"
    );

    std::fs::write(&bad, b"{\"images\": 5}").unwrap();
    let e = Coco::read(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.json") && e.contains("not a COCO instances file"),
        "{e}"
    );
}

#[test]
fn the_official_release_format_loads_with_images_mapped_by_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let cats = [
        "non-existent_object",
        "scene_understanding",
        "text_recognition",
        "count_of_object",
        "object_attribute",
    ];
    let mut rows = Vec::new();
    for i in 0..20 {
        let file = format!("{:012}.jpg", 139 + i);
        std::fs::write(imgs.join(&file), b"\xff\xd8\xff").unwrap();
        let url = if i % 2 == 0 {
            format!("http://images.cocodataset.org/val2017/{file}")
        } else {
            format!("https://example.org/pics/{file}?raw=1")
        };
        rows.push(
            json!({"image": url, "instruction": format!("What is the dog number {i} doing?"),
                         "category": cats[i % cats.len()]}),
        );
    }
    let p = dir.path().join("mad_bench_prompt_image.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&rows).unwrap()).unwrap();
    let items = read_bench(&p, Some(&imgs)).unwrap();
    assert_eq!(items.len(), 20);
    let mut per: BTreeMap<Category, usize> = BTreeMap::new();
    for it in &items {
        *per.entry(it.category).or_default() += 1;
        assert!(it.image.starts_with(imgs.to_str().unwrap()), "{}", it.image);
        assert!(it.neutral_prompt.is_none() && it.premise.is_none());
        assert_eq!(
            pw_madbench::evaluate::variant_text(it, Variant::Neutral),
            None
        );
    }
    assert_eq!(per[&Category::TextRecognition], 4);
    // Without an image folder, and with an image missing: one line naming what.
    let e = read_bench(&p, None).unwrap_err().to_string();
    assert!(e.contains("--images"), "{e}");
    std::fs::remove_file(imgs.join(format!("{:012}.jpg", 139 + 7))).unwrap();
    let e = read_bench(&p, Some(&imgs)).unwrap_err().to_string();
    assert!(
        e.contains("official-0007") && e.contains("000000000146.jpg") && e.contains("not found"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}
