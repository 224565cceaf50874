//! Long synthetic videos with a three-level hierarchy, and the records of Ego4D-HCap.
//!
//! A video follows one actor (a synthvideo object: colour, shape, size, texture) through a
//! **story with a goal** (summary level), told as a fixed sequence of **activities** (segment
//! level: climbing, pacing, entering, ...), each made of `clips_per_segment` **atomic actions**
//! (clip level: one 4-second synthvideo clip with a direction, a speed and an appear / leave
//! event). Captions come from grammars with several phrasings at every level, so a caption
//! names what its level's children show but no level can be copied from the one below.
//!
//! Records use the fields of Ego4D-HCap's annotations (JSON instead of pickles): a clip is
//! `{video_uid, start, end, caption}`, a segment adds `clip_captions` and `description`, a
//! video adds `segment_descriptions` and `summary`. [`read_hcap`] reads our files and real
//! Ego4D-HCap converted to JSON (`video_id` is accepted for `video_uid`, `start_sec` /
//! `end_sec` for `start` / `end`); a record missing a field is an error naming it.

use pw_core::seed::derive;
use pw_core::{Error, Result};
use pw_data::synthvideo::{COLOURS, Factors, SHAPES, SIZES, caption as clip_caption};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Seconds per clip (the paper captions every 4 s).
pub const CLIP_SECONDS: f64 = 4.0;

/// Segment-level activities: a pattern of atomic actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Climbs,
    Sinks,
    Paces,
    HeadsLeft,
    HeadsRight,
    Rushes,
    Enters,
    Exits,
}

/// Summary-level stories: a goal told through a sequence of activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Story {
    Ascent,
    Descent,
    CrossRight,
    CrossLeft,
    Guard,
    Visit,
    Restless,
}

pub const STORIES: [Story; 7] = [
    Story::Ascent,
    Story::Descent,
    Story::CrossRight,
    Story::CrossLeft,
    Story::Guard,
    Story::Visit,
    Story::Restless,
];

// Directions as synthvideo numbers them.
const LEFT: usize = 0;
const RIGHT: usize = 1;
const UP: usize = 2;
const DOWN: usize = 3;

impl Story {
    /// The activities of `segments` segments (the first and last are fixed by the goal, the
    /// middle ones vary within it).
    fn activities(self, segments: usize, rng: &mut StdRng) -> Vec<Activity> {
        use Activity::*;
        let pick = |rng: &mut StdRng, xs: &[Activity]| xs[rng.random_range(0..xs.len())];
        (0..segments)
            .map(|i| {
                let last = i + 1 == segments;
                match self {
                    Story::Ascent if i == 0 => pick(rng, &[Paces, Rushes]),
                    Story::Ascent => Climbs,
                    Story::Descent if i == 0 => pick(rng, &[Paces, Rushes]),
                    Story::Descent => Sinks,
                    Story::CrossRight if i == 0 => Enters,
                    Story::CrossRight => HeadsRight,
                    Story::CrossLeft if i == 0 => Enters,
                    Story::CrossLeft => HeadsLeft,
                    Story::Guard if last => pick(rng, &[Paces, Rushes]),
                    Story::Guard => Paces,
                    Story::Visit if i == 0 => Enters,
                    Story::Visit if last => Exits,
                    Story::Visit => pick(rng, &[Paces, Rushes]),
                    Story::Restless if last => Exits,
                    Story::Restless => Rushes,
                }
            })
            .collect()
    }

    fn summary(self, actor: &str, rng: &mut StdRng) -> String {
        let options: &[&str] = match self {
            Story::Ascent => &[
                "{a} works its way up to the top of the scene",
                "{a} spends the video climbing to the top",
                "after moving around {a} climbs all the way to the top",
            ],
            Story::Descent => &[
                "{a} makes its way down to the bottom of the scene",
                "{a} spends the video sinking to the bottom",
                "after moving around {a} goes all the way down",
            ],
            Story::CrossRight => &[
                "{a} arrives and crosses the scene from left to right",
                "{a} shows up and travels across to the right side",
                "{a} enters and makes a long trip to the right",
            ],
            Story::CrossLeft => &[
                "{a} arrives and crosses the scene from right to left",
                "{a} shows up and travels across to the left side",
                "{a} enters and makes a long trip to the left",
            ],
            Story::Guard => &[
                "{a} stands guard pacing back and forth the whole time",
                "{a} keeps watch by walking to and fro",
                "{a} patrols the scene from side to side",
            ],
            Story::Visit => &[
                "{a} pays a short visit to the scene and then leaves",
                "{a} drops in moves about for a while and goes away",
                "{a} comes by for a brief visit before leaving",
            ],
            Story::Restless => &[
                "{a} is restless and rushes around until it leaves",
                "{a} darts about nervously and finally runs off",
                "{a} cannot keep still and rushes around before leaving",
            ],
        };
        options[rng.random_range(0..options.len())].replace("{a}", actor)
    }
}

