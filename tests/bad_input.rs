//! Bad input gets a clear error naming it; the rest of the job goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn broken_files_get_error_rows_and_good_ones_still_get_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mixed");
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    std::fs::create_dir(&src).unwrap();
    let good = std::fs::read(samples.join("cuts.mp4")).unwrap();
    std::fs::write(src.join("good.mp4"), &good).unwrap();
    std::fs::write(src.join("zero.mp4"), b"").unwrap();
    std::fs::write(src.join("truncated.mp4"), &good[..good.len() / 2]).unwrap();
    std::fs::write(
        src.join("text.mp4"),
        b"<html><body>not a video</body></html>\n",
    )
    .unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=2",
        "-c:a",
        "aac",
        src.join("audio.mp4").to_str().unwrap(),
    ]);
    let out = tmp.path().join("out");
    let summary = kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(summary.contains("5 videos (1 ok, 4 error)"), "{summary}");

    let rows = sql_json(&out, "SELECT regexp_replace(uri, '^.*/', '') AS file, status, error, clips FROM videos ORDER BY 1");
    let find = |f: &str| {
        rows.iter()
            .find(|r| text(r, "file") == f)
            .unwrap_or_else(|| panic!("no row for {f}"))
    };
    assert_eq!(rows.len(), 5, "every input has exactly one row");
    assert_eq!(text(find("good.mp4"), "status"), "ok");
    assert_eq!(int(find("good.mp4"), "clips"), 5);
    for (file, says) in [
        ("zero.mp4", "empty file"),
        ("truncated.mp4", "truncated"),
        ("text.mp4", "cannot open as a video"),
        ("audio.mp4", "no video stream (streams found: audio)"),
    ] {
        let r = find(file);
        assert_eq!(text(r, "status"), "error", "{file}");
        let e = text(r, "error");
        assert!(
            e.contains(file) && e.contains(says),
            "{file}: error {e:?} should name the file and say {says:?}"
        );
        assert_eq!(int(r, "clips"), 0);
    }
    let clips = sql_json(&out, "SELECT count(*) AS n FROM clips");
    assert_eq!(int(&clips[0], "n"), 5);
}

#[test]
fn a_folder_without_videos_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();
    let o = kelp(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        tmp.path().to_str().unwrap(),
        "--output",
        tmp.path().join("out").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(tmp.path().to_str().unwrap()) && e.contains("no video files found"),
        "{e}"
    );
}

#[test]
fn a_dag_with_a_typo_in_an_operator_fails_validation_naming_file_and_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = tmp.path().join("typo.toml");
    let text = std::fs::read_to_string(repo_root().join("dags/quickstart.toml"))
        .unwrap()
        .replace("op = \"shots\"", "op = \"shotz\"");
    std::fs::write(&dag, text).unwrap();
    let o = kelp(&["validate", dag.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(
            "typo.toml: node \"shotz\": unknown operator \"shotz\" (did you mean \"shots\"?)"
        ),
        "{e}"
    );
}

#[test]
fn a_dag_with_a_wrong_typed_parameter_fails_validation_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = tmp.path().join("types.toml");
    let text = std::fs::read_to_string(repo_root().join("dags/quickstart.toml"))
        .unwrap()
        .replace("max_s = 3.0", "max_s = \"three\"");
    std::fs::write(&dag, text).unwrap();
    let o = kelp(&["validate", dag.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("types.toml: node \"window\": key \"max_s\": invalid type: string \"three\""),
        "{e}"
    );
}

#[test]
fn every_shipped_dag_validates() {
    for entry in std::fs::read_dir(repo_root().join("dags")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = kelp_ok(&["validate", path.to_str().unwrap()]);
            assert!(out.contains(": ok:"), "{out}");
        }
    }
}
