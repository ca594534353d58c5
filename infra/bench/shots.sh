#!/usr/bin/env bash
# The shot-detection benchmark: kelp vs the bare decode (ffmpeg -threads 1) vs PySceneDetect 0.7.2
# detect-adaptive, CPU and wall time, and F1 against labels, on the evaluation set built from real
# footage in ../shared/data (infra/bench/make-shot-eval.py). Prints two Markdown tables:
#   speed:    the three spliced 30 fps clips at 352x240, 640x360 and 960x540
#   accuracy: every spliced clip plus the real videos with natural transitions
# Run on a quiet machine. Usage: bash infra/bench/shots.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
eval_dir=target/shot-eval
if [ ! -f "$eval_dir/splice-960x540.mp4" ]; then
  python3 infra/bench/make-shot-eval.py --out "$eval_dir"
fi
if ! command -v scenedetect >/dev/null; then
  python3 -m pip install --quiet scenedetect-headless==0.7.2
fi
# The dev profile compiles kelp-operators (the hot path) and every dependency at opt-level 2, so it
# measures the same machine code as a release build of the analysis, without a 17-minute build.
cargo build --quiet --bin kelp
kelp=./target/debug/kelp
echo "## speed ($(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
$kelp bench shots "$eval_dir"/splice-352x240.mp4 "$eval_dir"/splice-640x360.mp4 "$eval_dir"/splice-960x540.mp4
echo
echo "## accuracy"
mapfile -t natural < "$eval_dir/natural/videos.txt"
$kelp bench shots --no-decode "$eval_dir"/splice-*.mp4 "$eval_dir"/heldout-*.mp4 "${natural[@]}" --labels "$eval_dir/natural"
