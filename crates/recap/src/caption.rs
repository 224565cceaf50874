//! Zero-shot recursive captioning of a real video, the way users of long-video captioners
//! (LLoVi, VideoAgent) run Video ReCap's idea with the models they have:
//!
//! 1. the video is cut into clips of `clip_seconds` (4 s); `frames` frames are sampled in each
//!    and sent as image parts (PNG data URIs) to a vision model, which writes the clip caption;
//! 2. an LLM writes a segment description from each window of `segment_clips` clip captions;
//! 3. the LLM writes the summary from the segment descriptions.
//!
//! Each level is a resumable stage (pw-llm's ledger in the output folder): a killed run asks
//! again only what has no answer. Outputs: `hierarchy.json` (timestamps at every level) and
//! `clips.vtt` (WebVTT cues of the clip captions).

use pw_core::{Error, Result};
use pw_data::video::{FrameSpec, Sampling, decode, probe};
use pw_llm::stage::{StageItem, StageStats};
use pw_llm::{ChatMessage, GenParams, Generator};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct CaptionOptions {
    pub video: PathBuf,
    pub out: PathBuf,
    pub clip_seconds: f64,
    pub frames: usize,
    /// Square side of the frames sent to the vision model.
    pub size: usize,
    pub segment_clips: usize,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Span {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// The output hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hierarchy {
    pub video: String,
    pub duration_s: f64,
    pub clip_model: String,
    pub llm_model: String,
    pub clips: Vec<Span>,
    pub segments: Vec<Span>,
    pub summary: String,
}

pub struct CaptionSummary {
    pub hierarchy: Hierarchy,
    pub json: PathBuf,
    pub vtt: PathBuf,
    pub stats: [StageStats; 3],
}

pub const CLIP_PROMPT: &str = "These frames are sampled in order from a few seconds of video. \
     In one sentence, say what happens in them (who does what).";

fn png(frame: &[f32], w: usize, h: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::Other(format!("png: {e}")))?;
        let bytes: Vec<u8> = frame
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        wr.write_image_data(&bytes)
            .map_err(|e| Error::Other(format!("png: {e}")))?;
    }
    Ok(out)
}

/// `HH:MM:SS.mmm`
pub fn vtt_time(t: f64) -> String {
    let ms = (t * 1000.0).round().max(0.0) as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A WebVTT file of `cues`.
pub fn webvtt(cues: &[Span]) -> String {
    let mut s = String::from("WEBVTT\n\n");
    for (i, c) in cues.iter().enumerate() {
        // A cue's text may not hold "-->" or a blank line.
        let text = c.text.replace("-->", "->").replace('\n', " ");
        s.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            vtt_time(c.start),
            vtt_time(c.end),
            text.trim()
        ));
    }
    s
}

