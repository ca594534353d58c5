//! The shared decode deblocks only where a subscription needs exact pixels
//! (`Deblock::AsNeeded`): a sampled subscription with `exact_pixels` receives exactly the frames a
//! fully deblocked decode gives, while frames no exact subscription takes may skip the filter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ffmpeg;
use kelp_operators::decode::{decode, Deblock, DecodeOptions, Subscription};
use kelp_operators::{
    AnalysisFrame, FrameRequest, FrameSink, FrameSize, PixelLayout, VideoContext,
};

/// Every frame it receives: (index, pixels).
#[derive(Default)]
struct Collect(Vec<(u64, Vec<u8>)>);

impl FrameSink for Collect {
    fn frame(&mut self, f: &AnalysisFrame<'_>) -> kelp_operators::error::Result<()> {
        self.0.push((f.index, f.pixels.to_vec()));
        Ok(())
    }
    fn finish(self: Box<Self>, _ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        Ok(())
    }
}

fn gray(sample_fps: Option<f64>, exact_pixels: bool) -> FrameRequest {
    FrameRequest {
        size: FrameSize::Native,
        layout: PixelLayout::Gray8,
        sample_fps,
        exact_pixels,
    }
}

/// The frames each request receives from one decode with `deblock`.
fn frames(
    path: &std::path::Path,
    requests: &[FrameRequest],
    deblock: Deblock,
) -> Vec<Vec<(u64, Vec<u8>)>> {
    let mut sinks: Vec<Collect> = requests.iter().map(|_| Collect::default()).collect();
    let mut subs: Vec<Subscription<'_>> = requests
        .iter()
        .zip(sinks.iter_mut())
        .map(|(request, sink)| Subscription {
            request: *request,
            sink,
        })
        .collect();
    let opts = DecodeOptions {
        deblock,
        ..DecodeOptions::default()
    };
    decode(path, &mut subs, &opts).expect("decode");
    drop(subs);
    sinks.into_iter().map(|s| s.0).collect()
}

#[test]
fn exact_sampled_frames_match_a_fully_deblocked_decode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bframes.mp4");
    // Low quality (visible blocking, so deblocking changes pixels) and B-frames, of which x264's
    // default pyramid leaves some as non-reference frames.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "medium",
        "-crf",
        "40",
        "-bf",
        "3",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    // What sharpness asks for (exact, 2 per second) next to what shot detection asks for (every
    // frame, not exact).
    let requests = [gray(Some(2.0), true), gray(None, false)];
    let full = frames(&path, &requests, Deblock::Always);
    let as_needed = frames(&path, &requests, Deblock::AsNeeded);

    let (exact_full, exact_needed) = (&full[0], &as_needed[0]);
    assert!(
        exact_full.len() >= 8,
        "2 frames a second over 4 s: {}",
        exact_full.len()
    );
    assert_eq!(
        exact_full.iter().map(|f| f.0).collect::<Vec<_>>(),
        exact_needed.iter().map(|f| f.0).collect::<Vec<_>>(),
        "the same frames are sampled"
    );
    for ((index, a), (_, b)) in exact_full.iter().zip(exact_needed) {
        assert!(
            a == b,
            "sampled frame {index} differs from the fully deblocked decode"
        );
    }

    // The other frames did skip the filter somewhere (else this test proves nothing), and only on
    // frames the exact subscription did not take.
    let every_full = &full[1];
    let every_needed = &as_needed[1];
    assert_eq!(every_full.len(), 100);
    assert_eq!(every_needed.len(), 100);
    let sampled: std::collections::HashSet<u64> = exact_full.iter().map(|f| f.0).collect();
    let differing: Vec<u64> = every_full
        .iter()
        .zip(every_needed)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    assert!(
        differing.len() >= 10,
        "only {} of 100 frames skipped deblocking",
        differing.len()
    );
    assert!(
        differing.iter().all(|i| !sampled.contains(i)),
        "a sampled frame was not deblocked: {differing:?}"
    );

    // Never deblocks the sampled frames too: the exact pixels come from the filter.
    let never = frames(&path, &requests, Deblock::Never);
    assert!(
        never[0].iter().zip(exact_full).any(|(a, b)| a.1 != b.1),
        "without the filter the sampled frames differ"
    );
}

#[test]
fn without_an_exact_subscription_nothing_is_deblocked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=2",
        "-c:v",
        "libx264",
        "-crf",
        "40",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    let requests = [gray(None, false)];
    let as_needed = frames(&path, &requests, Deblock::AsNeeded);
    let never = frames(&path, &requests, Deblock::Never);
    assert_eq!(as_needed, never);
    // And one exact subscription of every frame deblocks them all.
    let requests = [gray(None, true)];
    assert_eq!(
        frames(&path, &requests, Deblock::AsNeeded),
        frames(&path, &requests, Deblock::Always)
    );
}
