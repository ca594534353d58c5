//! Test support: small datasets with real clip media, written the way a run writes them (kelp's
//! shard writer and manifest), with clips encoded in memory by kelp's H.264 encoder. Each clip's
//! picture is a pattern keyed by its number, so clips differ. Not for production use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, LargeBinaryArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kelp_operators::clip_stage::Rate;
use kelp_operators::media::encode::{ClipEncoder, EncoderSpec};
use kelp_pipeline::dataset::manifest::{self, Manifest};
use kelp_pipeline::dataset::TableWriter;
use kelp_pipeline::store;

/// One clip of a test dataset.
#[derive(Debug, Clone)]
pub struct TestClip {
    pub bucket: Option<String>,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub caption: Option<String>,
    pub duration_s: f64,
}

impl TestClip {
    pub fn new(bucket: &str, width: u32, height: u32, frames: u32) -> TestClip {
        TestClip {
            bucket: Some(bucket.into()),
            width,
            height,
            frames,
            caption: None,
            duration_s: frames as f64 / 24.0,
        }
    }
}

/// How to write a test dataset.
#[derive(Debug, Clone)]
pub struct TestDataset {
    pub clips: Vec<TestClip>,
    /// `media` rows per shard.
    pub shard_rows: usize,
    /// Clip numbers whose media value is replaced by garbage (with a matching checksum, so the
    /// decoder is what finds out).
    pub corrupt: Vec<usize>,
    /// Write `media` at all.
    pub media: bool,
    pub run_id: String,
    /// Number of the first clip (its id is [`clip_id`] of it): datasets mixed in one loader
    /// need distinct ids.
    pub first: usize,
}

impl TestDataset {
    pub fn new(clips: Vec<TestClip>) -> TestDataset {
        TestDataset {
            clips,
            shard_rows: 8,
            corrupt: Vec::new(),
            media: true,
            run_id: "test-run".into(),
            first: 0,
        }
    }

    /// `n` clips per (bucket, width, height, frames) given.
    pub fn buckets(spec: &[(&str, u32, u32, u32, usize)]) -> TestDataset {
        let mut clips = Vec::new();
        for &(b, w, h, f, n) in spec {
            for _ in 0..n {
                clips.push(TestClip::new(b, w, h, f));
            }
        }
        TestDataset::new(clips)
    }
}

/// The id of clip `k`.
pub fn clip_id(k: usize) -> String {
    format!("{:032x}", k as u128 * 0x9E37_79B9_7F4A_7C15)
}

/// Encodes clip `k` (YUV 4:2:0 pattern frames) as an MP4.
pub fn encode_clip(k: usize, width: u32, height: u32, frames: u32) -> Vec<u8> {
    let spec = EncoderSpec {
        codec: "libx264".into(),
        options: vec![
            ("preset".into(), "ultrafast".into()),
            ("crf".into(), "26".into()),
        ],
        gop: 0,
        threads: 1,
        container: "mp4".into(),
        muxer_options: Vec::new(),
    };
    let mut enc = ClipEncoder::new(&spec, width, height, Rate { num: 24, den: 1 }).unwrap();
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    for t in 0..frames as usize {
        let mut planes = Vec::with_capacity(w * h + 2 * cw * ch);
        for y in 0..h {
            for x in 0..w {
                planes.push(((x * 3 + y * 2 + t * 5 + k * 37) % 200 + 16) as u8);
            }
        }
        planes.extend(std::iter::repeat_n((64 + (k * 29) % 128) as u8, cw * ch));
        planes.extend(std::iter::repeat_n((192 - (k * 13) % 128) as u8, cw * ch));
        enc.push(&planes).unwrap();
    }
    enc.finish().unwrap()
}

