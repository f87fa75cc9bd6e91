"""``tint image``: colorize files, folders and globs.

A batch never stops at a bad file: each failure is one line on stderr, existing outputs
are skipped (so a killed batch resumes where it stopped), and a summary ends the run.
Exit status: 0 all done, 1 some file failed, 2 usage error (cli.main turns TintError into 2),
3 some file hit an unexpected error (one line each; the full report in a file).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EXIT_INTERNAL, EXIT_SOME_FAILED, TintError, debug, internal_error
from .options import add_colour_options, add_model_options, add_output_options, load_runner


SAMPLE = Path(__file__).parents[1] / "samples" / "sample.jpg"
# Extensions that name an image file (so -o with one of them is a file, never a folder).
IMAGE_EXTENSIONS = frozenset({".gif", ".jfif", ".jpe", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".icns",
                              ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".jpx", ".psd", ".svg",
                              ".pdf", ".eps", ".exr", ".hdr", ".dng", ".raw", ".cr2", ".nef", ".pcx", ".dds",
                              ".apng", ".xbm", ".xpm", ".sgi", ".qoi"})
FORMATS = ("jpg", "png", "tif", "webp", "bmp")
_GLOB_CHARS = set("*?[")


def add_image_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="IN",
                   help="image files, folders of images, or glob patterns ('photos/*.jpg')")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="include subfolders of folder inputs, keeping their layout under OUT")
    p.add_argument("--quality", type=int, default=None, metavar="N",
                   help="JPEG/WebP quality 1-100 (default 92 for JPEG, 90 for WebP)")
    p.add_argument("--sample", action="store_true",
                   help="also colorize the bundled sample photo (Daguerre, Paris 1838)")
    add_model_options(p)
    add_output_options(p, help="output folder (created); or an image file name when there is one input",
                       overwrite="replace existing outputs (default: skip them, so a stopped batch resumes)",
                       formats=FORMATS)
    add_colour_options(p)


# --------------------------------------------------------------------------- planning
@dataclass
class Job:
    src: Path
    rel: Path          # where the output goes, relative to the output folder


def _has_glob(s: str) -> bool:
    return any(c in s for c in _GLOB_CHARS)


def _inside(path: Path, folder: Path | None) -> bool:
    """Is ``path`` ``folder`` or anything under it (``folder`` resolved)?"""
    if folder is None:
        return False
    p = path.resolve()
    return p == folder or folder in p.parents


def _output_below(root: Path, output: Path | None) -> Path | None:
    """``output`` (resolved) when it is a proper subfolder of the input ``root``: the part
    of a walk that holds this run's (and earlier runs') outputs.  None otherwise: writing
    beside the inputs is checked file by file (never over an input)."""
    if output is None:
        return None
    r = root.resolve()
    return output if r in output.parents else None


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern searches: its leading parts without wildcards."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _folder_images(folder: Path, recursive: bool, skip: Path | None = None) -> tuple[list[Path], int]:
    """(images in ``folder``, how many subfolders were left out for being ``skip``): the
    output folder is never walked, so a second run does not colorize the first run's outputs."""
    from ..media.io import READ_EXTENSIONS

    def image(p: Path) -> bool:
        return p.suffix.lower() in READ_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    if not recursive:
        return sorted(p for p in folder.iterdir() if image(p)), 0
    images, skipped = [], 0
    for root, dirs, files in os.walk(folder):          # symlinked folders are not followed
        here = Path(root)
        for d in list(dirs):
            if _inside(here / d, skip):
                dirs.remove(d)                        # the output tree: not walked at all
                skipped += 1
        images += [here / f for f in files if image(here / f)]
    return sorted(images), skipped


