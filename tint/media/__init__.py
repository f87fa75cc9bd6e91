"""Media in and out: image files (``io``), films (``video/``), live sources (``camera``) and
the temporal filter that keeps a film's colours steady (``stabilize``).  Built on ``tint.api``."""
