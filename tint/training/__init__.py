"""Making and measuring models: photo packs (``data``), training (``train``), evaluation
(``evaluate``) and foreign weights (``importers``).  Built on ``tint.api`` and ``tint.core``;
independent of ``tint.media``."""
