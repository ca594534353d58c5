//! JPEG pictures of the frames a VLM is shown: one FFmpeg mjpeg encoder per picture size, reused
//! for every frame of every clip of that size. Opening an encoder (and a scaler) per picture, and
//! FFmpeg's bit-exact C code paths, were most of the cost of the one-shot `media::encode::jpeg`;
//! a caption request's JPEG bytes need not be bit-exact, since its content address does not
//! depend on them. Limited-range video levels are stretched to JPEG's full range by table.

use ffmpeg::format::Pixel;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

/// An open encoder for one picture size.
struct Open {
    width: u32,
    height: u32,
    encoder: ffmpeg::encoder::Video,
    frame: VideoFrame,
    pictures: i64,
}

/// Encodes YUV 4:2:0 frames (limited range, planes packed) as JPEG.
pub struct JpegEncoder {
    qscale: u32,
    open: Option<Open>,
    luma: [u8; 256],
    chroma: [u8; 256],
}

impl JpegEncoder {
    /// `qscale` is FFmpeg's: 2 = best … 31 = worst.
    pub fn new(qscale: u32) -> Self {
        let table = |f: &dyn Fn(f64) -> f64| {
            let mut t = [0u8; 256];
            for (i, v) in t.iter_mut().enumerate() {
                *v = f(i as f64).round().clamp(0.0, 255.0) as u8;
            }
            t
        };
        JpegEncoder {
            qscale: qscale.clamp(2, 31),
            open: None,
            luma: table(&|y| (y - 16.0) * 255.0 / 219.0),
            chroma: table(&|c| (c - 128.0) * 255.0 / 224.0 + 128.0),
        }
    }

    fn open(&mut self, width: u32, height: u32) -> Result<&mut Open, String> {
        let reuse = self
            .open
            .as_ref()
            .is_some_and(|o| (o.width, o.height) == (width, height));
        if !reuse {
            let encoder = crate::media::encode::open_mjpeg(
                width,
                height,
                self.qscale,
                ffmpeg::codec::Flags::empty(),
            )?;
            self.open = Some(Open {
                width,
                height,
                encoder,
                frame: VideoFrame::new(Pixel::YUVJ420P, width, height),
                pictures: 0,
            });
        }
        self.open.as_mut().ok_or_else(|| "no encoder".to_string())
    }

    /// One JPEG of a `width`×`height` frame.
    pub fn encode(&mut self, planes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if planes.len() < w * h + 2 * cw * ch {
            return Err(format!(
                "a {w}x{h} frame needs {} bytes, got {}",
                w * h + 2 * cw * ch,
                planes.len()
            ));
        }
        let (luma, chroma) = (self.luma, self.chroma);
        let qscale = self.qscale;
        let open = self.open(width, height)?;
        let mut offset = 0;
        for (plane, row, rows, table) in
            [(0, w, h, &luma), (1, cw, ch, &chroma), (2, cw, ch, &chroma)]
        {
            let stride = open.frame.stride(plane);
            let data = open.frame.data_mut(plane);
            for y in 0..rows {
                let src = &planes[offset + y * row..offset + (y + 1) * row];
                for (d, s) in data[y * stride..y * stride + row].iter_mut().zip(src) {
                    *d = table[*s as usize];
                }
            }
            offset += row * rows;
        }
        open.frame.set_pts(Some(open.pictures));
        open.pictures += 1;
        let q = (qscale * ffmpeg::ffi::FF_QP2LAMBDA as u32) as i32;
        // SAFETY: the frame is a valid, exclusively owned AVFrame; `quality` is a plain int field
        // (the qscale mjpeg uses for this picture).
        unsafe { (*open.frame.as_mut_ptr()).quality = q };
        let err = |e: ffmpeg::Error| format!("encoding JPEG: {e}");
        open.encoder.send_frame(&open.frame).map_err(err)?;
        let mut packet = ffmpeg::Packet::empty();
        open.encoder.receive_packet(&mut packet).map_err(err)?;
        Ok(packet.data().map(<[u8]>::to_vec).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_two_sizes_come_out_as_jpegs_of_their_size_and_colour() {
        let mut enc = JpegEncoder::new(3);
        for (w, h) in [(32usize, 16usize), (32, 16), (18, 10)] {
            let c = w.div_ceil(2) * h.div_ceil(2);
            // Limited-range BT.601 blue.
            let mut yuv = vec![41u8; w * h];
            yuv.extend(std::iter::repeat_n(240u8, c));
            yuv.extend(std::iter::repeat_n(110u8, c));
            let jpeg = enc.encode(&yuv, w as u32, h as u32).unwrap();
            let p = crate::caption::inspect::decode_jpeg(&jpeg).unwrap();
            assert_eq!((p.width, p.height), (w as u32, h as u32));
            let [r, g, b] = p.mean_rgb();
            assert!(b > 200.0 && r < 60.0 && g < 60.0, "{r} {g} {b}");
        }
        assert!(enc.encode(&[0u8; 10], 32, 16).is_err());
    }
}
