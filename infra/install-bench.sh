#!/usr/bin/env bash
# Installs the peers the benchmarks compare kelp with, from PyPI, into a virtualenv at
# ~/.local/share/kelp/bench (not needed by the tests): the DuckDB CLI for `kelp bench sql`,
# videohash for `kelp bench dedup` (it calls the ffmpeg CLI that infra/install-deps.sh installs);
# and PyTorch with PyAV in ~/.local/share/kelp/bench-loader for `kelp bench loader --peer` and
# `kelp bench dit-step --peer`.
set -euo pipefail
VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kelp/bench"
DUCKDB_CLI_VERSION=1.5.6
VIDEOHASH_VERSION=3.0.1
# videohash 3.0.1 calls Image.ANTIALIAS, which Pillow 10 removed.
PILLOW_VERSION=9.5.0
py=/usr/bin/python3
[ -x "$py" ] || py=python3
[ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
if [ -x "$VENV/bin/duckdb" ]; then
  echo "install-bench: duckdb CLI already in $VENV"
else
  pip "duckdb-cli==$DUCKDB_CLI_VERSION"
  echo "install-bench: duckdb CLI $DUCKDB_CLI_VERSION in $VENV/bin/duckdb"
fi
pip "videohash==$VIDEOHASH_VERSION" "Pillow==$PILLOW_VERSION"
echo "install-bench: videohash $VIDEOHASH_VERSION (Pillow $PILLOW_VERSION) in $VENV"

# The loader's peer: a PyTorch DataLoader decoding with PyAV. PyPI's Linux torch wheel is the
# only one a package registry offers; it brings CUDA libraries (~4 GB) but runs on the CPU.
LOADER_VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kelp/bench-loader"
TORCH_VERSION=2.15.0
AV_VERSION=18.1.0
if [ -x "$LOADER_VENV/bin/python" ] && "$LOADER_VENV/bin/python" -c "import torch, av" 2>/dev/null; then
  echo "install-bench: torch and av already in $LOADER_VENV"
else
  "$py" -m venv "$LOADER_VENV"
  "$LOADER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "torch==$TORCH_VERSION" "av==$AV_VERSION" numpy
  echo "install-bench: torch $TORCH_VERSION and av $AV_VERSION in $LOADER_VENV"
fi
