"""Hostile input through every interface: one line on stderr and an exit status, never a
traceback; bounded memory and time.  One test (or more) per case of docs/RELIABILITY.md.
The bounded-memory cases run in a child process under an address-space limit
(conftest.MEMORY_LIMIT_MB), so an allocation the size of the old bugs fails at once."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tint
from tint.cli.main import main
from tint.core.errors import TintError

from conftest import MEMORY_LIMIT_MB, run_limited


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, device="cpu")


# --------------------------------------------------------------------------- thin images: bounded work
THIN_API = """
import sys, time, numpy as np, tint
r = tint.load(sys.argv[1], device="cpu")
h, w = int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
out = r(np.full((h, w), 128, np.uint8))
assert out.shape == (h, w, 3), out.shape
print("ok", round(time.perf_counter() - t, 1))
"""


@pytest.mark.parametrize("h,w", [(1, 1_000_000), (700_000, 2)])
def test_thin_array_bounded_memory_and_time(tiny_weights, h, w):
    """Was 13 GB and 50 s, then a traceback: the working shape kept the aspect ratio with a
    minimum side, and the join built an interpolation matrix sized by the full width."""
    t = time.perf_counter()
    r = run_limited([sys.executable, "-c", THIN_API, str(tiny_weights), str(h), str(w)], timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    assert time.perf_counter() - t < 90


def test_thin_png_through_the_cli_bounded(tmp_path, tiny_weights):
    src = tmp_path / "thin.png"
    Image.new("L", (1_000_000, 1), 90).save(src)
    assert src.stat().st_size < 5_000                              # a 1 KB-class file
    r = run_limited([sys.executable, "-m", "tint", "image", str(src), "-o", str(tmp_path / "out"),
                     "--weights", str(tiny_weights), "--device", "cpu"], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "thin.png").size == (1_000_000, 1)
    assert "Traceback" not in r.stderr


def test_memory_limit_is_real(tiny_weights):
    """The limit the bounded cases run under does stop an allocation of the old size."""
    r = run_limited([sys.executable, "-c", "import numpy as np; np.ones(13 << 30, np.uint8)"], timeout=60)
    assert r.returncode != 0 and "MemoryError" in r.stderr
    assert MEMORY_LIMIT_MB <= 2048


# --------------------------------------------------------------------------- sizes: one rule everywhere
@pytest.mark.parametrize("size", [0, -1, 15, 2049, 99999])
def test_bad_size_is_a_usage_error_on_every_command(tmp_path, capsys, tiny_weights, size):
    src = tmp_path / "a.png"
    Image.new("L", (40, 30), 100).save(src)
    for argv in (["image", src, "-o", tmp_path / "out"],
                 ["video", tmp_path / "film.mp4", "-o", tmp_path / "film_out.mp4"],
                 ["serve", "--port", "0"],
                 ["camera", "--source", src, "--headless"],
                 ["info"]):
        code, out, err = cli(capsys, *argv, "--size", size, "--weights", tiny_weights, "--device", "cpu")
        assert code == 2, (argv, err)
        assert err.strip().splitlines() == [f"tint {argv[0]}: error: working size must be in 16..2048, got {size}"]
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*tint-work*"))                 # tint video left nothing behind


def test_python_api_and_runner_agree_on_sizes(tiny_weights, runner):
    g = np.full((20, 30), 100, np.uint8)
    for bad in (15, 0, -1, 99999):
        with pytest.raises(TintError, match="16..2048"):
            tint.colorize(g, size=bad, runner=runner)
        with pytest.raises(TintError, match="16..2048"):
            tint.Runner(tiny_weights, device="cpu", size=bad)
        with pytest.raises(TintError, match="16..2048"):
            runner(g, size=bad)
    assert tint.colorize(g, size=16, runner=runner).shape == (20, 30, 3)


# --------------------------------------------------------------------------- Python API input rules
def test_float_array_outside_unit_range_is_refused(runner):
    """Was: silently clipped, so an array in 0..255 came out white."""
    a = np.linspace(0, 255, 600, dtype=np.float32).reshape(20, 30)
    with pytest.raises(TintError, match=r"must be in \[0, 1\]; this array holds 0\.\.255"):
        tint.colorize(a, runner=runner)
    with pytest.raises(TintError, match=r"\[0, 1\]"):
        tint.colorize(torch_tensor(a), runner=runner)
    out = tint.colorize(a / 255, runner=runner)                     # the same data, scaled: fine
    assert out.dtype == np.float32 and out.shape == (20, 30, 3)


def torch_tensor(a):
    import torch
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def test_pil_mode_F_one_rule_for_cli_and_api(tmp_path, capsys, runner, tiny_weights):
    """Was: black through the CLI (read as 16-bit counts) and white through the API (clipped)."""
    ramp = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    unit = Image.fromarray(ramp, "F")
    api_out = np.asarray(tint.colorize(unit, runner=runner, size=64))
    unit.save(tmp_path / "unit.tif")
    code, _, err = cli(capsys, "image", tmp_path / "unit.tif", "-o", tmp_path / "unit_out.png",
                       "--weights", tiny_weights, "--device", "cpu", "--size", "64")
    assert code == 0, err
    cli_out = np.asarray(Image.open(tmp_path / "unit_out.png"))
    assert np.abs(cli_out.astype(int) - api_out.astype(int)).max() <= 1            # one rule
    assert 60 < cli_out.mean() < 200                                                # neither black nor white
    wide = Image.fromarray(ramp * 255, "F")                                          # 0..255 floats
    with pytest.raises(TintError, match=r"\[0, 1\].*0\.\.255"):
        tint.colorize(wide, runner=runner)
    wide.save(tmp_path / "wide.tif")
    code, _, err = cli(capsys, "image", tmp_path / "wide.tif", "-o", tmp_path / "wide_out.png",
                       "--weights", tiny_weights, "--device", "cpu")
    assert code == 1 and "wide.tif: float image values must be in [0, 1]" in err


def test_pil_mode_LAB_comes_back_RGB(runner):
    """Was: LAB has an 'A' in its name, so it was treated as having alpha: RGBA out."""
    lab = Image.new("RGB", (30, 20), (120, 120, 120)).convert("LAB")
    out = tint.colorize(lab, runner=runner, size=64)
    assert out.mode == "RGB" and out.size == (30, 20)
    for mode in ("HSV", "YCbCr", "CMYK", "I", "I;16B", "La", "RGBa", "RGBX", "PA"):
        im = Image.new("RGB", (12, 10), (90, 90, 90)).convert("RGBA").convert(mode) if mode not in (
            "I;16B",) else Image.new(mode, (12, 10))
        assert tint.colorize(im, runner=runner, size=16).mode in ("RGB", "RGBA"), mode


@pytest.mark.parametrize("shape", [(1, 1, 0, 5), (0, 3, 4, 4), (1, 3, 7, 0)])
def test_empty_tensor_is_a_tint_error(runner, shape):
    """Was: a bare ValueError from deep inside the resize."""
    import torch
    with pytest.raises(TintError, match="no pixels"):
        tint.colorize(torch.zeros(shape), runner=runner)


def test_integer_tensors_other_than_uint8_refused(runner):
    import torch
    with pytest.raises(TintError, match="dtype"):
        tint.colorize(torch.full((1, 1, 4, 4), 200, dtype=torch.int64), runner=runner)


# --------------------------------------------------------------------------- weights: checked before built
def hostile_weights(path, **config):
    import json

    import torch
    from safetensors.torch import save_file
    cfg = {"backbone": "tiny-darknet", "output": "bins", "final_width": 8, **config}
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "tint-weights/1", "config": json.dumps(cfg)})
    return path


def test_huge_config_refused_before_building(tmp_path):
    """Was: a 276-byte file saying final_width 10^9 made tint build the model (576 GB)."""
    w = hostile_weights(tmp_path / "evil.safetensors", final_width=1_000_000_000)
    assert w.stat().st_size < 400
    src = tmp_path / "a.png"
    Image.new("L", (20, 20)).save(src)
    for argv in (["image", str(src), "-o", str(tmp_path / "out")], ["info"]):
        r = run_limited([sys.executable, "-m", "tint", *argv, "--weights", str(w), "--device", "cpu"], timeout=60)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.strip().splitlines() == [
            f"tint {argv[0]}: error: {w}: bad config in weights file: final_width must be in 1..1024, got 1000000000"]


@pytest.mark.parametrize("config,match", [
    ({"final_width": 0}, "final_width must be in 1..1024"),
    ({"final_width": 8.0}, "final_width must be int"),
    ({"final_width": True}, "final_width must be int"),
    ({"bin_step": 0.001}, "bin_step must be in 5..100"),
    ({"temperature": float("nan")}, "temperature must be float"),
    ({"size": 100000}, "size must be in 16..2048"),
    ({"backbone": "resnet9000"}, "backbone must be one of vgg16, tiny-darknet"),
    ({"output": 3}, "output must be str"),
    ({"evil_key": 1}, "unknown key 'evil_key'"),
])
def test_config_table(tmp_path, config, match):
    from tint.core.weights import read_header
    with pytest.raises(TintError, match=match):
        read_header(hostile_weights(tmp_path / "w.safetensors", **config))


def test_config_rules_tolerate_only_dataclass_fields(monkeypatch):
    import dataclasses

    import tint.core.weights
    from tint.core.model import ColorizerConfig
    from tint.core.weights import CONFIG_RULES, validate_config
    fields = {f.name for f in dataclasses.fields(ColorizerConfig)}
    assert validate_config(ColorizerConfig().to_dict()) == ColorizerConfig()
    # a dataclass field without a rule (added to the model later) is left to the dataclass
    monkeypatch.setattr(tint.core.weights, "CONFIG_RULES", {k: v for k, v in CONFIG_RULES.items() if k != "temperature"})
    assert validate_config({"temperature": 0.5}).temperature == 0.5
    monkeypatch.undo()
    # rules for fields the dataclass does not have yet (context, out_stride) do not make them legal
    for key in set(CONFIG_RULES) - fields:
        with pytest.raises(TintError, match="unknown key"):
            validate_config({key: 1})


# --------------------------------------------------------------------------- unexpected errors: one line too
CRASH = """
import sys
import tint.cli.image
def boom(args):
    raise RuntimeError("kaboom\\nsecond line")
