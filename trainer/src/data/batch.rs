//! One batch: clips of one bucket, all the same shape, as RGB bytes laid out `[B, C, T, H, W]`.

use thiserror::Error;

/// A batch is inconsistent with its shape.
#[derive(Debug, Error, PartialEq)]
pub enum BatchError {
    #[error("batch of bucket {bucket}: {what}")]
    Shape { bucket: String, what: String },
}

/// Clips of one bucket, every clip the same shape. `pixels` holds RGB bytes laid out
/// `[B, C, T, H, W]` (channel-planar, C = 3), the layout video models take, so turning a batch
/// into a tensor is one copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The bucket every clip of the batch belongs to (`clips.bucket`).
    pub bucket: String,
    /// `clips.clip_id` of each clip, in batch order.
    pub clip_ids: Vec<String>,
    /// Each clip's caption when the dataset has one.
    pub captions: Vec<Option<String>>,
    /// Each clip's frame rate (`media.fps`) when known.
    pub fps: Vec<Option<f32>>,
    /// `[B, C, T, H, W]`.
    pub shape: [usize; 5],
    pub pixels: Vec<u8>,
    /// The epoch the batch belongs to (0 for batches not made by a loader).
    pub epoch: u64,
    /// Its position in the epoch's global batch order (all ranks together).
    pub index: u64,
    /// Clips of this batch that could not be fetched or decoded and were left out (so the
    /// batch has fewer than `batch_size` clips); the loader logs and counts each.
    pub skipped: Vec<String>,
}

impl Batch {
    /// A batch after checking that ids, captions and pixels agree with `shape` (frame rates
    /// unknown; the loader fills `fps` from the clips' media).
    pub fn new(
        bucket: impl Into<String>,
        clip_ids: Vec<String>,
        captions: Vec<Option<String>>,
        shape: [usize; 5],
        pixels: Vec<u8>,
    ) -> Result<Batch, BatchError> {
        let bucket = bucket.into();
        let fail = |what: String| {
            Err(BatchError::Shape {
                bucket: bucket.clone(),
                what,
            })
        };
        let [b, c, t, h, w] = shape;
        if clip_ids.len() != b || captions.len() != b {
            return fail(format!(
                "{} ids and {} captions for {b} clips",
                clip_ids.len(),
                captions.len()
            ));
        }
        if c != 3 {
            return fail(format!("{c} channels, expected 3 (RGB)"));
        }
        let want = b * c * t * h * w;
        if pixels.len() != want {
            return fail(format!(
                "{} bytes of pixels, shape {shape:?} needs {want}",
                pixels.len()
            ));
        }
        Ok(Batch {
            bucket,
            fps: vec![None; clip_ids.len()],
            clip_ids,
            captions,
            shape,
            pixels,
            epoch: 0,
            index: 0,
            skipped: Vec::new(),
        })
    }

    /// The bytes of clip `i`: `[C, T, H, W]`.
    pub fn clip(&self, i: usize) -> Option<&[u8]> {
        let per: usize = self.shape[1..].iter().product();
        self.pixels.get(i * per..(i + 1) * per)
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Pixels as floats in [-1, 1] (`x / 127.5 - 1`), same layout.
    pub fn to_f32(&self) -> Vec<f32> {
        self.pixels
            .iter()
            .map(|&x| x as f32 / 127.5 - 1.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_must_match_the_shape() {
        let ok = Batch::new(
            "b",
            vec!["a".into()],
            vec![None],
            [1, 3, 1, 2, 2],
            vec![0; 12],
        );
        assert!(ok.is_ok());
        let short = Batch::new(
            "b",
            vec!["a".into()],
            vec![None],
            [1, 3, 1, 2, 2],
            vec![0; 11],
        );
        assert!(matches!(short, Err(BatchError::Shape { .. })));
    }

    #[test]
    fn floats_span_minus_one_to_one() {
        let b = Batch::new(
            "b",
            vec!["a".into()],
            vec![None],
            [1, 3, 1, 1, 1],
            vec![0, 255, 128],
        )
        .unwrap();
        let f = b.to_f32();
        assert_eq!(f[0], -1.0);
        assert_eq!(f[1], 1.0);
        assert!(f[2].abs() < 0.01);
    }
}