impl Activity {
    /// Motion factors (direction, speed, event) of the activity's `k` clips.
    fn actions(self, k: usize, rng: &mut StdRng) -> Vec<(usize, usize, usize)> {
        let any_dir = |rng: &mut StdRng| rng.random_range(0..4);
        let slow_mostly = |rng: &mut StdRng| usize::from(rng.random_range(0..4) == 0);
        let start = rng.random_range(0..2);
        (0..k)
            .map(|i| match self {
                Activity::Climbs => (UP, rng.random_range(0..2), 0),
                Activity::Sinks => (DOWN, rng.random_range(0..2), 0),
                Activity::Paces => (
                    if (i + start) % 2 == 0 { LEFT } else { RIGHT },
                    slow_mostly(rng),
                    0,
                ),
                Activity::HeadsLeft => (LEFT, rng.random_range(0..2), 0),
                Activity::HeadsRight => (RIGHT, rng.random_range(0..2), 0),
                Activity::Rushes => (any_dir(rng), 1, 0),
                Activity::Enters => (any_dir(rng), 0, usize::from(i == 0)),
                Activity::Exits => (any_dir(rng), 0, if i + 1 == k { 2 } else { 0 }),
            })
            .collect()
    }

    fn description(self, actor: &str, rng: &mut StdRng) -> String {
        let options: &[&str] = match self {
            Activity::Climbs => &[
                "{a} climbs upwards",
                "{a} keeps moving up",
                "{a} makes its way up",
            ],
            Activity::Sinks => &[
                "{a} sinks downwards",
                "{a} keeps moving down",
                "{a} drops lower and lower",
            ],
            Activity::Paces => &[
                "{a} paces back and forth",
                "{a} moves left and right again and again",
                "{a} goes to and fro",
            ],
            Activity::HeadsLeft => &[
                "{a} heads to the left",
                "{a} keeps moving left",
                "{a} travels leftwards",
            ],
            Activity::HeadsRight => &[
                "{a} heads to the right",
                "{a} keeps moving right",
                "{a} travels rightwards",
            ],
            Activity::Rushes => &[
                "{a} rushes around in every direction",
                "{a} darts about quickly",
                "{a} moves fast all over the place",
            ],
            Activity::Enters => &[
                "{a} enters the scene and looks around",
                "{a} shows up and wanders slowly",
                "{a} arrives and drifts about",
            ],
            Activity::Exits => &[
                "{a} wanders and then leaves the scene",
                "{a} drifts about before it leaves",
                "{a} moves around and finally exits",
            ],
        };
        options[rng.random_range(0..options.len())].replace("{a}", actor)
    }
}

/// One atomic action of a synthetic video.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthClip {
    pub factors: Factors,
    pub caption: String,
    /// Seed of the clip's rendering (position, background, noise).
    pub render_seed: u64,
}

/// One synthetic long video and its captions at every level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthVideo {
    pub uid: String,
    pub story: Story,
    pub activities: Vec<Activity>,
    pub clips: Vec<SynthClip>,
    pub descriptions: Vec<String>,
    pub summary: String,
}

impl SynthVideo {
    /// Video `index` of the stream seeded by `seed` (a function of both alone).
    pub fn generate(seed: u64, index: usize, segments: usize, clips_per_segment: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(derive(seed, &format!("recap/video/{index}")));
        let story = STORIES[rng.random_range(0..STORIES.len())];
        let (colour, shape) = (
            rng.random_range(0..COLOURS.len()),
            rng.random_range(0..SHAPES.len()),
        );
        let (size, texture) = (rng.random_range(0..SIZES.len()), rng.random_range(0..2));
        let actor = format!("the {} {}", COLOURS[colour], SHAPES[shape]);
        let activities = story.activities(segments, &mut rng);
        let mut clips = Vec::new();
        let mut descriptions = Vec::new();
        for a in &activities {
            for (direction, speed, event) in a.actions(clips_per_segment, &mut rng) {
                let factors = Factors {
                    shape,
                    colour,
                    texture,
                    size,
                    direction,
                    speed,
                    event,
                };
                clips.push(SynthClip {
                    factors,
                    caption: clip_caption(&factors, &mut rng),
                    render_seed: rng.random(),
                });
            }
            descriptions.push(a.description(&actor, &mut rng));
        }
        SynthVideo {
            uid: format!("synth-{seed:x}-{index:05}"),
            story,
            activities,
            summary: story.summary(&actor, &mut rng),
            clips,
            descriptions,
        }
    }

