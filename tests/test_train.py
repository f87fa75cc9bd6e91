"""tint.data (pack, batches) and tint.train (losses, schedule, a tiny run, exact resume)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tint.training.data import GpuBatches, build_pack, find_images, load_pack
from tint.core.errors import TintError
from tint.core.model import ab_bins
from tint.cli.train import add_train_arguments
from tint.training.train import compute_loss, lr_factor, rebalance_weights, soft_encode

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(rng, h, w):
    """A smooth random colour image (gradients + blobs), uint8 (h, w, 3)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(0, 1, (3, 3))
    img = np.stack([c[i, 0] + c[i, 1] * x + c[i, 2] * y for i in range(3)], -1)
    return (np.clip(img / img.max(), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """8 JPEGs of assorted shapes in two subfolders, one RGBA PNG, one corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    (root / "a").mkdir()
    (root / "b" / "deep").mkdir(parents=True)
    for i in range(8):
        h, w = [(40, 56), (64, 48), (50, 50), (48, 80)][i % 4]
        sub = root / ("a" if i < 4 else "b/deep")
        Image.fromarray(_photo(rng, h, w)).save(sub / f"img{i}.jpg", quality=90)
    rgba = np.dstack([_photo(rng, 52, 52), np.full((52, 52), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "a" / "alpha.png")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "b" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def pack(photos, tmp_path_factory):
    path = tmp_path_factory.mktemp("pack") / "pack.npy"
    return build_pack([photos], path, size=48, workers=1, log=lambda *a: None)


# --------------------------------------------------------------------------- pack
def test_find_images_recursive_and_filtered(photos):
    names = sorted(p.name for p in find_images([photos]))
    assert len(names) == 10 and "notes.txt" not in names and "alpha.png" in names


def test_build_pack_skips_corrupt_and_counts(pack, photos):
    path, info = pack
    arr = load_pack(path)
    assert arr.shape == (9, 48, 48, 3) and arr.dtype == np.uint8
    assert info["count"] == 9 and len(info["skipped"]) == 1
    assert info["skipped"][0][0].endswith("broken.jpg")
    assert sum(info["sources"].values()) == 9
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["size"] == 48 and len(side["files"]) == 10


def test_build_pack_reuses_matching_pack(pack, photos):
    path, _ = pack
    mtime = path.stat().st_mtime_ns
    msgs = []
    build_pack([photos], path, size=48, workers=1, log=msgs.append)
    assert path.stat().st_mtime_ns == mtime and "reusing" in msgs[0]


def test_build_pack_parallel_matches_serial(photos, pack, tmp_path):
    path2, _ = build_pack([photos], tmp_path / "p2.npy", size=48, workers=2, log=lambda *a: None)
    assert np.array_equal(load_pack(path2), load_pack(pack[0]))


def test_build_pack_errors(tmp_path):
    with pytest.raises(TintError, match="not found"):
        build_pack([tmp_path / "missing"], tmp_path / "p.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TintError, match="no JPEG"):
        build_pack([tmp_path / "empty"], tmp_path / "p.npy")


def test_alpha_goes_on_white(pack, photos):
    path, info = pack
    kept = [info["files"][i][0] for i in info["kept"]]
    png = load_pack(path)[[i for i, f in enumerate(kept) if f.endswith("alpha.png")][0]]
    assert png.min() >= 120          # half-transparent over white can't be dark


# --------------------------------------------------------------------------- batches
def test_batches_shapes_ranges(pack):
    b = GpuBatches(load_pack(pack[0]), batch=4, crop=32, seed=1)
    L, ab = b(0)
    assert L.shape == (4, 1, 32, 32) and ab.shape == (4, 2, 32, 32)
    assert L.dtype == torch.float32 and 0 <= L.min() and L.max() <= 100.0 + 1e-3
    assert ab.abs().max() < 130 and torch.isfinite(ab).all()
    assert b.steps_per_epoch == 2


def test_batches_deterministic_and_sharded(pack):
    arr = load_pack(pack[0])
    b1 = GpuBatches(arr, batch=2, crop=32, seed=3)
    b2 = GpuBatches(arr, batch=2, crop=32, seed=3)
    for step in (0, 5, 2):                      # order of calls must not matter
        assert torch.equal(b1(step)[1], b2(step)[1])
    assert not torch.equal(b1(0)[1], b1(1)[1])
    assert not torch.equal(b1(0)[1], GpuBatches(arr, batch=2, crop=32, seed=4)(0)[1])
    r0 = GpuBatches(arr, batch=2, crop=32, seed=3, rank=0, world=2).order(0)
    r1 = GpuBatches(arr, batch=2, crop=32, seed=3, rank=1, world=2).order(0)
    assert len(r0) == len(r1) == 4 and not set(r0.tolist()) & set(r1.tolist())


def test_batches_full_crop_no_flip_is_identity():
    """scale 1, ratio 1, no flip: the crop is the whole square, resampled exactly."""
    arr = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    b = GpuBatches(arr, batch=3, crop=32, scale=(1, 1), ratio=(1, 1), flip=False)
    got = (b.rgb(0) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    order = b.order(0).numpy()
    assert np.array_equal(got, arr[order])


def test_batches_too_few_images():
    with pytest.raises(TintError, match="fewer than one batch"):
        GpuBatches(np.zeros((3, 16, 16, 3), np.uint8), batch=4, crop=16)


# --------------------------------------------------------------------------- losses
def test_soft_encode_properties():
    bins = ab_bins()
    ab = torch.randn(2, 2, 5, 7) * 30
    ab[0, :, 0, 0] = bins[17]                   # exactly on a bin centre
    idx, w = soft_encode(ab, bins, k=5, sigma=5.0)
    assert idx.shape == w.shape == (2, 5, 5, 7)
    assert torch.allclose(w.sum(1), torch.ones(2, 5, 7))
    assert idx[0, 0, 0, 0] == 17 and w[0, 0, 0, 0] == w[0, :, 0, 0].max()
    d = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins)
    assert torch.equal(idx[:, 0].flatten(), d.argmin(1).view(2, 5, 7).flatten())
    assert (w[:, :-1] >= w[:, 1:] - 1e-6).all()          # nearest first
    idx2, _ = soft_encode(ab, bins, chunk=7)             # chunking changes nothing
    assert torch.equal(idx, idx2)


def test_rebalance_weights():
    bins = ab_bins()
    Q = bins.shape[0]
    p = torch.rand(Q) ** 4
    w = rebalance_weights(p, bins, sigma=5.0, lam=0.5)
    kernel = torch.exp(-torch.cdist(bins.double(), bins.double()) ** 2 / 50)
    ps = kernel @ (p.double() / p.sum())
    ps /= ps.sum()
    assert abs(float((ps * w.double()).sum()) - 1.0) < 1e-5      # E[w] = 1
    assert w[ps.argmin()] > w[ps.argmax()]                        # rare colours weigh more
    assert (w > 0).all() and w.max() / w.min() <= (0.5 * ps.max() + 0.5 / Q) / (0.5 / Q) + 1e-3
    assert torch.allclose(rebalance_weights(p, bins, lam=1.0), torch.ones(Q), atol=1e-5)
    with pytest.raises(ValueError):
        rebalance_weights(torch.ones(3), bins)


def test_losses_finite_and_zero_at_truth():
    bins = ab_bins()
    ab = torch.randn(2, 2, 8, 8) * 20
    assert compute_loss("l2", ab / 100, ab).item() < 1e-12
    assert compute_loss("smoothl1", ab / 100, ab).item() < 1e-12
    raw = torch.randn(2, bins.shape[0], 8, 8, requires_grad=True)
    loss = compute_loss("bins", raw, ab, bins, torch.ones(bins.shape[0]))
    loss.backward()
    assert torch.isfinite(loss) and raw.grad.abs().sum() > 0


def test_lr_factor():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.01)
    vals = [lr_factor(s, 100, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


# --------------------------------------------------------------------------- runs
def _args(data, out, pack, *extra):
    import argparse
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args([str(data), "-o", str(out), "--pack", str(pack), "--pack-size", "48",
                         "--crop", "32", "--batch", "4", "--epochs", "3", "--workers", "1",
                         "--warmup", "1", "--bench-input", "0", "--no-bar", "--device", "cpu",
                         "--log-every", "1000", *extra])


def _state(out):
    return torch.load(Path(out) / "last.pt", map_location="cpu", weights_only=False)


def test_train_then_resume_is_exact(photos, pack, tmp_path):
    from tint.cli.train import run_train
    base = ("--backbone", "tiny-darknet", "--final-width", "8")
    # 9 images, batch 4 -> 2 steps/epoch, 3 epochs -> 6 steps
    assert run_train(_args(photos, tmp_path / "a", pack[0], *base)) == 0
    assert run_train(_args(photos, tmp_path / "b", pack[0], *base, "--stop-at-step", "3")) == 0
    mid = _state(tmp_path / "b")
    assert mid["step"] == 3 and mid["total_steps"] == 6
    assert run_train(_args(photos, tmp_path / "b", pack[0], *base, "--resume")) == 0
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert not torch.equal(a["model"]["head.out.weight"], mid["model"]["head.out.weight"])
    assert torch.allclose(a["prior"], b["prior"]) and abs(float(a["prior"].sum()) - 1) < 1e-5


def test_train_final_weights_load_and_colorize(photos, pack, tmp_path, tiny_weights):
    import tint
    from tint.cli.train import run_train
    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(next(photos.glob("a/img0.jpg")), val / "v.jpg")
    out = tmp_path / "run"
    # l2 regression, encoder taken from a bins model (head differs -> encoder only)
    assert run_train(_args(photos, out, pack[0], "--loss", "l2", "--epochs", "1", "--val", str(val),
                           "--val-size", "32", "--init", str(tiny_weights))) == 0
    runner = tint.load(out / "final.safetensors", device="cpu")
    assert runner.config.output == "ab" and runner.config.backbone == "tiny-darknet"
    meta = runner.meta
    assert meta["steps"] == 2 and meta["finished"] and meta["data"]["images"] == 9
    assert "non-commercial" in meta["data_terms"]
    assert set(meta["validation"]) >= {"l1_ab", "psnr", "colorfulness"}
    assert meta["args"]["loss"] == "l2" and meta["args"]["init"] == str(tiny_weights)
    img = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    assert runner.colorize_array(img).shape == (20, 30, 3)
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert any("val" in rec for rec in lines)


def test_context_stride_run_with_exclude_and_steps(photos, pack, tmp_path):
    """The new head options train; --exclude keeps held-out names out; --steps fixes the
    schedule so a stopped run resumes into the same one."""
    from tint.cli.train import run_train
    excl = tmp_path / "heldout.txt"
    excl.write_text("img0.jpg\n")
    base = ("--backbone", "tiny-darknet", "--final-width", "8", "--context", "8", "--out-stride", "2",
            "--exclude", str(excl), "--steps", "4", "--epochs", "1")
    out = tmp_path / "c"
    assert run_train(_args(photos, out, tmp_path / "p.npy", *base, "--stop-at-step", "2")) == 0
    mid = _state(out)
    assert mid["step"] == 2 and mid["total_steps"] == 4
    assert mid["config"]["context"] == 8 and mid["config"]["out_stride"] == 2
    info = json.loads((tmp_path / "p.json").read_text())
    assert not any(Path(f).name == "img0.jpg" for f, _ in info["files"])
    assert run_train(_args(photos, out, tmp_path / "p.npy", *base, "--resume")) == 0
    assert _state(out)["step"] == 4


def test_feature_loss_is_zero_at_truth_and_positive_off_it():
    from tint.core.model import TinyDarknetEncoder
    from tint.training.train import FeatureLoss
    torch.manual_seed(0)
    fl = FeatureLoss(TinyDarknetEncoder(in_channels=3))
    x = torch.rand(2, 3, 32, 32)
    assert fl(x, x).item() < 1e-10
    assert fl(x.flip(1), x).item() > 0


def test_time_limit_sizes_schedule(photos, pack, tmp_path, capsys):
    from tint.cli.train import run_train
    out = tmp_path / "t"
    assert run_train(_args(photos, out, pack[0], "--epochs", "1000", "--time-limit", "0.15",
                           "--reserve", "0", "--calib-steps", "2", "--final-width", "4")) == 0
    text = capsys.readouterr().out
    assert "schedule:" in text
    st = _state(out)
    assert st["total_steps"] is not None and st["step"] <= st["total_steps"] < 6000
    assert (out / "final.safetensors").is_file()


def test_train_cli_errors(photos, tmp_path):
    from tint.cli.main import main
    assert main(["train", str(photos), "--crop", "30", "-o", str(tmp_path)]) == 2
    assert main(["train", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--pack",
                 str(tmp_path / "p.npy")]) == 2
    assert main(["train", str(photos), "--init", str(tmp_path / "none.safetensors")]) == 2


def test_init_backbone_mismatch(tiny_weights):
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.training.train import load_init
    with pytest.raises(TintError, match="tiny-darknet"):
        load_init(Colorizer(ColorizerConfig(backbone="vgg16")), tiny_weights, log=lambda *a: None)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(photos, pack, tmp_path):
    """torchrun with 2 gloo processes: runs, shards, saves once."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tint", "train", str(photos), "-o", str(out), "--pack", str(pack[0]),
           "--pack-size", "48", "--crop", "32", "--batch", "2", "--epochs", "2", "--workers", "1",
           "--warmup", "1", "--bench-input", "0", "--no-bar", "--device", "cpu", "--final-width", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    st = _state(out)
    assert st["step"] == 4 and (out / "final.safetensors").is_file()   # 9 // 2 = 4 per rank, 2 per epoch


def test_init_loads_all_when_config_matches(tiny_weights):
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.training.train import load_init
    from tint.core.weights import load_weights
    model = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8))
    assert load_init(model, tiny_weights, log=lambda *a: None) == "all"
    ref, _ = load_weights(tiny_weights)
    assert torch.equal(model.head.out.weight, ref.head.out.weight)
    fresh = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab", final_width=3))
    said = []
    assert load_init(fresh, tiny_weights, log=said.append) == "encoder"
    assert torch.equal(fresh.encoder.conv1.weight, ref.encoder.conv1.weight)
    assert "final_width 8 (this run: 3)" in said[0] and "output bins (this run: ab)" in said[0]


