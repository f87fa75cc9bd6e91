"""tint: colorize black-and-white photos, films and live video with a deep network.

    >>> import tint
    >>> out = tint.colorize(pil_image)               # bundled default model
    >>> runner = tint.load("my.safetensors", device="cuda")
    >>> out = runner(pil_image, size=384)
"""
__version__ = "0.1.0"

from .api import Runner, colorize, load
from .core.errors import TintError

__all__ = ["colorize", "load", "Runner", "TintError", "__version__"]