tint.cli.image._run_image = boom
from tint.cli.main import main
sys.exit(main(["image", "x.png", "-o", "out"]))
"""


def test_unexpected_error_is_one_line_with_a_report(tmp_path):
    import re
    import subprocess

    from conftest import limited_env
    r = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60,
                       env=limited_env(TMPDIR=str(tmp_path)), cwd=str(tmp_path))
    assert r.returncode == 3                                          # distinct from 1 (failures) and 2 (usage)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("tint image: internal error: RuntimeError: kaboom (full report in ")
    assert "TINT_DEBUG=1" in lines[0]
    report = re.search(r"full report in (\S+);", lines[0]).group(1)
    assert "Traceback" in open(report).read() and "kaboom" in open(report).read()
    r = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60,
                       env=limited_env(TMPDIR=str(tmp_path), TINT_DEBUG="1"), cwd=str(tmp_path))
    assert r.returncode == 3 and "Traceback" in r.stderr and "kaboom" in r.stderr


def test_unexpected_error_on_one_file_the_batch_goes_on(tmp_path, capsys, tiny_weights, monkeypatch, runner):
    import tint.media.io
    for name in ("a.png", "b.png", "c.png"):
        Image.new("L", (20, 16), 80).save(tmp_path / name)
    real = tint.media.io.read_image

    def flaky(path):
        if path.name == "b.png":
            raise ZeroDivisionError("division by zero")
        return real(path)
    monkeypatch.setattr(tint.media.io, "read_image", flaky)
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))           # where the report goes
    code, out, err = cli(capsys, "image", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png",
                         "-o", tmp_path / "out", "--weights", tiny_weights, "--device", "cpu", "--size", "16")
    assert code == 3 and "2 colorized, 1 failed" in out
    assert [line for line in err.splitlines() if "b.png" in line][0].startswith(
        f"tint image: {tmp_path / 'b.png'}: internal error: ZeroDivisionError: division by zero (full report in ")
    assert list(tmp_path.glob("tint-error-*.txt"))


# --------------------------------------------------------------------------- tint image: batches
def gray_png(path, w=24, h=18, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((np.arange(w * h).reshape(h, w) * 7 + value) % 256).astype(np.uint8)).save(path)
    return path


def image_cli(capsys, tiny_weights, *argv):
    return cli(capsys, "image", *argv, "--weights", tiny_weights, "--device", "cpu", "--size", "16")


def test_recursive_batch_never_eats_its_outputs(tmp_path, capsys, tiny_weights):
    """Was: run twice, the outputs in scans/colored were colorized into colored/colored,
    with false failures (exit 1); every run nested deeper."""
    scans = tmp_path / "scans"
    gray_png(scans / "a.png")
    gray_png(scans / "sub" / "b.png")
    for run in range(3):
        code, out, err = image_cli(capsys, tiny_weights, scans, "-o", scans / "colored", "-r")
        assert code == 0, err
        assert ("2 colorized, 0 failed, 0 skipped" if run == 0 else "0 colorized, 0 failed, 2 skipped") in out
        assert ("outputs are never inputs" in err) == (run > 0)
    assert sorted(p.relative_to(scans).as_posix() for p in scans.rglob("*.png")) == [
        "a.png", "colored/a.png", "colored/sub/b.png", "sub/b.png"]
    # a glob over the same tree leaves the outputs out too
    code, out, err = image_cli(capsys, tiny_weights, str(scans / "**" / "*.png"), "-o", scans / "colored")
    assert code == 0 and "0 failed" in out and not (scans / "colored" / "colored").exists()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from tint.core.files import atomic_write
def write(tmp):
    Path(tmp).write_bytes(b"half a PNG")
    print("writing", flush=True)
    time.sleep(600)
atomic_write(Path(sys.argv[1]), write)
"""


