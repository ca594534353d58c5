//! Table-driven bucket assignment: sizes, aspect ratios, no upscaling, frame counts.

use super::*;

fn bucket(toml: &str) -> Bucket {
    let table: toml::Table = toml.parse().unwrap();
    Bucket::new(crate::registry::params::<BucketConfig>(&table).unwrap()).unwrap()
}

const SEED: &str = r#"
resolutions = ["256p", "480p", "720p"]
aspect_ratios = ["9:16", "3:4", "1:1", "4:3", "16:9"]
frames = [17, 33, 65, 129]
"#;

#[test]
fn assigns_the_largest_fitting_resolution_nearest_ratio_and_longest_frame_count() {
    let b = bucket(SEED);
    // (picture w, h, frames, fps) → (bucket, w, h, frames)
    type Case = ((u32, u32, u64, f64), (&'static str, u32, u32, u64));
    let cases: &[Case] = &[
        ((1920, 1080, 300, 30.0), ("720p-16:9-129f", 1280, 720, 129)),
        ((1280, 720, 100, 30.0), ("720p-16:9-65f", 1280, 720, 65)),
        // One pixel short of 720p's height: 480p, never upscaled.
        ((1280, 719, 100, 30.0), ("480p-16:9-65f", 848, 480, 65)),
        ((854, 480, 33, 25.0), ("480p-16:9-33f", 848, 480, 33)),
        // 480p is the area of 848x480, which a 4:3 picture 480 high cannot hold.
        ((640, 480, 40, 25.0), ("256p-4:3-33f", 400, 288, 33)),
        ((1080, 1920, 17, 30.0), ("720p-9:16-17f", 720, 1280, 17)),
        ((720, 720, 64, 24.0), ("480p-1:1-33f", 640, 640, 33)),
        ((1000, 1000, 64, 24.0), ("720p-1:1-33f", 960, 960, 33)),
        ((460, 256, 129, 24.0), ("256p-16:9-129f", 448, 256, 129)),
        // 2.0 is nearest 16:9 and loses 11% to the centre crop, under the 20% default.
        ((1024, 512, 20, 24.0), ("480p-16:9-17f", 848, 480, 17)),
    ];
    for &((w, h, n, fps), (name, tw, th, tf)) in cases {
        let a = b
            .assign(w, h, n, fps)
            .unwrap_or_else(|e| panic!("{w}x{h}: {e}"));
        assert_eq!(
            (a.bucket.as_str(), a.width, a.height, a.frames),
            (name, tw, th, tf),
            "picture {w}x{h}, {n} frames"
        );
        assert!(a.width <= w && a.height <= h, "never upscaled");
        assert_eq!((a.width % 16, a.height % 16), (0, 0));
    }
}

#[test]
fn sizes_keep_each_resolutions_area_and_ratio() {
    for (res, ratio) in [("720p", 16.0 / 9.0), ("480p", 1.0), ("256p", 9.0 / 16.0)] {
        let r = parse_resolution(res).unwrap();
        let (w, h) = bucket_size(r.area, ratio, 16);
        let area = (w * h) as f64;
        assert!((area / r.area - 1.0).abs() < 0.06, "{res} {ratio}: {w}x{h}");
        assert!(
            ((w as f64 / h as f64) / ratio - 1.0).abs() < 0.05,
            "{w}x{h}"
        );
    }
}

#[test]
fn clips_fitting_no_bucket_are_turned_away_with_the_reason() {
    let b = bucket(SEED);
    let small = b.assign(320, 180, 100, 30.0).unwrap_err();
    assert!(
        small.contains("smaller than the smallest bucket"),
        "{small}"
    );
    let short = b.assign(1920, 1080, 16, 30.0).unwrap_err();
    assert!(
        short.contains("fewer than the smallest bucket's 17"),
        "{short}"
    );
    let wide = b.assign(3000, 1000, 100, 30.0).unwrap_err();
    assert!(wide.contains("too far from every bucket ratio"), "{wide}");
    assert!(b.assign(0, 1080, 100, 30.0).is_err());
}

#[test]
fn upscale_lets_small_clips_into_the_smallest_resolution() {
    let b = bucket(&format!("{SEED}\nupscale = true"));
    let a = b.assign(320, 180, 100, 30.0).unwrap();
    assert_eq!(
        (a.bucket.as_str(), a.width, a.height),
        ("256p-16:9-65f", 448, 256)
    );
}

#[test]
fn resampling_counts_frames_at_the_media_rate() {
    let b = bucket(&format!("{SEED}\nfps = 15.0"));
    // 100 frames at 30 fps are 50 at 15 fps: 33 fit, 65 do not.
    let a = b.assign(1920, 1080, 100, 30.0).unwrap();
    assert_eq!((a.frames, a.fps), (33, 15.0));
    assert!(
        b.assign(1920, 1080, 33, 30.0).is_err(),
        "16 frames at 15 fps"
    );
}

#[test]
fn bad_tables_are_config_errors_naming_the_entry() {
    for (toml, needle) in [
        ("resolutions = [\"big\"]", "resolution \"big\""),
        ("aspect_ratios = [\"16x9\"]", "aspect ratio \"16x9\""),
        ("frames = []", "at least one entry"),
        ("frames = [0, 17]", "frames must be > 0"),
        ("multiple = 15", "multiple must be even"),
        ("fps = -1.0", "fps must be > 0"),
    ] {
        let table: toml::Table = toml.parse().unwrap();
        let err = Bucket::new(crate::registry::params::<BucketConfig>(&table).unwrap())
            .err()
            .unwrap_or_else(|| panic!("{toml} was accepted"));
        assert!(err.to_string().contains(needle), "{toml}: {err}");
    }
}
