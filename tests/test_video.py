"""`tint video`: timestamps, streams, bad input, truncation, resume (CPU, tiny films made here)."""
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

import tint                                                   # noqa: E402
from tint.core.errors import TintError
from tint.media.video.pipeline import colorize_video
from tint.media.video.formats import import_av
from tint.cli.video import plan_jobs

SIZE = 32            # working size: keeps the random network cheap on a shared CPU
REPO = Path(__file__).resolve().parents[1]


def make_film(path, frames=24, size=(64, 48), fps=24, audio="aac", subs=False, vfr=False, faststart=False):
    """A tiny gray film: a moving gradient, optional audio (aac, mp3, pcm) and subtitles (.mkv)."""
    W, H = size
    out = av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {})
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    tb = Fraction(1, 12288)
    v.time_base = v.codec_context.time_base = tb
    v.options = {"bf": "0"}
    a = s_out = s_in = None
    if audio:
        codec, fmt = {"aac": ("aac", "fltp"), "mp3": ("libmp3lame", "fltp"), "pcm": ("pcm_s16le", "s16")}[audio]
        a = out.add_stream(codec, rate=44100)
        a.layout = "stereo"
    if subs:
        srt = Path(str(path) + ".srt")
        srt.write_text("1\n00:00:00,100 --> 00:00:00,400\nhello\n\n2\n00:00:00,500 --> 00:00:00,800\nworld\n")
        s_in = av.open(str(srt))
        s_out = out.add_stream_from_template(s_in.streams[0])
    yy, xx = np.mgrid[0:H, 0:W]
    pts, written = 0, []
    for i in range(frames):
        img = ((xx * 4 + yy * 2 + i * 5) % 256).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.repeat(img[:, :, None], 3, 2)), format="rgb24")
        f.pts, f.time_base = pts, tb
        written.append(pts)
        out.mux(v.encode(f))
        pts += (12288 // fps) * (2 if vfr and i % 3 == 2 else 1)
    out.mux(v.encode(None))
    if a is not None:
        n = int(44100 * frames / fps)
        sig = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)
        for i0 in range(0, n, 1024):
            chunk = np.stack([sig[i0:i0 + 1024]] * 2)
            if fmt == "s16":
                fr = av.AudioFrame.from_ndarray((chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo")
            else:
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts, fr.time_base = 44100, i0, Fraction(1, 44100)
            out.mux(a.encode(fr))
        out.mux(a.encode(None))
    if s_in is not None:
        for p in s_in.demux(s_in.streams[0]):
            if p.size:
                p.stream = s_out
                out.mux(p)
        s_in.close()
    out.close()
    return written


def video_times(path):
    """Presentation times (seconds) of every decoded frame, and the stream's frame size."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [float(f.pts * vs.time_base) for f in c.decode(vs)], (vs.width, vs.height)


def packets(path, kind):
    """(pts seconds, bytes) of every packet of the streams of one kind."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [[(round(float(p.pts * p.time_base), 3), bytes(p)) for p in c.demux(s) if p.size] for s in streams]


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, device="cpu")


def run(src, dst, runner, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("size", SIZE)
    return colorize_video(src, dst, runner=runner, **kw)


def test_colorize_frames_is_colorize_tensor(runner):
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    ours = runner.colorize_frames(frames, SIZE)
    ref = runner.colorize_tensor(torch.from_numpy(frames).permute(0, 3, 1, 2), SIZE).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert runner.colorize_frames(frames, SIZE, stabilizer=None).dtype == np.uint8


def test_mp4_keeps_frames_timestamps_size_and_audio(tmp_path, runner):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_film(src, frames=24)
    rep = run(src, dst, runner, segment_seconds=0.3)
    assert rep.frames == 24 and rep.segments == 3           # 8 frames >= 0.3 s each
    t_in, size_in = video_times(src)
    t_out, size_out = video_times(dst)
    assert t_out == pytest.approx(t_in, abs=1e-6) and size_out == size_in == (64, 48)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].average_rate == 24
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() > 0        # it has colour now
    assert packets(dst, "audio") == packets(src, "audio")                 # bit-exact copy
    assert not (tmp_path / ".out.mp4.tint-work").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_mkv_variable_frame_rate_subtitles_pcm(tmp_path, runner):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_film(src, frames=24, audio="pcm", subs=True, vfr=True)
    rep = run(src, dst, runner, segment_seconds=0.25, stabilize=False)
    assert rep.frames == 24 and rep.streams["subtitles_copied"] == 1
    t_in, _ = video_times(src)
    t_out, _ = video_times(dst)
    assert t_out == t_in and len(set(np.round(np.diff(t_out), 2))) == 2          # really VFR
    assert packets(dst, "audio") == packets(src, "audio")
    assert packets(dst, "subtitle") == packets(src, "subtitle") and len(packets(src, "subtitle")[0]) == 2


def test_audio_the_container_cannot_hold_is_reencoded_and_said(tmp_path, runner, capsys):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.webm"
    make_film(src, frames=12, audio="pcm", subs=True)
    rep = run(src, dst, runner)
    err = capsys.readouterr().err
    assert "re-encoding it to" in err and "subtitle stream #2 (subrip) cannot go into .webm" in err
    assert rep.streams["audio_reencoded"] == 1
    with av.open(str(dst)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "libvpx-vp9"), ("audio", "libopus")] \
            or [s.type for s in c.streams] == ["video", "audio"]
    assert len(video_times(dst)[0]) == 12


