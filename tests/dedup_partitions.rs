//! The `near_dedup` pass over partitioned runs: 3 worker processes over 3 partitions give the
//! same groups as one process over one partition (clips are numbered by the keep rule, never by
//! shard order), and a run killed inside the pass is completed by `--resume` with the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod runs;

use std::path::Path;

use common::ffmpeg;
use runs::*;

/// Three textured sources, each with a half-size and a mirrored copy, in 9 files.
fn sources(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let bases = [
        ("mandel", "mandelbrot=size=384x216:rate=25:end_pts=100"),
        ("life", "life=size=192x108:rate=25:seed=7:ratio=0.3:mold=20:life_color=#ffd040:death_color=#203080"),
        ("carpet", "sierpinski=size=384x216:rate=25:seed=3:jump=1:type=carpet"),
    ];
    for (name, input) in bases {
        for (suffix, vf) in [
            ("", "scale=384:216"),
            ("-half", "scale=192:108"),
            ("-mirror", "scale=384:216,hflip"),
        ] {
            ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                input,
                "-t",
                "2",
                "-vf",
                vf,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                dir.join(format!("{name}{suffix}.mp4")).to_str().unwrap(),
            ]);
        }
    }
}

fn dag(dir: &Path) -> String {
    let path = dir.join("dedup.toml");
    std::fs::write(
        &path,
        "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n\
         [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
         [[node]]\nop = \"window\"\nmin_s = 0.5\nmax_s = 10.0\ntrim_cut_frames = 0\n\
         [[node]]\nop = \"signature\"\nsample_fps = 4.0\n\
         [[pass]]\nop = \"near_dedup\"\n",
    )
    .unwrap();
    path.display().to_string()
}

/// Every duplicates row as CSV, sorted.
fn duplicates(out: &str) -> Vec<String> {
    let o = kelp_env(
        &[
            "sql",
            "SELECT clip_id, group_id, kept_clip_id, kept, round(distance, 6) AS d, \
             round(matched_fraction, 6) AS f FROM duplicates ORDER BY clip_id",
            "--dataset",
            out,
            "--format",
            "csv",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn run(
    dag: &str,
    src: &Path,
    out: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let mut args = vec![
        "run",
        dag,
        "--source",
        src.to_str().unwrap(),
        "--output",
        out,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    kelp_env(&args, env)
}

#[test]
fn three_workers_give_the_groups_of_one_process_and_a_killed_pass_resumes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sources(&src);
    let dag = dag(tmp.path());
    let path = |n: &str| tmp.path().join(n).display().to_string();

    let single = path("single");
    let o = run(
        &dag,
        &src,
        &single,
        &["--partitions", "1", "--threads", "2"],
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    let groups = duplicates(&single);
    // 3 groups of 3: the header and 9 rows, 3 kept.
    assert_eq!(groups.len(), 10, "{groups:?}");
    assert_eq!(
        groups.iter().filter(|r| r.contains(",true,")).count(),
        3,
        "{groups:?}"
    );

    let fleet = path("fleet");
    let o = run(
        &dag,
        &src,
        &fleet,
        &["--partitions", "3", "--workers", "3"],
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(duplicates(&fleet), groups, "3 workers, 3 partitions");

    let killed = path("killed");
    let o = run(
        &dag,
        &src,
        &killed,
        &["--partitions", "3"],
        &[("KELP_FAULT_IN_PASS", "1".into())],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("aborting inside pass near_dedup"),
        "{}",
        show(&o)
    );
    assert!(!Path::new(&killed).join("_manifest.json").exists());
    let o = run(&dag, &src, &killed, &["--resume"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_same_dataset(
        Path::new(&fleet),
        Path::new(&killed),
        "pass killed, then resumed",
    );
    assert_eq!(duplicates(&killed), groups);
}
