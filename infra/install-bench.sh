#!/usr/bin/env bash
# Installs the peers the benchmarks compare kelp with, from PyPI, into a virtualenv at
# ~/.local/share/kelp/bench (not needed by the tests): the DuckDB CLI for `kelp bench sql`.
set -euo pipefail
VENV="${XDG_DATA_HOME:-$HOME/.local/share}/kelp/bench"
DUCKDB_CLI_VERSION=1.5.6
if [ -x "$VENV/bin/duckdb" ]; then
  echo "install-bench: duckdb CLI already in $VENV"
  exit 0
fi
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "duckdb-cli==$DUCKDB_CLI_VERSION"
echo "install-bench: duckdb CLI $DUCKDB_CLI_VERSION in $VENV/bin/duckdb"