    /// The video's records at the three levels.
    pub fn records(
        &self,
        clips_per_segment: usize,
    ) -> (Vec<ClipRecord>, Vec<SegmentRecord>, VideoRecord) {
        let clips: Vec<ClipRecord> = self
            .clips
            .iter()
            .enumerate()
            .map(|(i, c)| ClipRecord {
                video_uid: self.uid.clone(),
                start: i as f64 * CLIP_SECONDS,
                end: (i + 1) as f64 * CLIP_SECONDS,
                caption: c.caption.clone(),
            })
            .collect();
        let segments: Vec<SegmentRecord> = self
            .descriptions
            .iter()
            .enumerate()
            .map(|(s, d)| {
                let r = s * clips_per_segment..(s + 1) * clips_per_segment;
                SegmentRecord {
                    video_uid: self.uid.clone(),
                    start: r.start as f64 * CLIP_SECONDS,
                    end: r.end as f64 * CLIP_SECONDS,
                    clip_captions: clips[r].iter().map(|c| c.caption.clone()).collect(),
                    pred_clip_captions: None,
                    description: d.clone(),
                }
            })
            .collect();
        let video = VideoRecord {
            video_uid: self.uid.clone(),
            start: 0.0,
            end: self.clips.len() as f64 * CLIP_SECONDS,
            segment_descriptions: self.descriptions.clone(),
            pred_segment_descriptions: None,
            summary: self.summary.clone(),
        };
        (clips, segments, video)
    }
}

/// A clip-level record (Ego4D-HCap: a narration every few seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipRecord {
    #[serde(alias = "video_id")]
    pub video_uid: String,
    #[serde(alias = "start_sec")]
    pub start: f64,
    #[serde(alias = "end_sec")]
    pub end: f64,
    pub caption: String,
}

/// A segment-level record: the clip captions it spans and its description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRecord {
    #[serde(alias = "video_id")]
    pub video_uid: String,
    #[serde(alias = "start_sec")]
    pub start: f64,
    #[serde(alias = "end_sec")]
    pub end: f64,
    pub clip_captions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pred_clip_captions: Option<Vec<String>>,
    pub description: String,
}

/// A video-level record: its segment descriptions and its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRecord {
    #[serde(alias = "video_id")]
    pub video_uid: String,
    #[serde(alias = "start_sec")]
    pub start: f64,
    #[serde(alias = "end_sec")]
    pub end: f64,
    pub segment_descriptions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pred_segment_descriptions: Option<Vec<String>>,
    pub summary: String,
}

/// The three levels of one split, as one JSON file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hcap {
    #[serde(default)]
    pub clips: Vec<ClipRecord>,
    #[serde(default)]
    pub segments: Vec<SegmentRecord>,
    #[serde(default)]
    pub videos: Vec<VideoRecord>,
}

impl Hcap {
    pub fn from_videos(videos: &[SynthVideo], clips_per_segment: usize) -> Hcap {
        let mut h = Hcap::default();
        for v in videos {
            let (c, s, r) = v.records(clips_per_segment);
            h.clips.extend(c);
            h.segments.extend(s);
            h.videos.push(r);
        }
        h
    }

    /// Video ids in first-seen order over all levels.
    pub fn video_uids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let ids = self
            .clips
            .iter()
            .map(|c| &c.video_uid)
            .chain(self.segments.iter().map(|s| &s.video_uid))
            .chain(self.videos.iter().map(|v| &v.video_uid));
        for id in ids {
            if seen.insert(id.clone()) {
                out.push(id.clone());
            }
        }
        out
    }
}

fn check_span(
    what: &str,
    i: usize,
    uid: &str,
    start: f64,
    end: f64,
) -> std::result::Result<(), String> {
    if uid.is_empty() {
        return Err(format!("{what} {i}: empty video_uid"));
    }
    if !(start.is_finite() && end.is_finite() && start >= 0.0 && end > start) {
        return Err(format!("{what} {i} ({uid}): bad span {start}..{end}"));
    }
    Ok(())
}