def _junk(p):
    p.write_bytes(b"\x00\x12not a film" * 500)


def _empty(p):
    p.write_bytes(b"")


def _audio_only(p):
    with av.open(str(p), "w") as o:
        a = o.add_stream("aac", rate=44100)
        a.layout = "stereo"
        fr = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        fr.sample_rate, fr.pts = 44100, 0
        o.mux(a.encode(fr))
        o.mux(a.encode(None))


def _unknown_codec(p):
    tmp = p.with_suffix(".tmp.mkv")
    make_film(tmp, frames=4, audio=None)
    data = tmp.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    p.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/AVC"))


@pytest.mark.parametrize("name,make,message", [
    ("empty.mp4", _empty, "empty file"),
    ("junk.mp4", _junk, "not a readable video"),
    ("audio.m4a", _audio_only, "no video stream"),
    ("odd.mkv", _unknown_codec, "cannot be decoded"),
    ("missing.mp4", None, "no such file"),
])
def test_bad_input_is_one_line(tmp_path, runner, name, make, message):
    src = tmp_path / name
    if make:
        make(src)
    with pytest.raises(TintError, match=message) as e:
        run(src, tmp_path / "out.mp4", runner)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / ".out.mp4.tint-work").exists()


def test_cli_bad_input_exit_2(tmp_path, tiny_weights, capsys):
    from tint.cli.main import main
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    rc = main(["video", str(tmp_path / "junk.mp4"), "-o", str(tmp_path / "o.mp4"),
               "--weights", str(tiny_weights), "--device", "cpu", "--size", "32", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and err.startswith("tint video: error:")


@pytest.mark.parametrize("suffix,faststart", [(".mkv", False), (".mp4", True)])
def test_truncated_input_gives_what_was_decoded(tmp_path, runner, suffix, faststart):
    full, half, dst = tmp_path / f"full{suffix}", tmp_path / f"half{suffix}", tmp_path / "out.mp4"
    make_film(full, frames=96, faststart=faststart)
    data = full.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    rep = run(half, dst, runner)
    times, _ = video_times(dst)
    assert 10 < rep.frames == len(times) < 96
    t_full, _ = video_times(full)
    assert times == pytest.approx(t_full[: len(times)], abs=1e-3)


def test_refuses_to_overwrite(tmp_path, runner):
    src = tmp_path / "in.mp4"
    make_film(src, frames=4, audio=None)
    with pytest.raises(TintError, match="overwrite the input"):
        run(src, src, runner, overwrite=True)
    (tmp_path / "out.mp4").write_bytes(b"x")
    with pytest.raises(TintError, match="exists"):
        run(src, tmp_path / "out.mp4", runner)
    with pytest.raises(TintError, match="unsupported output type"):
        run(src, tmp_path / "out.gif", runner)
    assert run(src, tmp_path / "out.mp4", runner, overwrite=True).frames == 4


class Interrupt(Exception):
    pass


def test_resume_after_an_interrupted_job(tmp_path, runner):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    make_film(src, frames=48, audio="aac")

    def stop_after_two(n):
        if n == 2:
            raise Interrupt
    with pytest.raises(Interrupt):
        run(src, dst, runner, segment_seconds=0.5, on_segment=stop_after_two)
    work = tmp_path / ".out.mp4.tint-work"
    assert not dst.exists() and sorted(p.name for p in work.iterdir()) == ["seg_00000.mp4", "seg_00001.mp4", "state.json"]
    with pytest.raises(TintError, match="--resume continues it"):
        run(src, dst, runner, segment_seconds=0.5)
    with pytest.raises(TintError, match="other settings"):
        run(src, dst, runner, segment_seconds=0.5, resume=True, quality=30)
    rep = run(src, dst, runner, segment_seconds=0.5, resume=True)
    assert rep.frames == 48 and rep.frames_resumed == 24
    assert video_times(dst)[0] == pytest.approx(video_times(src)[0], abs=1e-3)
    assert packets(dst, "audio") == packets(src, "audio")
    assert not work.exists()
    assert run(src, dst, runner, resume=True).frames == 0          # already finished: nothing to do


def test_resume_after_sigkill(tmp_path, tiny_weights):
    """A real kill -9 in the middle of a job started with `python -m tint video`."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_film(src, frames=240, audio="aac")
    cmd = [sys.executable, "-m", "tint", "video", str(src), "-o", str(dst), "--weights", str(tiny_weights),
           "--device", "cpu", "--size", "32", "--batch", "1", "--segment-seconds", "0.5", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / ".out.mp4.tint-work" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and state.read_text().count('"file"') >= 2:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("the job finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not dst.exists()
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming in.mp4" in done.stderr and "from an earlier run" in done.stderr
    times, _ = video_times(dst)
    assert len(times) == 240 and times == pytest.approx(video_times(src)[0], abs=1e-6)
    assert packets(dst, "audio") == packets(src, "audio")


def test_folder_is_sharded_by_rank(tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    for name in ("a.mp4", "b.mkv", "c.avi", "d.mov", "notes.txt"):
        (films / name).write_bytes(b"x")
    all_jobs = [plan_jobs(films, tmp_path / "out", r, 3) for r in range(3)]
    assert [[i.name for i, _ in jobs] for jobs in all_jobs] == [["a.mp4", "d.mov"], ["b.mkv"], ["c.avi"]]
    assert all_jobs[2][0][1] == tmp_path / "out" / "c.mkv"          # .avi is not an output type
    assert plan_jobs(films / "a.mp4", tmp_path / "o.mp4", 1, 2) == []
    with pytest.raises(TintError, match="must be a folder"):
        plan_jobs(films, tmp_path / "o.mp4")


def test_folder_cli(tmp_path, tiny_weights, monkeypatch):
    from tint.cli.main import main
    films = tmp_path / "films"
    films.mkdir()
    make_film(films / "a.mp4", frames=6, audio=None)
    make_film(films / "b.mkv", frames=5, audio=None)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    args = ["video", str(films), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
            "--device", "cpu", "--size", "32", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.mkv"]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(args) == 0
    assert len(video_times(tmp_path / "out" / "a.mp4")[0]) == 6


def test_missing_pyav_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(TintError, match=r'pip install "tint\[video\]"'):
        import_av()


# ----------------------------------------------------------------------------- the Y'CbCr pixel path
from tint.media.video.step import FrameColorizer, PASSTHROUGH
from tint.media.video.formats import FrameLayout, lightness_lut, luma_to_gray_lut, rgb_to_yuv
from tint.media.video.encode import output_spec


def yuv_frame(y, full_range=False):
    """A yuv420p av frame with luma ``y`` and neutral chroma."""
    H, W = y.shape
    f = av.VideoFrame.from_ndarray(np.concatenate([y, np.full((H // 2, W), 128, np.uint8)]), format="yuv420p")
    f.color_range = 2 if full_range else 1
    return f


def to_av(packed, layout):
    """Packed planes -> av frame tagged as the encoder tags it."""
    f = av.VideoFrame(layout.width, layout.height, layout.pix_fmt)
    for plane, src in zip(f.planes, layout.split(packed)):
        h, w = src.shape
        np.frombuffer(plane, np.uint8, count=plane.line_size * h).reshape(h, plane.line_size)[:, :w] = src
    return f


def test_luma_lut_is_swscale_for_every_code():
    y = np.tile(np.arange(256, dtype=np.uint8), (4, 2))                     # (4, 512): every code
    np.testing.assert_array_equal(luma_to_gray_lut(False)[y], yuv_frame(y).to_ndarray(format="gray"))
    np.testing.assert_array_equal(luma_to_gray_lut(True)[y], yuv_frame(y, True).to_ndarray(format="gray"))
    # L of a luma code == L of the rgb24 path's gray pixel (within swscale's +-1 in rgb24)
    from tint.core.color import gray_to_lightness
    rgb = yuv_frame(y).to_ndarray(format="rgb24")[0, :256, 0]
    ref = gray_to_lightness(torch.from_numpy(rgb).float().view(1, 1, -1) / 255).view(-1)
    assert (lightness_lut(False) - ref).abs().max() < 0.6                     # < 1 gray level


@pytest.mark.parametrize("matrix,name", [("bt709", "ITU709"), ("bt601", "ITU601")])
def test_rgb_to_yuv_matches_swscale(matrix, name):
    H, W = 48, 64
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * 2 + yy * 3) % 256], -1).astype(np.uint8)
    ours = rgb_to_yuv(torch.from_numpy(rgb)[None], matrix)[0].numpy()
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=name).to_ndarray()
    Y = H * W
    assert np.abs(ours[:Y].astype(int) - ref[:H].reshape(-1)).max() <= 1
    # chroma: swscale's 4:2:0 filter differs from a 2x2 mean only at sharp edges (the wrap of %)
    d = np.abs(ours[Y:].astype(int) - ref[H:].reshape(-1))
    assert np.median(d) <= 1 and np.mean(d) < 2
    assert rgb_to_yuv(torch.from_numpy(rgb)[None], matrix, subsample=False).shape == (1, 3 * Y)


def test_yuv_path_matches_rgb24_path(runner):
    """FrameColorizer (luma in, planes out) vs Runner.colorize_frames (rgb24 in, rgb24 out)."""
    H, W = 48, 64
    yy, xx = np.mgrid[0:H, 0:W]
    luma = (16 + (xx * 3 + yy * 2) % 220).astype(np.uint8)[None].repeat(2, 0)
    luma[1] = np.roll(luma[1], 3, 1)
    for matrix in ("bt601", "bt709"):
        layout = FrameLayout(W, H, "yuv420p", matrix, False)
        step = FrameColorizer(runner, layout, size=SIZE, stabilize=False)
        out = torch.zeros(2, layout.frame_bytes, dtype=torch.uint8)
        assert step.submit(torch.from_numpy(luma), out) == (None, None, 2)
        rgb_in = np.stack([yuv_frame(f).to_ndarray(format="rgb24") for f in luma])
        ref = runner.colorize_frames(rgb_in, SIZE).astype(int)
        name = {"bt601": "ITU601", "bt709": "ITU709"}[matrix]
        got = np.stack([to_av(o, layout).to_ndarray(format="rgb24", src_colorspace=name) for o in out.numpy()])
        d = np.abs(got.astype(int) - ref)
        assert d.mean() < 1.5 and np.percentile(d, 99) <= 6, (matrix, d.mean(), d.max())


def test_full_range_input_and_color_tags(tmp_path, runner):
    """A yuvj420p (full-range) film: luma 0..255 maps to tv-range 16..235 out, tagged."""
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    W, H = 64, 48
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = W, H, "yuvj420p"
        v.options = {"bf": "0", "qp": "0"}
        yy, xx = np.mgrid[0:H, 0:W]
        for i in range(6):
            y = ((xx * 4 + i) % 256).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(np.concatenate([y, np.full((H // 2, W), 128, np.uint8)]), format="yuvj420p")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    ref = run(src, tmp_path / "ceil.mp4", runner, colorize_batch=PASSTHROUGH, quality=0)
    assert ref.frames == 6
    rep = run(src, dst, runner, quality=0, stabilize=False)
    assert rep.frames == 6
    for path, tol in ((tmp_path / "ceil.mp4", 1.0), (dst, 4.0)):   # colour moves Y' a little
        with av.open(str(path)) as c:
            cc = c.streams.video[0].codec_context
            assert (int(cc.color_range), int(cc.colorspace), cc.pix_fmt) == (1, 6, "yuv420p")   # tv, BT.601 (SD)
            f = next(c.decode(video=0))
            y_out = f.to_ndarray()[:H]
        assert 14 <= y_out.min() and y_out.max() <= 237
        gray_out = luma_to_gray_lut(False)[y_out].astype(int)
        assert np.abs(gray_out - (xx * 4) % 256).mean() < tol               # same lightness, full range


def test_x264_chroma_qp_offset(tmp_path, runner):
    """libx264 output codes chroma 4 QP finer than x264's default (still-shot chroma flicker,
    docs/VIDEO.md); the option reaches x264: its settings string in the stream says so."""
    for suffix in (".mp4", ".mkv"):
        assert output_spec(Path("a" + suffix)).options["chromaoffset"] == "-4"
    assert output_spec(Path("a.mp4"), quality=28, preset="veryfast").options["chromaoffset"] == "-4"
    assert "chromaoffset" not in output_spec(Path("a.webm")).options
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_film(src, frames=4, audio=None)
    run(src, dst, runner, colorize_batch=PASSTHROUGH)
    data = dst.read_bytes()
    i = data.find(b"x264 - core")
    info = data[i:data.find(b"\x00", i)].decode("latin-1")
    assert i >= 0 and "chroma_qp_offset=-6" in info, info          # -2 (psy-rd's) - 4


def test_preset_option():
    assert output_spec(Path("a.mp4"), preset="veryfast").options["preset"] == "veryfast"
    assert output_spec(Path("a.mp4")).options["preset"] == "medium"
    with pytest.raises(TintError, match="unknown --preset"):
        output_spec(Path("a.mp4"), preset="warp9")
    with pytest.raises(TintError, match="no meaning for mpeg4"):
        output_spec(Path("a.mp4"), codec="mpeg4", preset="fast")


def test_passthrough_keeps_luma_and_sizes(tmp_path, runner):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_film(src, frames=10, audio=None)
    rep = run(src, dst, runner, colorize_batch=PASSTHROUGH, batch=3, quality=0)
    assert rep.frames == 10
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
            np.testing.assert_array_equal(fa.to_ndarray()[:48], fb.to_ndarray()[:48])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_path_matches_cpu(tiny_weights):
    """The CUDA path (streams, pinned buffers, events, Triton join, fp16 engine) gives the
    CPU path's planes within fp16 rounding."""
    H, W = 64, 96
    yy, xx = np.mgrid[0:H, 0:W]
    luma = (16 + (xx * 2 + yy * 3) % 220).astype(np.uint8)[None].repeat(3, 0)
    layout = FrameLayout(W, H, "yuv420p", "bt601", False)
    outs = []
    for dev in ("cpu", "cuda"):
        step = FrameColorizer(tint.load(tiny_weights, device=dev), layout, size=SIZE, stabilize=False)
        y = torch.from_numpy(luma).pin_memory() if dev == "cuda" else torch.from_numpy(luma)
        out = torch.zeros(3, layout.frame_bytes, dtype=torch.uint8, pin_memory=dev == "cuda")
        done, read, _ = step.submit(y, out)
        if done is not None:
            done.synchronize()
        outs.append(out.numpy().astype(int))
    d = np.abs(outs[0] - outs[1])
    assert d.mean() < 1.0 and d.max() <= 8, (d.mean(), d.max())


# ----------------------------------------------------------------------------- the temporal filter in the pipeline
def decoded_planes(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray() for f in c.decode(video=0)])


