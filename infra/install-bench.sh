#!/usr/bin/env bash
# Installs the peers the benchmarks compare kelp with, from PyPI, into a virtualenv at
# ~/.local/share/kelp/bench (not needed by the tests): the DuckDB CLI for `kelp bench sql` and
# videohash for `kelp bench dedup` (it calls the ffmpeg CLI that infra/install-deps.sh installs).
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
