//! Credentials from the environment never appear in logs, errors, Parquet, or the manifest: a
//! planted fake secret is searched for in everything a run against S3 (moto on 127.0.0.1) writes
//! and prints, with debug logging on, including a run that fails to reach its store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runs;

use kelp_pipeline::testing::MotoServer;
use object_store::{ObjectStoreExt, PutPayload};
use runs::*;

const SECRET: &str = "kelpPLANTEDsecret0123456789abcdefXYZ";
const KEY_ID: &str = "AKIAKELPPLANTEDKEY01";

fn planted(moto: &MotoServer) -> Vec<(&'static str, String)> {
    let mut env = moto.env();
    for (k, v) in env.iter_mut() {
        match *k {
            "AWS_SECRET_ACCESS_KEY" => *v = SECRET.into(),
            "AWS_ACCESS_KEY_ID" => *v = KEY_ID.into(),
            _ => {}
        }
    }
    env.push(("RUST_LOG", "debug".into()));
    env
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for needle in [SECRET, KEY_ID] {
        assert_secret_absent(what, bytes, needle);
    }
}

#[test]
fn planted_credentials_appear_nowhere() {
    let moto = MotoServer::start();
    moto.bucket("kelp-secret-src");
    moto.bucket("kelp-secret-out");
    let tmp = tempfile::tempdir().unwrap();
    let files = tiny_videos(&tmp.path().join("src"), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let src = moto.location("kelp-secret-src", "videos");
    rt.block_on(async {
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            src.store
                .put(
                    &src.child(name),
                    PutPayload::from(std::fs::read(f).unwrap()),
                )
                .await
                .unwrap();
        }
        // A broken object among them, so an error row is written too.
        src.store
            .put(
                &src.child("broken.mp4"),
                PutPayload::from(b"not a video".to_vec()),
            )
            .await
            .unwrap();
    });
    let dag = tiny_dag(tmp.path(), "").display().to_string();
    let env = planted(&moto);
    let local_out = tmp.path().join("out");
    let mut outputs = Vec::new();
    let runs: Vec<Vec<String>> = vec![
        vec![
            "run".into(),
            dag.clone(),
            "--source".into(),
            "s3://kelp-secret-src/videos".into(),
            "--output".into(),
            local_out.display().to_string(),
            "-vv".into(),
        ],
        vec![
            "run".into(),
            dag.clone(),
            "--source".into(),
            "s3://kelp-secret-src/videos".into(),
            "--output".into(),
            "s3://kelp-secret-out/ds".into(),
            "-vv".into(),
        ],
        vec![
            "sql".into(),
            "SELECT * FROM videos".into(),
            "--dataset".into(),
            "s3://kelp-secret-out/ds".into(),
            "-vv".into(),
        ],
        vec![
            "status".into(),
            "s3://kelp-secret-out/ds".into(),
            "-vv".into(),
        ],
    ];
    for args in &runs {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kelp_env(&a, &env);
        assert!(o.status.success(), "{}", show(&o));
        outputs.push((format!("kelp {}", args[0]), o));
    }
    // A store that cannot be reached: the error must still not quote the credentials.
    let mut bad_env = env.clone();
    for (k, v) in bad_env.iter_mut() {
        if *k == "AWS_ENDPOINT" {
            *v = "http://127.0.0.1:9".into();
        }
    }
    let o = kelp_env(
        &[
            "sql",
            "SELECT 1",
            "--dataset",
            "s3://kelp-secret-out/ds",
            "-vv",
        ],
        &bad_env,
    );
    assert!(!o.status.success(), "an unreachable store fails");
    outputs.push(("kelp sql (unreachable store)".into(), o));
    for (what, o) in &outputs {
        assert_clean(&format!("{what} stdout"), &o.stdout);
        assert_clean(&format!("{what} stderr"), &o.stderr);
    }
    let stderr_all: String = outputs
        .iter()
        .map(|(_, o)| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(
        stderr_all.contains("DEBUG") || stderr_all.contains("debug"),
        "debug logging was on"
    );

    for entry in files_under(&local_out) {
        assert_clean(
            &entry.display().to_string(),
            &std::fs::read(&entry).unwrap(),
        );
    }
    let out = moto.location("kelp-secret-out", "ds");
    let objects = rt.block_on(async {
        use futures::StreamExt;
        let mut list = out.store.list(Some(&out.prefix));
        let mut found = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta.unwrap();
            let bytes = out
                .store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            found.push((meta.location.to_string(), bytes));
        }
        found
    });
    assert!(
        objects.iter().any(|(p, _)| p.ends_with("_manifest.json")),
        "the S3 dataset was committed"
    );
    for (path, bytes) in &objects {
        assert_clean(path, bytes);
    }
}
