//! Deduplication against an older dataset: a second crawl holding copies of the first one's
//! clips (a half-size re-encode, a mirror, the very same file) has exactly those rejected as
//! duplicates of the old clips, whether `kelp dedup --against` runs over the finished dataset or
//! the DAG's pass names `against`; the older dataset is never rewritten.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod runs;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn make(dir: &Path, name: &str, input: &str, vf: &str) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        input,
        "-t",
        "3",
        "-vf",
        vf,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        dir.join(name).to_str().unwrap(),
    ]);
}

const MANDEL: &str = "mandelbrot=size=384x216:rate=25:end_pts=100";
const LIFE: &str = "life=size=192x108:rate=25:seed=7:ratio=0.3:mold=20:life_color=#ffd040:death_color=#203080:mold_color=#a02010";
const CARPET: &str = "sierpinski=size=512x288:rate=25:seed=3:jump=1:type=carpet";
const CELLS: &str = "cellauto=size=256x144:rate=25:rule=30:seed=5:scroll=1";
const TESTSRC: &str = "testsrc2=size=512x288:rate=25";

fn dag(dir: &Path, name: &str, pass: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n\
             [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
             [[node]]\nop = \"window\"\nmin_s = 0.5\nmax_s = 10.0\ntrim_cut_frames = 0\n\
             [[node]]\nop = \"signature\"\nsample_fps = 2.0\n{pass}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn run(dag: &str, src: &Path, out: &Path) {
    kelp_ok(&[
        "run",
        dag,
        "--source",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
}

/// file name → clip id of a dataset.
fn clip_ids(out: &Path) -> BTreeMap<String, String> {
    sql_json(
        out,
        "SELECT regexp_replace(uri, '^.*/', '') AS file, clip_id FROM clips",
    )
    .iter()
    .map(|r| (text(r, "file").to_string(), text(r, "clip_id").to_string()))
    .collect()
}

/// (file, kept clip id, kept_in, reason) of every rejected clip of a dataset.
fn rejected(out: &Path) -> Vec<(String, String, String, String)> {
    sql_json(
        out,
        "SELECT regexp_replace(c.uri, '^.*/', '') AS file, d.kept_clip_id AS k, \
         coalesce(d.kept_in, '') AS kin, d.reason FROM duplicates d JOIN clips c USING (clip_id) \
         WHERE NOT d.kept ORDER BY file",
    )
    .iter()
    .map(|r| {
        (
            text(r, "file").to_string(),
            text(r, "k").to_string(),
            text(r, "kin").to_string(),
            text(r, "reason").to_string(),
        )
    })
    .collect()
}

#[test]
fn copies_of_an_older_datasets_clips_are_rejected_and_the_old_one_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_src, new_src) = (tmp.path().join("old-src"), tmp.path().join("new-src"));
    std::fs::create_dir_all(&old_src).unwrap();
    std::fs::create_dir_all(&new_src).unwrap();
    make(&old_src, "a-mandel.mp4", MANDEL, "scale=512:288");
    make(&old_src, "b-life.mp4", LIFE, "scale=512:288");
    make(&old_src, "c-carpet.mp4", CARPET, "null");
    make(&old_src, "d-testsrc.mp4", TESTSRC, "null");
    // The new crawl: two copies and the same file again, and two clips of its own.
    make(&new_src, "mandel-half.mp4", MANDEL, "scale=256:144");
    make(&new_src, "life-mirror.mp4", LIFE, "scale=512:288,hflip");
    std::fs::copy(
        old_src.join("c-carpet.mp4"),
        new_src.join("carpet-again.mp4"),
    )
    .unwrap();
    make(&new_src, "new-cells.mp4", CELLS, "scale=512:288");
    make(
        &new_src,
        "new-mandel-elsewhere.mp4",
        &format!("{MANDEL}:start_x=-0.1011:start_y=0.9563"),
        "scale=512:288",
    );

    let old = tmp.path().join("old");
    run(
        &dag(tmp.path(), "old.toml", "[[pass]]\nop = \"near_dedup\"\n"),
        &old_src,
        &old,
    );
    let old_before = runs::shards(&old);
    let old_ids = clip_ids(&old);

    // kelp dedup over a finished dataset.
    let new = tmp.path().join("new");
    run(&dag(tmp.path(), "new.toml", ""), &new_src, &new);
    let said = kelp_ok(&[
        "dedup",
        "--dataset",
        new.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert!(
        said.contains("3 clips rejected as duplicates (3 of older datasets' clips)"),
        "{said}"
    );
    let new_ids = clip_ids(&new);
    let old_uri = old.to_str().unwrap().to_string();
    let want = |file: &str, of: &str| {
        let k = old_ids[of].clone();
        (
            file.to_string(),
            k.clone(),
            old_uri.clone(),
            format!("duplicate of {k} in {old_uri}"),
        )
    };
    let expected = vec![
        want("carpet-again.mp4", "c-carpet.mp4"),
        want("life-mirror.mp4", "b-life.mp4"),
        want("mandel-half.mp4", "a-mandel.mp4"),
    ];
    assert_eq!(rejected(&new), expected);
    // The same file has the same clip id in both datasets, and is still the new one's reject.
    assert_eq!(new_ids["carpet-again.mp4"], old_ids["c-carpet.mp4"]);
    // The older dataset is byte for byte what it was.
    assert_eq!(
        runs::shards(&old),
        old_before,
        "the older dataset was rewritten"
    );
    // Again: already committed, nothing changes.
    let again = kelp_ok(&[
        "dedup",
        "--dataset",
        new.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert!(again.contains("was already committed"), "{again}");

    // The same from the DAG's pass.
    let in_dag = tmp.path().join("new-dag");
    let pass = format!("[[pass]]\nop = \"near_dedup\"\nagainst = [\"{old_uri}\"]\n");
    run(&dag(tmp.path(), "new-dag.toml", &pass), &new_src, &in_dag);
    assert_eq!(rejected(&in_dag), expected);
}

#[test]
fn an_older_dataset_that_is_not_there_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    make(&src, "a.mp4", MANDEL, "null");
    let out = tmp.path().join("out");
    run(&dag(tmp.path(), "d.toml", ""), &src, &out);
    let missing = tmp.path().join("no-such-dataset");
    let o = kelp(&[
        "dedup",
        "--dataset",
        out.to_str().unwrap(),
        "--against",
        missing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("against") && err.contains("no-such-dataset"),
        "{err}"
    );
}
