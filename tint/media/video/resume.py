"""The work directory of a job: finished segments, their state file, and what ``--resume`` keeps."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ...core.errors import TintError
from ...core.files import atomic_write
from .decode import VideoInput
from .encode import OutputSpec, _VideoEncoder
from .formats import FrameLayout


SEGMENT_SECONDS = 10.0
STATE_VERSION = 1
class WorkDir:
    """Finished segments and a manifest, next to OUT: ``.OUT.tint-work/``.

    A segment file is complete when it is listed in ``state.json``: it is encoded under a
    ``.part`` name, renamed, and only then recorded (both steps atomic).
    """

    def __init__(self, out: Path):
        self.out = out
        self.path = out.parent / f".{out.name}.tint-work"
        self.state_path = self.path / "state.json"
        self.state: dict = {}

    def exists(self) -> bool:
        return self.state_path.is_file()

    def start(self, key: dict) -> None:
        self.remove()
        self.path.mkdir(parents=True)
        self.state = {"version": STATE_VERSION, "key": key, "segments": [], "complete": False}
        self.save()

    def load(self, key: dict) -> None:
        try:
            self.state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as e:
            raise TintError(f"{self.path}: unreadable resume state ({e}); use --overwrite to start over") from None
        if self.state.get("version") != STATE_VERSION or self.state.get("key") != key:
            raise TintError(f"{self.path} was made from another input or other settings; "
                            "use --overwrite to start over")
        listed = {s["file"] for s in self.state["segments"]}
        for p in self.path.iterdir():                 # a half-written segment from the killed run
            if p.name != "state.json" and p.name not in listed:
                p.unlink()
        for s in self.state["segments"]:
            if not (self.path / s["file"]).is_file():
                raise TintError(f"{self.path}: segment {s['file']} is missing; use --overwrite to start over")

    def save(self) -> None:
        text = json.dumps(self.state, indent=1)
        atomic_write(self.state_path, lambda tmp: Path(tmp).write_text(text))

    def add_segment(self, record: dict) -> None:
        self.state["segments"].append(record)
        self.save()

    def remove(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)

    @property
    def frames_done(self) -> int:
        return sum(s["frames"] for s in self.state.get("segments", []))


class SegmentWriter:
    """Cuts the colorized stream into closed files of about ``seconds`` each."""

    def __init__(self, work: WorkDir, spec: OutputSpec, inp: VideoInput, seconds: float,
                 on_segment: Callable[[int], None] | None = None, layout: FrameLayout | None = None):
        self.work, self.spec, self.inp = work, spec, inp
        self.layout = layout or inp.layout(spec.codec)
        self.ticks = max(1, int(seconds / inp.time_base))
        self.index = len(work.state["segments"])
        self.ext = "." + {"matroska": "mkv"}.get(spec.format, spec.format)
        self.enc: _VideoEncoder | None = None
        self.on_segment = on_segment

    def write(self, packed: np.ndarray, pts: int) -> None:
        if self.enc is not None and pts - self.first >= self.ticks:
            self.close_segment()
        if self.enc is None:
            self.name = f"seg_{self.index:05d}{self.ext}"
            self.tmp = self.work.path / (self.name + ".part")
            self.enc = _VideoEncoder(self.tmp, self.spec, self.inp, self.layout)
            self.first, self.count = pts, 0
        self.enc.encode(packed, pts)
        self.last, self.count = pts, self.count + 1

    def close_segment(self) -> None:
        if self.enc is None:
            return
        self.enc.close()
        self.enc = None
        os.replace(self.tmp, self.work.path / self.name)
        self.work.add_segment({"file": self.name, "frames": self.count,
                               "first_pts": self.first, "last_pts": self.last})
        self.index += 1
        if self.on_segment is not None:
            self.on_segment(self.index)

    def abort(self) -> None:
        if self.enc is not None:
            try:
                self.enc.container.close()
            except Exception:
                pass
            self.enc = None
            Path(self.tmp).unlink(missing_ok=True)
