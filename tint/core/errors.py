"""The one exception type users see: its message is a complete one-line explanation.

Anything else that escapes a command is a bug (or the machine running out of memory):
``internal_error`` writes its full report to a file and gives back the one line to print
(``TINT_DEBUG=1`` prints the traceback too).  Exit statuses of the ``tint`` command:
"""

EXIT_OK = 0            # everything done
EXIT_SOME_FAILED = 1   # a batch finished, some inputs failed (each said so)
EXIT_USAGE = 2         # a TintError: bad input, options, weights or environment
EXIT_INTERNAL = 3      # an unexpected error: one line, the full report in a file
EXIT_INTERRUPTED = 130


class TintError(Exception):
    """A problem with the user's input, weights or environment (not a bug in tint).

    Interfaces print ``str(err)`` on one line and exit non-zero; no traceback.
    """


def debug() -> bool:
    import os
    return os.environ.get("TINT_DEBUG", "").strip() not in ("", "0")


def internal_error(exc: BaseException) -> str:
    """The one line for an unexpected exception; its traceback goes to a report file."""
    import os
    import tempfile
    import time
    import traceback
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    what = "out of memory" if isinstance(exc, MemoryError) else f"internal error: {type(exc).__name__}"
    what += f": {first}" if first else ""
    path = os.path.join(tempfile.gettempdir(), f"tint-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt")
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
        where = f"full report in {path}"
    except OSError:
        where = "no report file could be written"
    return f"{what} ({where}; TINT_DEBUG=1 prints it here)"
