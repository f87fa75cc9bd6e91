"""saturation: one colourfulness control under every interface (API, CLI, frames, HTTP, page)."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import tint
from tint.cli.main import main
from tint.core.errors import TintError


def gradient(h=40, w=56):
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 4 + y * 3) % 200 + 30).astype(np.uint8)


def chroma(rgb: np.ndarray) -> float:
    """Mean distance from gray, in 8-bit levels."""
    a = np.asarray(rgb)[..., :3].astype(float)
    return float((a.max(-1) - a.min(-1)).mean())


@pytest.fixture(scope="module")
def runner(tiny_weights):
    return tint.load(tiny_weights, device="cpu", size=64)


def test_api_scales_chroma(runner):
    g = gradient()
    outs = {s: runner.colorize_array(g, saturation=s) for s in (0.0, 0.5, 1.0, 1.5)}
    assert chroma(outs[0.0]) <= 1.0                                       # gray (rounding only)
    assert chroma(outs[0.5]) < chroma(outs[1.0]) < chroma(outs[1.5])
    assert np.array_equal(outs[1.0], runner.colorize_array(g))           # 1 is the default
    assert np.array_equal(np.asarray(tint.colorize(Image.fromarray(g), saturation=0.5, runner=runner)), outs[0.5])


def test_api_scales_ab_exactly(runner, monkeypatch):
    """ab is multiplied before the join: the same as scaling the network's output."""
    from tint.core.pipeline import join_chroma, resize_lightness
    from tint.core.color import gray_to_lightness
    g = gradient().astype(np.float32) / 255
    L = gray_to_lightness(torch.from_numpy(g)[None, None])
    ab = runner.chroma(resize_lightness(L, runner.working_shape(*g.shape)))
    ref = join_chroma(L, ab * 1.7)[0].permute(1, 2, 0).numpy()
    assert np.abs(runner.colorize_array(g, saturation=1.7) - ref).max() < 1e-4


def test_tensor_and_runner_default(tiny_weights, runner):
    x = torch.from_numpy(gradient())[None, None]
    gray = runner.colorize_tensor(x, saturation=0)
    assert (gray.max(1).values.int() - gray.min(1).values.int()).max() <= 1
    vivid = tint.load(tiny_weights, device="cpu", size=64, saturation=1.5)
    assert vivid.saturation == 1.5
    assert torch.equal(vivid.colorize_tensor(x), runner.colorize_tensor(x, saturation=1.5))


@pytest.mark.parametrize("bad", [-0.1, 2.5, float("nan"), "1"])
def test_one_validation_for_every_entry(tiny_weights, runner, bad):
    with pytest.raises(TintError, match="saturation"):
        tint.colorize(gradient(), saturation=bad, runner=runner)
    with pytest.raises(TintError, match="saturation"):
        tint.Runner(tiny_weights, device="cpu", saturation=bad)
    with pytest.raises(TintError, match="saturation"):
        runner.colorize_tensor(torch.zeros(1, 1, 8, 8), saturation=bad)


def test_cli_image(tmp_path, capsys, tiny_weights):
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    base = ["image", str(tmp_path / "a.png"), "--weights", str(tiny_weights), "--device", "cpu", "--size", "64"]
    for s in ("0", "1.5"):
        assert main(base + ["-o", str(tmp_path / f"s{s}.png"), "--saturation", s]) == 0
    assert main(base + ["-o", str(tmp_path / "s1.png")]) == 0
    c = {s: chroma(Image.open(tmp_path / f"s{s}.png")) for s in ("0", "1", "1.5")}
    assert c["0"] <= 1.0 and c["1"] < c["1.5"]
    capsys.readouterr()
    assert main(base + ["-o", str(tmp_path / "x.png"), "--saturation", "3"]) == 2
    assert capsys.readouterr().err.strip() == "tint image: error: saturation must be in 0..2, got 3"


def test_cli_every_colour_command_takes_it(tmp_path, capsys, tiny_weights):
    from tint.cli.main import build_parser
    p = build_parser()
    for cmd, extra in (("image", ["x", "-o", "y"]), ("video", ["x", "-o", "y"]), ("camera", []), ("serve", [])):
        assert p.parse_args([cmd, *extra, "--saturation", "0.5"]).saturation == 0.5
    for cmd in ("video", "camera", "serve"):
        assert main([cmd, "x", "-o", "y"][: 1 if cmd != "video" else 4] + ["--saturation", "-1"]) == 2
        assert "saturation must be in 0..2" in capsys.readouterr().err


def test_video_frames_and_engine_pipeline(tmp_path, tiny_weights):
    av = pytest.importorskip("av")
    from test_video import make_film

    from tint.engine.graphs import Engine
    from tint.media.video.pipeline import colorize_video
    gray_runner = tint.load(tiny_weights, device="cpu", size=32, saturation=0.0)
    src = tmp_path / "in.mp4"
    make_film(src, frames=6, fps=24, audio=None)
    colorize_video(src, tmp_path / "out.mp4", runner=gray_runner, size=32, progress=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        for f in c.decode(video=0):
            u, v = f.to_ndarray(format="yuv444p").astype(int)[1:]              # (3, H, W) planes
            assert np.abs(u - 128).max() <= 1 and np.abs(v - 128).max() <= 1   # no chroma left
    rgb = np.repeat(gradient()[None, :, :, None], 3, 3)
    assert chroma(gray_runner.colorize_frames(rgb)) <= 1.0                 # the camera's path
    pipe = gray_runner.pipeline.with_network(Engine(gray_runner.model, "fp32"))  # the engine's frame path
    assert pipe.saturation == 0.0 and chroma(pipe.colorize_frames(torch.from_numpy(rgb)).numpy()) <= 1.0


def test_http_query_and_form_field(tiny_weights):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from tint.serve.server import BackgroundServer, create_app
    runner = tint.load(tiny_weights, device="cpu", size=32, saturation=1.25)
    buf = io.BytesIO()
    Image.fromarray(gradient()).save(buf, "PNG")
    data = buf.getvalue()
    raw = {"Content-Type": "application/octet-stream"}
    with BackgroundServer(create_app(runner)) as url, httpx.Client(base_url=url, timeout=30) as c:
        h = c.get("/api/health").json()
        assert h["saturation"] == {"default": 1.25, "min": 0.0, "max": 2.0}
        r0 = c.post("/api/colorize", params={"saturation": "0"}, content=data, headers=raw)
        assert r0.status_code == 200 and r0.headers["x-tint-saturation"] == "0"
        assert chroma(Image.open(io.BytesIO(r0.content))) <= 1.0
        r = c.post("/api/colorize", content=data, headers=raw)               # the server's default
        assert r.headers["x-tint-saturation"] == "1.25"
        expected = tint.colorize(Image.open(io.BytesIO(data)), runner=runner)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), np.asarray(expected))
        rf = c.post("/api/colorize", files={"file": ("a.png", data, "image/png")}, data={"saturation": "0"},
                    headers={"X-Requested-With": "test"})
        assert rf.status_code == 200 and rf.headers["x-tint-saturation"] == "0"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(rf.content))), np.asarray(Image.open(io.BytesIO(r0.content))))
        for bad in ("2.1", "-1", "abc"):
            rb = c.post("/api/colorize", params={"saturation": bad}, content=data, headers=raw)
            assert rb.status_code == 400 and "saturation" in rb.json()["error"]


def test_page_has_a_saturation_slider():
    from tint.serve.server import page_html
    html = page_html().decode()
    assert 'id="saturation"' in html and 'type="range"' in html
    assert "saturation=${" in html or "saturation=" in html
