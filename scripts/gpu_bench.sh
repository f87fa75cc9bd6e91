#!/usr/bin/env bash
# GPU check of tint's engine, in one call from the repository root on the GPU machine:
#   scripts/gpu_bench.sh [all|tests|sweep|bench|profile]     (default: all)
# 'tests': pytest -m gpu for the engine and kernels (< 90 s; each test times out at 60 s,
# a hard cap of 150 s on the lot); 'sweep': scripts/engine_sweep.py, engine candidates at
# 512x512 (< 4 min, watchdog); 'bench': tint bench (JSON) + the profile tables;
# 'profile': the profile alone.  Logs and JSON go to $OUT (default
# /tmp/tint-gpu-out); stdout stays short: test summary, the bench table, top kernels.
# Extra bench options: BENCH_ARGS="--compile 224,512 --head bins" scripts/gpu_bench.sh bench
# 'all' needs about 8-9 minutes (tests ~2, bench ~6); split it if a call is capped at 10.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
OUT=${OUT:-/tmp/tint-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
rc=0

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
echo "== $(tail -n 1 "$OUT/nvidia-smi.csv")"

if [[ $STAGE == all || $STAGE == tests ]]; then
    t0=$SECONDS
    # unbuffered + verbose: the log shows the test that is running if anything stalls
    PYTHONUNBUFFERED=1 timeout -k 10 ${TEST_CAP:-150} $PY -m pytest -m gpu -v -rfE -p no:cacheprovider \
        --durations=12 -o faulthandler_timeout=90 tests/test_kernels.py tests/test_engine.py \
        > "$OUT/pytest_gpu.log" 2>&1
    r=$?; [[ $r -ne 0 ]] && rc=$r
    echo "== gpu tests (rc=$r, $((SECONDS - t0)) s): $(tail -n 1 "$OUT/pytest_gpu.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | head -20
    [[ $r -eq 124 || $r -eq 137 ]] && { echo "-- tests hit the ${TEST_CAP:-150} s cap; last lines:"; tail -n 8 "$OUT/pytest_gpu.log"; }
    grep -A13 "slowest" "$OUT/pytest_gpu.log" | cut -c1-120 | head -14
fi

if [[ $STAGE == sweep ]]; then
    t0=$SECONDS
    timeout -k 10 ${SWEEP_CAP:-225} $PY scripts/engine_sweep.py --seconds ${SWEEP_SECONDS:-205} --out "$OUT" \
        > "$OUT/sweep_stdout.txt" 2> "$OUT/sweep.log"
    r=$?; [[ $r -ne 0 ]] && rc=$r
    echo "== engine sweep (rc=$r, $((SECONDS - t0)) s)"
    cat "$OUT/sweep_stdout.txt"
    [[ $r -ne 0 ]] && tail -n 25 "$OUT/sweep.log"
fi

if [[ $STAGE == all || $STAGE == bench ]]; then
    t0=$SECONDS
    # shellcheck disable=SC2086
    $PY -m tint bench --json "$OUT/bench.json" --profile "$OUT/profile" ${BENCH_ARGS:-} \
        > "$OUT/bench_stdout.txt" 2> "$OUT/bench.log"
    r=$?; [[ $r -ne 0 ]] && rc=$r
    echo "== tint bench (rc=$r, $((SECONDS - t0)) s)"
    cat "$OUT/bench_stdout.txt"
    [[ $r -ne 0 ]] && tail -n 25 "$OUT/bench.log"
    for f in "$OUT"/profile/profile_*.txt; do
        [[ -f $f ]] || continue
        echo "-- $(head -n 1 "$f")"
        sed -n '2,10p' "$f" | cut -c1-150
    done
fi

if [[ $STAGE == profile ]]; then
    $PY - "$OUT/profile" <<'PYEOF' > "$OUT/profile_stdout.txt" 2>&1
import sys, torch
from tint.bench.gpu import profile, random_model
from tint.engine.graphs import Engine
m = random_model("vgg16", "ab").cuda()
profile(Engine(m, "fp16"), torch.device("cuda"), sys.argv[1], 256)
PYEOF
    r=$?; [[ $r -ne 0 ]] && rc=$r
    for f in "$OUT"/profile/profile_*.txt; do
        [[ -f $f ]] || continue
        echo "-- $(head -n 1 "$f")"; sed -n '2,10p' "$f" | cut -c1-150
    done
    [[ $r -ne 0 ]] && tail -n 25 "$OUT/profile_stdout.txt"
fi
echo "== outputs in $OUT"
exit $rc
