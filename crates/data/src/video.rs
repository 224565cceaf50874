//! Video decoding through FFmpeg (`ffmpeg-next` over the libav* that `scripts/setup.sh`
//! installs): any container and codec Debian's FFmpeg reads (mp4, webm, mkv, ...).
//!
//! A video becomes a [`Frames`]: `T` RGB frames as `f32` in [0, 1], laid out `[T, H, W, 3]`
//! (the layout VideoPrism's encoder takes). Frames are chosen by a [`Sampling`] (`N` uniformly
//! over the whole video, a fixed rate, or every frame) and brought to `H x W` by scaling the
//! shorter side to fit and cropping the centre, the usual evaluation transform of video
//! encoders. [`windows`] cuts a long video into consecutive clips of `T` frames;
//! [`decode_many`] decodes several files on worker threads ahead of the consumer, so a model
//! never waits for the decoder.
//!
//! Every failure names the file: a file FFmpeg cannot open, a stream that is not video, a
//! video with no frames, fewer frames than asked for, a truncated stream.

use pw_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg_next as ff;

/// How frames are chosen from a video.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// `n` frames spread uniformly over the whole video (the centre of each of `n` equal
    /// segments), VideoPrism's evaluation sampling.
    Uniform(usize),
    /// One frame every `1 / fps` seconds, from the start.
    Fps(f64),
    /// Every frame.
    All,
}

/// What to decode: which frames and at what size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameSpec {
    pub sampling: Sampling,
    /// Output `(height, width)`: the shorter side is scaled to cover it, then the centre is
    /// cropped. `None` keeps the source size.
    pub size: Option<(usize, usize)>,
}

impl FrameSpec {
    pub fn uniform(n: usize, height: usize, width: usize) -> Self {
        FrameSpec {
            sampling: Sampling::Uniform(n),
            size: Some((height, width)),
        }
    }
}

/// What a container says about its best video stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoInfo {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    /// Average frame rate (frames per second).
    pub fps: f64,
    /// Frames in the stream (counted from the packets when the container does not say).
    pub frames: usize,
    pub duration_s: f64,
    pub codec: String,
}

/// Decoded frames, `[frames, height, width, 3]` row-major, values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
    /// Presentation time of each frame, in seconds.
    pub times: Vec<f64>,
    /// Index of each frame in the source stream.
    pub indices: Vec<usize>,
}

impl Frames {
    /// Values of one frame, `[height, width, 3]`.
    pub fn frame(&self, t: usize) -> &[f32] {
        let n = self.height * self.width * 3;
        &self.data[t * n..(t + 1) * n]
    }
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // ffmpeg_next::init only registers devices/network in old FFmpeg; its failure is not
        // fatal for reading files, and the errors that matter surface at open.
        let _ = ff::init();
        // Our errors name the file and the problem; FFmpeg's own stderr chatter would
        // interleave with progress bars.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn ff_err(path: &Path, what: &str, e: ff::Error) -> Error {
    Error::invalid(path, format!("{what}: {e}"))
}

fn open(path: &Path) -> Result<ff::format::context::Input> {
    init();
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let name = pw_core::cpath::OpenName::new(path)?;
    ff::format::input(&name.as_path()).map_err(|e| {
        Error::invalid(
            path,
            format!("not a video FFmpeg can read ({e}): corrupt, truncated or not a video file"),
        )
    })
}

fn video_stream(path: &Path, ictx: &ff::format::context::Input) -> Result<(usize, f64, f64)> {
    let stream = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| Error::invalid(path, "has no video stream"))?;
    let tb = f64::from(stream.time_base());
    let rate = stream.avg_frame_rate();
    let fps = if rate.denominator() != 0 && rate.numerator() > 0 {
        f64::from(rate)
    } else {
        let r = stream.rate();
        if r.denominator() != 0 && r.numerator() > 0 {
            f64::from(r)
        } else {
            0.0
        }
    };
    Ok((stream.index(), tb, fps))
}

