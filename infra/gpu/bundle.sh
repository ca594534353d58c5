#!/usr/bin/env bash
# Packs `kelp-train` for a GPU machine that has the NVIDIA driver, CUDA and PyTorch but none of
# Debian's libraries: the binary built without MPI and without video libraries
# (`--no-default-features --features cuda`), stripped, with every shared library it links
# (glibc and its loader included, so the target's own glibc version does not matter) and
# infra/gpu/checks.sh, as one .tar.xz. The GPU driver (libcuda) and NCCL are not packed: they
# come from the GPU machine (NCCL from PyTorch's wheel; checks.sh finds it).
#
#   bash infra/gpu/bundle.sh [OUT.tar.xz]     # default target/gpu/kelp-train-bundle.tar.xz
#   # on the GPU machine: tar xf kelp-train-bundle.tar.xz && bash kelp-train-bundle/checks.sh OUT_DIR
#
# The binary is a release build: the checks time steps against PyTorch, and a debug build runs
# kelp's own (generic, per-op) host code unoptimised. KELP_PROFILE=debug packs the test build's
# binary instead, which builds in minutes where the test build is there: for a check that the
# bundle runs at all, not for its numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/gpu/kelp-train-bundle.tar.xz}"
profile="${KELP_PROFILE:-release}"
flag=""
[ "$profile" = release ] && flag="--release"
cargo build $flag --no-default-features --features cuda --bin kelp-train
bin="target/$profile/kelp-train"
stage="$(mktemp -d)/kelp-train-bundle"
mkdir -p "$stage/lib"
strip -o "$stage/kelp-train" "$bin"
ldd "$bin" | awk '/=> \// {print $3} $1 ~ /ld-linux/ {print $1}' | sort -u | while read -r lib; do
  cp -L "$lib" "$stage/lib/"
done
cp infra/gpu/checks.sh "$stage/checks.sh"
mkdir -p "$(dirname "$out")"
tar -C "$(dirname "$stage")" -cJf "$out" kelp-train-bundle
rm -rf "$(dirname "$stage")"
echo "bundle: $out ($(du -h "$out" | cut -f1); $(ldd "$bin" | grep -c '=>') libraries)"
