"""`tint camera`, headless: a generated film as the live source, recorded to a file."""
import threading

import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

import tint                                                     # noqa: E402
from tint.media.camera import LatestFrame, camera_loop, parse_source
from tint.core.errors import TintError
from test_video import make_film, video_times                   # noqa: E402


def test_latest_frame_keeps_only_the_newest():
    buf = LatestFrame()
    for i in range(3):
        buf.put(i, float(i))
    assert buf.get(timeout=0.1) == (2, 2.0) and buf.dropped == 2
    assert buf.get(timeout=0.05) is None                      # nothing newer yet
    threading.Timer(0.05, buf.put, (7, 7.0)).start()
    assert buf.get(timeout=2) == (7, 7.0)
    buf.close()
    assert buf.get(timeout=0.1) is None


def test_parse_source():
    assert parse_source("0") == 0 and parse_source("rtsp://x/y") == "rtsp://x/y" and parse_source("a.mp4") == "a.mp4"


def test_headless_file_source_recorded(tmp_path, tiny_weights):
    src, out = tmp_path / "live.mkv", tmp_path / "rec.mp4"
    make_film(src, frames=480, audio=None)                     # 20 s: outlasts a slow shared CPU
    runner = tint.load(tiny_weights, device="cpu")
    stats = camera_loop(runner, str(src), output=out, headless=True, frames=5, size=32)
    assert stats.frames == 5 and len(stats.latency_ms) == 5 and stats.fps > 0
    assert stats.captured >= 5 and all(lat > 0 for lat in stats.latency_ms)
    times, size = video_times(out)
    assert len(times) == 5 and size == (64, 48) and times == sorted(times)
    assert "frames/s sustained" in stats.summary()


def test_cli_headless(tmp_path, tiny_weights, capsys):
    from tint.cli.main import main
    src = tmp_path / "live.mp4"
    make_film(src, frames=240, audio=None)
    rc = main(["camera", "--source", str(src), "--headless", "--frames", "3", "--weights", str(tiny_weights),
               "--device", "cpu", "--size", "32", "--output", str(tmp_path / "rec.mkv")])
    err = capsys.readouterr().err
    assert rc == 0 and "latency capture->output" in err and (tmp_path / "rec.mkv").is_file()


def test_bad_source(tmp_path, tiny_weights):
    runner = tint.load(tiny_weights, device="cpu")
    with pytest.raises(TintError, match="no such file"):
        camera_loop(runner, str(tmp_path / "nope.mp4"), headless=True)
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 50)
    with pytest.raises(TintError, match="cannot open|gives no frames"):
        camera_loop(runner, str(tmp_path / "junk.mp4"), headless=True)


def test_cli_without_cuda_takes_the_fast_path(tmp_path, capsys):
    """No --weights, no --size, no CUDA: the live path is the bundled `fast` name (the
    default network at working size 128), and it says so."""
    from tint.cli.main import main
    src = tmp_path / "live.mp4"
    make_film(src, frames=240, audio=None)
    rc = main(["camera", "--source", str(src), "--headless", "--frames", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0 and "the fast path (--weights fast, working size 128)" in err
