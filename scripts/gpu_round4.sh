#!/usr/bin/env bash
# GPU calls of the 2026-11-22 third session (the narrow head tail), from the repository
# root on the GPU machine:
#   scripts/gpu_round4.sh a   tail sweep (old vs new tail, by part), per-op tables (vgg16 512
#                             with/without Triton convs, tiny-darknet 256), kernel + engine GPU
#                             tests, engine-vs-eager on dev photos
#   scripts/gpu_round4.sh b   tint bench (the issue-4 table)
#   scripts/gpu_round4.sh c   all GPU tests (kernels, engine, video, stabilizer, camera)
# Carry: .stage/data (dev photos) for a and c, .whl (PyAV wheel) + .stage/video for c.
# The copied tree's .git may be stale: pass TINT_COMMIT=$(git rev-parse HEAD) from the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tint-r4}; mkdir -p "$OUT"
[[ -d .whl ]] && { pip install --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1 || true; }
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 TINT_DATA="$PWD/.stage/data"
echo "${TINT_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" > "$OUT/commit.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
if [[ ${1:-a} == a ]]; then
    timeout 120 python3 scripts/tail_sweep.py 2>&1 | tee "$OUT/tail_sweep.txt"
    for tc in 1 0; do
        timeout 60 python3 scripts/engine_layers.py --batch 32 --triton-convs $tc 2>&1 | tee "$OUT/layers_vgg512_tc$tc.txt" | cut -c1-110
    done
    timeout 60 python3 scripts/engine_layers.py --batch 32 --backbone tiny-darknet --output bins --size 256 2>&1 \
        | tee "$OUT/layers_tdn256.txt" | cut -c1-110
    t0=$SECONDS
    timeout -k 5 ${TEST_CAP:-200} python3 -m pytest -m gpu -q -p no:cacheprovider -rfE tests/test_kernels.py tests/test_engine.py \
        > "$OUT/pytest_gpu_ke.log" 2>&1
    echo "== gpu tests rc=$? ($((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu_ke.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu_ke.log" | cut -c1-300 | head -20
    timeout 150 python3 scripts/photo_check.py > "$OUT/photo_check.txt" 2>&1; cat "$OUT/photo_check.txt" | cut -c1-200
elif [[ $1 == c ]]; then
    t0=$SECONDS
    timeout -k 5 ${TEST_CAP:-330} python3 -m pytest -m gpu -q -p no:cacheprovider -rfE --durations=8 \
        tests/test_kernels.py tests/test_engine.py tests/test_video.py tests/test_stabilize.py tests/test_camera.py \
        > "$OUT/pytest_gpu.log" 2>&1
    echo "== gpu tests rc=$? ($((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | cut -c1-300 | head -20
else
    t0=$SECONDS
    timeout -k 5 ${BENCH_CAP:-560} python3 -m tint bench --json "$OUT/bench.json" ${BENCH_ARGS:---compile-batches 1,32 --budget 420} \
        > "$OUT/bench_stdout.txt" 2> "$OUT/bench.log"
    echo "== tint bench rc=$? ($((SECONDS - t0)) s)"; cat "$OUT/bench_stdout.txt"; tail -n 5 "$OUT/bench.log"
fi