fn nonempty(_: &StageItem, text: &str) -> std::result::Result<serde_json::Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty reply".into());
    }
    Ok(serde_json::Value::String(
        t.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

fn stage(
    g: &dyn Generator,
    items: Vec<StageItem>,
    dir: &Path,
    name: &str,
    label: &str,
) -> Result<(std::collections::HashMap<String, String>, StageStats)> {
    let (map, stats) = crate::pseudo::run_texts(g, items, &nonempty, dir, name, label, 4)?;
    let rej = dir.join(format!("{name}-rejects.jsonl"));
    if stats.rejected > 0 {
        return Err(Error::Other(format!(
            "{label}: {} item(s) got no usable reply (see {})",
            stats.rejected,
            rej.display()
        )));
    }
    Ok((map, stats))
}

/// Captions `o.video` recursively: clips with `vision`, segments and the summary with `llm`.
pub fn caption_video(
    vision: &dyn Generator,
    llm: &dyn Generator,
    o: &CaptionOptions,
) -> Result<CaptionSummary> {
    if o.clip_seconds <= 0.0 || o.frames == 0 || o.size < 8 || o.segment_clips == 0 {
        return Err(Error::Other(
            "recap caption: --clip-seconds > 0, --frames >= 1, --size >= 8, --segment-clips >= 1"
                .into(),
        ));
    }
    let info = probe(&o.video)?;
    let n_clips = (info.duration_s / o.clip_seconds).floor() as usize;
    if n_clips == 0 {
        return Err(Error::invalid(
            &o.video,
            format!(
                "is {:.2} s long, shorter than one clip of {} s",
                info.duration_s, o.clip_seconds
            ),
        ));
    }
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    // Frames at `frames` per clip, decoded once; each clip takes those inside its span.
    let fps = o.frames as f64 / o.clip_seconds;
    let all = decode(
        &o.video,
        &FrameSpec {
            sampling: Sampling::Fps(fps),
            size: Some((o.size, o.size)),
        },
    )?;
    let plane = all.height * all.width * 3;
    let mut clip_items = Vec::new();
    let mut spans = Vec::new();
    for i in 0..n_clips {
        let (a, b) = (i as f64 * o.clip_seconds, (i + 1) as f64 * o.clip_seconds);
        let idx: Vec<usize> = (0..all.frames)
            .filter(|&k| all.times[k] >= a - 1e-6 && all.times[k] < b - 1e-6)
            .take(o.frames)
            .collect();
        if idx.is_empty() {
            return Err(Error::invalid(
                &o.video,
                format!("no frame decoded in {a:.1}-{b:.1} s"),
            ));
        }
        let mut urls = Vec::new();
        for k in idx {
            let bytes = png(&all.data[k * plane..(k + 1) * plane], all.width, all.height)?;
            urls.push(pw_llm::image::data_uri(&bytes, "image/png"));
        }
        clip_items.push(StageItem {
            id: format!("clip-{i:05}"),
            messages: vec![ChatMessage::user_with_images(CLIP_PROMPT, &urls)],
            params: GenParams::greedy(o.max_tokens),
            meta: serde_json::json!({ "start": a, "end": b }),
        });
        spans.push((a, b));
    }
    let (clips, s_clip) = stage(vision, clip_items, &o.out, "clips", "recap: clip captions")?;
    let clip_caps: Vec<Span> = spans
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| Span {
            start,
            end,
            text: clips[&format!("clip-{i:05}")].clone(),
        })
        .collect();

    let windows: Vec<&[Span]> = clip_caps.chunks(o.segment_clips).collect();
    let seg_items: Vec<StageItem> = windows
        .iter()
        .enumerate()
        .map(|(s, w)| {
            let list = w
                .iter()
                .map(|c| format!("[{:.0}-{:.0} s] {}", c.start, c.end, c.text))
                .collect::<Vec<_>>()
                .join("\n");
            StageItem {
                id: format!("segment-{s:04}"),
                messages: vec![
                    ChatMessage::system(
                        "You describe segments of a video from the captions of its consecutive clips.",
                    ),
                    ChatMessage::user(format!(
                        "Clip captions:\n{list}\n\nIn one or two sentences, describe what happens in this segment."
                    )),
                ],
                params: GenParams::greedy(o.max_tokens * 2),
                meta: serde_json::json!({ "start": w[0].start, "end": w[w.len() - 1].end }),
            }
        })
        .collect();
    let (segs, s_seg) = stage(
        llm,
        seg_items,
        &o.out,
        "segments",
        "recap: segment descriptions",
    )?;
    let seg_spans: Vec<Span> = windows
        .iter()
        .enumerate()
        .map(|(s, w)| Span {
            start: w[0].start,
            end: w[w.len() - 1].end,
            text: segs[&format!("segment-{s:04}")].clone(),
        })
        .collect();

    let list = seg_spans
        .iter()
        .map(|s| format!("[{:.0}-{:.0} s] {}", s.start, s.end, s.text))
        .collect::<Vec<_>>()
        .join("\n");
    let (sum, s_sum) = stage(
        llm,
        vec![StageItem {
            id: "summary".into(),
            messages: vec![
                ChatMessage::system("You summarise videos from descriptions of their segments."),
                ChatMessage::user(format!(
                    "Segment descriptions:\n{list}\n\nSummarise the whole video in two or three sentences: what happens and to what end."
                )),
            ],
            params: GenParams::greedy(o.max_tokens * 3),
            meta: serde_json::Value::Null,
        }],
        &o.out,
        "summary",
        "recap: summary",
    )?;
    let hierarchy = Hierarchy {
        video: o.video.display().to_string(),
        duration_s: info.duration_s,
        clip_model: vision.model(),
        llm_model: llm.model(),
        clips: clip_caps,
        segments: seg_spans,
        summary: sum["summary"].clone(),
    };
    let json = o.out.join("hierarchy.json");
    pw_core::write_json_atomic(&json, &hierarchy)?;
    let vtt = o.out.join("clips.vtt");
    pw_core::write_atomic(&vtt, webvtt(&hierarchy.clips).as_bytes())?;
    Ok(CaptionSummary {
        hierarchy,
        json,
        vtt,
        stats: [s_clip, s_seg, s_sum],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webvtt_cues_have_timestamps_and_safe_text() {
        let v = webvtt(&[Span {
            start: 3661.5,
            end: 3665.5,
            text: "a --> b\nc".into(),
        }]);
        assert!(
            v.starts_with("WEBVTT\n\n1\n01:01:01.500 --> 01:01:05.500\na -> b c\n"),
            "{v}"
        );
    }
}
