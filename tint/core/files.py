"""Files appear complete or not at all, and what a killed write left behind is cleaned up.

``atomic_write(path, write)`` has ``write`` fill ``.NAME.tint-PID-RANDOM.part`` beside
``path`` and renames it into place.  A process killed mid-write (kill -9, power cut)
leaves that temporary file; ``clean_stale_parts`` removes the ones tint owns (the
``.tint-PID-`` tag) whose process is gone, and ``atomic_write`` does so for its own
target first.  A file of another program, or of a tint still running, is never touched.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_PART = re.compile(r"^\.(?P<name>.+)\.tint-(?P<pid>\d+)-[^.]*\.part$")
_MINE: set[str] = set()          # temporary files this process has open (same pid, still live)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True              # another user's live process, or no way to tell: keep it
    return True


def stale_part(name: str) -> str | None:
    """The target name a stale tint temporary file was for, or None (not ours, or live)."""
    m = _PART.match(name)
    if m is None:
        return None
    pid = int(m["pid"])
    if pid == os.getpid():
        return None if name in _MINE else m["name"]      # an earlier process with our pid
    return None if _alive(pid) else m["name"]


def clean_stale_parts(folder: str | os.PathLike, names=None) -> int:
    """Remove tint's stale temporary files in ``folder`` (only those for ``names``, when
    given); returns how many went.  Cost: one listing of the folder."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if not (e.name.startswith(".") and e.name.endswith(".part")):
            continue
        target = stale_part(e.name)
        if target is None or (names is not None and target not in names):
            continue
        try:
            os.unlink(e.path)
            removed += 1
        except OSError:
            pass
    return removed


def atomic_write(path: Path, write, *, clean: bool = True) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` only once it is complete.
    ``clean``: first remove stale temporary files a killed run left for ``path``."""
    path = Path(path)
    folder = path.parent or Path(".")
    if clean:
        clean_stale_parts(folder, {path.name})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tint-{os.getpid()}-", suffix=".part", dir=folder)
    os.close(fd)
    _MINE.add(Path(tmp).name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)        # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _MINE.discard(Path(tmp).name)
