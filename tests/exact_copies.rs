//! Exact copies are found when the run is planned: the same file under two names is decoded
//! once, and the second becomes a rejected `videos` row naming the first, whichever partition
//! each lands in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn the_same_file_twice_is_decoded_once_and_the_copy_names_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // a.mp4 and c.mp4 hold the same bytes; b.mp4 (another video) sits between them, so with
    // two partitions the copy lands in a different partition from its original.
    std::fs::copy(samples.join("cuts.mp4"), src.join("a.mp4")).unwrap();
    std::fs::copy(samples.join("fade.mp4"), src.join("b.mp4")).unwrap();
    std::fs::copy(samples.join("cuts.mp4"), src.join("c.mp4")).unwrap();
    let out = tmp.path().join("out");
    let summary = kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--partitions",
        "2",
        "--quiet",
    ]);
    assert!(
        summary.contains("3 videos (2 ok, 0 error, 1 rejected)"),
        "{summary}"
    );
    let rows = sql_json(
        &out,
        "SELECT regexp_replace(v.uri, '^.*/', '') AS file, v.status, \
         coalesce(v.decoded_frames, -1) AS decoded, coalesce(r.reason, '') AS reason, \
         (SELECT count(*) FROM clips c WHERE c.video_id = v.video_id) AS clips \
         FROM videos v LEFT JOIN rejections r USING (video_id) ORDER BY file",
    );
    let got: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                text(r, "file").to_string(),
                text(r, "status").to_string(),
                int(r, "decoded"),
                int(r, "clips"),
            )
        })
        .collect();
    assert_eq!(got[0], ("a.mp4".into(), "ok".into(), 300, 5));
    assert_eq!((got[1].0.as_str(), got[1].1.as_str()), ("b.mp4", "ok"));
    assert_eq!(
        got[2],
        ("c.mp4".into(), "rejected".into(), -1, 0),
        "never decoded"
    );
    let reason = text(&rows[2], "reason");
    assert!(
        reason.contains("exact copy of") && reason.contains("a.mp4"),
        "{reason}"
    );
    // The original's clips and media are all there, once.
    let media = sql_json(&out, "SELECT count(*) AS n FROM media");
    assert_eq!(int(&media[0], "n"), 5 + got[1].3);
}