def test_init_from_a_tuned_file_loads_all(tiny_weights, tmp_path):
    """A file whose readout was tuned afterwards (temperature, chroma gain) is the same
    network: --init must resume all of it, not only the encoder."""
    import dataclasses
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.core.weights import load_weights, save_weights
    from tint.training.train import load_init
    ref, meta = load_weights(tiny_weights)
    ref.config = dataclasses.replace(ref.config, temperature=0.3, chroma_gain=1.1)
    tuned = tmp_path / "tuned.safetensors"
    save_weights(ref, tuned, meta=meta)
    model = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8))
    assert load_init(model, tuned, log=lambda *a: None) == "all"
    assert torch.equal(model.head.out.weight, ref.head.out.weight.to(model.head.out.weight.dtype))


def test_semantic_loss_is_zero_at_truth_and_positive_off_it():
    from tint.core.model import TinyDarknetEncoder
    from tint.training.train import FeatureLoss
    torch.manual_seed(0)
    net = TinyDarknetEncoder(in_channels=3, classifier=True)
    for m in net.modules():       # PyTorch's default init leaves the deepest tap ~1e-7: flat logits
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    x = torch.rand(2, 3, 32, 32)
    plain, both = FeatureLoss(net), FeatureLoss(net, semantic=1.0)
    assert both(x, x).item() < 1e-6
    y = torch.zeros_like(x)
    assert both(y, x).item() - plain(y, x).item() > 1e-3
    with pytest.raises(ValueError, match="classifier"):
        FeatureLoss(TinyDarknetEncoder(in_channels=3), semantic=1.0)


