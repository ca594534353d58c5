//! One clip's picture path through libavfilter: crop box, rotation, scale (cover or stretch),
//! optional frame-rate resampling and the pixel layout a sink asked for.

use ffmpeg::filter;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;

use super::{ClipLayout, ClipRequest, Fit};

/// A crop box on the coded picture: left, top, width, height.
pub type CropBox = (u32, u32, u32, u32);

/// The libavfilter chain that turns a coded frame of `coded` size into a request's frames: the
/// crop box, then the display rotation (degrees clockwise), then the scale and layout. Public so
/// tests can run the same chain through the ffmpeg CLI.
pub fn filter_chain(
    coded: (u32, u32),
    crop: Option<CropBox>,
    rotation: i32,
    request: &ClipRequest,
) -> String {
    let mut parts = Vec::new();
    let (mut w, mut h) = coded;
    if let Some((x, y, cw, ch)) = crop {
        if (x, y, cw, ch) != (0, 0, w, h) {
            parts.push(format!("crop=w={cw}:h={ch}:x={x}:y={y}:exact=1"));
        }
        (w, h) = (cw, ch);
    }
    match rotation.rem_euclid(360) {
        90 => parts.push("transpose=clock".to_string()),
        180 => parts.push("hflip,vflip".to_string()),
        270 => parts.push("transpose=cclock".to_string()),
        _ => {}
    }
    if rotation.rem_euclid(180) == 90 {
        (w, h) = (h, w);
    }
    let (tw, th) = (request.width.max(2), request.height.max(2));
    // Area averaging when shrinking (no aliasing), bicubic when growing.
    let flags = if (tw as u64) * (th as u64) < (w as u64) * (h as u64) {
        "area"
    } else {
        "bicubic"
    };
    if (tw, th) != (w, h) {
        match request.fit {
            Fit::Stretch => parts.push(format!("scale=w={tw}:h={th}:flags={flags}")),
            Fit::Cover => parts.push(format!(
                "scale=w={tw}:h={th}:force_original_aspect_ratio=increase:flags={flags},crop=w={tw}:h={th}"
            )),
        }
    }
    if let Some(rate) = request.rate {
        parts.push(format!("fps=fps={}/{}", rate.num, rate.den));
    }
    let format = match request.layout {
        ClipLayout::Rgb24 => "rgb24",
        ClipLayout::Yuv420p => "yuv420p",
    };
    parts.push(format!("format=pix_fmts={format}"));
    parts.push("setsar=1".to_string());
    parts.join(",")
}

/// A configured filter graph for one clip and one request.
pub struct ClipGraph {
    graph: filter::Graph,
}

impl ClipGraph {
    /// A graph taking frames shaped like `first` with timestamps in `time_base`.
    pub fn new(first: &VideoFrame, time_base: Rational, chain: &str) -> Result<Self, String> {
        let err = |what: &str, e: ffmpeg::Error| format!("{what}: {e}");
        let mut graph = filter::Graph::new();
        let pix: ffmpeg::ffi::AVPixelFormat = first.format().into();
        let sar = first.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 {
            sar
        } else {
            Rational::new(1, 1)
        };
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            first.width(),
            first.height(),
            pix as i32,
            time_base.numerator(),
            time_base.denominator().max(1),
            sar.numerator(),
            sar.denominator()
        );
        let buffer = filter::find("buffer").ok_or("libavfilter has no buffer source")?;
        let sink = filter::find("buffersink").ok_or("libavfilter has no buffer sink")?;
        graph
            .add(&buffer, "in", &args)
            .map_err(|e| err(&format!("filter source ({args})"), e))?;
        graph
            .add(&sink, "out", "")
            .map_err(|e| err("filter sink", e))?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(chain))
            .map_err(|e| err(&format!("filter chain \"{chain}\""), e))?;
        graph
            .validate()
            .map_err(|e| err(&format!("filter chain \"{chain}\""), e))?;
        Ok(ClipGraph { graph })
    }

    /// Feeds one frame; the caller keeps its own reference (the same decoded frame goes to
    /// several graphs), which ffmpeg-next's `Source::add` would take away.
    pub fn push(&mut self, frame: &VideoFrame) -> Result<(), String> {
        let mut ctx = self.graph.get("in").ok_or("filter source lost")?;
        // SAFETY: both pointers are valid for the call; av_buffersrc_write_frame makes a new
        // reference to the frame's buffers and leaves `frame` untouched.
        let code =
            unsafe { ffmpeg::ffi::av_buffersrc_write_frame(ctx.as_mut_ptr(), frame.as_ptr()) };
        if code < 0 {
            return Err(format!("filtering: {}", ffmpeg::Error::from(code)));
        }
        Ok(())
    }

    /// Signals the end of the clip so buffered frames (frame-rate resampling) come out.
    pub fn flush(&mut self) -> Result<(), String> {
        let mut ctx = self.graph.get("in").ok_or("filter source lost")?;
        ctx.source().flush().map_err(|e| format!("filtering: {e}"))
    }

    /// The next filtered frame, if one is ready.
    pub fn pull(&mut self, out: &mut VideoFrame) -> bool {
        match self.graph.get("out") {
            Some(mut ctx) => ctx.sink().frame(out).is_ok(),
            None => false,
        }
    }
}

/// Copies a filtered frame's planes into `packed`, rows without padding.
pub fn pack(frame: &VideoFrame, layout: ClipLayout, packed: &mut Vec<u8>) {
    packed.clear();
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let planes: Vec<(usize, usize, usize)> = match layout {
        ClipLayout::Rgb24 => vec![(0, w * 3, h)],
        ClipLayout::Yuv420p => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            vec![(0, w, h), (1, cw, ch), (2, cw, ch)]
        }
    };
    for (plane, row, rows) in planes {
        let stride = frame.stride(plane);
        let data = frame.data(plane);
        for y in 0..rows {
            if let Some(line) = data.get(y * stride..y * stride + row) {
                packed.extend_from_slice(line);
            }
        }
    }
}