def test_temp_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path, capsys, tiny_weights):
    """Was: a killed write left .name.*.part forever."""
    import subprocess

    from conftest import limited_env
    src = gray_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out / "a.png")], stdout=subprocess.PIPE,
                         text=True, env=limited_env())
    assert p.stdout.readline().strip() == "writing"
    parts = list(out.glob(".a.png.*.part"))
    assert len(parts) == 1
    # while its writer lives, the file is not stale: a run into the folder leaves it alone
    foreign = out / ".a.png.someone-else.part"                     # not tint's: never touched
    foreign.write_bytes(b"x")
    from tint.core.files import clean_stale_parts
    assert clean_stale_parts(out) == 0 and parts[0].exists()
    p.kill()                                                       # kill -9
    p.wait()
    p.stdout.close()
    assert parts[0].exists()
    code, so, err = image_cli(capsys, tiny_weights, src, "-o", out)
    assert code == 0, err
    assert "removed 1 partial file(s)" in err
    assert not parts[0].exists() and foreign.exists() and (out / "a.png").is_file()


@pytest.mark.parametrize("name", ["out.gif", "out.heic", "OUT.PDF"])
def test_output_name_with_an_unwritable_extension_is_an_error(tmp_path, capsys, tiny_weights, name):
    """Was: -o out.gif silently made a folder named out.gif."""
    src = gray_png(tmp_path / "a.png")
    code, out, err = image_cli(capsys, tiny_weights, src, "-o", tmp_path / name)
    assert code == 2 and not (tmp_path / name).exists()
    assert err.strip().splitlines() == [
        f"tint image: error: -o {tmp_path / name}: tint cannot write {Path(name).suffix.lower()} files; name a "
        f".png (it keeps animations), .webp, .jpg, .tif or .bmp file, or a folder"]


