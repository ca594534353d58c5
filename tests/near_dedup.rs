//! The `near_dedup` pass end to end: generated copies of one clip (a half-size low-bitrate
//! re-encode and a smaller mirrored copy) form one group kept by the original (the highest
//! resolution); unrelated clips stay out of every group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const SOURCE: &str = "mandelbrot=size=640x480:rate=25,trim=duration=6";

fn make(dir: &std::path::Path, name: &str, input: &str, vf: &str, extra: &[&str]) {
    let path = dir.join(name);
    let mut args = vec!["-f", "lavfi", "-i", input, "-vf", vf];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    ]);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
}

#[test]
fn copies_form_one_group_kept_by_the_original_and_unrelated_clips_stay_out() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    make(&src, "a-original.mp4", SOURCE, "null", &[]);
    make(
        &src,
        "b-small.mp4",
        SOURCE,
        "scale=320:240",
        &["-b:v", "150k"],
    );
    make(&src, "c-mirrored.mp4", SOURCE, "scale=480:360,hflip", &[]);
    make(
        &src,
        "d-other.mp4",
        "testsrc2=size=640x480:rate=25:duration=6",
        "null",
        &[],
    );
    make(
        &src,
        "e-other.mp4",
        "life=size=320x240:rate=25:mold=10:ratio=0.4,trim=duration=6",
        "scale=640:480",
        &[],
    );
    let dag = tmp.path().join("dedup.toml");
    std::fs::write(
        &dag,
        "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n\
         [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
         [[node]]\nop = \"window\"\nmin_s = 1.0\nmax_s = 10.0\ntrim_cut_frames = 0\n\
         [[node]]\nop = \"crop\"\noverlays = false\n\
         [[node]]\nop = \"signature\"\nsample_fps = 2.0\n\
         [[pass]]\nop = \"near_dedup\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    kelp_ok(&[
        "run",
        dag.to_str().unwrap(),
        "--source",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = sql_json(
        &out,
        "SELECT regexp_replace(c.uri, '^.*/', '') AS file, d.kept, \
         regexp_replace(k.uri, '^.*/', '') AS kept_file, d.matched_fraction AS f \
         FROM duplicates d JOIN clips c USING (clip_id) \
         JOIN clips k ON k.clip_id = d.kept_clip_id ORDER BY file",
    );
    let got: Vec<(String, bool, String)> = rows
        .iter()
        .map(|r| {
            (
                text(r, "file").to_string(),
                r["kept"].as_bool().unwrap(),
                text(r, "kept_file").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "a-original.mp4".to_string(),
                true,
                "a-original.mp4".to_string()
            ),
            (
                "b-small.mp4".to_string(),
                false,
                "a-original.mp4".to_string()
            ),
            (
                "c-mirrored.mp4".to_string(),
                false,
                "a-original.mp4".to_string()
            ),
        ],
        "{rows:?}"
    );
    for r in &rows {
        assert!(r["f"].as_f64().unwrap() >= 0.5, "{r:?}");
    }
    // Every clip was signed; the unrelated ones are in no group.
    let clips = sql_json(&out, "SELECT count(DISTINCT clip_id) AS n FROM signatures");
    assert!(int(&clips[0], "n") >= 5, "{clips:?}");
}
