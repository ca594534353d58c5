//! What a caption request carries, read back: its text parts and its pictures decoded (FFmpeg's
//! JPEG decoder). For test servers and checks, so they judge a request by what a VLM would see.

use base64::Engine;
use ffmpeg::format::Pixel;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use serde_json::Value as Json;

use crate::decode::init_ffmpeg;

/// A decoded picture, RGB bytes with rows packed.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Picture {
    /// Mean R, G, B (0–255).
    pub fn mean_rgb(&self) -> [f64; 3] {
        let mut sum = [0u64; 3];
        for px in self.rgb.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += px[c] as u64;
            }
        }
        let n = (self.rgb.len() / 3).max(1) as f64;
        sum.map(|s| s as f64 / n)
    }
}

/// Decodes one JPEG.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Picture, String> {
    init_ffmpeg();
    let err = |what: &str, e: ffmpeg::Error| format!("{what}: {e}");
    let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::MJPEG).ok_or("no JPEG decoder")?;
    let mut decoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|e| err("opening the JPEG decoder", e))?;
    let packet = ffmpeg::Packet::copy(bytes);
    decoder
        .send_packet(&packet)
        .map_err(|e| err("decoding JPEG", e))?;
    decoder.send_eof().map_err(|e| err("decoding JPEG", e))?;
    let mut frame = VideoFrame::empty();
    decoder
        .receive_frame(&mut frame)
        .map_err(|e| err("decoding JPEG", e))?;
    let (w, h) = (frame.width(), frame.height());
    let mut rgb = VideoFrame::empty();
    ffmpeg::software::scaling::Context::get(
        frame.format(),
        w,
        h,
        Pixel::RGB24,
        w,
        h,
        ffmpeg::software::scaling::Flags::POINT,
    )
    .and_then(|mut s| s.run(&frame, &mut rgb))
    .map_err(|e| err("converting JPEG to RGB", e))?;
    let stride = rgb.stride(0);
    let mut packed = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as usize {
        packed.extend_from_slice(&rgb.data(0)[y * stride..y * stride + 3 * w as usize]);
    }
    Ok(Picture {
        width: w,
        height: h,
        rgb: packed,
    })
}

/// The last user message of a chat-completions request: its text, and its pictures decoded
/// (an error names the part that is not a JPEG data URL).
pub fn user_message(body: &[u8]) -> Result<(String, Vec<Picture>), String> {
    let v: Json = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let messages = v["messages"].as_array().ok_or("no messages")?;
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .ok_or("no user message")?;
    match &user["content"] {
        Json::String(s) => Ok((s.clone(), Vec::new())),
        Json::Array(parts) => {
            let mut text = String::new();
            let mut pictures = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("text") => text.push_str(p["text"].as_str().unwrap_or("")),
                    Some("image_url") => {
                        let url = p["image_url"]["url"].as_str().unwrap_or("");
                        let b64 = url
                            .strip_prefix("data:image/jpeg;base64,")
                            .ok_or_else(|| format!("part {i}: not a JPEG data URL"))?;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| format!("part {i}: {e}"))?;
                        pictures.push(decode_jpeg(&bytes).map_err(|e| format!("part {i}: {e}"))?);
                    }
                    other => return Err(format!("part {i}: unknown type {other:?}")),
                }
            }
            Ok((text, pictures))
        }
        _ => Err("the user message has no content".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_jpeg_decodes_to_its_size_and_colour() {
        // A 32x16 frame of limited-range BT.601 red.
        let (w, h) = (32usize, 16usize);
        let mut yuv = vec![81u8; w * h];
        yuv.extend(std::iter::repeat_n(90u8, w * h / 4));
        yuv.extend(std::iter::repeat_n(240u8, w * h / 4));
        let jpeg = crate::media::encode::jpeg(&yuv, w as u32, h as u32, 2).unwrap();
        let p = decode_jpeg(&jpeg).unwrap();
        assert_eq!((p.width, p.height), (32, 16));
        let [r, g, b] = p.mean_rgb();
        assert!(r > 200.0 && g < 60.0 && b < 60.0, "{r} {g} {b}");
        assert!(decode_jpeg(b"not a jpeg").is_err());
    }
}