def gif(path, frames=3, durations=(100, 200, 300), loop=0):
    ims = [Image.fromarray(np.full((20, 26), 40 + 60 * i, np.uint8)).convert("P") for i in range(frames)]
    kw = {} if loop is None else {"loop": loop}
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=list(durations), **kw)
    return path


@pytest.mark.parametrize("loop", [0, None])
def test_animated_gif_keeps_every_frame(tmp_path, capsys, tiny_weights, loop):
    """Was: only frame 1, silently.  Now every frame, durations and loop kept (APNG)."""
    src = gif(tmp_path / "anim.gif", loop=loop)
    code, out, err = image_cli(capsys, tiny_weights, src, "-o", tmp_path / "out")
    assert code == 0, err
    res = Image.open(tmp_path / "out" / "anim.png")               # GIF in -> APNG out
    assert res.n_frames == 3
    durations, means = [], []
    for i in range(3):
        res.seek(i)
        durations.append(res.info["duration"])
        means.append(np.asarray(res.convert("L")).mean())
    assert durations == [100, 200, 300]
    assert means[0] < means[1] < means[2]                          # each frame is its own frame
    assert res.info.get("loop") == (0 if loop == 0 else 1)


def test_animated_gif_to_a_still_format_says_so(tmp_path, capsys, tiny_weights):
    src = gif(tmp_path / "anim.gif")
    code, out, err = image_cli(capsys, tiny_weights, src, "-o", tmp_path / "still.jpg")
    assert code == 0
    assert f"tint image: note: {src} holds 3 frames; only the first is colorized (.jpg has no animation" in err


