#!/usr/bin/env bash
# One command from a fresh Debian machine to a curated sample dataset: installs the system
# packages, generates the sample videos, runs dags/quickstart.toml and queries the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install-deps.sh
bash infra/make-samples.sh samples
cargo build --quiet --bins --features cuda   # kelp (dataset commands) and kelp-video (commands that decode or train; the GPU path falls back to the CPU)
./target/debug/kelp run dags/quickstart.toml --overwrite
./target/debug/kelp sql "SELECT v.uri, count(c.clip_id) AS clips, round(sum(c.duration_s), 2) AS seconds FROM videos v LEFT JOIN clips c USING (video_id) GROUP BY v.uri ORDER BY v.uri" --dataset out/quickstart
./target/debug/kelp sql "SELECT kind, count(*) AS n FROM boundaries GROUP BY kind ORDER BY kind" --dataset out/quickstart
./target/debug/kelp sql "SELECT bucket, count(*) AS clips, sum(frames) AS frames, sum(bytes) AS media_bytes FROM media GROUP BY bucket ORDER BY bucket" --dataset out/quickstart
