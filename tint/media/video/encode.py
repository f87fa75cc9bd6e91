"""Output settings (container, encoder, quality) and the video encoder of one segment."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...core.errors import TintError
from .decode import VideoInput, _has_codec
from .formats import (
    COLOR_TAGS, CONTAINERS, ENCODERS, FrameLayout, RANGE_MPEG, X264_PRESETS, _FALLBACK_SUPPORT, import_av)


@dataclass
class OutputSpec:
    format: str                      # FFmpeg muxer
    codec: str                       # video encoder
    options: dict                    # encoder options (quality included)
    audio_fallback: tuple

    def as_dict(self):
        return {"format": self.format, "codec": self.codec, "options": self.options}


def output_spec(out: Path, codec: str | None = None, quality: int | None = None,
                preset: str | None = None) -> OutputSpec:
    av = import_av()
    suffix = out.suffix.lower()
    if suffix not in CONTAINERS:
        raise TintError(f"{out}: unsupported output type {suffix or '(none)'!r}; use one of "
                        f"{', '.join(CONTAINERS)}")
    fmt, preferred, audio = CONTAINERS[suffix]
    if codec is None:
        codec = next((c for c in preferred if _has_codec(av, c, "w")), None)
        if codec is None:
            raise TintError(f"this FFmpeg build has none of the encoders {', '.join(preferred)} for {suffix}")
    elif not _has_codec(av, codec, "w"):
        raise TintError(f"video encoder {codec!r} is not in this FFmpeg build")
    key, default_q, fixed = ENCODERS.get(codec, (None, None, {}))
    options = dict(fixed)
    if quality is not None and key is None:
        raise TintError(f"--quality has no meaning for {codec}")
    if key is not None:
        q = default_q if quality is None else int(quality)
        if q < 0:
            raise TintError(f"--quality must be >= 0, got {q}")
        options[key] = str(q)
    if preset is not None:
        if "preset" not in options:
            raise TintError(f"--preset has no meaning for {codec} (it is for libx264 / libx265)")
        if preset not in X264_PRESETS:
            raise TintError(f"unknown --preset {preset!r}; use one of {', '.join(X264_PRESETS)}")
        options["preset"] = preset
    return OutputSpec(fmt, codec, options, audio)


def _supported(av_container, fmt: str) -> set:
    got = getattr(av_container, "supported_codecs", None)
    return set(got) if got else _FALLBACK_SUPPORT.get(fmt, set())


def _encoder_time_base(codec: str, tb: Fraction, rate: Fraction) -> Fraction:
    """MPEG-4 part 2 cannot take a time base denominator above 65535."""
    if codec == "mpeg4" and tb.denominator > 65535:
        return Fraction(1, min(65535, max(1, int(round(rate * 100)))))
    return tb


class _VideoEncoder:
    """One output file of video only: packed Y'CbCr frames with pts in ``tb`` in, packets
    muxed.  The planes go to the encoder as they are (no swscale); the stream is tagged
    with the range and matrix they were made with."""

    def __init__(self, path, spec: OutputSpec, inp: VideoInput, layout: FrameLayout):
        av = import_av()
        self.container = av.open(str(path), "w", format=spec.format,
                                 options=_muxer_options(spec.format, inp.time_base))
        self.tb = inp.time_base
        self.enc_tb = _encoder_time_base(spec.codec, inp.time_base, inp.rate)
        self.layout = layout
        s = self.container.add_stream(spec.codec, rate=inp.rate)
        s.width, s.height = layout.width, layout.height
        s.pix_fmt = layout.pix_fmt
        s.time_base = self.enc_tb
        cc = s.codec_context
        cc.time_base = self.enc_tb
        self.tags = COLOR_TAGS[layout.matrix]
        cc.color_range = RANGE_MPEG
        cc.colorspace, cc.color_primaries, cc.color_trc = self.tags
        sar = inp.stream.sample_aspect_ratio
        if sar:
            cc.sample_aspect_ratio = sar
        opts = dict(spec.options)
        if "qscale" in opts:                          # mpeg4: fixed quantizer, like ffmpeg -q:v
            q = int(opts.pop("qscale"))
            cc.qscale = True
            cc.global_quality = q * 118  # FF_QP2LAMBDA
        s.options = opts
        s.thread_type = "AUTO"                        # frame + slice threads, one per core
        self.stream = s
        self._av = av
        self.last_pts = None

    def encode(self, packed: np.ndarray, pts: int):
        L = self.layout
        frame = self._av.VideoFrame(L.width, L.height, L.pix_fmt)
        for plane, src in zip(frame.planes, L.split(packed)):
            h, w = src.shape
            dst = np.frombuffer(plane, np.uint8, count=plane.line_size * h).reshape(h, plane.line_size)
            np.copyto(dst[:, :w], src)
        frame.color_range = RANGE_MPEG
        frame.colorspace, frame.color_primaries, frame.color_trc = self.tags
        if self.enc_tb != self.tb:
            pts = int(round(pts * self.tb / self.enc_tb))
            if self.last_pts is not None and pts <= self.last_pts:
                pts = self.last_pts + 1
        self.last_pts = pts
        frame.pts = pts
        frame.time_base = self.enc_tb
        self.container.mux(self.stream.encode(frame))

    def close(self):
        self.container.mux(self.stream.encode(None))
        self.container.close()


def _muxer_options(fmt: str, tb: Fraction) -> dict:
    if fmt in ("mp4", "mov"):
        # a movie time scale equal to the video's keeps a non-zero start time exact
        return {"movie_timescale": str(min(tb.denominator, 2 ** 31 - 1))}
    return {}
