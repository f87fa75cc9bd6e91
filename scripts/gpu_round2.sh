#!/usr/bin/env bash
# One GPU call: GPU tests, engine sweep (kernels + 512 throughput), video bench.  Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tint-r2}; mkdir -p "$OUT"
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
timeout 170 python3 -m pytest -m gpu -q -p no:cacheprovider -x --timeout 60 tests/test_kernels.py tests/test_engine.py tests/test_video.py > "$OUT/pytest_gpu.log" 2>&1
echo "== gpu tests rc=$?: $(tail -n 1 "$OUT/pytest_gpu.log")"; grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | head
timeout 200 python3 scripts/engine_sweep.py --main-only --seconds 170 > "$OUT/sweep.txt" 2>&1
echo "== sweep rc=$?"; tail -c 3500 "$OUT/sweep.txt"
timeout 200 python3 scripts/bench_video.py --device cuda --weights tint/weights/tint-default.safetensors \
  --video .stage/video/big_buck_bunny_640x360_60s.mp4 --json "$OUT/bench_video.json" > "$OUT/bv.txt" 2>&1
echo "== video bench rc=$?"; tail -c 2500 "$OUT/bv.txt"
