#!/usr/bin/env bash
# Fuzzes kelp's two input surfaces with cargo-fuzz (libFuzzer) for a bounded time each — never
# in CI. Usage: bash infra/fuzz.sh [seconds per target, default 300]
#   dag_parse    any text as a DAG file: parse + validate must not panic
#   probe_media  any bytes as a video: probe, decode and shot detection under tight limits
# Seeds: the shipped DAGs, the regression corpora, and the generated broken-media corpus.
# Crashes land in fuzz/artifacts/<target>/; copy each into fuzz/regressions/ once fixed (the test
# suite replays them). Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is
# used with RUSTC_BOOTSTRAP=1 for the coverage flags (no sanitizer: the Rust code is safe, and
# FFmpeg/OpenCV are system libraries built without instrumentation).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
work=fuzz/corpus
mkdir -p "$work/dag_parse" "$work/probe_media"
cp dags/*.toml fuzz/regressions/dag/*.toml "$work/dag_parse/" 2>/dev/null || true
cp fuzz/regressions/media/* "$work/probe_media/" 2>/dev/null || true
if [ ! -d target/broken-corpus/broken ]; then
  python3 infra/make-broken-corpus.py target/broken-corpus >/dev/null
fi
# Small files only: libFuzzer mutates better, and each run stays fast.
find target/broken-corpus -type f -size -64k -exec cp {} "$work/probe_media/" \; 2>/dev/null || true
export RUSTC_BOOTSTRAP=1
export KELP_MODELS_DIR="$PWD/models"
for target in dag_parse probe_media; do
  echo "== $target for $secs s"
  (cd fuzz && cargo fuzz run --sanitizer none "$target" "../$work/$target" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -timeout=30 2>&1 | tail -n 15)
done
