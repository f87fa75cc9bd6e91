"""The one exception type users see: its message is a complete one-line explanation."""


class TintError(Exception):
    """A problem with the user's input, weights or environment (not a bug in tint).

    Interfaces print ``str(err)`` on one line and exit non-zero; no traceback.
    """