@pytest.mark.parametrize("frames,batch,lookahead", [(13, 3, None), (40, 8, None), (11, 4, 0)])
def test_lookahead_keeps_every_frame_and_its_time(tmp_path, runner, frames, batch, lookahead):
    """The two-sided filter holds frames back (none come out for the first 24): every frame
    still comes out once, in order, with its own timestamp (VFR), films shorter than the
    lookahead included."""
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_film(src, frames=frames, audio=None, vfr=True)
    rep = run(src, dst, runner, batch=batch, lookahead=lookahead, segment_seconds=0.2)
    assert rep.frames == frames
    assert video_times(dst)[0] == video_times(src)[0]


def test_video_frames_do_not_depend_on_the_batch(tmp_path, runner):
    """Through the pipeline (lossless output), batch 3 and batch 16 give the frames of the
    step run on the whole clip at once: the filter's windows do not move with the batches."""
    from tint.media.stabilize import LOOKAHEAD
    n = LOOKAHEAD + 6
    src = tmp_path / "in.mp4"
    make_film(src, frames=n, audio=None)
    with av.open(str(src)) as c:
        luma = np.stack([f.to_ndarray()[:48] for f in c.decode(video=0)])     # yuv420p: the Y rows first
    layout = FrameLayout(64, 48, "yuv420p", "bt601", False)
    step = FrameColorizer(runner, layout, size=SIZE)
    out = torch.zeros(n, layout.frame_bytes, dtype=torch.uint8)
    assert step.submit(torch.from_numpy(luma), out)[2] == 6                 # the rest wait for their lookahead
    assert step.flush(out[6:]) == (None, LOOKAHEAD) and step.flush(out) == (None, 0)
    for b in (3, 16):
        got = decoded_planes(run(src, tmp_path / f"b{b}.mp4", runner, batch=b, quality=0).output).reshape(n, -1)
        assert np.abs(got.astype(int) - out.numpy()).max() <= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_video_with_the_two_sided_filter(tmp_path, tiny_weights):
    """tint video on cuda (engine, streams, events, device filter with its lookahead): every
    frame and timestamp kept, and the frames close to the CPU run's."""
    src = tmp_path / "in.mp4"
    make_film(src, frames=30, audio="aac")
    outs = {}
    for dev in ("cpu", "cuda"):
        rep = run(src, tmp_path / f"{dev}.mp4", tint.load(tiny_weights, device=dev), batch=8, quality=0)
        assert rep.frames == 30
        assert video_times(tmp_path / f"{dev}.mp4")[0] == pytest.approx(video_times(src)[0], abs=1e-6)
        outs[dev] = decoded_planes(tmp_path / f"{dev}.mp4").astype(int)
    d = np.abs(outs["cpu"] - outs["cuda"])
    assert d.mean() < 1.0 and np.percentile(d, 99) <= 8, (d.mean(), d.max())


def test_cli_without_cuda_takes_the_fast_path(tmp_path, capsys):
    """No --weights, no --size, no CUDA: a film takes the live path too (the quality model
    at 256 runs ~4 frames/s of 640x360 on 2 cores), and says so in one line."""
    from tint.cli.main import main
    src, dst = tmp_path / "film.mp4", tmp_path / "out.mp4"
    make_film(src, frames=12)
    rc = main(["video", str(src), "-o", str(dst), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and dst.exists()
    assert "tint video: no CUDA: the fast path (--weights fast, working size 128)" in err
