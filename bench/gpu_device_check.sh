#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: capture real nvidia-smi output for tests/fixtures and run the
# demo job on the GPU through the `local` cluster. Usage: bench/gpu_device_check.sh OUT_DIR
# (needs gpu_magic's dependencies importable, and torch).
set -uo pipefail
out=${1:?usage: gpu_device_check.sh OUT_DIR}
mkdir -p "$out/cap"
here=$(cd "$(dirname "$0")/.." && pwd)
nvidia-smi > "$out/cap/nvidia-smi.txt" 2>&1
nvidia-smi --version > "$out/cap/version.txt" 2>&1
{ command -v sshd || ls /usr/sbin/sshd; } > "$out/cap/sshd.txt" 2>&1
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  python3 "$here/bench/gpu_demo_job.py" --out "$out/cap" 2>&1 | tee "$out/cap/demo.log"
cp "$out"/cap/summary-*.json "$out"/ 2>/dev/null
tar -C "$out/cap" -czf "$out/capture.tgz" --exclude=work .
