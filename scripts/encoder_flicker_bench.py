"""x264 settings against static-pixel chroma flicker, size and luma fidelity, on the bench's clips.

    python scripts/encoder_flicker_bench.py [--clips grain,bbb@17,bbb@30,bbb@50,grain:PHOTO.jpg]
                                            [--settings shipped,chromaoffset=-2,...] [--cache DIR] [--json F]

For each clip of ``scripts/flicker_bench.py`` (same frames, same reference encode, same gray
input), ``tint video``'s default path runs once with the shipped encoder settings, and the
planes it hands to the encoder are recorded (with their pts).  Then, for each x264 setting,
both sides are encoded again from their own uncompressed planes with the same options: the
reference from the colour frames (as the bench does), ours by replaying the recorded planes
through ``tint``'s own segment encoder (``_VideoEncoder``).  Reported per setting and clip:

* static-pixel flicker of both files and its ratio (ours / reference, the bench's measure);
* file size of our output (and the reference's) in kbit/s, and its ratio to the shipped
  setting's;
* luma PSNR and chroma PSNR of each decoded file against the planes it was encoded from
  (what the encoder costs in fidelity; no network error in it).

The "shipped" row is ``output_spec(".mp4").options`` as it is in the code being run; the
other rows are the shipped options with one change.  ``--base`` replaces the shipped options
with x264's plain ``crf 20, medium, bf 0`` so that rows stay comparable after a default changes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import flicker_bench as FB  # noqa: E402

# name -> options changed from the base (FFmpeg libx264 AVOption names)
SETTINGS = {
    "shipped": {},
    "chromaoffset=-2": {"chromaoffset": "-2"},
    "chromaoffset=-4": {"chromaoffset": "-4"},
    "chromaoffset=-6": {"chromaoffset": "-6"},
    "chromaoffset=+2": {"chromaoffset": "2"},
    "chromaoffset=+4": {"chromaoffset": "4"},
    "psy=0": {"psy": "0"},
    "psy-rd=0:0": {"psy-rd": "0.0:0.0"},
    "psy-rd=0.5:0": {"psy-rd": "0.5:0.0"},
    "aq-mode=0": {"aq-mode": "0"},
    "aq-strength=0.5": {"aq-strength": "0.5"},
    "crf=18": {"crf": "18"},
}
PLAIN = {"crf": "20", "bf": "0", "preset": "medium"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def x264_info(path: Path) -> str:
    """x264's settings string (its SEI user data in the first packet)."""
    data = path.read_bytes()
    i = data.find(b"x264 - core")
    if i < 0:
        return ""
    return data[i:data.find(b"\x00", i)].decode("latin-1")


def record_default(clip_name, gray_path: Path, out_path: Path, runner, batch: int):
    """Run ``tint video``'s default step on the gray input; return the packed planes and pts
    handed to the encoder, and the layout."""
    from tint.media.video import encode as E
    from tint.media.video.decode import open_input
    from tint.media.video.pipeline import colorize_video
    inp = open_input(gray_path)
    layout = inp.layout("libx264")
    inp.close()
    step = FB.variants()["default"](runner, layout, None)
    got, real = [], E._VideoEncoder.encode

    def rec(self, packed, pts):
        got.append((np.array(packed, copy=True), int(pts)))
        return real(self, packed, pts)
    E._VideoEncoder.encode = rec
    try:
        with FB.CachedMotion():
            colorize_video(gray_path, out_path, colorize_batch=step, batch=batch, overwrite=True, progress=False)
    finally:
        E._VideoEncoder.encode = real
    return got, layout


