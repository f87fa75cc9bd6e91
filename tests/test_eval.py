"""tint.evaluate: metrics against scikit-image and known values; the ``tint eval`` command."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tint.training.evaluate import PerceptualJudge, ab_l1, colorfulness, evaluate, find_judge, five_crops, frechet_distance, gray_baseline, load_truth, measure, psnr, ssim, top1_in_top5

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
    from tint.cli.main import main
    from tint.core.weights import sha256
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
    if find_judge(None):                    # the shared data is here: the measures are on by default
        assert r["judge"]["model_json"].endswith("model.json")
        for k in ("fid", "gray_fid", "semantic", "gray_semantic"):
            assert np.isfinite(r["means"][k]), k


def test_eval_limit_and_errors(truth_dir, tmp_path, tiny_weights):
    from tint.cli.main import main
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


# --------------------------------------------------------------------------- perceptual measures
def _frechet_reference(a, b):
    """Brute force: tr (Ca Cb)^1/2 as the sum of the square roots of the eigenvalues of
    Ca Cb (real and >= 0 for PSD Ca, Cb), from np.cov's own means and covariances."""
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ev = np.linalg.eigvals(ca @ cb)
    cross = np.sqrt(np.clip(ev.real, 0, None)).sum()
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross


class TestFrechet:
    @pytest.mark.parametrize("n,m,d,seed", [(500, 300, 8, 0), (200, 200, 32, 1), (1000, 40, 16, 2)])
    def test_matches_brute_force(self, n, m, d, seed):
        rng = np.random.default_rng(seed)
        A, B = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        a = rng.normal(size=(n, d)) @ A + rng.normal(size=d)
        b = rng.normal(size=(m, d)) @ B + 3 * rng.normal(size=d)
        assert frechet_distance(a, b) == pytest.approx(_frechet_reference(a, b), rel=1e-8)

    def test_matches_scipy_sqrtm(self):
        linalg = pytest.importorskip("scipy.linalg")
        rng = np.random.default_rng(3)
        a, b = rng.normal(size=(400, 12)), rng.normal(size=(300, 12)) * 2 + 1
        ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
        assert frechet_distance(a, b) == pytest.approx(want, rel=1e-8)

    def test_known_value(self):
        # Two isotropic Gaussians: d = |mu1 - mu2|^2 + d (s1 - s2)^2 for exact sample moments.
        rng = np.random.default_rng(4)
        z = rng.normal(size=(2000, 4))
        z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # cov = I
        a, b = z, 3 * z + np.array([1.0, 0, 0, 2.0])
        assert frechet_distance(a, b) == pytest.approx(5 + 4 * (3 - 1) ** 2, rel=1e-9)

    def test_identical_is_zero_and_symmetric(self):
        rng = np.random.default_rng(5)
        a, b = rng.normal(size=(300, 128)), rng.normal(size=(200, 128)) + 0.5
        assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
        assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
        assert frechet_distance(a, b) > 1.0

    def test_bad_input(self):
        with pytest.raises(ValueError):
            frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
        with pytest.raises(ValueError, match="at least 2"):
            frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_five_crops_geometry():
    img = np.zeros((256, 300, 3), np.uint8)
    img[0, 0], img[0, -1], img[-1, 0], img[-1, -1] = 10, 20, 30, 40
    img[128, 150] = 50
    c = five_crops(img)
    assert c.shape == (5, 3, 224, 224) and c.dtype == torch.float32
    assert float(c[0, 0, 128 - 16, 150 - 38]) == pytest.approx(50 / 255)        # centre
    for k, (r, col, v) in enumerate([(0, 0, 10), (0, -1, 20), (-1, 0, 30), (-1, -1, 40)], 1):
        assert float(c[k, 0, r, col]) == pytest.approx(v / 255)
    assert five_crops(np.zeros((100, 150, 3), np.uint8)).shape == (5, 3, 224, 224)   # small: scaled up
    with pytest.raises(ValueError):
        five_crops(np.zeros((256, 256), np.uint8))


@pytest.fixture(scope="module")
def random_judge():
    from tint.core.model import TinyDarknetEncoder
    torch.manual_seed(0)
    net = TinyDarknetEncoder(in_channels=3, classifier=True).eval()
    return PerceptualJudge(net, batch=7)          # odd batch: crops split across forwards