/// Counts the video packets of stream `index` (one per frame for the codecs of video files).
fn count_packets(path: &Path, index: usize) -> Result<usize> {
    let mut ictx = open(path)?;
    let mut n = 0usize;
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {
                if packet.stream() == index {
                    n += 1;
                }
            }
            Err(ff::Error::Eof) => break,
            Err(ff::Error::InvalidData) => continue,
            Err(e) => return Err(ff_err(path, "reading packets", e)),
        }
    }
    Ok(n)
}

/// Container facts about `path`'s video stream; counts packets when the container gives no
/// frame count.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let ictx = open(path)?;
    let (index, tb, fps) = video_stream(path, &ictx)?;
    let stream = ictx.stream(index).expect("stream index from best()");
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| ff_err(path, "reading codec parameters", e))?;
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|e| ff_err(path, "opening the video decoder", e))?;
    let declared = stream.frames().max(0) as usize;
    let duration_s = if stream.duration() > 0 {
        stream.duration() as f64 * tb
    } else if ictx.duration() > 0 {
        ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let codec = decoder
        .codec()
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    let (width, height) = (decoder.width() as usize, decoder.height() as usize);
    drop(decoder);
    drop(ictx);
    let frames = if declared > 0 {
        declared
    } else {
        count_packets(path, index)?
    };
    Ok(VideoInfo {
        path: path.to_path_buf(),
        width,
        height,
        fps,
        frames,
        duration_s,
        codec,
    })
}

/// Source frame indices that `sampling` picks from a video of `total` frames at `fps`.
pub fn pick_indices(sampling: Sampling, total: usize, fps: f64) -> Vec<usize> {
    match sampling {
        Sampling::All => (0..total).collect(),
        Sampling::Uniform(n) => (0..n)
            .map(|i| (((2 * i + 1) * total) / (2 * n)).min(total.saturating_sub(1)))
            .collect(),
        Sampling::Fps(rate) => {
            if fps <= 0.0 || rate <= 0.0 {
                return (0..total).collect();
            }
            let step = fps / rate;
            let mut out = Vec::new();
            let mut x = 0.0f64;
            while (x.round() as usize) < total {
                let i = x.round() as usize;
                if out.last() != Some(&i) {
                    out.push(i);
                }
                x += step;
            }
            out
        }
    }
}

/// The scaled size before the centre crop: the shorter side covers the target.
fn cover_size(src_w: usize, src_h: usize, (out_h, out_w): (usize, usize)) -> (usize, usize) {
    let s = (out_w as f64 / src_w as f64).max(out_h as f64 / src_h as f64);
    let w = ((src_w as f64 * s).round() as usize).max(out_w);
    let h = ((src_h as f64 * s).round() as usize).max(out_h);
    (w, h)
}

/// Decodes the frames `spec` picks from `path`.
pub fn decode(path: &Path, spec: &FrameSpec) -> Result<Frames> {
    if let Sampling::Uniform(0) = spec.sampling {
        return Err(Error::invalid(path, "asked for 0 frames"));
    }
    if let Some((h, w)) = spec.size
        && (h == 0 || w == 0)
    {
        return Err(Error::invalid(
            path,
            format!("output size {h}x{w} is empty"),
        ));
    }
    let info = probe(path)?;
    if info.frames == 0 {
        return Err(Error::invalid(path, "has no video frames (0-frame stream)"));
    }
    if let Sampling::Uniform(n) = spec.sampling
        && info.frames < n
    {
        return Err(Error::invalid(
            path,
            format!("has {} frames, fewer than the {n} requested", info.frames),
        ));
    }
    let wanted = pick_indices(spec.sampling, info.frames, info.fps);
    decode_indices(path, &info, &wanted, spec.size, 1)
}

