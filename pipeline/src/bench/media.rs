//! `kelp bench media-layout`: how a loader reads clip media from object storage, for the two
//! layouts a dataset could use — clips packed as values of the `media` table's Parquet shards
//! (what kelp writes: one range request per clip after each shard's footer) and one object per
//! clip — counting requests and bytes for `reads` clips read in random order from a moto S3
//! server started for the run. (Its seconds are moto's: it reads a whole object from its disk
//! for every range request, so large shards look slow there and not on S3.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, LargeBinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelector};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;

use crate::dataset::handle::Dataset;
use crate::dataset::ranged::ShardReader;
use crate::dataset::writer::TableWriter;
use crate::error::{PipelineError, Result};
use crate::store::{self, instrument::request_counts, Location, StoreOptions};
use crate::testing::MotoServer;

/// One layout's cost for the whole random read.
#[derive(Debug, Clone)]
pub struct LayoutRow {
    pub layout: &'static str,
    /// Objects the layout puts in the store.
    pub objects: usize,
    pub reads: usize,
    pub requests: u64,
    pub bytes_read: u64,
    /// Bytes of the clips themselves.
    pub payload: u64,
    pub seconds: f64,
}

/// Clip media blobs of a dataset, repeated under new ids until there are `clips` of them.
async fn blobs(dataset: &str, clips: usize) -> Result<Vec<(String, Vec<u8>)>> {
    let ds = Dataset::open(dataset, &StoreOptions::default()).await?;
    let mut found = Vec::new();
    for shard in ds.shards("media").to_vec() {
        for batch in ds.read_shard(&shard, &["clip_id", "data"]).await? {
            let ids = batch.column(0).as_string::<i32>();
            let data = batch.column(1).as_binary::<i64>();
            for i in 0..batch.num_rows() {
                found.push((ids.value(i).to_string(), data.value(i).to_vec()));
            }
        }
    }
    if found.is_empty() {
        return Err(PipelineError::Other(format!(
            "{dataset}: no media rows (run a DAG with a `transcode` node first)"
        )));
    }
    Ok((0..clips)
        .map(|k| {
            let (id, data) = &found[k % found.len()];
            (format!("{id}-{k:05}"), data.clone())
        })
        .collect())
}

/// A seeded permutation of `0..n` (splitmix64 Fisher–Yates).
fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
    let mut next = move || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

fn parquet_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Other(format!("media layout bench: {e}"))
}

/// Writes the clips as the `media` table would be (kelp's writer); returns (shard path, rows,
/// bytes) per shard.
async fn write_parquet(
    loc: &Location,
    clips: &[(String, Vec<u8>)],
) -> Result<Vec<(String, u64, u64)>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("data", DataType::LargeBinary, false),
    ]));
    let mut writer = TableWriter::new(loc.clone(), "media", schema.clone(), 1_000_000, 0);
    for chunk in clips.chunks(16) {
        let ids = StringArray::from_iter_values(chunk.iter().map(|(id, _)| id.as_str()));
        let data = LargeBinaryArray::from_iter_values(chunk.iter().map(|(_, d)| d.as_slice()));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(data)])
            .map_err(parquet_err)?;
        writer.push(batch).await?;
    }
    let written = writer.finish().await?;
    Ok(written
        .shards
        .into_iter()
        .map(|s| (s.path, s.rows, s.bytes))
        .collect())
}

/// Reads one row's `data` from a shard: footer and page index once per shard (cached), then
/// only the pages holding that row.
async fn read_parquet_row(
    loc: &Location,
    (path, size): (&str, u64),
    row: usize,
    cache: &mut HashMap<String, ArrowReaderMetadata>,
) -> Result<Vec<u8>> {
    let mut reader = ShardReader::new(loc.store.clone(), loc.child(path), size);
    let meta = match cache.get(path) {
        Some(m) => m.clone(),
        None => {
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let m = ArrowReaderMetadata::load_async(&mut reader, options)
                .await
                .map_err(parquet_err)?;
            cache.insert(path.to_string(), m.clone());
            m
        }
    };
    // The row group holding `row`, and the row's place in it.
    let mut first = 0usize;
    let mut group = 0usize;
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        let n = rg.num_rows() as usize;
        if row < first + n {
            group = g;
            break;
        }
        first += n;
    }
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone());
    let mask = ProjectionMask::roots(builder.parquet_schema(), [1]);
    let selection = vec![RowSelector::skip(row - first), RowSelector::select(1)];
    let stream = builder
        .with_projection(mask)
        .with_row_groups(vec![group])
        .with_row_selection(selection.into())
        .build()
        .map_err(parquet_err)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(parquet_err)?;
    let value = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_binary::<i64>().value(0).to_vec())
        .ok_or_else(|| parquet_err(format!("{path}: row {row} not found")))?;
    Ok(value)
}

