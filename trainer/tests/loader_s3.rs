//! The loader reads a dataset on an S3 server (moto, started here; `bash infra/install-deps.sh`
//! installs it) through `endpoint`/`allow_http`, caching shards locally: the same batches as
//! from a local copy, with requests counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kelp_pipeline::testing::MotoServer;
use kelp_trainer::data::testing::{self, TestDataset};
use kelp_trainer::data::{DatasetSource, Loader, LoaderConfig};

#[test]
fn a_dataset_on_s3_loads_the_same_batches_as_on_disk() {
    let moto = MotoServer::start();
    moto.bucket("kelp-loader");
    // This test binary runs this one test: the variables reach only its own S3 clients.
    for (k, v) in moto.env() {
        std::env::set_var(k, v);
    }
    let mut spec = TestDataset::buckets(&[("small", 32, 32, 5, 9), ("wide", 48, 32, 6, 5)]);
    spec.shard_rows = 4;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("ds").display().to_string();
    testing::write_blocking(&local, &spec);
    testing::write_blocking("s3://kelp-loader/ds", &spec);

    let base = LoaderConfig {
        batch_size: 2,
        epochs: Some(1),
        drop_last: false,
        cache_dir: Some(dir.path().join("cache")),
        ..LoaderConfig::for_dataset(&local)
    };
    let on_disk: Vec<(Vec<String>, Vec<u8>)> = Loader::new(base.clone())
        .unwrap()
        .map(|b| b.unwrap())
        .map(|b| (b.clip_ids, b.pixels))
        .collect();
    let mut remote = DatasetSource::new("s3://kelp-loader/ds");
    remote.endpoint = Some(moto.endpoint());
    remote.allow_http = true;
    let mut l = Loader::new(LoaderConfig {
        datasets: vec![remote],
        cache_dir: Some(dir.path().join("cache-s3")),
        ..base
    })
    .unwrap();
    let from_s3: Vec<(Vec<String>, Vec<u8>)> = (&mut l)
        .map(|b| b.unwrap())
        .map(|b| (b.clip_ids, b.pixels))
        .collect();
    assert_eq!(from_s3.len(), on_disk.len());
    assert!(from_s3 == on_disk, "S3 and local batches differ");
    let s = l.stats();
    assert!(s.remote_requests >= 4 && s.remote_bytes > 0, "{s:?}");
}
