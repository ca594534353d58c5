//! Quality scores, SQL-predicate filters, the attributes gate and `kelp stats`, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;

fn run_dag(dag_text: &str, samples: &Path, out: &Path, dir: &Path, name: &str) -> String {
    let dag = dir.join(name);
    std::fs::write(&dag, dag_text).unwrap();
    kelp_ok(&[
        "run",
        dag.to_str().unwrap(),
        "--source",
        samples.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

fn quickstart() -> String {
    std::fs::read_to_string(repo_root().join("dags/quickstart.toml")).unwrap()
}

fn ids(rows: &[serde_json::Map<String, serde_json::Value>]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| text(r, "clip_id").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn filter_keeps_exactly_what_sql_selects_and_records_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    let all = tmp.path().join("all");
    run_dag(&quickstart(), &samples, &all, tmp.path(), "all.toml");
    let predicate = "sharpness > 1000 AND NOT static";
    let filtered = tmp.path().join("filtered");
    let dag = format!(
        "{}\n[[node]]\nid = \"sharp\"\nop = \"filter\"\nwhere = \"{predicate}\"\n",
        quickstart()
    );
    let summary = run_dag(&dag, &samples, &filtered, tmp.path(), "filtered.toml");

    let expected_kept = ids(&sql_json(
        &all,
        &format!("SELECT clip_id FROM clips WHERE {predicate}"),
    ));
    let expected_gone = ids(&sql_json(
        &all,
        &format!("SELECT clip_id FROM clips WHERE NOT ({predicate}) OR ({predicate}) IS NULL"),
    ));
    assert!(
        !expected_kept.is_empty() && !expected_gone.is_empty(),
        "the predicate should split the samples' clips"
    );
    assert_eq!(
        ids(&sql_json(&filtered, "SELECT clip_id FROM clips")),
        expected_kept
    );
    let rejections = sql_json(&filtered, "SELECT clip_id, node, reason FROM rejections");
    assert_eq!(ids(&rejections), expected_gone);
    assert!(
        rejections
            .iter()
            .all(|r| text(r, "node") == "sharp" && text(r, "reason").starts_with(predicate)),
        "{rejections:?}"
    );
    assert!(
        summary.contains(&format!("({} rejected)", expected_gone.len())),
        "{summary}"
    );
    // The kept clips' scores are the unfiltered run's (one decode, same numbers).
    let a = sql_json(
        &all,
        &format!("SELECT round(sum(sharpness), 6) AS s FROM clips WHERE {predicate}"),
    );
    let b = sql_json(&filtered, "SELECT round(sum(sharpness), 6) AS s FROM clips");
    assert_eq!(a[0]["s"], b[0]["s"]);
}

#[test]
fn a_malformed_predicate_fails_validation_naming_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = tmp.path().join("bad.toml");
    std::fs::write(
        &dag,
        format!(
            "{}\n[[node]]\nid = \"q\"\nop = \"filter\"\nwhere = \"sharpness >> 3\"\n",
            quickstart()
        ),
    )
    .unwrap();
    let o = kelp(&["validate", dag.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml: node \"q\": where = \"sharpness >> 3\""),
        "{e}"
    );
    std::fs::write(
        &dag,
        format!(
            "{}\n[[node]]\nid = \"q\"\nop = \"filter\"\nwhere = \"nonsense_score > 3\"\n",
            quickstart()
        ),
    )
    .unwrap();
    let e = stderr(&kelp(&["validate", dag.to_str().unwrap()]));
    assert!(e.contains("nonsense_score"), "{e}");
}

#[test]
fn attributes_reject_a_video_before_decoding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    let out = tmp.path().join("out");
    // fade.mp4 lasts 10.4 s, the others 12 s.
    let dag = quickstart().replace(
        "[[node]]\nop = \"shots\"",
        "[[node]]\nop = \"attributes\"\nmin_duration_s = 11.0\n\n[[node]]\nop = \"shots\"",
    );
    assert!(dag.contains("attributes"));
    let summary = run_dag(&dag, &samples, &out, tmp.path(), "gate.toml");
    assert!(summary.contains("1 rejected"), "{summary}");
    let v = sql_json(&out, "SELECT regexp_replace(uri, '^.*/', '') AS f, status, clips, decoded_frames, short_side FROM videos ORDER BY 1");
    let fade = v.iter().find(|r| text(r, "f") == "fade.mp4").unwrap();
    assert_eq!(text(fade, "status"), "rejected");
    assert_eq!(int(fade, "clips"), 0);
    assert!(
        fade.get("decoded_frames").is_none_or(|x| x.is_null()),
        "rejected before decoding: {fade:?}"
    );
    assert_eq!(int(fade, "short_side"), 180);
    let r = sql_json(&out, "SELECT node, clip_id, reason FROM rejections");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(text(&r[0], "node"), "attributes");
    assert!(r[0].get("clip_id").is_none_or(|x| x.is_null()));
    assert!(
        text(&r[0], "reason").contains("under min_duration_s = 11"),
        "{r:?}"
    );
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn stats_numbers_equal_their_sql_and_plots_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    let out = tmp.path().join("out");
    run_dag(&quickstart(), &samples, &out, tmp.path(), "q.toml");
    let html = tmp.path().join("stats.html");
    let png = tmp.path().join("png");
    let json = kelp_ok(&[
        "stats",
        "--dataset",
        out.to_str().unwrap(),
        "--format",
        "json",
        "--html",
        html.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    let sections: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sections = sections.as_array().unwrap();
    assert!(sections.len() >= 7);
    for s in sections {
        let sql = s["sql"].as_str().unwrap();
        let rows = s["rows"].as_array().unwrap();
        let again = sql_json(&out, sql);
        assert_eq!(rows.len(), again.len(), "{}", s["key"]);
        for (a, b) in rows.iter().zip(again.iter()) {
            assert_eq!(a.as_object().unwrap(), b, "{}", s["key"]);
        }
    }
    let section = |k: &str| {
        sections.iter().find(|s| s["key"] == k).unwrap()["rows"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Independent queries, written here, agree with what stats printed.
    let clips = int(&sql_json(&out, "SELECT count(*) AS n FROM clips")[0], "n");
    let src = section("sources");
    assert_eq!(
        src.iter()
            .map(|r| r["clips"].as_i64().unwrap())
            .sum::<i64>(),
        clips
    );
    assert_eq!(
        section("duration")
            .iter()
            .map(|r| r["clips"].as_i64().unwrap())
            .sum::<i64>(),
        clips
    );
    let median = sql_json(&out, "SELECT median(sharpness) AS m FROM clips")[0]["m"]
        .as_f64()
        .unwrap();
    let p50 = section("percentiles")
        .iter()
        .find(|r| r["score"] == "sharpness")
        .unwrap()["p50"]
        .as_f64()
        .unwrap();
    assert!(
        (median - p50).abs() < 1e-3 * median.abs().max(1.0),
        "median {median} vs p50 {p50}"
    );
    // And the text report prints the same numbers.
    let text_report = kelp_ok(&["stats", "--dataset", out.to_str().unwrap(), "--show-sql"]);
    assert!(
        text_report.contains("-- SELECT"),
        "--show-sql prints the queries"
    );
    assert!(
        text_report.contains(&format!("| {clips} "))
            || text_report.contains(&format!("| {clips}  ")),
        "{text_report}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.len() > 10_000 && page.matches("<svg").count() >= 5,
        "html of {} bytes",
        page.len()
    );
    for name in [
        "duration",
        "resolution",
        "aspect",
        "fps",
        "duration_by_height",
    ] {
        let p = png.join(format!("{name}.png"));
        assert_eq!(png_size(&p), (900, 420), "{}", p.display());
        assert!(
            std::fs::metadata(&p).unwrap().len() > 5_000,
            "{} looks empty",
            p.display()
        );
    }
}
