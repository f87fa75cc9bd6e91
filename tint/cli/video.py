"""``tint video``: colorize a film, or a folder of films sharded across processes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ..core.errors import TintError
from ..media.video.formats import CONTAINERS, VIDEO_SUFFIXES, X264_PRESETS, import_av
from ..media.video.pipeline import colorize_video
from ..media.video.resume import SEGMENT_SECONDS
from .options import add_colour_options, add_model_options, add_output_options, default_to_live, load_runner


def add_video_arguments(p) -> None:
    p.add_argument("input", help="a film, or a folder of films")
    p.add_argument("--quality", type=int, default=None,
                   help="encoder quality, lower is better: x264 CRF (default 20), VP9 CRF (32), mpeg4 q (3)")
    p.add_argument("--codec", default=None,
                   help="video encoder (default: libx264 for .mp4/.mov/.mkv, else mpeg4; libvpx-vp9 for .webm)")
    p.add_argument("--preset", default=None, choices=X264_PRESETS, metavar="PRESET",
                   help="x264/x265 speed preset (default medium; veryfast or ultrafast for 10x real "
                        "time at 1080p, at some cost in bits)")
    p.add_argument("--batch", type=int, default=None, help="frames per network call (default 8 on GPU, 4 on CPU)")
    p.add_argument("--resume", action="store_true", help="continue a killed job (keeps its finished segments)")
    p.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                   help="colorize each frame on its own (flickers more)")
    p.add_argument("--segment-seconds", type=float, default=SEGMENT_SECONDS,
                   help=f"length of the resumable pieces (default {SEGMENT_SECONDS:g} s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    add_output_options(p, help="output file (.mp4 .mov .mkv .webm), or a folder when the input is one",
                       overwrite="replace an existing output (or unfinished job)")
    add_colour_options(p)


def shard() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise TintError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise TintError(f"bad RANK={rank} / WORLD_SIZE={world}")
    return rank, world, local


def plan_jobs(src: Path, dst: Path, rank: int = 0, world: int = 1) -> list[tuple[Path, Path]]:
    """(input, output) pairs this process handles: one file, or its share of a folder."""
    if not src.is_dir():
        return [(src, dst)] if rank == 0 else []
    if dst.suffix.lower() in CONTAINERS:
        raise TintError(f"{src} is a folder: -o must be a folder too, not {dst}")
    films = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not films:
        raise TintError(f"{src}: no video files ({', '.join(VIDEO_SUFFIXES[:5])}, ...)")
    jobs = []
    for p in films[rank::world]:
        suffix = p.suffix.lower() if p.suffix.lower() in CONTAINERS else ".mkv"
        jobs.append((p, dst / (p.stem + suffix)))
    return jobs


def run_video(args) -> int:
    import_av()
    src, dst = Path(args.input), Path(args.output)
    rank, world, local = shard()
    device = args.device
    if world > 1 and device == "auto" and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(src, dst, rank, world)
    if not jobs:
        return 0
    default_to_live(args, "video", device)
    runner = load_runner(args, device)
    batch = args.batch or (8 if runner.device.type == "cuda" else 4)
    failed = 0
    for film, out in jobs:
        try:
            r = colorize_video(film, out, runner=runner, size=args.size, quality=args.quality,
                               codec=args.codec, preset=args.preset, batch=batch, resume=args.resume,
                               overwrite=args.overwrite, stabilize=args.stabilize,
                               segment_seconds=args.segment_seconds,
                               progress=not args.quiet and rank == 0)
        except TintError as e:
            if len(jobs) == 1 and not src.is_dir():
                raise
            print(f"tint video: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if r.frames:
            extra = f", {r.frames_resumed} from an earlier run" if r.frames_resumed else ""
            print(f"{out}: {r.frames} frames{extra}, {r.fps:.1f} frames/s, "
                  f"{r.scene_cuts} scene cut(s)", file=sys.stderr)
    return 1 if failed else 0
