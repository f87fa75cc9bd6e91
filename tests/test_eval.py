"""tint.evaluate: metrics against scikit-image and known values; the ``tint eval`` command."""
import json

import numpy as np
import pytest
from PIL import Image

from tint.evaluate import (ab_l1, colorfulness, gray_baseline, load_truth, measure, psnr, ssim)

skm = pytest.importorskip("skimage.metrics")


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(shape, noise, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


class TestPSNR:
    @pytest.mark.parametrize("shape,noise", [((23, 37, 3), 5), ((64, 48, 3), 60), ((11, 11, 3), 1)])
    def test_matches_skimage(self, shape, noise):
        a, b = _pair(shape, noise)
        assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)

    def test_identical_is_inf_and_shape_checked(self):
        a, _ = _pair((8, 8, 3), 1)
        assert psnr(a, a) == float("inf")
        with pytest.raises(ValueError):
            psnr(a, a[:4])

    def test_known_value(self):
        a = np.zeros((4, 4, 3), np.uint8)
        assert psnr(a + 255, a) == pytest.approx(0.0)
        assert psnr(a + 1, a) == pytest.approx(20 * np.log10(255))


class TestSSIM:
    @pytest.mark.parametrize("shape,noise,seed", [((23, 37, 3), 5, 0), ((64, 48, 3), 60, 1),
                                                  ((11, 11, 3), 20, 2), ((40, 13, 3), 120, 3)])
    def test_matches_skimage(self, shape, noise, seed):
        a, b = _pair(shape, noise, seed)
        want = skm.structural_similarity(a, b, gaussian_weights=True, channel_axis=-1, data_range=255)
        assert ssim(a, b) == pytest.approx(want, abs=1e-10)

    def test_identical_is_one(self):
        a, _ = _pair((20, 20, 3), 1)
        assert ssim(a, a) == pytest.approx(1.0)

    def test_bad_input(self):
        a, _ = _pair((8, 8, 3), 1)
        with pytest.raises(ValueError, match="at least"):
            ssim(a, a)
        with pytest.raises(ValueError):
            ssim(a[..., :2], a[..., :2])


class TestColorfulness:
    def test_gray_is_zero(self):
        g = np.repeat(np.random.default_rng(0).integers(0, 256, (9, 9, 1), dtype=np.uint8), 3, 2)
        assert colorfulness(g) == pytest.approx(0.0)

    def test_flat_red(self):
        red = np.zeros((5, 5, 3), np.uint8)
        red[..., 0] = 255
        assert colorfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))

    def test_half_red_half_black(self):
        img = np.zeros((4, 4, 3), np.uint8)
        img[:2, :, 0] = 255                   # rg: 255 or 0, yb: 127.5 or 0 on half the pixels each
        want = np.hypot(127.5, 63.75) + 0.3 * np.hypot(127.5, 63.75)
        assert colorfulness(img) == pytest.approx(want)

    def test_float_input_same_as_uint8(self):
        a, _ = _pair((6, 7, 3), 1)
        assert colorfulness(a.astype(np.float32) / 255) == pytest.approx(colorfulness(a), rel=1e-6)


def test_gray_baseline_and_ab_l1():
    a, _ = _pair((12, 14, 3), 1)
    g = gray_baseline(a)
    assert g.shape == a.shape and g.dtype == np.uint8
    assert np.abs(g[..., 0].astype(int) - g[..., 2]).max() <= 1          # neutral
    assert ab_l1(a, a) == pytest.approx(0.0, abs=1e-6)
    assert ab_l1(g, g) == pytest.approx(0.0, abs=1e-6)
    assert ab_l1(g, a) > 1.0
    m = measure(g, a)
    assert set(m) == {"psnr", "l1_ab", "colorfulness", "ssim"}


def test_load_truth_short_side(tmp_path):
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(tmp_path / "w.png")
    Image.fromarray(np.zeros((600, 400, 3), np.uint8)).save(tmp_path / "t.jpg")
    assert load_truth(tmp_path / "w.png").shape == (256, 768, 3)
    assert load_truth(tmp_path / "t.jpg").shape == (384, 256, 3)


@pytest.fixture
def truth_dir(tmp_path):
    d = tmp_path / "truth"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 60), (64, 64), (50, 30)]):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)
        img = np.clip(img.astype(int) + rng.integers(-5, 5, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"p{i}.jpg", quality=95)
    return d


def test_eval_command_json_and_sheet(truth_dir, tmp_path, tiny_weights, capsys):
    from tint.cli import main
    from tint.weights import sha256
    rep, sheet = tmp_path / "r.json", tmp_path / "s.jpg"
    assert main(["eval", str(truth_dir), "--weights", str(tiny_weights), "--device", "cpu",
                 "--size", "64", "--json", str(rep), "--sheet", str(sheet)]) == 0
    assert "PSNR" in capsys.readouterr().out
    r = json.loads(rep.read_text())
    assert r["count"] == 3 and r["weights_sha256"] == sha256(tiny_weights)
    assert "short side resized to 256" in r["protocol"] and r["working_size"] == 64
    assert [i["name"] for i in r["images"]] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    for k in ("psnr", "ssim", "l1_ab", "colorfulness", "colorfulness_truth", "colorfulness_ratio",
              "gray_psnr", "gray_ssim", "gray_l1_ab"):
        assert k in r["means"] and np.isfinite(r["means"][k]), k
    with Image.open(sheet) as im:
        assert im.format == "JPEG" and im.height > 3 * 150
    # the gray baseline keeps the truth's L, so its PSNR is finite and plausible
    assert 5 < r["means"]["gray_psnr"] < 60


def test_eval_limit_and_errors(truth_dir, tmp_path, tiny_weights):
    from tint.cli import main
    rep = tmp_path / "r.json"
    assert main(["eval", str(truth_dir), "--weights", str(tiny_weights), "--device", "cpu",
                 "--size", "32", "--limit", "1", "--no-ssim", "--json", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["count"] == 1 and "ssim" not in r["means"]
    assert main(["eval", str(tmp_path / "missing"), "--weights", str(tiny_weights)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", str(empty), "--weights", str(tiny_weights), "--device", "cpu"]) == 2
    assert main(["eval", str(truth_dir), "--weights", str(tiny_weights), "--device", "cpu",
                 "--json", str(tmp_path / "no" / "r.json")]) == 2
