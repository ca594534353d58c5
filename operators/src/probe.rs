//! `probe`: container and stream facts, read by demuxing only (no decode).
//!
//! A file that cannot be opened as a video marks the video `error` with the reason; the run goes
//! on with the next file.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use serde::Deserialize;
use tracing::debug_span;

use crate::context::{ProbeInfo, VideoContext};
use crate::decode::{describe, init_ffmpeg, stream_kinds};
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{Outputs, Product};

/// Parameters of the `probe` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Video packets whose timestamps are inspected to decide whether the frame rate varies.
    pub vfr_check_packets: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            vfr_check_packets: 600,
        }
    }
}

pub struct Probe {
    config: ProbeConfig,
}

impl Probe {
    pub fn new(config: ProbeConfig) -> Self {
        Probe { config }
    }
}

impl Operator for Probe {
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let _span = debug_span!("probe", uri = %ctx.source.uri).entered();
        match probe_file(&ctx.source.path, self.config.vfr_check_packets) {
            Ok(info) => ctx.probe = Some(info),
            Err(e) => ctx.fail(e.to_string()),
        }
        Ok(None)
    }
}

/// `probe` makes the probe results and fills the `videos` facts.
pub fn outputs() -> Outputs {
    Outputs::default()
        .produces(&[Product::PROBE])
        .columns(crate::rows::PROBE_COLUMNS)
}

/// Reads container/stream facts of one file.
pub fn probe_file(path: &Path, vfr_check_packets: usize) -> Result<ProbeInfo> {
    init_ffmpeg();
    let meta = std::fs::metadata(path).map_err(|source| OperatorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(OperatorError::Open {
            path: path.to_path_buf(),
            reason: "is a directory".into(),
        });
    }
    if meta.len() == 0 {
        return Err(OperatorError::Open {
            path: path.to_path_buf(),
            reason: "empty file (0 bytes)".into(),
        });
    }
    let open_err = |e: ffmpeg::Error| OperatorError::Open {
        path: path.to_path_buf(),
        reason: describe(e),
    };
    let mut input = ffmpeg::format::input(path).map_err(open_err)?;
    let has_audio = input
        .streams()
        .any(|s| s.parameters().medium() == ffmpeg::media::Type::Audio);
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| OperatorError::NoVideoStream {
            path: path.to_path_buf(),
            found: stream_kinds(&input),
        })?;
    let index = stream.index();
    let time_base = f64::from(stream.time_base());
    let avg = f64::from(stream.avg_frame_rate());
    let fps = if avg.is_finite() && avg > 0.0 {
        avg
    } else {
        f64::from(stream.rate())
    };
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        0.0
    };
    let stream_duration = if stream.duration() > 0 {
        stream.duration() as f64 * time_base
    } else {
        0.0
    };
    let container_duration = if input.duration() > 0 {
        input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    // The video stream's own duration when it has one: containers can claim hours for seconds of
    // data (or cover a longer audio track).
    let duration_s = if stream_duration > 0.0 {
        stream_duration
    } else {
        container_duration
    };
    let frame_count = (stream.frames() > 0).then_some(stream.frames() as u64);
    let rotation = rotation_of(&stream);
    let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| OperatorError::Open {
            path: path.to_path_buf(),
            reason: format!("no decoder for the video stream: {}", describe(e)),
        })?;
    let codec = decoder
        .codec()
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{:?}", decoder.id()).to_lowercase());
    let (width, height) = (decoder.width(), decoder.height());
    let pixel_format = format!("{:?}", decoder.format()).to_lowercase();
    drop(decoder);
    let container = input.format().name().to_string();
    let still = container == "image2" || container.ends_with("_pipe");
    if still && frame_count.is_none_or(|n| n <= 1) {
        return Err(OperatorError::Open {
            path: path.to_path_buf(),
            reason: format!("a still image ({codec}), not a video"),
        });
    }
    let bitrate = input.bit_rate().max(0) as u64;
    let variable_fps = timestamps_vary(&mut input, index, vfr_check_packets);
    if width == 0 || height == 0 {
        return Err(OperatorError::Open {
            path: path.to_path_buf(),
            reason: "the video stream declares no picture size".into(),
        });
    }
    Ok(ProbeInfo {
        container,
        codec,
        pixel_format,
        width,
        height,
        fps,
        variable_fps,
        duration_s,
        rotation,
        bitrate,
        has_audio,
        frame_count,
    })
}

/// Display rotation, degrees clockwise, snapped to a multiple of 90.
fn rotation_of(stream: &ffmpeg::format::stream::Stream<'_>) -> i32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix
            && side.data().len() >= 36
        {
            // SAFETY: a display matrix side-data entry is 9 i32 values (36 bytes), checked above.
            let ccw =
                unsafe { ffmpeg::ffi::av_display_rotation_get(side.data().as_ptr() as *const i32) };
            if ccw.is_finite() {
                return normalise_degrees(-ccw);
            }
        }
    }
    stream
        .metadata()
        .get("rotate")
        .and_then(|r| r.parse::<f64>().ok())
        .map(normalise_degrees)
        .unwrap_or(0)
}

fn normalise_degrees(deg: f64) -> i32 {
    let snapped = ((deg / 90.0).round() as i64 * 90).rem_euclid(360);
    snapped as i32
}

/// Demuxes up to `limit` packets of the video stream and reports whether their presentation
/// timestamps are unevenly spaced (more than 2% of gaps off the median by over 20%).
fn timestamps_vary(input: &mut ffmpeg::format::context::Input, index: usize, limit: usize) -> bool {
    let mut pts: Vec<i64> = Vec::new();
    let mut packet = ffmpeg::Packet::empty();
    let mut reads = 0usize;
    while pts.len() < limit && reads < limit * 8 {
        reads += 1;
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(_) => break,
        }
        if packet.stream() == index {
            if let Some(p) = packet.pts() {
                pts.push(p);
            }
        }
    }
    pts.sort_unstable();
    pts.dedup();
    let gaps: Vec<i64> = pts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    if gaps.len() < 4 {
        return false;
    }
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2] as f64;
    let off = gaps
        .iter()
        .filter(|&&g| ((g as f64) - median).abs() > 0.2 * median)
        .count();
    off as f64 > 0.02 * gaps.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_snaps_to_quarter_turns() {
        assert_eq!(normalise_degrees(-90.0), 270);
        assert_eq!(normalise_degrees(90.0), 90);
        assert_eq!(normalise_degrees(179.6), 180);
        assert_eq!(normalise_degrees(360.0), 0);
    }

    #[test]
    fn empty_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.mp4");
        std::fs::write(&path, b"").unwrap();
        let err = probe_file(&path, 10).unwrap_err().to_string();
        assert!(
            err.contains("empty.mp4") && err.contains("empty file"),
            "{err}"
        );
    }

    #[test]
    fn text_file_named_mp4_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.mp4");
        std::fs::write(&path, b"this is not a video, just some text\n").unwrap();
        let err = probe_file(&path, 10).unwrap_err().to_string();
        assert!(
            err.contains("notes.mp4") && err.contains("cannot open as a video"),
            "{err}"
        );
    }
}