def test_budget_sizes_schedule_beyond_the_time_limit(photos, pack, tmp_path, capsys):
    from tint.cli.train import run_train
    out = tmp_path / "t"
    assert run_train(_args(photos, out, pack[0], "--epochs", "1000", "--time-limit", "0.1",
                           "--budget", "0.3", "--reserve", "0", "--calib-steps", "2",
                           "--final-width", "4")) == 0
    text = capsys.readouterr().out
    assert "to fit 0.3 min" in text and "continue with --resume" in text
    st = _state(out)
    assert st["step"] < st["total_steps"]          # stopped by the time limit, schedule not done


def test_budget_needs_a_time_limit(photos, tmp_path):
    from tint.cli.main import main
    assert main(["train", str(photos), "--budget", "5", "-o", str(tmp_path)]) == 2


# --------------------------------------------------------------------------- training as a library
def _config(photos, out, pack, **kw):
    from tint.training import TrainConfig
    base = dict(output=str(out), pack=str(pack), pack_size=48, crop=32, batch=4, epochs=3, workers=1,
                warmup=1, bench_input=0, no_bar=True, device="cpu", log_every=1000.0,
                backbone="tiny-darknet", final_width=8)
    return TrainConfig([str(photos)], **{**base, **kw})


def test_library_train_matches_the_command(photos, pack, tmp_path):
    """train(TrainConfig) is what the command runs: the same options give the same weights;
    the checkpoint holds the config, and from_dict rebuilds it."""
    from tint.cli.train import config_from_args, run_train
    from tint.training import TrainConfig, train
    assert run_train(_args(photos, tmp_path / "cli", pack[0], "--backbone", "tiny-darknet",
                           "--final-width", "8")) == 0
    config = _config(photos, tmp_path / "lib", pack[0])
    assert train(config) == 0
    a, b = _state(tmp_path / "cli"), _state(tmp_path / "lib")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    saved = TrainConfig.from_dict(b["args"])
    assert saved == config.check()
    assert config_from_args(_args(photos, tmp_path / "lib", pack[0], "--backbone", "tiny-darknet",
                                  "--final-width", "8")).check() == saved


