//! Gray frames at the decoded size straight from the luma plane: the plane through the same
//! video-range to full-range mapping swscale applies (a 256-entry table), without swscale's
//! general scaler, which costs several times more per pixel for this conversion.

use ffmpeg::format::Pixel;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

/// How a format's first plane maps to full-range gray, for the 8-bit formats whose first plane
/// is luma; `None` for the others (swscale converts those).
fn mapping(format: Pixel) -> Option<Range> {
    match format {
        Pixel::YUV420P | Pixel::YUV422P | Pixel::YUV444P | Pixel::NV12 | Pixel::NV21 => {
            Some(Range::Video)
        }
        Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::GRAY8 => Some(Range::Full),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// Luma on 16–235.
    Video,
    /// Luma on 0–255 already.
    Full,
}

/// swscale's video-range to full-range luma conversion (FFmpeg 5.1 `lumRangeToJpeg` on its
/// 15-bit intermediate, then rounding to 8 bits), one entry per luma value, built at compile time.
const VIDEO_TO_FULL: [u8; 256] = video_to_full();

const fn video_to_full() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut y = 0;
    while y < 256 {
        let y15 = (y as i64) << 7;
        let clipped = if y15 < 30189 { y15 } else { 30189 };
        let full = (((clipped * 19077 - 39_057_361) >> 14) + 64) >> 7;
        table[y] = if full < 0 {
            0
        } else if full > 255 {
            255
        } else {
            full as u8
        };
        y += 1;
    }
    table
}

/// Writes `frame`'s luma as packed full-range gray rows into `out` (cleared first) and returns
/// true, or returns false (leaving `out` empty) when the frame's format is not one this reads.
pub fn gray_from_luma(frame: &VideoFrame, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(range) = mapping(frame.format()) else {
        return false;
    };
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    if h == 0 || stride < w || data.len() < stride * (h - 1) + w {
        return false;
    }
    out.reserve(w * h);
    match range {
        Range::Full => {
            for y in 0..h {
                out.extend_from_slice(&data[y * stride..y * stride + w]);
            }
        }
        Range::Video => {
            let table = &VIDEO_TO_FULL;
            for y in 0..h {
                out.extend(
                    data[y * stride..y * stride + w]
                        .iter()
                        .map(|&v| table[v as usize]),
                );
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffmpeg::software::scaling::{Context as Scaler, Flags};

    /// A frame of `format` whose luma plane holds every value 0–255 in each row.
    fn ramp(format: Pixel) -> VideoFrame {
        let (w, h) = (256u32, 4u32);
        let mut frame = VideoFrame::new(format, w, h);
        let stride = frame.stride(0);
        let plane = frame.data_mut(0);
        for y in 0..h as usize {
            for x in 0..w as usize {
                plane[y * stride + x] = x as u8;
            }
        }
        for p in 1..frame.planes() {
            frame.data_mut(p).fill(128);
        }
        frame
    }

    #[test]
    fn gray_from_luma_matches_swscale_for_every_value() {
        crate::decode::init_ffmpeg();
        for format in [
            Pixel::YUV420P,
            Pixel::YUV422P,
            Pixel::YUV444P,
            Pixel::NV12,
            Pixel::NV21,
            Pixel::YUVJ420P,
            Pixel::YUVJ444P,
            Pixel::GRAY8,
        ] {
            let frame = ramp(format);
            let mut scaler =
                Scaler::get(format, 256, 4, Pixel::GRAY8, 256, 4, Flags::POINT).unwrap();
            let mut expected = VideoFrame::empty();
            scaler.run(&frame, &mut expected).unwrap();
            let mut ours = Vec::new();
            assert!(gray_from_luma(&frame, &mut ours), "{format:?}");
            for y in 0..4usize {
                let row = &expected.data(0)[y * expected.stride(0)..][..256];
                assert_eq!(&ours[y * 256..(y + 1) * 256], row, "{format:?} row {y}");
            }
        }
    }

    #[test]
    fn other_formats_are_left_to_swscale() {
        let frame = VideoFrame::new(Pixel::YUV420P10LE, 16, 16);
        let mut out = vec![1, 2, 3];
        assert!(!gray_from_luma(&frame, &mut out));
        assert!(out.is_empty());
    }
}
