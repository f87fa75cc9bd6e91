#!/usr/bin/env bash
# Several GPUs in one call: DDP training with torchrun (1 GPU vs N GPUs, same data and
# time), then a folder of films colorized across the GPUs.  Writes logs to $OUT.
#   scripts/gpu_multi.sh PHOTOS_DIR VIDEO_FILE WEIGHTS [N_GPUS]
set -uo pipefail
cd "$(dirname "$0")/.."
PHOTOS=$1 VIDEO=$2 WEIGHTS=$3 N=${4:-2}
OUT=${OUT:-/tmp/tint-multi}; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# NVLink multicast stays off on shared hosts (device notes).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi -L
python3 -m tint.training.data "$PHOTOS" -o /tmp/pack.npy --pack-size 224 --workers "$(nproc)" | tail -n 1

train() {  # $1 = GPUs, $2 = run dir
  local args=("$PHOTOS" --pack /tmp/pack.npy --pack-size 224 --backbone tiny-darknet --loss l2
              --time-limit 1.2 --epochs 1000 --batch 64 --crop 176 -o "$2" --no-bar --log-every 200)
  if [ "$1" -gt 1 ]; then torchrun --standalone --nproc_per_node "$1" -m tint train "${args[@]}"
  else python3 -m tint train "${args[@]}"; fi
}
for g in 1 "$N"; do
  train "$g" "/tmp/ddp$g" > "$OUT/train_gpus$g.log" 2>&1
  echo "== train on $g GPU(s): rc=$?"
  grep -E "^(train|schedule|stopped|weights)|images/s|img/s" "$OUT/train_gpus$g.log" | grep -v "^step [0-9]*/" | tail -n 5
  grep -E "^step [0-9]+/" "$OUT/train_gpus$g.log" | tail -n 1
done

# A folder of films: gray 6 s clips cut from VIDEO, audio kept, then sharded across GPUs.
python3 - "$VIDEO" /tmp/films <<'PY'
import sys, av, numpy as np
from pathlib import Path
src, dst = sys.argv[1], Path(sys.argv[2]); dst.mkdir(exist_ok=True)
for k in range(2 * 2):
    with av.open(src) as inp, av.open(str(dst / f"film{k}.mp4"), "w") as out:
        vin = inp.streams.video[0]
        vo = out.add_stream("libx264", rate=vin.average_rate); vo.width, vo.height = vin.width, vin.height
        vo.pix_fmt = "yuv420p"
        inp.seek(int((10 + 8 * k) / vin.time_base), stream=vin)
        n = 0
        for f in inp.decode(vin):
            g = f.to_ndarray(format="gray")
            vf = av.VideoFrame.from_ndarray(np.repeat(g[:, :, None], 3, 2), format="rgb24")
            for p in vo.encode(vf): out.mux(p)
            n += 1
            if n >= 144: break
        for p in vo.encode(): out.mux(p)
print("made", len(list(dst.glob("*.mp4"))), "gray films")
PY
t0=$(date +%s.%N)
torchrun --standalone --nproc_per_node "$N" -m tint video /tmp/films -o /tmp/films_out \
  --weights "$WEIGHTS" --preset veryfast --quiet > "$OUT/video_multi.log" 2>&1
echo "== films across $N GPUs: rc=$? in $(python3 -c "import time;print(round(time.time()-$t0,1))") s"
tail -n 8 "$OUT/video_multi.log"
python3 - <<'PY'
import av, glob
for p in sorted(glob.glob("/tmp/films_out/*")):
    with av.open(p) as c:
        v = c.streams.video[0]
        print(p, v.codec_context.name, v.width, "x", v.height, "frames", sum(1 for _ in c.demux(v)))
PY
