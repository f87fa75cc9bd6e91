#!/usr/bin/env bash
# GPU calls of the 2026-11-22 second session, from the repository root on the GPU machine:
#   scripts/gpu_round3.sh a   tests (dev photos carried in .stage/data), per-op engine tables,
#                             video bench (x264 presets), flicker with the GPU stabilizer
#   scripts/gpu_round3.sh b   tint bench (the issue-4 table)
#   scripts/gpu_round3.sh c   all GPU tests + engine-vs-eager on dev photos (scripts/photo_check.py)
#                             + per-op table + cuDNN final-width paddings (scripts/narrow_sweep.py)
# Carry: .whl (PyAV wheel), .stage/video, .stage/data.  Logs and JSON in $OUT.
# The copied tree's .git may be stale: pass TINT_COMMIT=$(git rev-parse HEAD) from the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tint-r3}; mkdir -p "$OUT"
pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1 || true
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 TINT_DATA="$PWD/.stage/data"
CLIP=.stage/video/big_buck_bunny_640x360_60s.mp4
W=tint/weights/tint-default.safetensors
echo "${TINT_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$OUT/commit.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
if [[ ${1:-a} == a ]]; then
    t0=$SECONDS
    timeout -k 5 ${TEST_CAP:-200} python3 -m pytest -m gpu -q -p no:cacheprovider -rfE \
        tests/test_kernels.py tests/test_engine.py tests/test_video.py tests/test_stabilize.py > "$OUT/pytest_gpu.log" 2>&1
    echo "== gpu tests rc=$? ($((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | cut -c1-300 | head -20
    for tc in 1 0; do
        timeout 60 python3 scripts/engine_layers.py --batch 32 --triton-convs $tc 2>&1 | tee "$OUT/layers_vgg512_tc$tc.txt" | cut -c1-110
    done
    timeout 60 python3 scripts/engine_layers.py --batch 32 --backbone tiny-darknet --output bins --size 256 2>&1 \
        | tee "$OUT/layers_tdn256.txt" | cut -c1-110 | head -4
    t0=$SECONDS
    timeout -k 5 ${VIDEO_CAP:-270} python3 scripts/bench_video.py --device cuda --weights $W --video $CLIP \
        --presets ${PRESETS:-veryfast,superfast,ultrafast} --json "$OUT/bench_video.json" > "$OUT/bench_video.txt" 2>&1
    echo "== video bench rc=$? ($((SECONDS - t0)) s)"; grep -E "^\||ceiling" "$OUT/bench_video.txt" | tail -12
    timeout -k 5 90 python3 scripts/flicker_eval.py --device cuda --weights $W --video $CLIP --seconds 6 \
        --inject-flicker 0 --json "$OUT/flicker_gpu.json" > "$OUT/flicker_gpu.txt" 2>&1
    echo "== flicker rc=$?"; tail -n 8 "$OUT/flicker_gpu.txt"
elif [[ $1 == c ]]; then
    t0=$SECONDS
    timeout -k 5 ${TEST_CAP:-330} python3 -m pytest -m gpu -q -p no:cacheprovider -rfE --durations=8 \
        tests/test_kernels.py tests/test_engine.py tests/test_video.py tests/test_stabilize.py tests/test_camera.py \
        > "$OUT/pytest_gpu.log" 2>&1
    echo "== gpu tests rc=$? ($((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | cut -c1-300 | head -20
    timeout 150 python3 scripts/photo_check.py > "$OUT/photo_check.txt" 2>&1; cat "$OUT/photo_check.txt"
    timeout 60 python3 scripts/narrow_sweep.py 2>&1 | tail -3
else
    t0=$SECONDS
    timeout -k 5 ${BENCH_CAP:-560} python3 -m tint bench --json "$OUT/bench.json" ${BENCH_ARGS:---compile-batches 1,32 --budget 420} \
        > "$OUT/bench_stdout.txt" 2> "$OUT/bench.log"
    echo "== tint bench rc=$? ($((SECONDS - t0)) s)"; cat "$OUT/bench_stdout.txt"; tail -n 5 "$OUT/bench.log"
fi
