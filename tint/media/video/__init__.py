"""``tint video``: colorize a film; frame count, timestamps, audio and subtitles kept.

    decode thread: luma (Y plane) of each frame -> pinned batch buffers
      -> device thread: async H2D, LUT -> L, network, temporal filter (flow, running means over
         the last and next frames: output lags 24 frames), join, -> yuv420p planes (CodeHold on
         Cb/Cr), async D2H into pinned buffers (one CUDA stream, no host sync)
      -> encode thread: planes straight into the encoder -> closed segments in a work dir
    at the end: segments + the input's audio/subtitle packets, remuxed (no re-encode) ──> OUT

No swscale anywhere on the common path: a gray film's luma *is* its lightness (one
256-entry table, range-aware), and the output leaves the device as limited-range Y'CbCr
(BT.709 for HD/4K, BT.601 for SD) with the stream tagged to match.  Frames stay in memory
from decoder to encoder; host buffers circulate through free lists, which bound memory.
Every output frame carries its input frame's pts in the input's time base, so variable
frame rate survives.  The video is encoded in segments of about ``segment_seconds``, each
one a complete file that starts with a keyframe and is renamed into place only once
finished; a killed job restarted with ``--resume`` keeps the finished segments and seeks
to the first unfinished frame.

The colorize step is swappable (``colorize_batch``): ``FrameColorizer`` (default),
``PASSTHROUGH`` (the bench's ceiling: same path, no network) or a plain function
``f(luma uint8 (B, H, W), layout) -> packed planes uint8 (B, layout.frame_bytes)``.
``Runner.colorize_frames`` (RGB in, RGB out) is the reference and the camera's path; both
run the steps of ``tint.core.pipeline.Pipeline``.

Folders shard across processes: ``torchrun --nproc_per_node=N -m tint video IN_DIR -o OUT_DIR``
gives film i to rank i mod N on cuda:LOCAL_RANK.

By stage: ``formats`` (tables, luma/lightness LUTs, Y'CbCr), ``decode``, ``step`` (the colorize
step), ``encode``, ``resume`` (work dir and segments), ``remux``, and ``pipeline``
(``colorize_video``: the threads that join them).
"""