def replay(frames, gray_path: Path, layout, options: dict, path: Path) -> None:
    from tint.media.video.decode import open_input
    from tint.media.video.encode import OutputSpec, _VideoEncoder
    inp = open_input(gray_path)
    try:
        enc = _VideoEncoder(path, OutputSpec("mp4", "libx264", dict(options), ("aac",)), inp, layout)
        for packed, pts in frames:
            enc.encode(packed, pts)
        enc.close()
    finally:
        inp.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="grain,bbb@17,bbb@30,bbb@50")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/encoder_flicker_bench"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--base", choices=("shipped", "plain"), default="shipped")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import tint
    from flicker_eval import static_flicker
    from tint.media.video.encode import output_spec
    torch.manual_seed(0)
    shipped = output_spec(Path("x.mp4")).options
    base = dict(shipped if args.base == "shipped" else PLAIN)
    runner = FB.CachedRunner(tint.load(None, device="cpu"), args.cache)
    args.work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.settings.split(",") if n]
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "tint", "scripts"],
                           capture_output=True, text=True).stdout.strip()
    meta = {"commit": git.stdout.strip() + ("-dirty" if dirty else ""), "shipped_options": shipped,
            "base_options": base, "settings": {n: SETTINGS[n] for n in names}}
    results = {}
    for cname in [c for c in args.clips.split(",") if c]:
        if cname.startswith("bbb@"):
            clip = FB.bbb_clip(float(cname[4:]), 2.5)
        elif cname.startswith("grain:"):                    # the grain clip over another dev photo
            clip = FB.synthetic_clip(cname, cname[6:], "grain", 2.0, 2.5)
        else:
            clip = next(FB.synthetic_clip(n, p, k, a, 2.5) for n, p, k, a in FB.SYNTHETIC if n == cname)
        # the bench's input, made with the shipped settings (the network's cache is keyed by it)
        ref0_path, gray_path = args.work / f"{cname}_ref0.mp4", args.work / f"{cname}_gray.mp4"
        FB.encode(clip.frames, ref0_path, shipped)
        FB.encode(FB.decode(ref0_path)[0], gray_path, {"crf": "18", "preset": "veryfast", "bf": "0"}, gray=True)
        t = time.perf_counter()
        ours, layout = record_default(cname, gray_path, args.work / f"{cname}_default.mp4", runner, args.batch)
        runner.save()
        print(f"{cname}: default step {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        src = FB.source_planes(clip.frames)
        mine = FB.split_planes(np.stack([p for p, _ in ours]))
        seconds = len(ours) / FB.FPS
        row = {}
        for n in names:
            opts = dict(base)
            opts.update(SETTINGS[n])
            rp, op = args.work / f"{cname}_{n}_ref.mp4", args.work / f"{cname}_{n}_ours.mp4"
            FB.encode(clip.frames, rp, opts)
            replay(ours, gray_path, layout, opts, op)
            ref, out = FB.decode(rp), FB.decode(op)
            ref_fl, _ = static_flicker(*ref[:3])
            fl, _ = static_flicker(*out[:3], mask_y=ref[0])
            row[n] = {"options": opts, "ref_flicker": ref_fl, "flicker": fl, "ratio": fl / max(ref_fl, 1e-9),
                      "kbps": op.stat().st_size * 8 / 1000 / seconds, "ref_kbps": rp.stat().st_size * 8 / 1000 / seconds,
                      "luma_psnr": psnr(out[0], mine[0]), "ref_luma_psnr": psnr(ref[0], src[0]),
                      "chroma_psnr": psnr(np.concatenate([out[1], out[2]]), np.concatenate([mine[1], mine[2]])),
                      "ref_chroma_psnr": psnr(np.concatenate([ref[1], ref[2]]), np.concatenate([src[1], src[2]])),
                      "x264": x264_info(op)}
            print(f"  {n:18s} ours {fl:.3f} / film {ref_fl:.3f} = {row[n]['ratio']:.2f}x  "
                  f"{row[n]['kbps']:.0f} kbps (film {row[n]['ref_kbps']:.0f})  Y PSNR {row[n]['luma_psnr']:.2f} "
                  f"(film {row[n]['ref_luma_psnr']:.2f})  C PSNR {row[n]['chroma_psnr']:.2f}", file=sys.stderr, flush=True)
        for n in names:
            row[n]["size_vs_shipped"] = row[n]["kbps"] / row["shipped"]["kbps"] if "shipped" in row else None
            row[n]["dluma_psnr"] = row[n]["luma_psnr"] - row["shipped"]["luma_psnr"] if "shipped" in row else None
        results[cname] = row

    print(f"\ncommit {meta['commit']}; shipped x264 options {shipped}; rows change one option of {base}\n")
    print("| setting | " + " | ".join(f"{c} ratio (ours / film)" for c in results) + " | our size vs shipped | "
          "our luma PSNR, dB (vs shipped) | film luma PSNR | our chroma PSNR |")
    print("|---|" + "---:|" * (len(results) + 4))
    for n in names:
        cells = [f"{results[c][n]['ratio']:.2f}x ({results[c][n]['flicker']:.3f} / {results[c][n]['ref_flicker']:.3f})"
                 for c in results]
        size = " / ".join(f"{results[c][n]['size_vs_shipped']:.0%}" for c in results)
        lp = " / ".join(f"{results[c][n]['luma_psnr']:.2f} ({results[c][n]['dluma_psnr']:+.2f})" for c in results)
        rlp = " / ".join(f"{results[c][n]['ref_luma_psnr']:.2f}" for c in results)
        cp = " / ".join(f"{results[c][n]['chroma_psnr']:.2f}" for c in results)
        print(f"| {n} | " + " | ".join(cells) + f" | {size} | {lp} | {rlp} | {cp} |")
    out = args.json or (Path(os.environ["OUT"]) / "encoder_flicker_bench.json" if os.environ.get("OUT") else None)
    if out:
        out.write_text(json.dumps({"meta": meta, "clips": results}, indent=1))
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
