#!/usr/bin/env bash
# The GPU checks of issues 14 and 15 in one run, from the bundle infra/gpu/bundle.sh packs:
# NCCL with one rank (initialise, all-reduce known buffers, bus bandwidth 1–256 MB), a VAE and a
# DiT training step (tokens/s, MFU, memory), the DiT against the same model in PyTorch on the
# same card. Writes each report to OUT_DIR. DEVICE=cpu runs the same commands on a CPU, small,
# to check a bundle before it travels.
#
#   bash checks.sh OUT_DIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: checks.sh OUT_DIR}"
mkdir -p "$out"
device="${DEVICE:-cuda}"
py="${PYTHON:-python3}"
libs="$here/lib"
# NCCL and the CUDA runtime libraries PyTorch's wheels carry, when they are there.
nvidia="$("$py" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)"
if [ -n "$nvidia" ] && [ -d "$nvidia" ]; then
  for d in "$nvidia"/*/lib; do libs="$libs:$d"; done
fi
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/lib64 /usr/local/nvidia/lib64; do
  [ -d "$d" ] && libs="$libs:$d"
done
# cudarc opens NCCL as libnccl.so (or .so.<CUDA major>); the wheels ship only libnccl.so.2.
links="$(mktemp -d)"
IFS=: read -ra dirs <<<"$libs"
for d in "${dirs[@]}"; do
  if [ -e "$d/libnccl.so.2" ] && [ ! -e "$links/libnccl.so" ]; then ln -s "$d/libnccl.so.2" "$links/libnccl.so"; fi
done
libs="$libs:$links"
# Each step is stopped after STEP_TIMEOUT seconds (default 240), so a hang (an NCCL init that
# never returns, say) costs one step, not the device time the steps after it need; each report
# is in OUT_DIR as soon as its step ends.
step_timeout="${STEP_TIMEOUT:-240}"
status=0
step() {
  local name="$1"; shift
  echo "== $name: kelp-train $*" >"$out/$name.txt"
  local rc=0
  timeout --kill-after=10 "$step_timeout" \
    "$here/lib/ld-linux-x86-64.so.2" --library-path "$libs" "$here/kelp-train" "$@" \
    >>"$out/$name.txt" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    status=1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "== $name: stopped after ${step_timeout} s (STEP_TIMEOUT)" >>"$out/$name.txt"
    else
      echo "== $name: exit status $rc" >>"$out/$name.txt"
    fi
  fi
  cat "$out/$name.txt"
}
if [ "$device" = cuda ]; then
  step allreduce bench allreduce --device cuda --sizes-mb 1,4,16,64,256
  step vae-step bench vae-step --preset seaweed48x --frames 17 --size 256 --batch 1 --device cuda --precision bf16
  step dit-step bench dit-step --preset small100m --frames 17 --size 256 --batch 4 --device cuda --precision bf16 --peer --peer-python "$py"
  step dit-dp bench dit-dp --preset small100m --frames 17 --size 256 --batch 2 --steps 4 --reps 2 --device cuda --precision bf16
else
  step allreduce bench allreduce --device cpu --sizes-mb 1,4 --reps 1
  step vae-step bench vae-step --preset tiny --frames 5 --size 32 --batch 1 --steps 1 --device cpu
  step dit-step bench dit-step --preset tiny --vae tiny --frames 5 --size 32 --batch 2 --steps 1 --device cpu --peer --peer-python "$py"
  step dit-dp bench dit-dp --preset tiny --vae tiny --frames 5 --size 32 --batch 1 --steps 1 --reps 1 --device cpu --precision f32
fi
exit $status
