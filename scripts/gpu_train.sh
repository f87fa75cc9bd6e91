#!/usr/bin/env bash
# One GPU call: decode the photos once (cached pack), train under a time limit, evaluate.
#
#   scripts/gpu_train.sh DATA_ROOT RUN_DIR [extra 'tint train' options...]
#
# DATA_ROOT has the shared layout: train/part-*/ (training photos) and dev/ (ground truth).
# RUN_DIR keeps last.pt between calls: the same command again continues an unfinished run
# (--resume), so a long schedule can span several 10-minute calls.
# Environment: MINUTES (training wall time incl. start-up, default 8), GPUS (default 1;
# more runs torchrun, one process per GPU), PACK (pack file, default runs/packs/train-224.npy),
# DEVICE (for eval, default cuda) and OUT (if set, final weights, logs, eval report and contact sheet are copied there).
set -euo pipefail
DATA=${1:?usage: scripts/gpu_train.sh DATA_ROOT RUN_DIR [tint train options]}
RUN=${2:?usage: scripts/gpu_train.sh DATA_ROOT RUN_DIR [tint train options]}
shift 2
MINUTES=${MINUTES:-8}
GPUS=${GPUS:-1}
PACK=${PACK:-runs/packs/train-224.npy}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RUN" "$(dirname "$PACK")"
shopt -s nullglob
TRAIN=("$DATA"/train/part-*)
[ ${#TRAIN[@]} -gt 0 ] || TRAIN=("$DATA/train")

nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
python -m tint.training.data "${TRAIN[@]}" -o "$PACK" --pack-size 224 --workers "$(nproc)"

ARGS=("${TRAIN[@]}" --pack "$PACK" --pack-size 224 -o "$RUN" --val "$DATA/dev"
      --time-limit "$MINUTES" --epochs 1000 --batch 64 --crop 176 --resume --no-bar --log-every 20 "$@")
if [ "$GPUS" -gt 1 ]; then
  OMP_NUM_THREADS=4 torchrun --standalone --nproc_per_node "$GPUS" -m tint train "${ARGS[@]}"
else
  python -m tint train "${ARGS[@]}"
fi

python -m tint eval "$DATA/dev" --weights "$RUN/final.safetensors" --device "${DEVICE:-cuda}" \
  --json "$RUN/eval.json" --sheet "$RUN/sheet.jpg"

if [ -n "${OUT:-}" ]; then
  cp "$RUN/final.safetensors" "$RUN/log.jsonl" "$RUN/eval.json" "$RUN/sheet.jpg" "$OUT"/
  echo "copied final.safetensors, log.jsonl, eval.json, sheet.jpg to \$OUT"
fi