def test_resume_from_a_checkpoint_written_before_trainconfig(photos, pack, tmp_path):
    """A checkpoint whose ``args`` is the old argparse namespace (``out``, ``command``)
    resumes exactly: its run-defining fields still win (here the seed and lr)."""
    from tint.training import train
    assert train(_config(photos, tmp_path / "a", pack[0], seed=3, lr=2e-3)) == 0
    assert train(_config(photos, tmp_path / "b", pack[0], seed=3, lr=2e-3, stop_at_step=3)) == 0
    st = _state(tmp_path / "b")
    old = {("out" if k == "output" else k): v for k, v in st["args"].items()}
    old.update(command="train", no_longer_an_option=1)
    st["args"] = old
    torch.save(st, tmp_path / "b" / "last.pt")
    assert train(_config(photos, tmp_path / "b", pack[0], resume=True)) == 0   # seed 0, lr 1e-3 asked
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["step"] == b["step"] == 6 and b["args"]["seed"] == 3 and b["args"]["lr"] == 2e-3
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_train_config_is_checked_in_one_place(photos, tmp_path):
    from tint.training import TrainConfig
    for bad, match in (({"crop": 30}, "multiple of 16"), ({"loss": "huber"}, "--loss"),
                       ({"out_stride": 3}, "--out-stride"), ({"backbone": "resnet"}, "--backbone"),
                       ({"val_size": 8}, "16..2048"), ({"budget": 5.0}, "--budget")):
        with pytest.raises(TintError, match=match):
            TrainConfig([str(photos)], output=str(tmp_path), **bad).check()
    with pytest.raises(TintError, match="no data"):
        TrainConfig([]).check()
    assert TrainConfig([photos]).with_backbone().backbone == "vgg16"          # the table's default


