"""Image files in and out, robustly: one clear line for every bad file, atomic writes.

    data = read_image("photo.jpg")            # ImageData: pixels, alpha, icc, exif, format
    out = runner.colorize_array(data.rgba())  # alpha passes through
    write_image("out.png", out, icc=data.icc, exif=data.exif, protect=["photo.jpg"])

``read_image`` applies the EXIF orientation, keeps 16 bits where the file has them, and
refuses images whose header declares more than ``max_pixels()`` pixels before decoding
anything.  ``write_image`` picks the format from the extension, writes a temporary file
beside the target and renames it into place, and never writes over a protected (input) path.
Every problem the user can fix is a ``TintError`` whose message is ``"<path>: <reason>"``.
"""
from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import TintError
from ..core.files import atomic_write
from ..core.pixels import decode_pil, icc_colorspace

DEFAULT_MAX_PIXELS = 250_000_000
# Extensions tint writes, and the Pillow format of each.
WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP", ".bmp": "BMP"}
# Extensions picked up when a folder is given (any other file can still be named explicitly).
READ_EXTENSIONS = frozenset(WRITE_FORMATS) | {".gif", ".jfif", ".jpe", ".tga", ".ppm", ".pgm", ".pbm"}
# Formats whose frames are an animation (read and written frame by frame, durations and
# loop kept); other multi-frame files (TIFF pages, MPO previews) give their first frame.
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")
ANIMATED_WRITE_FORMATS = ("PNG", "WEBP")      # APNG and animated WebP: full colour, alpha
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}      # Pillow reads BMP alpha back as RGB
_EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
_ORIENTATION = 0x0112
_OPEN_LOCK = threading.Lock()


@dataclass
class ImageData:
    """A decoded image, upright.

    ``pixels``: (H, W, 1) gray or (H, W, 3) sRGB, uint8 or uint16 (full 0..65535 range).
    ``alpha``: (H, W) of the same dtype, or None.  ``icc``: the embedded ICC profile;
    ``exif``: raw EXIF (``b"Exif\\0\\0..."``) with its orientation reset to 1.
    ``format``: Pillow's name for the file format ("JPEG", "PNG", ...).
    ``frames``: how many frames (or pages) the file holds.  For an animation
    (``ANIMATED_FORMATS``) ``more`` holds frames 2..n in ``rgba()`` form, ``durations``
    each frame's display time in ms and ``loop`` the loop count (0 forever, None once).
    """
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    format: str = ""
    frames: int = 1
    more: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    loop: int | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow reports it."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def rgba(self) -> np.ndarray:
        """(H, W, C) with alpha as the last channel when there is one: what colorize_array takes."""
        if self.alpha is None:
            return self.pixels
        return np.concatenate((self.pixels, self.alpha[:, :, None]), axis=2)


