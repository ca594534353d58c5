//! Against a real S3-compatible server (moto, started here on 127.0.0.1): curate from one bucket
//! into another, query it with `kelp sql`, and survive crashes and injected store failures.
//! Needs `bash infra/install-deps.sh` (installs moto); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runs;

use kelp_pipeline::testing::MotoServer;
use object_store::{ObjectStoreExt, PutPayload};
use runs::*;

/// Uploads the files to `bucket/prefix/`.
fn upload(moto: &MotoServer, bucket: &str, prefix: &str, files: &[std::path::PathBuf]) {
    let loc = moto.location(bucket, prefix);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for f in files {
            let name = f.file_name().unwrap().to_str().unwrap();
            loc.store
                .put(
                    &loc.child(name),
                    PutPayload::from(std::fs::read(f).unwrap()),
                )
                .await
                .unwrap();
        }
    });
}

struct S3Fixture {
    moto: MotoServer,
    _tmp: tempfile::TempDir,
    dag: String,
    _local_src: String,
    reference: String,
}

fn fixture() -> S3Fixture {
    let moto = MotoServer::start();
    moto.bucket("kelp-raw");
    moto.bucket("kelp-out");
    let tmp = tempfile::tempdir().unwrap();
    let files = tiny_videos(&tmp.path().join("src"), 5);
    upload(&moto, "kelp-raw", "videos", &files);
    let dag = tiny_dag(tmp.path(), "").display().to_string();
    let local_src = tmp.path().join("src").display().to_string();
    let reference = tmp.path().join("reference").display().to_string();
    let o = kelp_env(
        &[
            "run",
            &dag,
            "--source",
            &local_src,
            "--output",
            &reference,
            "--quiet",
            "--partitions",
            "2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", show(&o));
    S3Fixture {
        moto,
        _tmp: tmp,
        dag,
        _local_src: local_src,
        reference,
    }
}

impl S3Fixture {
    fn endpoint_args(&self) -> Vec<String> {
        vec![
            "--endpoint".into(),
            self.moto.endpoint(),
            "--allow-http".into(),
        ]
    }

    fn run(&self, out: &str, extra: &[&str], env: &[(&str, String)]) -> std::process::Output {
        let ep = self.endpoint_args();
        let mut args = vec![
            "run",
            &self.dag,
            "--source",
            "s3://kelp-raw/videos",
            "--output",
            out,
            "--quiet",
        ];
        args.extend(ep.iter().map(String::as_str));
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.extend(
            self.moto
                .env()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("AWS_ENDPOINT") && *k != "AWS_ALLOW_HTTP"),
        );
        kelp_env(&args, &env)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        self.moto.env()
    }

    /// Clip ids, per-table row counts and media digests of a dataset in the bucket.
    fn contents(&self, out: &str) -> (Vec<String>, Vec<i64>, Vec<String>) {
        let ep = self.endpoint_args();
        let ep: Vec<&str> = ep.iter().map(String::as_str).collect();
        let env = self.env();
        let counts = TABLES
            .iter()
            .map(|t| sql_int(out, &format!("SELECT count(*) AS n FROM {t}"), &ep, &env))
            .collect();
        (
            clip_ids(out, &ep, &env),
            counts,
            media_digests(out, &ep, &env),
        )
    }

    fn reference_contents(&self) -> (Vec<String>, Vec<i64>, Vec<String>) {
        let counts = TABLES
            .iter()
            .map(|t| {
                sql_int(
                    &self.reference,
                    &format!("SELECT count(*) AS n FROM {t}"),
                    &[],
                    &[],
                )
            })
            .collect();
        (
            clip_ids(&self.reference, &[], &[]),
            counts,
            media_digests(&self.reference, &[], &[]),
        )
    }
}