/// Reads an Ego4D-HCap-style JSON file (`{"clips": [...], "segments": [...], "videos": [...]}`)
/// or a JSONL file of records of one level (told apart by their fields). A malformed or
/// incomplete record is an error naming the file and the record.
pub fn read_hcap(path: &Path) -> Result<Hcap> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::invalid(path, "not UTF-8 text"))?;
    let h: Hcap = if text.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| {
            v.get("clips").is_some() || v.get("segments").is_some() || v.get("videos").is_some()
        }) {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid(path, format!("bad Ego4D-HCap file: {e}")))?
    } else {
        let mut h = Hcap::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::invalid(path, format!("line {}: {e}", n + 1)))?;
            let bad = |e: serde_json::Error| Error::invalid(path, format!("line {}: {e}", n + 1));
            if v.get("summary").is_some() || v.get("segment_descriptions").is_some() {
                h.videos.push(serde_json::from_value(v).map_err(bad)?);
            } else if v.get("description").is_some() || v.get("clip_captions").is_some() {
                h.segments.push(serde_json::from_value(v).map_err(bad)?);
            } else {
                h.clips.push(serde_json::from_value(v).map_err(bad)?);
            }
        }
        h
    };
    for (i, c) in h.clips.iter().enumerate() {
        check_span("clip", i, &c.video_uid, c.start, c.end).map_err(|e| Error::invalid(path, e))?;
    }
    for (i, s) in h.segments.iter().enumerate() {
        check_span("segment", i, &s.video_uid, s.start, s.end)
            .map_err(|e| Error::invalid(path, e))?;
        if s.clip_captions.is_empty() {
            return Err(Error::invalid(
                path,
                format!("segment {i} ({}): no clip_captions", s.video_uid),
            ));
        }
    }
    for (i, v) in h.videos.iter().enumerate() {
        check_span("video", i, &v.video_uid, v.start, v.end)
            .map_err(|e| Error::invalid(path, e))?;
        if v.segment_descriptions.is_empty() {
            return Err(Error::invalid(
                path,
                format!("video {i} ({}): no segment_descriptions", v.video_uid),
            ));
        }
    }
    if h.clips.is_empty() && h.segments.is_empty() && h.videos.is_empty() {
        return Err(Error::invalid(path, "no clip, segment or video records"));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn videos_are_deterministic_and_captions_follow_the_hierarchy() {
        let a = SynthVideo::generate(3, 7, 3, 4);
        let b = SynthVideo::generate(3, 7, 3, 4);
        assert_eq!(a.summary, b.summary);
        assert_eq!(a.clips.len(), 12);
        assert_eq!(a.descriptions.len(), 3);
        let actor = format!(
            "{} {}",
            COLOURS[a.clips[0].factors.colour], SHAPES[a.clips[0].factors.shape]
        );
        assert!(a.summary.contains(&actor), "{}", a.summary);
        assert!(a.descriptions.iter().all(|d| d.contains(&actor)));
        for v in (0..40).map(|i| SynthVideo::generate(1, i, 3, 4)) {
            for (s, act) in v.activities.iter().enumerate() {
                let clips = &v.clips[s * 4..(s + 1) * 4];
                match act {
                    Activity::Climbs => assert!(clips.iter().all(|c| c.factors.direction == UP)),
                    Activity::Exits => assert_eq!(clips[3].factors.event, 2),
                    Activity::Enters => assert_eq!(clips[0].factors.event, 1),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn records_round_trip_and_missing_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hcap::from_videos(&[SynthVideo::generate(1, 0, 3, 4)], 4);
        let p = dir.path().join("h.json");
        std::fs::write(&p, serde_json::to_vec(&h).unwrap()).unwrap();
        let back = read_hcap(&p).unwrap();
        assert_eq!(back.clips.len(), 12);
        assert_eq!(back.segments[1].start, 16.0);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"video_uid\": \"v\", \"start\": 0, \"end\": 4}\n").unwrap();
        let e = read_hcap(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.jsonl") && e.contains("line 1") && e.contains("caption"),
            "{e}"
        );
        let seg = dir.path().join("seg.jsonl");
        std::fs::write(
            &seg,
            "{\"video_id\": \"v\", \"start_sec\": 0, \"end_sec\": 4, \"description\": \"x\"}\n",
        )
        .unwrap();
        let e = read_hcap(&seg).unwrap_err().to_string();
        assert!(e.contains("clip_captions"), "{e}");
    }
}