def max_pixels() -> int:
    """The decompression-bomb limit: TINT_MAX_PIXELS from the environment, else 250 Mpixel."""
    raw = os.environ.get("TINT_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise TintError(f"TINT_MAX_PIXELS must be a number of pixels, got {raw!r}") from None
    if value <= 0:
        raise TintError(f"TINT_MAX_PIXELS must be positive, got {raw!r}")
    return value


# --------------------------------------------------------------------------- reading
def _check_input_path(path: Path) -> None:
    if not path.exists():
        raise TintError(f"{path}: file not found")
    if path.is_dir():
        raise TintError(f"{path}: is a directory, not an image file")
    if not path.is_file():
        raise TintError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise TintError(f"{path}: empty file (0 bytes)")


class NotAnImage(TintError):
    """Bytes that no (allowed) Pillow decoder recognizes."""


class TooManyPixels(TintError):
    """An image whose header declares more pixels than the limit: refused before decoding."""


def open_header(src: Path | bytes, limit: int, formats: tuple[str, ...] | None = None,
                hint: str = "raise TINT_MAX_PIXELS to allow it"):
    """A Pillow image with only its header read, from a path or from bytes (the web server).

    Refuses decompression bombs by the header (``TooManyPixels``), unknown data or formats
    outside ``formats`` (``NotAnImage``), and unreadable headers and empty images
    (``TintError``); messages start with the path, or "image" for bytes."""
    from PIL import Image, UnidentifiedImageError
    name = "image" if isinstance(src, (bytes, bytearray)) else str(src)
    # Pillow runs its own bomb check (warning, then error at twice its limit) inside open(),
    # against a process-wide setting.  open() reads only the header, so switch that check
    # off for the call and let ours, just below, decide with one limit and one message.
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            im = Image.open(io.BytesIO(src) if name == "image" else src, formats=formats)
        except UnidentifiedImageError:
            raise NotAnImage(f"{name}: not an image, or an unsupported image format") from None
        except PermissionError:
            raise TintError(f"{name}: permission denied") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            raise TintError(f"{name}: corrupt image header ({_reason(e)})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    w, h = im.size
    if w * h > limit:
        im.close()
        raise TooManyPixels(f"{name}: image declares {w}x{h} = {w * h:,} pixels, over the limit of "
                            f"{limit:,}; refusing to decode it ({hint})")
    if w <= 0 or h <= 0:
        im.close()
        raise TintError(f"{name}: image has no pixels ({w}x{h})")
    return im


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _rawmode(im) -> str:
    """The decoder's raw mode ('RGB;16B' for a 16-bit PNG), or '' when Pillow does not say."""
    try:
        args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    except (IndexError, AttributeError, TypeError):
        return ""
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _read_16bit_color(path: Path, gray: bool) -> np.ndarray | None:
    """16-bit RGB(A)/LA PNG or TIFF through OpenCV -> (H, W, C) uint16 in RGB(A) order.

    Pillow has no 16-bit colour mode and would hand back 8 bits.  None if OpenCV is missing
    or gives no 16-bit result; the caller then uses Pillow's 8-bit decode.
    """
    try:
        import cv2
    except ImportError:
        return None
    # imdecode on the bytes: imread fails on non-ASCII paths on some platforms, and
    # IMREAD_UNCHANGED keeps the bits and ignores EXIF orientation (we apply it once, below).
    # OpenCV's own TIFF warnings (e.g. about ExtraSamples in files it wrote itself) would
    # land on stderr between progress lines: silence them for this call.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        a = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if a is None or a.dtype != np.uint16 or a.ndim != 3 or a.shape[2] not in (3, 4):
        return None
    if a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA)
        if gray:        # gray + alpha arrives as BGRA; keep one plane of the three equal ones
            a = a[:, :, [0, 3]]
    else:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return a


def _cmyk_to_rgb(im, icc: bytes | None):
    """CMYK -> RGB, through the embedded profile when there is one (Pillow's plain
    conversion ignores it and gives dull colours)."""
    if icc:
        try:
            from PIL import ImageCms
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # no littlecms, or a broken profile: the plain conversion still works
            pass
    return im.convert("RGB")


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, ...) array: the same result as
    PIL.ImageOps.exif_transpose."""
    ops = {
        2: lambda x: x[:, ::-1],                       # mirror left-right
        3: lambda x: x[::-1, ::-1],                    # rotate 180
        4: lambda x: x[::-1],                          # mirror top-bottom
        5: lambda x: x.swapaxes(0, 1),                 # transpose
        6: lambda x: np.rot90(x, -1),                  # rotate 90 clockwise
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),     # transverse
        8: lambda x: np.rot90(x, 1),                   # rotate 90 counter-clockwise
    }
    op = ops.get(orientation)
    return a if op is None else np.ascontiguousarray(op(a))


def _exif_and_orientation(im) -> tuple[bytes | None, int]:
    """(EXIF bytes to carry, with orientation reset to 1; the orientation to apply)."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
    except Exception:  # unreadable EXIF: no orientation to apply, nothing worth carrying
        return None, 1
    raw = im.info.get("exif")
    if not isinstance(raw, (bytes, bytearray)) or not raw:
        return None, orientation
    raw = bytes(raw)
    if orientation != 1:
        try:
            exif[_ORIENTATION] = 1
            raw = exif.tobytes()
        except Exception:  # cannot rewrite it: better carry none than a wrong rotation
            raw = None
    if raw is not None and not raw.startswith(b"Exif\x00\x00"):
        raw = b"Exif\x00\x00" + raw        # PNG's eXIf chunk omits the JPEG-style prefix
    return raw, orientation