def collect(inputs: list[str], recursive: bool, output: str | None = None) -> tuple[list[Job], list[str], list[str]]:
    """Inputs -> (jobs, failures 'path: reason', notes).  Folders give their images (the
    relative layout kept with ``recursive``), globs are expanded here as well as by the
    shell (Windows shells do not), anything else is taken as a file.  Outputs are never
    inputs: nothing under ``output`` is taken from a folder or a glob."""
    jobs: list[Job] = []
    failures: list[str] = []
    notes: list[str] = []
    seen: set[Path] = set()
    skip = Path(output).resolve() if output else None
    left_out = 0

    def add(src: Path, rel: Path):
        key = src.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(src, rel))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images, skipped = _folder_images(path, recursive, _output_below(path, skip))
            left_out += skipped
            if not images and not skipped:
                notes.append(f"{path}: no images in this folder"
                             + ("" if recursive else " (use --recursive for subfolders)"))
            for img in images:
                add(img, img.relative_to(path) if recursive else Path(img.name))
        elif not path.exists() and _has_glob(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            below = _output_below(_glob_root(raw), skip)
            kept = [f for f in files if not _inside(f, below)]
            left_out += len(files) - len(kept)
            if not files:
                failures.append(f"{raw}: no file matches this pattern")
            files = kept
            for f in files:
                add(f, Path(f.name))
        else:
            add(path, Path(path.name))      # read_image reports missing / empty / not an image
    if left_out:
        notes.append(f"note: {output} is inside an input folder; nothing in it is read "
                     f"(outputs are never inputs)")
    return jobs, failures, notes


def _output_suffix(src: Path, fmt: str | None) -> str:
    from ..media.io import WRITE_FORMATS
    if fmt:
        return "." + fmt
    ext = src.suffix.lower()
    return ext if ext in WRITE_FORMATS else ".png"


def plan_outputs(jobs: list[Job], output: str, fmt: str | None) -> tuple[list[tuple[Job, Path]], list[str]]:
    """Each job's output path, and failures for outputs that two inputs would share.

    One input and an OUT with an image extension: OUT is the file.  Otherwise OUT is a
    folder (created here; TintError, i.e. a usage error, if that is impossible)."""
    from ..media.io import WRITE_FORMATS
    out = Path(output)
    ext = out.suffix.lower()
    if ext and ext not in WRITE_FORMATS and ext in IMAGE_EXTENSIONS and not out.is_dir():
        raise TintError(f"-o {output}: tint cannot write {ext} files; name a .png (it keeps "
                        f"animations), .webp, .jpg, .tif or .bmp file, or a folder")
    if ext in WRITE_FORMATS and not out.is_dir():
        if len(jobs) != 1:
            raise TintError(f"-o {output} names one file, but there are {len(jobs)} inputs; "
                            f"give a folder instead")
        if fmt and WRITE_FORMATS[out.suffix.lower()] != WRITE_FORMATS["." + fmt]:
            raise TintError(f"--format {fmt} contradicts -o {output}")
        _ensure_folder(out.parent)
        pairs = [(jobs[0], out)]
    else:
        _ensure_folder(out)
        pairs = [(job, out / job.rel.with_suffix(_output_suffix(job.src, fmt))) for job in jobs]

    # An output may be neither an input (hard links and symlinks included) nor another's output.
    inputs = {_file_id(job.src) for job in jobs} - {None}
    planned, failures, owner = [], [], {}
    for job, dst in pairs:
        key = os.path.normcase(os.path.abspath(dst))
        if _file_id(dst) in inputs or dst.resolve() == job.src.resolve():
            failures.append(f"{job.src}: refusing to write over an input file ({dst})")
        elif key in owner:
            failures.append(f"{job.src}: its output {dst} is already the output of {owner[key]}")
        else:
            owner[key] = job.src
            planned.append((job, dst))
    return planned, failures


def _by_folder(planned) -> dict[Path, set[str]]:
    """Output folder -> the output names planned in it."""
    folders: dict[Path, set[str]] = {}
    for _, dst in planned:
        folders.setdefault(dst.parent, set()).add(dst.name)
    return folders


def _file_id(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ensure_folder(folder: Path) -> None:
    """Create ``folder`` and prove it is writable, or raise a TintError (exit 2)."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TintError(f"output folder {folder} exists as a file") from None
    except OSError as e:
        raise TintError(f"cannot create output folder {folder}: {e.strerror or e}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".tint-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise TintError(f"output folder {folder} is not writable: {e.strerror or e}") from None


# --------------------------------------------------------------------------- running
def run_image(args) -> int:
    import warnings

    # Pillow warns (on stderr, between our lines) about damaged metadata in files it still
    # decodes; the batch reports real failures itself.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        return _run_image(args)


def _run_image(args) -> int:
    from ..core.files import clean_stale_parts
    from ..media.io import ANIMATED_FORMATS, ANIMATED_WRITE_FORMATS, output_format, read_image, write_image
    from ..core.pixels import has_colour

    if args.quality is not None and not 1 <= args.quality <= 100:
        raise TintError(f"--quality must be between 1 and 100, got {args.quality}")
    inputs = list(args.inputs) + ([str(SAMPLE)] if args.sample else [])
    if not inputs:
        raise TintError("no inputs: give image files, folders or globs (or --sample)")
    from ..core.weights import resolve
    resolve(args.weights)         # no weights is a usage error: say so before touching any file
    jobs, failures, notes = collect(inputs, args.recursive, args.output)
    for note in notes:
        print(f"tint image: {note}", file=sys.stderr)
    if not jobs and not failures:
        raise TintError("no images found in the inputs")
    planned, clashes = plan_outputs(jobs, args.output, args.format) if jobs else ([], [])
    failures += clashes
    for line in failures:
        print(f"tint image: {line}", file=sys.stderr)

    stale = sum(clean_stale_parts(folder, names) for folder, names in _by_folder(planned).items())
    if stale:
        print(f"tint image: note: removed {stale} partial file(s) a killed run left behind", file=sys.stderr)
    todo = [(job, dst) for job, dst in planned if args.overwrite or not (dst.exists() or dst.is_symlink())]
    skipped = len(planned) - len(todo)
    done = internal = 0
    failed = len(failures)
    if todo:
        import torch
        from tqdm import tqdm

        runner = load_runner(args)                # once for the whole batch
        said: set[str] = set()
        bar = tqdm(todo, desc="tint image", unit="img", file=sys.stderr, dynamic_ncols=True,
                   leave=False, disable=None)    # None: a bar on terminals, none in logs
        for job, dst in bar:
            try:
                data = read_image(job.src)                      # its errors name the file
                if data.pixels.shape[2] == 3 and has_colour(data.pixels):
                    tqdm.write(f"tint image: note: {job.src} is already in colour; its colours are "
                               f"replaced by predicted ones", file=sys.stderr)
                animate = bool(data.more) and output_format(dst) in ANIMATED_WRITE_FORMATS
                if data.frames > 1 and not animate and data.format != "MPO":
                    kind = "frames" if data.format in ANIMATED_FORMATS else "pages"
                    tqdm.write(f"tint image: note: {job.src} holds {data.frames} {kind}; only the first is "
                               f"colorized" + (f" ({dst.suffix} has no animation: .png or .webp keeps it)"
                                               if data.more else ""), file=sys.stderr)
                try:
                    out = runner.colorize_array(data.rgba(), size=args.size)
                    more = [runner.colorize_array(f, size=args.size) for f in data.more] if animate else []
                except TintError as e:
                    raise TintError(f"{job.src}: {e}") from None
                dst.parent.mkdir(parents=True, exist_ok=True)
                for note in write_image(dst, out, icc=data.icc, exif=data.exif, quality=args.quality,
                                        overwrite=args.overwrite, protect=(job.src,), more=more,
                                        durations=data.durations, loop=data.loop, clean=False):
                    if note not in said:          # once per batch, not once per file
                        said.add(note)
                        tqdm.write(f"tint image: note: {note}", file=sys.stderr)
                done += 1
            except TintError as e:
                failed += 1
                tqdm.write(f"tint image: {e}", file=sys.stderr)
            except OSError as e:                  # e.g. a subfolder of OUT that cannot be made
                failed += 1
                tqdm.write(f"tint image: {job.src}: {e.strerror or e}", file=sys.stderr)
            except (MemoryError, torch.cuda.OutOfMemoryError):
                failed += 1
                if runner.device.type == "cuda":
                    torch.cuda.empty_cache()
                tqdm.write(f"tint image: {job.src}: out of memory (try a smaller --size)", file=sys.stderr)
            except Exception as e:            # a bug: this file fails, the batch goes on
                failed += 1
                internal += 1
                if debug():
                    import traceback
                    traceback.print_exc()
                tqdm.write(f"tint image: {job.src}: {internal_error(e)}", file=sys.stderr)
        bar.close()
    if skipped:
        print(f"tint image: note: {skipped} output(s) exist and were skipped "
              f"(use --overwrite to replace them)", file=sys.stderr)
    print(f"{done} colorized, {failed} failed, {skipped} skipped (exist)")
    return EXIT_INTERNAL if internal else EXIT_SOME_FAILED if failed else 0