def test_animation_pixel_limit_counts_every_frame(tmp_path, capsys, tiny_weights, monkeypatch):
    src = gif(tmp_path / "anim.gif")                               # 3 x 520 pixels
    monkeypatch.setenv("TINT_MAX_PIXELS", "1000")
    code, out, err = image_cli(capsys, tiny_weights, src, "-o", tmp_path / "out")
    assert code == 1 and "animation of 3 frames of 26x20 = 1,560 pixels, over the limit of 1,000" in err


def test_colour_photo_gets_a_note_and_the_batch_goes_on(tmp_path, capsys, tiny_weights):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "colour.png")
    gray_png(tmp_path / "gray.png")
    Image.fromarray(np.dstack([np.full((20, 24), 120, np.uint8)] * 3)).save(tmp_path / "gray_rgb.png")
    code, out, err = image_cli(capsys, tiny_weights, tmp_path / "colour.png", tmp_path / "gray.png",
                               tmp_path / "gray_rgb.png", "-o", tmp_path / "out")
    assert code == 0 and "3 colorized, 0 failed" in out
    notes = [line for line in err.splitlines() if "already in colour" in line]
    assert notes == [f"tint image: note: {tmp_path / 'colour.png'} is already in colour; "
                     f"its colours are replaced by predicted ones"]


# --------------------------------------------------------------------------- tint video
@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mp4", ".mov"])
def test_video_container_keeps_the_input_frame_rate(tmp_path, runner, ext):
    """Was: a Matroska output's container frame rate read 1000 fps (input 24)."""
    av = pytest.importorskip("av")
    from test_video import make_film

    from tint.media.video.pipeline import colorize_video
    src = tmp_path / "in.mp4"
    make_film(src, frames=12, fps=24, audio=None)
    colorize_video(src, tmp_path / f"out{ext}", runner=runner, size=16, progress=False)
    with av.open(str(tmp_path / f"out{ext}")) as c:
        vs = c.streams.video[0]
        assert vs.average_rate == 24 and vs.guessed_rate == 24 and vs.base_rate == 24


def test_video_failure_leaves_no_work_folder(tmp_path, runner):
    pytest.importorskip("av")
    from test_video import make_film

    from tint.media.video.pipeline import colorize_video
    src = tmp_path / "in.mp4"
    make_film(src, frames=6, fps=24, audio=None)

    def broken(y, layout):
        raise RuntimeError("the network fell over")
    with pytest.raises(RuntimeError):
        colorize_video(src, tmp_path / "out.mp4", colorize_batch=broken, progress=False)
    assert not list(tmp_path.glob(".*tint-work")) and not (tmp_path / "out.mp4").exists()