def _frame_count(im) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1) or 1))
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error) as e:
        raise TintError(f"{im.filename or 'image'}: truncated or corrupt image data ({_reason(e)})") from None


def _animation(im, path: Path, n: int) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of an animation as (H, W, 4) uint8 RGBA (as shown: disposal and
    blending applied by Pillow), alpha dropped when all of them are opaque; and durations."""
    frames, durations = [], []
    for i in range(n):
        im.seek(i)
        frames.append(decode_pil(im.convert("RGBA"), path))
        durations.append(int(im.info.get("duration") or 0))
    if all(int(f[:, :, 3].min()) == 255 for f in frames):
        frames = [np.ascontiguousarray(f[:, :, :3]) for f in frames]
    return frames, durations


def read_image(path: str | os.PathLike) -> ImageData:
    """Decode an image file, upright, at its own bit depth; TintError for any bad file.
    An animation (GIF, APNG, animated WebP) gives all its frames; the pixel limit counts
    every frame."""
    path = Path(path)
    _check_input_path(path)
    limit = max_pixels()
    im = open_header(path, limit)
    more: list[np.ndarray] = []
    durations: list[int] = []
    loop = None
    try:
        fmt = im.format or ""
        # Before anything that loads the pixels (PNG's getexif does): the tile says the bit depth.
        wide = ";16" in _rawmode(im) and im.mode in ("RGB", "RGBA", "LA")
        icc = im.info.get("icc_profile") or None
        n = _frame_count(im)
        animated = n > 1 and fmt in ANIMATED_FORMATS
        if animated and im.size[0] * im.size[1] * n > limit:
            w, h = im.size
            raise TooManyPixels(f"{path}: animation of {n} frames of {w}x{h} = {w * h * n:,} pixels, over the "
                                f"limit of {limit:,}; refusing to decode it (raise TINT_MAX_PIXELS to allow it)")
        try:
            im.load()
            exif, orientation = _exif_and_orientation(im)
            if animated:
                loop = im.info.get("loop")
                loop = int(loop) if loop is not None else None
                frames, durations = _animation(im, path, n)
                a, more = frames[0], [_orient(f, orientation) for f in frames[1:]]
            else:
                pil = im
                if im.mode == "CMYK":
                    pil = _cmyk_to_rgb(im, icc)
                    icc = None          # the pixels are sRGB now; the CMYK profile no longer applies
                a = _read_16bit_color(path, im.mode == "LA") if wide else None
                if a is None:
                    a = decode_pil(pil, path)
        except TintError:
            raise
        except MemoryError:
            raise TintError(f"{path}: not enough memory to decode a {im.size[0]}x{im.size[1]} image") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, zlib.error) as e:
            raise TintError(f"{path}: truncated or corrupt image data ({_reason(e)})") from None
    finally:
        im.close()
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise TintError(f"{path}: image has no pixels")
    a = _orient(a, orientation)
    alpha = None
    if a.shape[2] in (2, 4):
        a, alpha = a[:, :, :-1], np.ascontiguousarray(a[:, :, -1])
    if icc is not None and icc_colorspace(icc) not in ("RGB", "GRAY"):
        icc = None
    return ImageData(np.ascontiguousarray(a), alpha, icc, exif, fmt, n, more, durations, loop)


# --------------------------------------------------------------------------- writing
def output_format(path: str | os.PathLike) -> str:
    """Pillow format name for an output path, from its extension; TintError if tint cannot write it."""
    ext = Path(path).suffix.lower()
    if ext not in WRITE_FORMATS:
        raise TintError(f"{path}: cannot write {ext or 'files without an extension'}; "
                        f"use one of {', '.join(sorted(WRITE_FORMATS))}")
    return WRITE_FORMATS[ext]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if two paths name one file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:     # one of them does not exist: compare where they would resolve
        return Path(a).resolve() == Path(b).resolve()


def _to_8bit(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return np.rint(a.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)


def _flatten_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white: what a viewer would show for the transparent parts."""
    top = float(np.iinfo(rgb.dtype).max)
    t = alpha.astype(np.float32)[:, :, None] / top
    return np.rint(rgb.astype(np.float32) * t + top * (1.0 - t)).astype(rgb.dtype)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_add_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP / eXIf chunks right after IHDR (both must precede IDAT)."""
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    end_ihdr = 8 + 8 + 13 + 4          # signature, IHDR length+type, 13 data bytes, CRC
    return png[:end_ihdr] + extra + png[end_ihdr:]


def _encode_16bit(a: np.ndarray, fmt: str, icc: bytes | None, exif: bytes | None, notes: list) -> bytes:
    """(H, W, 3|4) uint16 RGB(A) -> PNG or TIFF bytes through OpenCV (Pillow has no 16-bit RGB)."""
    import cv2
    bgr = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tif", bgr)
    if not ok:
        raise TintError(f"OpenCV could not encode a 16-bit {fmt}")
    data = buf.tobytes()
    if fmt == "PNG":
        return _png_add_metadata(data, icc, exif)
    if icc or exif:
        notes.append("16-bit TIFF written without its ICC profile / EXIF (OpenCV cannot embed them)")
    return data


def write_image(path: str | os.PathLike, pixels: np.ndarray, *, icc: bytes | None = None,
                exif: bytes | None = None, quality: int | None = None, overwrite: bool = False,
                protect=(), more=(), durations=None, loop: int | None = None,
                clean: bool = True) -> list[str]:
    """Write (H, W, 1|2|3|4) uint8/uint16 pixels (a last channel of 2 or 4 is alpha) to ``path``.

    ``more``: further frames of an animation (same shape), written with ``durations``
    (ms per frame) and ``loop`` (0 forever, None once) as APNG or animated WebP; any
    other format takes the first frame only (a note says so).  ``clean``: remove stale
    temporary files a killed run left for ``path`` (a batch does it once per folder).

    The format comes from the extension.  16 bits are kept in PNG and TIFF (8 elsewhere);
    alpha is kept where the format has it (JPEG: flattened onto white, with a note); the
    ICC profile and EXIF go in where the format holds them.  The file appears complete or
    not at all.  Refuses an existing ``path`` unless ``overwrite``, and any path that is
    one of ``protect`` (the inputs) always.  Returns notes about what could not be kept.
    """
    path = Path(path)
    fmt = output_format(path)
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ValueError(f"write_image: expected pixels (H, W, 1|2|3|4), got shape {a.shape}")
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_image: expected uint8 or uint16 pixels, got {a.dtype}")
    for p in protect:
        if same_file(path, p):
            raise TintError(f"{path}: refusing to write over an input file")
    if path.is_dir():
        raise TintError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise TintError(f"{path}: already exists (use --overwrite to replace it)")
    if not path.parent.is_dir():
        raise TintError(f"{path}: output folder {path.parent} does not exist")

    notes: list[str] = []
    color, alpha = (a[:, :, :-1], a[:, :, -1]) if a.shape[2] in (2, 4) else (a, None)
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        color, alpha = _flatten_on_white(color, alpha), None
        notes.append(f"{fmt} has no transparency: alpha flattened onto white")
    if icc is not None and icc_colorspace(icc) != ("GRAY" if color.shape[2] == 1 else "RGB"):
        icc = None      # a gray profile on RGB pixels (or the reverse) would mislead viewers
    if fmt not in _EXIF_FORMATS:
        if exif:
            notes.append(f"{fmt} cannot hold EXIF: not written")
        exif = None
    if fmt == "BMP":
        icc = None
    more = list(more)
    if more and fmt not in ANIMATED_WRITE_FORMATS:
        notes.append(f"{fmt} has no animation: only the first frame written (.png or .webp keeps it)")
        more = []
    if more:
        return notes + _write_animation(path, a, more, fmt, durations, loop, icc, exif, quality, clean)

    sixteen = a.dtype == np.uint16 and fmt in ("PNG", "TIFF")
    if a.dtype == np.uint16 and not sixteen:
        notes.append(f"{fmt} holds 8 bits per channel: 16-bit pixels reduced to 8")
    if sixteen and color.shape[2] == 3:
        try:
            import cv2  # noqa: F401
        except ImportError:
            sixteen = False
            notes.append("OpenCV is not installed: 16-bit colour written as 8-bit "
                         '(pip install "tint[video]" keeps 16 bits)')
    full = color if alpha is None else np.concatenate((color, alpha[:, :, None]), axis=2)

    if sixteen and full.shape[2] in (3, 4):
        data = _encode_16bit(full, fmt, icc, exif, notes)

        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(data)
    else:
        from PIL import Image
        if sixteen:      # 16-bit gray (alpha, if any, is dropped: Pillow has no 16-bit LA)
            if alpha is not None:
                notes.append("16-bit gray with alpha: alpha not written")
            im = Image.fromarray(np.ascontiguousarray(color[:, :, 0]))       # uint16 -> "I;16"
        else:
            full8 = _to_8bit(full)
            im = Image.fromarray(np.ascontiguousarray(full8[:, :, 0] if full8.shape[2] == 1 else full8))
        kw = {}
        if icc:
            kw["icc_profile"] = icc
        if exif:
            kw["exif"] = exif
        if fmt == "JPEG":
            kw.update(quality=int(quality or 92), optimize=True)
        elif fmt == "WEBP":
            kw.update(quality=int(quality or 90))
        elif fmt == "TIFF":
            kw.update(compression="tiff_adobe_deflate")
        elif fmt == "PNG":
            kw.update(compress_level=6)

        def write(tmp):
            im.save(tmp, format=fmt, **kw)
    return notes + _commit(path, write, clean)


def _commit(path: Path, write, clean: bool) -> list[str]:
    try:
        atomic_write(path, write, clean=clean)
    except TintError:
        raise
    except PermissionError:
        raise TintError(f"{path}: permission denied") from None
    except OSError as e:
        raise TintError(f"{path}: cannot write ({e.strerror or _reason(e)})") from None
    return []


def _write_animation(path: Path, first: np.ndarray, more: list, fmt: str, durations, loop,
                     icc, exif, quality, clean: bool) -> list[str]:
    """Frames (H, W, 1|2|3|4) -> APNG or animated WebP, 8 bits, every frame whole."""
    from PIL import Image
    notes = []
    if first.dtype == np.uint16:
        notes.append(f"animated {fmt} holds 8 bits per channel: 16-bit pixels reduced to 8")

    def pil(a):
        a = _to_8bit(np.asarray(a))
        return Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.shape[2] == 1 else a))
    ims = [pil(first)] + [pil(m) for m in more]
    n = len(ims)
    durations = [int(d) for d in (durations or [])][:n]
    durations += [100] * (n - len(durations))
    kw = {"save_all": True, "append_images": ims[1:], "duration": durations,
          "loop": 1 if loop is None else int(loop)}          # None: the source played once
    if icc:
        kw["icc_profile"] = icc
    if exif:
        kw["exif"] = exif
    if fmt == "PNG":
        kw.update(disposal=0, blend=0, compress_level=6)    # every frame whole, replacing the last
    else:
        kw.update(quality=int(quality or 90))

    def write(tmp):
        ims[0].save(tmp, format=fmt, **kw)
    return notes + _commit(path, write, clean)