/// Writes `spec` at `uri` (a folder or store URI): `clips`, `media` (unless `media = false`)
/// and a manifest. Returns the clip ids in clip order.
pub async fn write(uri: &str, spec: &TestDataset) -> Vec<String> {
    let loc = store::resolve(uri).unwrap();
    let ids: Vec<String> = (0..spec.clips.len())
        .map(|k| clip_id(spec.first + k))
        .collect();
    let mut tables = BTreeMap::new();

    let clip_schema = Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("video_id", DataType::Utf8, false),
        Field::new("bucket", DataType::Utf8, true),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("caption", DataType::Utf8, true),
    ]));
    let c = &spec.clips;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(ids.iter())),
        Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "video"))),
        Arc::new(StringArray::from_iter(c.iter().map(|c| c.bucket.clone()))),
        Arc::new(Float64Array::from_iter_values(
            c.iter().map(|c| c.duration_s),
        )),
        Arc::new(StringArray::from_iter(c.iter().map(|c| c.caption.clone()))),
    ];
    let mut w = TableWriter::new(loc.clone(), "clips", clip_schema.clone(), 1 << 20, 0);
    w.push(RecordBatch::try_new(clip_schema, columns).unwrap())
        .await
        .unwrap();
    tables.insert("clips".to_string(), w.finish().await.unwrap());

    if spec.media {
        let media_schema = Arc::new(Schema::new(vec![
            Field::new("clip_id", DataType::Utf8, false),
            Field::new("video_id", DataType::Utf8, false),
            Field::new("bucket", DataType::Utf8, true),
            Field::new("width", DataType::Int32, true),
            Field::new("height", DataType::Int32, true),
            Field::new("frames", DataType::Int32, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("checksum", DataType::Utf8, true),
            Field::new("data", DataType::LargeBinary, true),
        ]));
        // Clips of one shape share a few encodings (encoding is the slow part of a test).
        let mut encoded: HashMap<(u32, u32, u32, usize), Vec<u8>> = HashMap::new();
        let data: Vec<Vec<u8>> = c
            .iter()
            .enumerate()
            .map(|(k, clip)| {
                if spec.corrupt.contains(&k) {
                    return (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
                }
                encoded
                    .entry((clip.width, clip.height, clip.frames, k % 3))
                    .or_insert_with(|| encode_clip(k % 3, clip.width, clip.height, clip.frames))
                    .clone()
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(ids.iter())),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "video"))),
            Arc::new(StringArray::from_iter(c.iter().map(|c| c.bucket.clone()))),
            Arc::new(Int32Array::from_iter_values(
                c.iter().map(|c| c.width as i32),
            )),
            Arc::new(Int32Array::from_iter_values(
                c.iter().map(|c| c.height as i32),
            )),
            Arc::new(Int32Array::from_iter_values(
                c.iter().map(|c| c.frames as i32),
            )),
            Arc::new(Int64Array::from_iter_values(
                data.iter().map(|d| d.len() as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                data.iter().map(|d| blake3::hash(d).to_hex().to_string()),
            )),
            Arc::new(LargeBinaryArray::from_iter_values(data.iter())),
        ];
        let mut w = TableWriter::new(
            loc.clone(),
            "media",
            media_schema.clone(),
            spec.shard_rows,
            0,
        );
        w.push(RecordBatch::try_new(media_schema, columns).unwrap())
            .await
            .unwrap();
        tables.insert("media".to_string(), w.finish().await.unwrap());
    }
    let m = Manifest {
        format: 1,
        kelp_version: env!("CARGO_PKG_VERSION").into(),
        committed_unix: 0,
        dag: "kelp_trainer::data::testing".into(),
        tables,
        run_id: Some(spec.run_id.clone()),
        partitions: None,
        committed_partitions: None,
    };
    manifest::write(&loc, &m).await.unwrap();
    ids
}

/// [`write`] from synchronous code.
pub fn write_blocking(uri: &str, spec: &TestDataset) -> Vec<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(write(uri, spec))
}

/// Runs `pass` over the test dataset at `uri` and lists the tables it wrote in the manifest
/// (what a run's commit does), so tests can read a pass's output the way a loader would.
pub async fn run_pass(
    uri: &str,
    pass: &dyn kelp_pipeline::pass::Pass,
    tables: &[kelp_operators::TableSpec],
) {
    let loc = store::resolve(uri).unwrap();
    let ds = kelp_pipeline::dataset::Dataset::open(uri, &store::StoreOptions::default())
        .await
        .unwrap();
    let mut out = kelp_pipeline::pass::PassWriter::new(&loc, 1000, tables, 1 << 20).unwrap();
    pass.run(&ds, &mut out).await.unwrap();
    let written = out.finish().await.unwrap();
    let mut m = manifest::read(&loc).await.unwrap().unwrap();
    m.tables.extend(written);
    manifest::write(&loc, &m).await.unwrap();
}
