#!/usr/bin/env bash
# One driver for sessions on a lent GPU machine reached by size-limited calls (64 MiB in, 10
# minutes, 8 files out); the staging recipe is in docs/TRAINING.md ("On the lent GPU").
# Copy it to .stage/run.sh (gitignored) and carry .stage (and .whl for PyAV) in every call:
#
#   .stage/run.sh stage               unpack .stage/payload/: s.NN pieces of the chunk stream,
#                                     *.tar eval folders (dev, dev-people, tune, tiny-darknet,
#                                     video) into /tmp/tint/eval, *.pt.N checkpoint pieces
#   .stage/run.sh verify1             GPU tests, bench_video 1080p/4K ultrafast, tint info
#   .stage/run.sh verify2             tint bench at 512 (random vgg16) and for the bundled model
#   .stage/run.sh profile             the 4K video step with and without the filter, profiled
#                                     (and against .stage/stabilize_old.py if staged)
#   ARMS="name|train args;..." [TESTS=1] .stage/run.sh train MIN BUDGET
#                                     build the pack once, train every arm side by side with
#                                     --time-limit MIN --budget BUDGET --resume; last.pt in
#                                     15 MB pieces, final weights and logs.tgz to $OUT
#   .stage/run.sh pieces NAME FIRST N pieces FIRST.. FIRST+N-1 of NAME's last.pt to $OUT: what
#                                     comes back from one call is limited in total (a wide run's
#                                     70 MB checkpoint did not fit on 2026-12-02d), so fetch it
#                                     over consecutive calls while the machine is warm
#   .stage/run.sh evalj NAME=FILE ... tint eval's protocol on the GPU (eager, cuDNN off,
#                                     no SSIM) over $SPLITS; $OUT/evalj.json
#
# /tmp/tint survives between calls only while the machine stays warm (30 s after a call).
set -uo pipefail
cd "$(dirname "$0")/.."
T=/tmp/tint; mkdir -p $T/stream $T/resume $T/runs $T/eval
OUT=${OUT:-/tmp/tint-out}; mkdir -p "$OUT"
[[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1 && { pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl > /dev/null 2>&1 || echo "av install failed"; }
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 TINT_JUDGE=$T/eval/tiny-darknet
X="--exclude splits/dev-people.txt --exclude splits/tune.txt"
git rev-parse --short HEAD > $T/runs/commit.txt 2>/dev/null; git status --short >> $T/runs/commit.txt
mode=${1:?mode}; shift

stage() {   # payload: *.tar (eval data, extracted into $T/eval), s.NN stream pieces, *.safetensors, *.pt.NN
  shopt -s nullglob
  for f in .stage/payload/*; do
    b=$(basename "$f")
    case "$b" in
      s.[0-9]*) cp "$f" $T/stream/ ;;
      *.tar) tar -xf "$f" -C $T/eval ;;
      *.safetensors) cp "$f" $T/ ;;
      *.pt.[0-9]*) cp "$f" $T/resume/ ;;
    esac
  done
  echo "stream: $(ls $T/stream | tr '\n' ' ')  eval: $(ls $T/eval | tr '\n' ' ')  resume: $(ls $T/resume | tr '\n' ' ')"
}
stage

# pytest -m gpu in three processes (Triton's compiles are CPU-bound: one process over all
# files took more than 260 s on 2026-12-02), logs in $T/runs; the caller waits.
gpu_tests() {
  local P="python3 -m pytest -m gpu -v -p no:cacheprovider -rfE --durations=6 -o faulthandler_timeout=90"
  timeout -k 5 420 $P tests/test_engine.py tests/test_stabilize.py tests/test_video.py tests/test_camera.py tests/test_plan.py > $T/runs/gpu_t1.log 2>&1 &
  timeout -k 5 420 $P tests/test_kernels.py -k "head_out or max_pool" > $T/runs/gpu_t2.log 2>&1 &
  timeout -k 5 420 $P tests/test_kernels.py -k "not (head_out or max_pool)" > $T/runs/gpu_t3.log 2>&1 &
}
test_summary() {
  for f in $T/runs/gpu_t*.log; do [[ -f $f ]] && echo "== $f: $(tail -n 1 $f)" && grep -E "^(FAILED|ERROR)" $f | cut -c1-250 | head; done
}
# NAME's last.pt in 15 MB pieces NAME-last.pt.N in DIR: the names stage() takes back as *.pt.N
split_ckpt() { (cd "$2" && split -b 15M -d -a 1 $T/runs/$1/last.pt $1-last.pt.); }
# The training pack, built once per warm machine from the staged stream.
build_pack() {
  if [[ ! -f $T/pack.npy ]]; then
    mkdir -p $T/chunks; cat $T/stream/s.* | tar -x -i -C $T/chunks
    python3 -m tint.training.data $T/chunks/chunk -o $T/pack.npy --pack-size 176 $X --workers 16 2>&1 | tail -3
  fi
}

case $mode in
stage) ;;
verify1)
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
  python3 -c "import av; print('av', av.__version__)"
  t0=$SECONDS; gpu_tests; wait; test_summary; echo "== gpu tests ($((SECONDS - t0)) s)"
  tar -czf "$OUT/gpu_tests.tgz" -C $T/runs gpu_t1.log gpu_t2.log gpu_t3.log
  t0=$SECONDS
  timeout -k 5 ${VIDEO_CAP:-200} python3 scripts/bench_video.py --device cuda --weights tint/weights/tint-default.safetensors \
     --video $T/eval/video/big_buck_bunny_640x360_60s.mp4 --sizes 1080p,4k --presets ultrafast \
     --json "$OUT/bench_video.json" > "$OUT/bench_video.txt" 2>&1
  echo "== bench_video rc=$? ($((SECONDS - t0)) s)"; sed -n '/^| clip/,$p' "$OUT/bench_video.txt"; tail -n 3 "$OUT/bench_video.txt"
  python3 -m tint info --device cuda > "$OUT/info.txt" 2>&1; echo "== info rc=$?"; head -30 "$OUT/info.txt"
  ;;
verify2)
  busy=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader | wc -l)
  [[ $busy -gt 0 ]] && echo "WARNING: $busy other processes on the GPU: these benchmark numbers are not clean"
  t0=$SECONDS
  timeout -k 5 150 python3 -m tint bench --device cuda --inputs 512 --compile none --json "$OUT/bench_vgg16.json" > "$OUT/bench_vgg16.txt" 2>&1
  echo "== bench vgg16 rc=$? ($((SECONDS - t0)) s)"; cat "$OUT/bench_vgg16.txt" | tail -20
  t0=$SECONDS
  timeout -k 5 ${BENCH_CAP:-240} python3 -m tint bench --device cuda --weights tint/weights/tint-default.safetensors \
     --compile ${COMPILE:-none} --json "$OUT/bench_default.json" > "$OUT/bench_default.txt" 2>&1
  echo "== bench default rc=$? ($((SECONDS - t0)) s)"; cat "$OUT/bench_default.txt" | tail -25
  ;;
profile)  # where the 4K video step's filter spends its time (scripts/profile_filter.py); with
          # .stage/stabilize_old.py (git show ab27cd5:tint/media/stabilize.py > .stage/stabilize_old.py)
          # also that commit's filter, alternating with this one
  against=(); [[ -f .stage/stabilize_old.py ]] && against=(--against .stage/stabilize_old.py)
  timeout -k 5 ${PROFILE_CAP:-150} python3 scripts/profile_filter.py --device cuda --input 4k --frames 60 \
     "${against[@]}" --json "$OUT/profile_filter.json" > "$OUT/profile_filter.txt" 2>&1
  echo "== profile rc=$?"; grep -v "^STAGE:\|USDT" "$OUT/profile_filter.txt" | head -70
  ;;
pack)
  t0=$SECONDS
  build_pack
  echo "== pack ($((SECONDS - t0)) s) $(ls $T/chunks | wc -l) chunks"
  ;;
train)   # train MIN BUDGET ; ARMS="name|args;name|args"
  MIN=${1:?min}; BUDGET=${2:?budget}
  t0=$SECONDS
  build_pack
  echo "== pack ready ($((SECONDS - t0)) s)"
  IFS=';' read -ra arms <<< "$ARMS"
  pids=()
  for arm in "${arms[@]}"; do
    name=${arm%%|*}; args=${arm#*|}
    R=$T/runs/$name; mkdir -p $R
    if [[ ! -f $R/last.pt ]] && compgen -G "$T/resume/$name-last.pt.*" >/dev/null; then cat $T/resume/$name-last.pt.* > $R/last.pt; echo "restored $name"; fi
    # shellcheck disable=SC2086
    python3 -m tint train $T/chunks/chunk $X --pack $T/pack.npy --pack-size 176 -o $R $args \
       --time-limit $MIN --budget $BUDGET --save-every 500 --resume --no-bar --log-every 200 > $R/stdout.txt 2>&1 &
    pids+=($!)
  done
  [[ -n ${TESTS:-} ]] && { sleep 45; gpu_tests; }      # beside training
  for p in "${pids[@]}"; do wait $p; echo "rc=$?"; done
  wait
  [[ -n ${TESTS:-} ]] && test_summary
  for arm in "${arms[@]}"; do
    name=${arm%%|*}; R=$T/runs/$name
    echo "== $name"; tail -n 4 $R/stdout.txt
    [[ -f $R/last.pt ]] && split_ckpt $name $OUT
    [[ -f $R/final.safetensors ]] && cp $R/final.safetensors $OUT/$name-final.safetensors
  done
  tar -czf $OUT/logs.tgz --exclude='*.pt' --exclude='*.safetensors' --exclude='*.npy' -C $T/runs .
  ls -la $OUT
  ;;
pieces)  # pieces NAME FIRST N
  R=$T/runs/${1:?name}; first=${2:?first}; n=${3:?count}
  [[ -f $R/last.pt ]] || { echo "no $R/last.pt"; exit 1; }
  # cut afresh every call (under a second), so the pieces are of the last.pt there is now
  rm -rf $T/pieces/$1; mkdir -p $T/pieces/$1; split_ckpt $1 $T/pieces/$1
  for ((i = first; i < first + n; i++)); do [[ -f $T/pieces/$1/$1-last.pt.$i ]] && cp $T/pieces/$1/$1-last.pt.$i "$OUT/"; done
  echo "$1: $(ls $T/pieces/$1 | wc -l) pieces, sha256 $(sha256sum $R/last.pt | cut -c1-16)"; ls "$OUT"
  ;;
evalj)   # evalj NAME=FILE ... ; SPLITS="dev dev-people"
  # exec: a caller's `timeout` then stops the evaluation itself, not only this shell (on
  # 2026-12-02c an orphaned evaluation ran on beside the benchmarks that followed)
  exec python3 - "$@" <<'PY'
import json, os, sys, torch
torch.backends.cudnn.enabled = False
from tint.training.evaluate import EvalConfig, evaluate_weights
T = "/tmp/tint"; out = {}
for arg in sys.argv[1:]:
    name, w = arg.split("=", 1)
    for split in os.environ.get("SPLITS", "dev dev-people").split():
        r = evaluate_weights(EvalConfig(folder=f"{T}/eval/{split}", weights=w, device="cuda", backend="eager", ssim=False),
                             log=lambda s: print(name, split, s))
        out[f"{name}/{split}"] = r
        # written after every split, so a time cap keeps what was measured
        json.dump(out, open(os.environ.get("OUT", "/tmp") + "/evalj.json", "w"), indent=1, default=str)
PY
  ;;
*) "$@" ;;
esac