def test_eval_config_library_call(tmp_path, tiny_weights):
    from tint.training import EvalConfig, evaluate_weights
    d = tmp_path / "truth"
    d.mkdir()
    Image.fromarray(_photo(np.random.default_rng(0), 40, 56)).save(d / "a.png")
    lines = []
    report = evaluate_weights(EvalConfig(d, weights=tiny_weights, device="cpu", size=32, ssim=False,
                                         use_judge=False, json=tmp_path / "r.json"), log=lines.append)
    assert report["count"] == 1 and report["working_size"] == 32 and "ssim" not in report["means"]
    assert json.loads((tmp_path / "r.json").read_text())["count"] == 1 and "PSNR" in lines[0]
    with pytest.raises(TintError, match="--limit"):
        evaluate_weights(EvalConfig(d, limit=0))


def test_slow_validation_does_not_eat_a_time_limited_run(photos, pack, tmp_path, capsys, monkeypatch):
    """When validating every held-out photo would take over a quarter of the time limit,
    the last validation uses --val-limit photos too, and the run still trains."""
    import time as _time
    from tint.cli.train import run_train
    T = sys.modules["tint.training.train"]          # the package's `train` is the function
    real = T.validate

    def slow(*a, **k):
        _time.sleep(1.5)
        return real(*a, **k)
    monkeypatch.setattr(T, "validate", slow)
    val = tmp_path / "val"
    val.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(val / f"v{i}.png")
    out = tmp_path / "t"
    assert run_train(_args(photos, out, pack[0], "--epochs", "1000", "--time-limit", "0.3",
                           "--reserve", "0", "--calib-steps", "2", "--final-width", "4",
                           "--val", str(val), "--val-limit", "1", "--val-every", "100000")) == 0
    text = capsys.readouterr().out
    assert "the last validation uses 1 like the others" in text
    assert _state(out)["step"] > 0