#[test]
fn curate_from_a_bucket_into_a_bucket_then_sql_over_it() {
    let f = fixture();
    let o = f.run("s3://kelp-out/datasets/tiny", &["--partitions", "2"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("5 videos (5 ok, 0 error)"), "{summary}");
    let (ids, counts, media) = f.contents("s3://kelp-out/datasets/tiny");
    let (ref_ids, ref_counts, ref_media) = f.reference_contents();
    assert_eq!(
        counts, ref_counts,
        "row counts of the bucket dataset vs a local run"
    );
    // Clip ids hash the video bytes and frame ranges, not the URI: the same as local; so do
    // the media bytes.
    assert_eq!(ids, ref_ids);
    assert_eq!(media, ref_media, "media in the bucket equal a local run's");
    let ep = f.endpoint_args();
    let mut args = vec!["status", "s3://kelp-out/datasets/tiny", "--format", "json"];
    args.extend(ep.iter().map(String::as_str));
    let st = kelp_env(&args, &f.env());
    let v: serde_json::Value =
        serde_json::from_slice(&st.stdout).unwrap_or_else(|_| panic!("{}", show(&st)));
    assert_eq!(v["complete"], true, "{v}");
    let uris = {
        let ep: Vec<&str> = ep.iter().map(String::as_str).collect();
        let mut a = vec![
            "sql",
            "SELECT min(uri) AS u FROM videos",
            "--dataset",
            "s3://kelp-out/datasets/tiny",
            "--format",
            "csv",
        ];
        a.extend(ep);
        kelp_env(&a, &f.env())
    };
    assert!(String::from_utf8_lossy(&uris.stdout).contains("s3://kelp-raw/videos/v00.mp4"));
    // `kelp stats` reads the bucket through the same endpoint options as sql and status.
    let mut a = vec![
        "stats",
        "--dataset",
        "s3://kelp-out/datasets/tiny",
        "--format",
        "json",
    ];
    a.extend(ep.iter().map(String::as_str));
    let st = kelp_env(&a, &f.env());
    assert!(st.status.success(), "{}", show(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let duration = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "duration")
        .unwrap_or_else(|| panic!("{v}"));
    let clips: i64 = duration["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["clips"].as_i64().unwrap())
        .sum();
    assert_eq!(clips, counts[2], "stats over S3 count the clips sql counts");
}

/// The tables whose row counts must survive crashes (media and previews included).
const TABLES: [&str; 6] = [
    "videos",
    "boundaries",
    "clips",
    "rejections",
    "media",
    "previews",
];

#[test]
fn crashes_and_store_failures_on_s3_resume_to_the_uninterrupted_dataset() {
    let f = fixture();
    let expected = f.reference_contents();
    assert_eq!(expected.2.len(), expected.0.len(), "every clip has media");
    let mut interrupted = 0;
    for seed in 1..=4u64 {
        let mut rng = Rng(seed * 31);
        let out = format!("s3://kelp-out/crash-{seed}");
        let mut ok = false;
        for round in 0..15u64 {
            let env = if round % 2 == 0 {
                vec![("KELP_FAULT_AFTER_PUTS", (1 + rng.below(16)).to_string())]
            } else {
                vec![(
                    "KELP_FAULT_STORE",
                    format!("rate=0.3,seed={}", seed * 1000 + round),
                )]
            };
            let o = f.run(&out, &["--partitions", "2", "--resume"], &env);
            if o.status.success() {
                ok = true;
                break;
            }
            interrupted += 1;
        }
        if !ok {
            let o = f.run(&out, &["--partitions", "2", "--resume"], &[]);
            assert!(o.status.success(), "seed {seed}: {}", show(&o));
        }
        assert_eq!(f.contents(&out), expected, "seed {seed}");
        let ep = f.endpoint_args();
        let ep: Vec<&str> = ep.iter().map(String::as_str).collect();
        let dups = sql_int(
            &out,
            "SELECT count(*) - count(DISTINCT clip_id) FROM clips",
            &ep,
            &f.env(),
        );
        assert_eq!(dups, 0, "seed {seed}: duplicate clips");
    }
    assert!(interrupted >= 4, "only {interrupted} interrupted runs");
}