/// Decodes source frames `wanted` (sorted, repeats allowed) of `path`.
fn decode_indices(
    path: &Path,
    info: &VideoInfo,
    wanted: &[usize],
    size: Option<(usize, usize)>,
    threads: usize,
) -> Result<Frames> {
    let mut ictx = open(path)?;
    let (index, tb, _) = video_stream(path, &ictx)?;
    let stream = ictx.stream(index).expect("stream index from best()");
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| ff_err(path, "reading codec parameters", e))?;
    let mut threading = ff::codec::threading::Config::kind(ff::codec::threading::Type::Frame);
    threading.count = threads;
    ctx.set_threading(threading);
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| ff_err(path, "opening the video decoder", e))?;
    let (src_w, src_h) = (decoder.width() as usize, decoder.height() as usize);
    if src_w == 0 || src_h == 0 {
        return Err(Error::invalid(path, "video stream has a 0x0 frame size"));
    }
    let (out_h, out_w) = size.unwrap_or((src_h, src_w));
    let (scaled_w, scaled_h) = cover_size(src_w, src_h, (out_h, out_w));
    let mut scaler: Option<(ff::format::Pixel, ff::software::scaling::Context)> = None;
    let plane = out_h * out_w * 3;
    let mut out = Frames {
        frames: 0,
        height: out_h,
        width: out_w,
        data: Vec::with_capacity(wanted.len() * plane),
        times: Vec::with_capacity(wanted.len()),
        indices: Vec::with_capacity(wanted.len()),
    };
    let mut next = 0usize; // position in `wanted`
    let mut seen = 0usize; // decoded frames so far
    let mut frame = ff::frame::Video::empty();
    let mut rgb = ff::frame::Video::empty();

    let mut take =
        |frame: &ff::frame::Video, seen: usize, next: &mut usize, out: &mut Frames| -> Result<()> {
            if *next >= wanted.len() || wanted[*next] != seen {
                return Ok(());
            }
            let fmt = frame.format();
            if scaler.as_ref().map(|(f, _)| *f) != Some(fmt) {
                let ctx = ff::software::scaling::Context::get(
                    fmt,
                    frame.width(),
                    frame.height(),
                    ff::format::Pixel::RGB24,
                    scaled_w as u32,
                    scaled_h as u32,
                    ff::software::scaling::Flags::BILINEAR,
                )
                .map_err(|e| ff_err(path, "setting up the scaler", e))?;
                scaler = Some((fmt, ctx));
            }
            let (_, sws) = scaler.as_mut().expect("set above");
            sws.run(frame, &mut rgb)
                .map_err(|e| ff_err(path, "scaling a frame", e))?;
            let stride = rgb.stride(0);
            let data = rgb.data(0);
            let (x0, y0) = ((scaled_w - out_w) / 2, (scaled_h - out_h) / 2);
            let mut buf = Vec::with_capacity(plane);
            for y in 0..out_h {
                let row = &data[(y0 + y) * stride + x0 * 3..(y0 + y) * stride + (x0 + out_w) * 3];
                buf.extend(row.iter().map(|&v| v as f32 * (1.0 / 255.0)));
            }
            let t = frame.timestamp().or(frame.pts()).unwrap_or(seen as i64) as f64 * tb;
            while *next < wanted.len() && wanted[*next] == seen {
                out.data.extend_from_slice(&buf);
                out.times.push(t);
                out.indices.push(seen);
                out.frames += 1;
                *next += 1;
            }
            Ok(())
        };

    let mut packet = ff::Packet::empty();
    let mut corrupt_packets = 0usize;
    'read: loop {
        match packet.read(&mut ictx) {
            Ok(()) => {
                if packet.stream() != index {
                    continue;
                }
                if decoder.send_packet(&packet).is_err() {
                    corrupt_packets += 1;
                    continue;
                }
            }
            Err(ff::Error::Eof) => {
                let _ = decoder.send_eof();
                while decoder.receive_frame(&mut frame).is_ok() {
                    take(&frame, seen, &mut next, &mut out)?;
                    seen += 1;
                }
                break 'read;
            }
            Err(ff::Error::InvalidData) => {
                corrupt_packets += 1;
                continue;
            }
            Err(e) => return Err(ff_err(path, "reading packets", e)),
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, seen, &mut next, &mut out)?;
            seen += 1;
            if next >= wanted.len() {
                break 'read;
            }
        }
    }
    if next < wanted.len() {
        return Err(Error::invalid(
            path,
            format!(
                "truncated or corrupt video stream: decoded {seen} of {} frames{}",
                info.frames,
                if corrupt_packets > 0 {
                    format!(" ({corrupt_packets} unreadable packets)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(out)
}

/// Consecutive clips of `window` frames, `stride` frames apart (the last partial clip is
/// dropped), every frame at `size`: a long video as the inputs of a clip encoder. Decodes the
/// whole video once.
pub fn windows(
    path: &Path,
    window: usize,
    stride: usize,
    size: Option<(usize, usize)>,
) -> Result<Vec<Frames>> {
    if window == 0 || stride == 0 {
        return Err(Error::invalid(path, "window and stride must be at least 1"));
    }
    let all = decode(
        path,
        &FrameSpec {
            sampling: Sampling::All,
            size,
        },
    )?;
    if all.frames < window {
        return Err(Error::invalid(
            path,
            format!(
                "has {} frames, fewer than one window of {window}",
                all.frames
            ),
        ));
    }
    let plane = all.height * all.width * 3;
    Ok((0..=all.frames - window)
        .step_by(stride)
        .map(|s| Frames {
            frames: window,
            height: all.height,
            width: all.width,
            data: all.data[s * plane..(s + window) * plane].to_vec(),
            times: all.times[s..s + window].to_vec(),
            indices: all.indices[s..s + window].to_vec(),
        })
        .collect())
}

/// Decodes `paths` on `workers` threads, at most `ahead` videos ahead of the consumer, and
/// calls `f(index, result)` in input order on the calling thread. Returns early with the
/// first error `f` returns.
pub fn decode_many<E>(
    paths: &[PathBuf],
    spec: &FrameSpec,
    workers: usize,
    ahead: usize,
    mut f: impl FnMut(usize, Result<Frames>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    let workers = workers.clamp(1, paths.len().max(1));
    let ahead = ahead.max(workers);
    let next = AtomicUsize::new(0);
    // Tickets bound how far the workers run ahead: one per video in flight.
    let (ticket_tx, ticket_rx) = mpsc::sync_channel::<()>(ahead);
    let ticket_rx = std::sync::Mutex::new(ticket_rx);
    for _ in 0..ahead {
        let _ = ticket_tx.send(());
    }
    let (tx, rx) = mpsc::channel::<(usize, Result<Frames>)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, ticket_rx) = (&next, &ticket_rx);
            s.spawn(move || {
                loop {
                    if ticket_rx.lock().map(|r| r.recv()).is_err() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= paths.len() {
                        return;
                    }
                    if tx.send((i, decode(&paths[i], spec))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0usize;
        let mut result = Ok(());
        for (i, r) in rx.iter() {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                if result.is_ok() {
                    result = f(want, r);
                }
                want += 1;
                if result.is_ok() {
                    let _ = ticket_tx.send(());
                }
            }
            if result.is_err() {
                break;
            }
        }
        // Wake every worker so it sees the queue is done (or the consumer stopped).
        next.store(paths.len(), Ordering::SeqCst);
        for _ in 0..workers {
            let _ = ticket_tx.try_send(());
        }
        drop(ticket_tx);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_indices_are_segment_centres() {
        assert_eq!(
            pick_indices(Sampling::Uniform(4), 8, 25.0),
            vec![1, 3, 5, 7]
        );
        assert_eq!(pick_indices(Sampling::Uniform(3), 3, 25.0), vec![0, 1, 2]);
        assert_eq!(pick_indices(Sampling::Uniform(1), 10, 25.0), vec![5]);
    }

    #[test]
    fn fps_indices_follow_the_rate() {
        assert_eq!(
            pick_indices(Sampling::Fps(5.0), 30, 25.0),
            vec![0, 5, 10, 15, 20, 25]
        );
        assert_eq!(pick_indices(Sampling::Fps(50.0), 3, 25.0), vec![0, 1, 2]);
    }

    #[test]
    fn cover_size_keeps_aspect_and_covers() {
        assert_eq!(cover_size(640, 360, (32, 32)), (57, 32));
        assert_eq!(cover_size(176, 144, (64, 64)), (78, 64));
    }
}