def test_patch_critic_learns_real_from_grey():
    """A few hinge steps separate true chroma from grey chroma given the same L; the
    model's side of the game has gradients into the chroma only through the critic."""
    from tint.training.train import PatchCritic, critic_step, critic_verdict
    torch.manual_seed(0)
    critic = PatchCritic(width=8)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.0, 0.99))
    L = torch.rand(4, 1, 32, 32) * 100
    real = torch.randn(4, 2, 32, 32) * 30
    grey = torch.zeros(4, 2, 32, 32, requires_grad=True)
    assert [s.shape for s in critic(L, real)] == [(4, 1, 4, 4)]
    losses = [float(critic_step(critic, opt, L, real, grey)) for _ in range(30)]
    assert losses[-1] < losses[0] and grey.grad is None           # the critic's step leaves ab alone
    assert critic_verdict(critic(L, real)) > critic_verdict(critic(L, grey.detach()))
    critic.zero_grad(set_to_none=True)
    critic.requires_grad_(False)
    (-critic_verdict(critic(L, grey))).backward()
    assert grey.grad.abs().sum() > 0 and all(p.grad is None for p in critic.parameters())


def test_two_scale_critic_scores_patches_and_the_scene():
    """scales=2 adds a score per 32 x 32 patch on the same features; both scales learn and
    weigh the same in the hinge loss and in the model's verdict."""
    from tint.training.train import PatchCritic, critic_step, critic_verdict
    torch.manual_seed(0)
    critic = PatchCritic(width=8, scales=2)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.0, 0.99))
    L = torch.rand(4, 1, 64, 64) * 100
    real, grey = torch.randn(4, 2, 64, 64) * 30, torch.zeros(4, 2, 64, 64)
    assert [s.shape for s in critic(L, real)] == [(4, 1, 8, 8), (4, 1, 2, 2)]
    losses = [float(critic_step(critic, opt, L, real, grey)) for _ in range(30)]
    assert losses[-1] < losses[0]
    fine, coarse = critic(L, real), critic(L, grey)
    assert all(r.mean() > g.mean() for r, g in zip(fine, coarse))
    assert critic_verdict([torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 2, 2)]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scales"):
        PatchCritic(scales=3)