/// Writes `reads` clips (from `dataset`'s media) both ways into a fresh moto server and reads
/// them all back in one random order, checking every byte.
pub async fn run_media_layout(dataset: &str, reads: usize, seed: u64) -> Result<Vec<LayoutRow>> {
    let clips = blobs(dataset, reads).await?;
    let payload: u64 = clips.iter().map(|(_, d)| d.len() as u64).sum();
    let moto = MotoServer::start();
    moto.bucket("kelp-bench");
    let order = shuffled(clips.len(), seed);

    // Packed: the media table's Parquet shards.
    let packed = moto.location("kelp-bench", "packed");
    let shards = write_parquet(&packed, &clips).await?;
    let mut place = Vec::with_capacity(clips.len());
    for (path, rows, size) in &shards {
        for r in 0..*rows as usize {
            place.push((path.clone(), *size, r));
        }
    }
    let mut cache = HashMap::new();
    let before = request_counts();
    let t = Instant::now();
    for &k in &order {
        let (path, size, row) = &place[k];
        let got = read_parquet_row(&packed, (path, *size), *row, &mut cache).await?;
        if got != clips[k].1 {
            return Err(parquet_err(format!("clip {k} read back different bytes")));
        }
    }
    let packed_seconds = t.elapsed().as_secs_f64();
    let packed_counts = request_counts().since(&before);

    // One object per clip.
    let loose = moto.location("kelp-bench", "loose");
    for (id, data) in &clips {
        store::put_object(
            &loose,
            &loose.child(&format!("clips/{id}.mp4")),
            bytes::Bytes::from(data.clone()),
            store::MULTIPART_THRESHOLD,
        )
        .await?;
    }
    let before = request_counts();
    let t = Instant::now();
    for &k in &order {
        let path = loose.child(&format!("clips/{}.mp4", clips[k].0));
        let got = loose
            .store
            .get(&path)
            .await
            .map_err(parquet_err)?
            .bytes()
            .await
            .map_err(parquet_err)?;
        if got.as_ref() != clips[k].1.as_slice() {
            return Err(parquet_err(format!("clip {k} read back different bytes")));
        }
    }
    let loose_seconds = t.elapsed().as_secs_f64();
    let loose_counts = request_counts().since(&before);

    Ok(vec![
        LayoutRow {
            layout: "packed: `media` Parquet shards (kelp)",
            objects: shards.len(),
            reads: clips.len(),
            requests: packed_counts.total(),
            bytes_read: packed_counts.get_bytes,
            payload,
            seconds: packed_seconds,
        },
        LayoutRow {
            layout: "one object per clip",
            objects: clips.len(),
            reads: clips.len(),
            requests: loose_counts.total(),
            bytes_read: loose_counts.get_bytes,
            payload,
            seconds: loose_seconds,
        },
    ])
}

/// The comparison as Markdown, normalised to 1,000 clips.
pub fn media_layout_table(rows: &[LayoutRow]) -> String {
    let mut out = String::from(
        "| layout | objects in the store | requests per 1,000 clips | MB read per 1,000 clips | bytes read ÷ clip bytes | seconds per 1,000 clips (moto) |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let per = 1000.0 / r.reads.max(1) as f64;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {:.3} | {:.2} |\n",
            r.layout,
            r.objects,
            r.requests as f64 * per,
            r.bytes_read as f64 * per / 1e6,
            r.bytes_read as f64 / r.payload.max(1) as f64,
            r.seconds * per
        ));
    }
    out
}