def _photos(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (224 + 8 * i, 240, 3), dtype=np.uint8) for i in range(n)]


def test_judge_shapes_and_logits_match_classify(random_judge):
    ims = _photos(3)
    f, logits = random_judge(ims)
    assert f.shape == (3, 5, 128) and f.dtype == np.float64
    assert logits.shape == (3, 1000)
    with torch.inference_mode():
        want = random_judge.net.classify(torch.stack([five_crops(im)[0] for im in ims]))
    np.testing.assert_allclose(logits, want.numpy(), rtol=1e-4, atol=1e-5)
    f1, _ = random_judge(ims[1:2])                       # batching does not change the numbers
    np.testing.assert_allclose(f1[0], f[1], rtol=1e-5, atol=1e-6)


def test_judge_needs_classifier():
    from tint.core.model import TinyDarknetEncoder
    with pytest.raises(ValueError, match="classifier"):
        PerceptualJudge(TinyDarknetEncoder(in_channels=3))


def test_semantic_agreement():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1000))
    assert top1_in_top5(x, x).all()
    y = x.copy()
    y[0, np.argmax(x[0])] = -100                         # truth's class pushed out of image 0's top-5
    assert top1_in_top5(x, y).tolist() == [False] + [True] * 5


def test_evaluate_with_judge_truth_vs_itself(random_judge):
    truths = _photos(4, seed=1)
    report, _ = evaluate(lambda t: t.copy(), truths, with_ssim=False, judge=random_judge)
    m = report["means"]
    assert m["semantic"] == 1.0 and m["fid"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= m["gray_semantic"] <= 1.0 and m["gray_fid"] > 0
    assert {"semantic", "gray_semantic", "class_truth", "class_out"} <= set(report["images"][0])
    plain, _ = evaluate(lambda t: t.copy(), truths, with_ssim=False)      # opt-in: training's call
    assert "fid" not in plain["means"] and "semantic" not in plain["images"][0]


def test_real_judge_on_dev_photos(data_dir):
    judge_dir = data_dir / "weights" / "tiny-darknet"
    files = sorted((data_dir / "dev").glob("*.jpg"))[:4]
    if not (judge_dir / "model.json").is_file() or len(files) < 4:
        pytest.skip("no tiny-darknet weights or dev photos in ../shared/data")
    judge = PerceptualJudge.from_path(judge_dir)
    truths = [load_truth(f) for f in files]
    f, logits = judge(truths)
    assert top1_in_top5(logits, logits).all()
    flat = f.reshape(-1, 128)
    assert frechet_distance(flat, flat) == pytest.approx(0.0, abs=1e-6)
    assert judge.label(int(logits[0].argmax())) != "class 0"             # labels.txt was read
    report, _ = evaluate(lambda t: t.copy(), truths, with_ssim=False, judge=judge)
    assert report["means"]["semantic"] == 1.0 and report["means"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert report["means"]["gray_fid"] > 1.0


def test_eval_command_judge_options(truth_dir, tmp_path, tiny_weights, monkeypatch, capsys):
    """A missing default judge: one line, eval still runs; an explicit missing one: an error;
    --no-judge: nothing said."""
    from tint.cli.main import main
    args = ["eval", str(truth_dir), "--weights", str(tiny_weights), "--device", "cpu",
            "--size", "32", "--no-ssim"]
    monkeypatch.setattr("tint.training.evaluate.default_judge", lambda: tmp_path / "nowhere")
    monkeypatch.delenv("TINT_JUDGE", raising=False)
    rep = tmp_path / "r.json"
    assert main(args + ["--json", str(rep)]) == 0
    err = capsys.readouterr().err
    assert "perceptual measures" in err and "skipped" in err and len(err.strip().splitlines()) == 1
    assert "fid" not in json.loads(rep.read_text())["means"]
    assert main(args + ["--judge", str(tmp_path / "missing")]) == 2
    monkeypatch.setenv("TINT_JUDGE", str(tmp_path / "missing"))
    assert main(args) == 2
    assert main(args + ["--no-judge"]) == 0
    assert "skipped" not in capsys.readouterr().err