def test_adversarial_run_resumes_exactly(photos, pack, tmp_path):
    """With --adversarial the critic and its optimizer are in the checkpoint: a run stopped
    and resumed ends where an uninterrupted one does, critic included."""
    from tint.cli.train import run_train
    arch = ("--backbone", "tiny-darknet", "--final-width", "8", "--context", "8", "--out-stride", "2",
            "--epochs", "2")
    base = (*arch, "--adversarial", "0.1", "--critic-scales", "2")
    assert run_train(_args(photos, tmp_path / "a", pack[0], *base)) == 0
    assert run_train(_args(photos, tmp_path / "b", pack[0], *base, "--stop-at-step", "2")) == 0
    assert run_train(_args(photos, tmp_path / "b", pack[0], *base, "--resume")) == 0
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a["step"] == b["step"] == 4 and a["args"]["adversarial"] == 0.1 and a["args"]["critic_scales"] == 2
    assert any(k.startswith("coarse.") for k in a["critic"])
    for part in ("model", "critic"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    plain = tmp_path / "c"                 # a run's own settings win on resume (RUN_KEYS)
    assert run_train(_args(photos, plain, pack[0], *arch, "--stop-at-step", "2")) == 0
    assert run_train(_args(photos, plain, pack[0], *base, "--resume")) == 0
    assert "critic" not in _state(plain) and _state(plain)["args"]["adversarial"] == 0


def test_wider_run_grows_from_its_init(photos, pack, tmp_path, tiny_weights):
    """--width 2 from a width-1 file trains the grown model and ships width 2; a run from
    that file then keeps its width without being told."""
    import tint
    from tint.cli.train import run_train
    out = tmp_path / "wide"
    assert run_train(_args(photos, out, pack[0], "--init", str(tiny_weights), "--width", "2",
                           "--epochs", "1")) == 0
    runner = tint.load(out / "final.safetensors", device="cpu")
    assert runner.config.width == 2 and runner.meta["args"]["width"] == 2
    again = tmp_path / "again"
    assert run_train(_args(photos, again, pack[0], "--init", str(out / "final.safetensors"), "--epochs", "1")) == 0
    assert tint.load(again / "final.safetensors", device="cpu").config.width == 2


def test_distill_loss_is_zero_at_the_teacher_and_pools_onto_a_smaller_grid():
    from tint.training.train import distill_loss
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 7, 8, 8, generator=g)
    assert distill_loss(t, t).abs() < 1e-5
    assert distill_loss(torch.randn(2, 7, 8, 8, generator=g), t) > 0.1
    # a student at half the teacher's grid is scored against the teacher's 2x2 mean distributions
    p = torch.softmax(t, 1)
    pooled = torch.nn.functional.avg_pool2d(p, 2)
    assert distill_loss(torch.log(pooled), t).abs() < 1e-5


def test_work_size_and_teacher_train_a_smaller_model(photos, pack, tmp_path, tiny_weights, capsys):
    """--work-size trains on crops resized to that side (the file says it as its working
    size, and validation runs there); --teacher/--distill adds the teacher's bin
    distributions, computed on the full crop, as soft targets."""
    import tint
    from tint.cli.train import run_train
    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(next(photos.glob("a/img0.jpg")), val / "v.jpg")
    out = tmp_path / "small"
    assert run_train(_args(photos, out, pack[0], "--backbone", "tiny-darknet", "--final-width", "8",
                           "--out-stride", "2", "--crop", "48", "--work-size", "32", "--epochs", "1",
                           "--teacher", str(tiny_weights), "--distill", "0.5", "--val", str(val))) == 0
    assert "distill: x0.5" in capsys.readouterr().out
    runner = tint.load(out / "final.safetensors", device="cpu")
    assert runner.config.size == 32 and runner.meta["args"]["work_size"] == 32
    assert runner.meta["args"]["teacher"] == str(tiny_weights) and "working size 32" in runner.meta["validation_protocol"]
    assert np.isfinite(_state(out)["history"][-1]["psnr"])


@pytest.mark.parametrize("extra, message", [
    (("--distill", "0.5"), "--teacher"),
    (("--work-size", "40"), "--work-size"),
    (("--work-size", "64"), "--work-size"),
    (("--teacher", "nowhere.safetensors", "--distill", "1"), "not found"),
    (("--teacher", "T", "--distill", "1", "--loss", "l2"), "--loss bins"),
])
def test_work_size_and_distill_are_checked(photos, tmp_path, tiny_weights, extra, message):
    from tint.cli.train import config_from_args
    extra = tuple(str(tiny_weights) if a == "T" else a for a in extra)
    with pytest.raises(TintError, match=message):
        config_from_args(_args(photos, tmp_path / "x", tmp_path / "p.npy", *extra)).check()


def test_teacher_on_other_bins_is_refused(tiny_weights, tmp_path):
    from tint.core.model import Colorizer, ColorizerConfig
    from tint.training.train import load_teacher
    student = Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8))
    assert load_teacher(tiny_weights, student, "cpu").training is False
    with pytest.raises(TintError, match="same ab bins"):
        load_teacher(tiny_weights, Colorizer(ColorizerConfig(backbone="tiny-darknet", output="ab")), "cpu")
