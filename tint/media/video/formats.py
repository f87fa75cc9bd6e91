"""What the video code knows about containers, encoders and pixel formats: tables, the
luma <-> lightness lookup tables, the output Y'CbCr matrix, and ``FrameLayout``."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...core.errors import TintError


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                  ".mts", ".m2ts", ".wmv", ".flv", ".ogv", ".3gp", ".dv", ".mxf", ".y4m")

# output extension -> (FFmpeg muxer, video encoders in order of preference, audio fallback encoders)
CONTAINERS = {
    ".mp4":  ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".m4v":  ("mp4", ("libx264", "mpeg4"), ("aac",)),
    ".mov":  ("mov", ("libx264", "mpeg4"), ("aac",)),
    ".mkv":  ("matroska", ("libx264", "mpeg4"), ("aac",)),
    ".webm": ("webm", ("libvpx-vp9",), ("libopus", "opus")),
}
# what each container can hold, for PyAV builds without OutputContainer.supported_codecs
_FALLBACK_SUPPORT = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "mov_text", "h264", "hevc", "mpeg4", "vp9", "av1"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "pcm_s16le", "pcm_s24le", "mov_text",
            "h264", "hevc", "mpeg4", "vp9", "av1", "prores"},
    "matroska": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus", "vorbis", "pcm_s16le", "pcm_s24le",
                 "dts", "truehd", "subrip", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle",
                 "h264", "hevc", "mpeg4", "vp9", "av1", "ffv1"},
    "webm": {"opus", "vorbis", "webvtt", "vp8", "vp9", "av1"},
}
# encoder -> (option holding the quality, default quality, fixed options)
ENCODERS = {
    # no B-frames: dts == pts, so segments concatenate with monotonic dts by construction.
    # chromaoffset -4 (x264's chroma_qp_offset, -2 by default with psy-rd, becomes -6): chroma
    # is coded 4 QP finer than x264's default, luma as before.  At the default QP x264 codes a
    # still shot's near-constant chroma coarsely in the keyframe and then keeps refining it
    # over the next frames, which is flicker on pixels where nothing changes (the grain clips
    # of scripts/flicker_bench.py: 3.4-13.9x the colour film's with the default, 0.5-2.0x with
    # -4).  Measured (scripts/encoder_flicker_bench.py, docs/VIDEO.md): luma PSNR within
    # 0.04 dB, chroma PSNR +1.2-1.7 dB, files 1-3 % larger (10 % on a low-bitrate clip).
    "libx264": ("crf", 20, {"bf": "0", "preset": "medium", "chromaoffset": "-4"}),
    "libx265": ("crf", 24, {"x265-params": "bframes=0:log-level=error", "preset": "medium"}),
    "libvpx-vp9": ("crf", 32, {"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}),
    "mpeg4": ("qscale", 3, {}),
    "ffv1": (None, None, {}),
}
# encoders that take x264-style speed presets (``--preset``)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


def import_av():
    """PyAV, or a one-line error naming the extra to install."""
    try:
        import av
    except ImportError:
        raise TintError('video needs PyAV, which is not installed: pip install "tint[video]"') from None
    return av


def _log(msg: str) -> None:
    print(f"tint video: {msg}", file=sys.stderr, flush=True)


def _av_reason(e: BaseException) -> str:
    """FFmpeg errors carry the path and errno in their str(); keep the reason only."""
    s = getattr(e, "strerror", None) or str(e)
    return s.splitlines()[0] if s else type(e).__name__


# ----------------------------------------------------------------------------- pixel formats
# 8-bit formats whose first plane is the full-size luma: the decoder's Y is taken as is.
Y_PLANE_FORMATS = frozenset({
    "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
    "yuv411p", "yuvj411p", "yuv410p", "yuva420p", "yuva422p", "yuva444p", "nv12", "nv21", "nv16",
    "gray"})
# Kr, Kb of the Y'CbCr matrices (ITU-R BT.709 / BT.601)
YUV_MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}
# FFmpeg's AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic codes for each:
# BT.709 = 1, 1, 1; BT.601 (525-line, SMPTE 170M) = 6, 6, 6.  Range: 1 = MPEG ("tv", limited).
COLOR_TAGS = {"bt709": (1, 1, 1), "bt601": (6, 6, 6)}
RANGE_MPEG, RANGE_JPEG = 1, 2


def full_range_luma(pix_fmt: str | None, color_range) -> bool:
    """True when 8-bit luma spans 0..255 (JPEG / "pc" range), False for 16..235 (MPEG / "tv").
    Unspecified range means tv, as FFmpeg assumes, except for the yuvj* and gray formats."""
    r = int(color_range or 0)
    if r in (RANGE_MPEG, RANGE_JPEG):
        return r == RANGE_JPEG
    return bool(pix_fmt) and (pix_fmt.startswith("yuvj") or pix_fmt == "gray")


def luma_to_gray_lut(full_range: bool) -> np.ndarray:
    """(256,) uint8: luma code -> full-range gray, as swscale converts it (tv range:
    round((Y - 16) * 255 / 219), clipped; the tests check all 256 codes against swscale)."""
    v = np.arange(256, dtype=np.float64)
    if full_range:
        return v.astype(np.uint8)
    return np.clip(np.floor((v - 16.0) * 255.0 / 219.0 + 0.5), 0, 255).astype(np.uint8)


def gray_to_luma_lut(full_range: bool) -> np.ndarray:
    """(256,) uint8: full-range gray -> luma code of the given range (the inverse mapping)."""
    v = np.arange(256, dtype=np.float64)
    return v.astype(np.uint8) if full_range else np.floor(16.0 + v * 219.0 / 255.0 + 0.5).astype(np.uint8)


def lightness_lut(full_range: bool, device="cpu") -> torch.Tensor:
    """(256,) float32: luma code -> L in [0, 100], by the very ops ``Runner.colorize_tensor``
    runs on a gray uint8 pixel, so a gray film's L is the rgb24 path's (where swscale
    rounds the same way)."""
    from ...core.color import gray_to_lightness
    g = torch.from_numpy(luma_to_gray_lut(full_range)).float().view(1, 1, 256) / 255.0
    return gray_to_lightness(g).view(256).to(device).contiguous()


def output_matrix(width: int, height: int) -> str:
    """BT.709 for HD and larger, BT.601 for SD: what players assume for untagged video,
    so the tags we write agree with the guess of players that ignore them."""
    return "bt709" if height >= 720 or width >= 1280 else "bt601"


def rgb_to_yuv(rgb: torch.Tensor, matrix: str = "bt709", subsample: bool = True) -> torch.Tensor:
    """uint8 sRGB (B, H, W, 3), any device -> limited-range Y'CbCr planes, packed per frame:
    (B, H*W + 2 * (H/2)*(W/2)) for yuv420p (``subsample``, H and W even), else (B, 3*H*W)
    for yuv444p; each plane row-major, Y then Cb then Cr.

        Y  = 16 + 219 E_y,   E_y = Kr R + Kg G + Kb B              (R, G, B in [0, 1])
        Cb = 128 + 224 (B - E_y) / (2 (1 - Kb)),   Cr = 128 + 224 (R - E_y) / (2 (1 - Kr))

    4:2:0 chroma is that of the 2x2 mean of RGB (the same as the mean of the chroma: it is
    linear).  Reference: swscale (``VideoFrame.reformat``), compared in tests/test_video.py.
    """
    if rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (B, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
    kr, kb = YUV_MATRICES[matrix]
    kg = 1.0 - kr - kb
    B, H, W, _ = rgb.shape
    x = rgb.permute(0, 3, 1, 2).float()                                  # (B, 3, H, W) in [0, 255]

    def luma(t):
        return kr * t[:, 0] + kg * t[:, 1] + kb * t[:, 2]
    y = luma(x) * (219.0 / 255.0) + 16.0
    if subsample:
        if H % 2 or W % 2:
            raise ValueError(f"4:2:0 needs even sides, got {W}x{H}")
        x = F.avg_pool2d(x, 2)
    ey = luma(x)
    cb = (x[:, 2] - ey) * (224.0 / 255.0 / (2.0 * (1.0 - kb))) + 128.0
    cr = (x[:, 0] - ey) * (224.0 / 255.0 / (2.0 * (1.0 - kr))) + 128.0
    return torch.cat([p.round_().clamp_(0, 255).to(torch.uint8).reshape(B, -1) for p in (y, cb, cr)], 1)


@dataclass(frozen=True)
class FrameLayout:
    """What flows through the pipeline for one film: luma in, packed Y'CbCr planes out."""
    width: int
    height: int
    pix_fmt: str                     # output: "yuv420p", or "yuv444p" when a side is odd
    matrix: str                      # output matrix, "bt709" | "bt601"
    full_range_in: bool              # input luma codes span 0..255 (else 16..235)

    @property
    def planes(self) -> list[tuple[int, int]]:
        H, W = self.height, self.width
        c = (H // 2, W // 2) if self.pix_fmt == "yuv420p" else (H, W)
        return [(H, W), c, c]

    @property
    def frame_bytes(self) -> int:
        return sum(h * w for h, w in self.planes)

    def split(self, packed: np.ndarray) -> list[np.ndarray]:
        """One frame's packed planes (frame_bytes,) -> [Y, Cb, Cr] 2-D views."""
        out, o = [], 0
        for h, w in self.planes:
            out.append(packed[o:o + h * w].reshape(h, w))
            o += h * w
        return out
