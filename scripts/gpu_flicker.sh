#!/usr/bin/env bash
# The flicker issue on one H200, in one call (about 6 minutes), from the repository root:
#   TINT_COMMIT=<commit> scripts/gpu_flicker.sh
#   1. GPU tests: the temporal filters (match the CPU, never sync), tint video with the
#      lookahead on cuda, the camera
#   2. tint video throughput against its decode+encode ceiling, 1080p and 4K, ultrafast and
#      veryfast (scripts/bench_video.py, bundled model)
#   3. the flicker benchmark on the GPU (scripts/flicker_bench.py, bundled model)
#   4. tint camera latency, the sample film as a 24 fps source, recording
# Carry: .whl (a PyAV wheel) where the machine has no PyAV; .stage/data (a copy of
# ../shared/data with video/ and dev/) where ../shared/data is not there.  Logs and JSON to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tint-flicker}; mkdir -p "$OUT"
[[ -d .whl ]] && { pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1 || true; }
DATA=${TINT_DATA:-$PWD/.stage/data}; [[ -d $DATA ]] || DATA=$PWD/../shared/data
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 TINT_DATA="$DATA"
export TINT_COMMIT=${TINT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
W=tint/weights/tint-default.safetensors
FILM=$DATA/video/big_buck_bunny_640x360_60s.mp4
echo "$TINT_COMMIT" > "$OUT/commit.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader

t0=$SECONDS
timeout -k 5 ${TEST_CAP:-150} python3 -m pytest -m gpu -q -p no:cacheprovider -rfE --durations=5 \
    tests/test_stabilize.py tests/test_video.py tests/test_camera.py > "$OUT/pytest_gpu.log" 2>&1
echo "== gpu tests rc=$? ($((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu.log")"
grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | cut -c1-300 | head -20

t0=$SECONDS
timeout -k 5 ${VIDEO_CAP:-240} python3 scripts/bench_video.py --device cuda --weights $W --video "$FILM" \
    --sizes 1080p,4k --presets ultrafast,veryfast --json "$OUT/bench_video.json" > "$OUT/bench_video.txt" 2>&1
echo "== bench_video rc=$? ($((SECONDS - t0)) s)"; sed -n '/^| clip/,$p' "$OUT/bench_video.txt"

t0=$SECONDS
timeout -k 5 ${FLICKER_CAP:-150} python3 scripts/flicker_bench.py --device cuda --json "$OUT/flicker_bench.json" \
    > "$OUT/flicker_bench.txt" 2>&1
echo "== flicker_bench rc=$? ($((SECONDS - t0)) s)"; sed -n '/^| variant/,$p' "$OUT/flicker_bench.txt"

t0=$SECONDS
timeout -k 5 ${CAMERA_CAP:-60} python3 -m tint camera --source "$FILM" --headless --frames 600 \
    --output "$OUT/camera.mp4" --weights $W --device cuda 2> "$OUT/camera.txt"
echo "== camera rc=$? ($((SECONDS - t0)) s)"; tail -n 2 "$OUT/camera.txt"
