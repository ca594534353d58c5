//! End to end: the quickstart DAG over generated samples, then SQL over the committed dataset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn quickstart_dag_then_sql_counts_match_the_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    let out = tmp.path().join("out");
    make_samples(&samples);
    let summary = kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        samples.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(summary.contains("3 videos (3 ok, 0 error)"), "{summary}");

    let videos = sql_json(&out, "SELECT count(*) AS n FROM videos WHERE status = 'ok'");
    assert_eq!(int(&videos[0], "n"), 3);

    // The samples' construction (infra/make-samples.sh): two cuts, one fade, one dissolve.
    let kinds = sql_json(
        &out,
        "SELECT kind, count(*) AS n FROM boundaries GROUP BY kind ORDER BY kind",
    );
    let got: Vec<(String, i64)> = kinds
        .iter()
        .map(|r| (text(r, "kind").to_string(), int(r, "n")))
        .collect();
    assert_eq!(
        got,
        [
            ("cut".to_string(), 2),
            ("dissolve".to_string(), 1),
            ("fade".to_string(), 1)
        ]
    );

    let cuts = sql_json(&out, "SELECT b.frame FROM boundaries b JOIN videos v USING (video_id) WHERE v.uri LIKE '%cuts.mp4' ORDER BY b.frame");
    let frames: Vec<i64> = cuts.iter().map(|r| int(r, "frame")).collect();
    assert!(
        frames.len() == 2 && (frames[0] - 100).abs() <= 1 && (frames[1] - 225).abs() <= 1,
        "{frames:?}"
    );

    // Shots of 4, 5 and 3 s (cuts), 4 and 4 s (fade), 4 and 7 s (dissolve), split into clips of
    // at most 3 s: 2+2+1, 2+2, 2+3.
    let clips = sql_json(&out, "SELECT regexp_replace(v.uri, '^.*/', '') AS file, count(c.clip_id) AS n FROM videos v JOIN clips c USING (video_id) GROUP BY 1 ORDER BY 1");
    let got: Vec<(String, i64)> = clips
        .iter()
        .map(|r| (text(r, "file").to_string(), int(r, "n")))
        .collect();
    assert_eq!(
        got,
        [
            ("cuts.mp4".to_string(), 5),
            ("dissolve.mp4".to_string(), 5),
            ("fade.mp4".to_string(), 4)
        ]
    );

    let bounds = sql_json(
        &out,
        "SELECT min(duration_s) AS lo, max(duration_s) AS hi FROM clips",
    );
    let lo = bounds[0]["lo"].as_f64().unwrap();
    let hi = bounds[0]["hi"].as_f64().unwrap();
    assert!(
        lo >= 1.0 && hi <= 3.0 + 1e-9,
        "clip durations {lo}..{hi} outside the DAG's 1..3 s"
    );

    // No clip crosses a boundary.
    let crossing = sql_json(
        &out,
        "SELECT count(*) AS n FROM clips c JOIN boundaries b USING (video_id) WHERE b.span_start < c.end_frame AND b.span_start + greatest(b.span_frames, 1) > c.start_frame",
    );
    assert_eq!(int(&crossing[0], "n"), 0);

    // Training-ready: every kept clip has its bucket's media (the samples are 320x180, so 144p
    // 16:9 at 256x144, never upscaled) whose stored bytes match their checksum, and a preview.
    let media = sql_json(
        &out,
        "SELECT count(*) AS n, count(DISTINCT m.clip_id) AS clips, \
         sum(CASE WHEN encode(digest(m.data, 'blake3'), 'hex') = m.checksum THEN 1 ELSE 0 END) AS good, \
         sum(CASE WHEN m.width = 256 AND m.height = 144 AND m.frames = c.target_frames \
             AND m.bucket LIKE '144p-16:9-%' THEN 1 ELSE 0 END) AS sized \
         FROM media m JOIN clips c USING (clip_id)",
    );
    let m = &media[0];
    assert_eq!(
        [
            int(m, "n"),
            int(m, "clips"),
            int(m, "good"),
            int(m, "sized")
        ],
        [14; 4],
        "{m:?}"
    );
    let previews = sql_json(
        &out,
        "SELECT count(*) AS n FROM previews WHERE thumbnail IS NOT NULL AND animation IS NOT NULL",
    );
    assert_eq!(int(&previews[0], "n"), 14);

    // Offline captions for every kept clip, labelled as kelp's own words.
    let captions = sql_json(
        &out,
        "SELECT count(*) AS n, count(DISTINCT clip_id) AS clips, \
         sum(CASE WHEN caption_source = 'structured' AND caption_status = 'ok' \
             AND caption LIKE 'A %-second clip%' AND camera_motion IS NOT NULL THEN 1 ELSE 0 END) AS good \
         FROM captions JOIN clips USING (clip_id)",
    );
    let c = &captions[0];
    assert_eq!(
        [int(c, "n"), int(c, "clips"), int(c, "good")],
        [14; 3],
        "{c:?}"
    );
}

#[test]
fn rerunning_into_a_committed_dataset_needs_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    let out = tmp.path().join("out");
    make_samples(&samples);
    let args = [
        "run",
        "dags/quickstart.toml",
        "--source",
        samples.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ];
    kelp_ok(&args);
    let again = kelp(&args);
    assert!(!again.status.success());
    let err = stderr(&again);
    assert!(
        err.contains(out.to_str().unwrap()) && err.contains("--overwrite"),
        "{err}"
    );
    let mut with = args.to_vec();
    with.push("--overwrite");
    kelp_ok(&with);
    let n = sql_json(&out, "SELECT count(*) AS n FROM videos");
    assert_eq!(int(&n[0], "n"), 3, "overwrite must replace, not append");
    let media = sql_json(
        &out,
        "SELECT count(*) AS n, count(DISTINCT clip_id) AS d FROM media",
    );
    assert_eq!(
        (int(&media[0], "n"), int(&media[0], "d")),
        (14, 14),
        "media replaced, not appended"
    );
    // A run without the media nodes, with --overwrite, leaves no media behind.
    let dag = tmp.path().join("no-media.toml");
    let text = std::fs::read_to_string(repo_root().join("dags/quickstart.toml")).unwrap();
    let cut = text.find("[[node]]\nop = \"bucket\"").unwrap();
    let pass = text.find("# A dataset-wide pass").unwrap();
    std::fs::write(&dag, format!("{}{}", &text[..cut], &text[pass..])).unwrap();
    let mut without = with.clone();
    without[1] = dag.to_str().unwrap();
    kelp_ok(&without);
    for table in ["media", "previews"] {
        let dir = out.join(table);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "--overwrite left {table} shards: {left:?}");
    }
}

#[test]
fn sql_writes_csv_and_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    let out = tmp.path().join("out");
    make_samples(&samples);
    kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        samples.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let csv = kelp_ok(&[
        "sql",
        "SELECT kind FROM boundaries ORDER BY kind",
        "--dataset",
        out.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        ["kind", "cut", "cut", "dissolve", "fade"]
    );
    let pq = tmp.path().join("r.parquet");
    kelp_ok(&[
        "sql",
        "SELECT * FROM clips",
        "--dataset",
        out.to_str().unwrap(),
        "--format",
        "parquet",
        "--out",
        pq.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
}
