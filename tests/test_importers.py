"""Importers: synthetic files in the real layouts (Keras .h5, TF.js shards, torch state
dicts), imported and compared with a reference written independently from the source
framework's semantics: channels-last numpy in float64, kernels in TF layout, the source's
own normalization on a 3-channel input, zero 'same' padding.  Odd sizes check the borders.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tint.cli.main import main
from tint.core.errors import TintError
from tint.training.importers import convert, fold_rgb_conv, load_tfjs_darknet, tf_to_torch_conv
from tint.core.model import Colorizer, ColorizerConfig
from tint.core.weights import load_weights, read_header

MEAN_BGR = np.array([103.939, 116.779, 123.68])
TV_MEAN, TV_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# --------------------------------------------------------------------------- reference (numpy)
def conv_same(x, k, b=None):
    """Keras Conv2D, stride 1, padding 'same': x (H, W, C), k (kH, kW, C, O) -> (H, W, O)."""
    kh, kw = k.shape[:2]
    h, w = x.shape[:2]
    xp = np.pad(x, ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2), (0, 0)))
    out = sum(xp[i:i + h, j:j + w] @ k[i, j] for i in range(kh) for j in range(kw))
    return out if b is None else out + b


def maxpool2(x):
    h, w, c = x.shape
    return x[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max((1, 3))


def close(ours: torch.Tensor, ref: np.ndarray, tol=1e-4):
    """ours (1, C, H, W) vs ref (H, W, C), relative to the reference's scale."""
    ours = ours[0].permute(1, 2, 0).double().numpy()
    assert ours.shape == ref.shape
    err = np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-6)
    assert err < tol, f"max relative error {err:.2e}"


def he(rng, *shape):
    fan_in = math.prod(shape[:-1])
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


# --------------------------------------------------------------------------- VGG16 (Keras, torchvision)
VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg_weights(seed=0):
    """{'blockB_convI': (kernel (3, 3, in, out), bias)} for all 13 convs, block5 included."""
    rng, cin, out = np.random.default_rng(seed), 3, {}
    for b, widths in enumerate(VGG_BLOCKS, 1):
        for i, w in enumerate(widths, 1):
            out[f"block{b}_conv{i}"] = (he(rng, 3, 3, cin, w), (0.1 * rng.standard_normal(w)).astype(np.float32))
            cin = w
    return out


def vgg_reference(x, weights):
    """VGG16 conv1_1..conv4_3 taps from a preprocessed (H, W, 3) input."""
    taps = []
    for b, widths in enumerate(VGG_BLOCKS[:4], 1):
        if b > 1:
            x = maxpool2(x)
        for i in range(1, len(widths) + 1):
            k, bias = weights[f"block{b}_conv{i}"]
            x = np.maximum(conv_same(x, k.astype(np.float64), bias), 0)
        taps.append(x)
    return taps


def write_keras_h5(path, weights, style="old", full_model=False, extra=None):
    """The Keras applications layout: root attr layer_names, one group per layer with a
    weight_names attr; 'old' = block1_conv1_W_1:0 datasets, 'new' = block1_conv1/kernel:0."""
    import h5py
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        names = ["input_1"] if style == "new" else []
        for b, widths in enumerate(VGG_BLOCKS, 1):
            names += [f"block{b}_conv{i}" for i in range(1, len(widths) + 1)] + [f"block{b}_pool"]
        names += list(extra or [])
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.1.6"
        for n in names:
            g = root.create_group(n)
            if n not in weights and n not in (extra or {}):
                g.attrs["weight_names"] = []
                continue
            k, b = weights[n] if n in weights else extra[n]
            wn = [f"{n}_W_1:0", f"{n}_b_1:0"] if style == "old" else [f"{n}/kernel:0", f"{n}/bias:0"]
            g.attrs["weight_names"] = [w.encode() for w in wn]
            g.create_dataset(wn[0], data=k)
            g.create_dataset(wn[1], data=b)
    return path


def encoder_taps(model: Colorizer, gray: np.ndarray):
    """Our encoder on the model's own input: (gray, ones), as Colorizer.raw builds it."""
    g = torch.from_numpy(gray).float()[None, None]
    with torch.no_grad():
        return model.encoder(torch.cat((g, torch.ones_like(g)), 1))


@pytest.fixture(scope="module")
def vgg():
    return vgg_weights()


@pytest.fixture(scope="module")
def gray_odd():
    return np.random.default_rng(1).random((13, 19))             # odd: borders and floor pooling


@pytest.mark.parametrize("style,full_model", [("old", False), ("new", True)])
def test_keras_vgg16_matches_caffe_reference(tmp_path, vgg, gray_odd, style, full_model):
    path = write_keras_h5(tmp_path / "vgg16_notop.h5", vgg, style, full_model)
    model, meta = convert(path)
    assert model.config.backbone == "vgg16" and meta["head"] == "untrained"
    bgr = (np.repeat(gray_odd[..., None], 3, -1) * 255.0)[..., ::-1] - MEAN_BGR    # Keras 'caffe'
    for ours, ref in zip(encoder_taps(model, gray_odd), vgg_reference(bgr, vgg)):
        close(ours, ref)


def _drop(f, layer, kind):
    g, name = f[layer], f"{layer}_{kind}_1:0"
    g.attrs["weight_names"] = [n for n in g.attrs["weight_names"]
                               if (n.decode() if isinstance(n, bytes) else n) != name]
    del g[name]


@pytest.mark.parametrize("mutate,key", [
    (lambda f: _drop(f, "block3_conv2", "b"), "block3_conv2/bias"),                  # missing
    (lambda f: f["block2_conv1"].__delitem__("block2_conv1_W_1:0")
     or f["block2_conv1"].create_dataset("block2_conv1_W_1:0", data=np.zeros((3, 3, 64, 127), "f4")),
     "block2_conv1/kernel"),                                                          # wrong shape
    (lambda f: f["block1_conv1"].__delitem__("block1_conv1_W_1:0")                   # Theano layout
     or f["block1_conv1"].create_dataset("block1_conv1_W_1:0", data=np.zeros((64, 3, 3, 3), "f4")),
     "block1_conv1/kernel"),
])
def test_keras_missing_or_misshapen_key_is_named(tmp_path, vgg, mutate, key):
    import h5py
    path = write_keras_h5(tmp_path / "v.h5", vgg)
    with h5py.File(path, "r+") as f:
        mutate(f)
    with pytest.raises(TintError, match=key):
        convert(path)


def test_keras_extra_key_is_named(tmp_path, vgg):
    extra = {"block4_conv4": (np.zeros((3, 3, 512, 512), "f4"), np.zeros(512, "f4"))}
    with pytest.raises(TintError, match="unexpected tensor 'block4_conv4/bias'"):
        convert(write_keras_h5(tmp_path / "v.h5", vgg, extra=extra))


def test_torchvision_vgg16_matches_reference(tmp_path, vgg, gray_odd):
    sd, idx = {}, 0
    for b, widths in enumerate(VGG_BLOCKS, 1):
        for i in range(1, len(widths) + 1):
            k, bias = vgg[f"block{b}_conv{i}"]
            sd[f"features.{idx}.weight"] = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous()
            sd[f"features.{idx}.bias"] = torch.from_numpy(bias)
            idx += 2
        idx += 1
    for j in (0, 3, 6):                  # the real ones are huge; ignored keys are not shape-checked
        sd[f"classifier.{j}.weight"], sd[f"classifier.{j}.bias"] = torch.zeros(4, 4), torch.zeros(4)
    torch.save(sd, tmp_path / "vgg16.pth")
    model, meta = convert(tmp_path / "vgg16.pth")
    assert "torchvision" in meta["format"]
    rgb = (np.repeat(gray_odd[..., None], 3, -1) - TV_MEAN) / TV_STD                  # RGB, ImageNet norm
    for ours, ref in zip(encoder_taps(model, gray_odd), vgg_reference(rgb, vgg)):
        close(ours, ref)


# --------------------------------------------------------------------------- Tiny Darknet (TF.js)
DARKNET = [(3, 16), "pool", (3, 32), "pool", (1, 16), (3, 128), (1, 16), (3, 128), "pool",
           (1, 32), (3, 256), (1, 32), (3, 256), "pool", (1, 64), (3, 512), (1, 64), (3, 512), (1, 128)]


def darknet_topology():
    """A Keras 2.1.6-style functional model config, as the TF.js converter writes it."""
    layers = [{"class_name": "InputLayer", "name": "input_1",
               "config": {"name": "input_1", "batch_input_shape": [None, 224, 224, 3]}, "inbound_nodes": []}]
    n = p = 0

    def add(cls, name, **cfg):
        prev = layers[-1]["name"]
        layers.append({"class_name": cls, "name": name, "config": {"name": name, **cfg},
                       "inbound_nodes": [[[prev, 0, 0, {}]]]})

    conv = dict(strides=[1, 1], padding="same", data_format="channels_last", dilation_rate=[1, 1])
    for item in DARKNET + [(1, 1000, True)]:
        if item == "pool":
            p += 1
            add("MaxPooling2D", f"max_pooling2d_{p}", pool_size=[2, 2], padding="same", strides=[2, 2])
            continue
        n += 1
        bias = len(item) == 3
        add("Conv2D", f"conv2d_{n}", filters=item[1], kernel_size=[item[0]] * 2, use_bias=bias, **conv)
        if not bias:
            add("BatchNormalization", f"batch_normalization_{n}", epsilon=0.001)
            add("LeakyReLU", f"leaky_re_lu_{n}", alpha=0.10000000149011612)
    add("GlobalAveragePooling2D", "global_average_pooling2d_1")
    return {"keras_version": "2.1.6", "backend": "tensorflow",
            "model_config": {"class_name": "Model", "config": {"name": "model_1", "layers": layers}}}


def darknet_tensors(topology, seed=0):
    rng, out, cin = np.random.default_rng(seed), {}, 3
    for layer in topology["model_config"]["config"]["layers"]:
        c = layer["config"]
        if layer["class_name"] == "Conv2D":
            k = c["kernel_size"][0]
            out[f"{c['name']}/kernel"] = he(rng, k, k, cin, c["filters"])
            if c["use_bias"]:
                out[f"{c['name']}/bias"] = (0.1 * rng.standard_normal(c["filters"])).astype(np.float32)
            cin = c["filters"]
        elif layer["class_name"] == "BatchNormalization":
            for v, lo in (("gamma", 1), ("beta", 0), ("moving_mean", 0)):
                out[f"{c['name']}/{v}"] = (lo + 0.1 * rng.standard_normal(cin)).astype(np.float32)
            out[f"{c['name']}/moving_variance"] = rng.uniform(0.5, 1.5, cin).astype(np.float32)
    return out


def write_tfjs(folder: Path, topology, tensors, split_group=0):
    """model.json + shards: one group per layer, groups in text order of layer names (as the
    real export), BN tensors gamma, beta, moving_mean, moving_variance; one group split in two."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = sorted({k.split("/")[0] for k in tensors})
    order = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
    manifest = []
    for gi, layer in enumerate(layers, 1):
        names = sorted((k for k in tensors if k.startswith(layer + "/")), key=lambda k: order.index(k.split("/")[1]))
        blob = b"".join(tensors[k].astype("<f4").tobytes() for k in names)
        parts = [blob[:len(blob) // 2 + 3], blob[len(blob) // 2 + 3:]] if gi == split_group else [blob]
        paths = []
        for pi, part in enumerate(parts, 1):
            paths.append(f"group{gi}-shard{pi}of{len(parts)}")
            (folder / paths[-1]).write_bytes(part)
        manifest.append({"paths": paths, "weights": [
            {"name": k, "shape": list(tensors[k].shape), "dtype": "float32"} for k in names]})
    (folder / "model.json").write_text(json.dumps({"modelTopology": topology, "weightsManifest": manifest}))
    return folder


def keras_forward(topology, tensors, x):
    """Run a Keras layer list on x (H, W, C): -> (stage taps, final output)."""
    taps = []
    for layer in topology["model_config"]["config"]["layers"]:
        c, cls = layer["config"], layer["class_name"]
        t = lambda v: tensors[f"{c['name']}/{v}"].astype(np.float64)      # noqa: E731
        if cls == "Conv2D":
            x = conv_same(x, t("kernel"), t("bias") if c["use_bias"] else None)
        elif cls == "BatchNormalization":
            x = (x - t("moving_mean")) / np.sqrt(t("moving_variance") + c["epsilon"]) * t("gamma") + t("beta")
        elif cls == "LeakyReLU":
            x = np.where(x > 0, x, c["alpha"] * x)
            last_act = x
        elif cls == "MaxPooling2D":
            taps.append(x)
            x = maxpool2(x)
        elif cls == "GlobalAveragePooling2D":
            x = x.mean((0, 1))
    return taps + [last_act], x


@pytest.fixture(scope="module")
def darknet(tmp_path_factory):
    topo = darknet_topology()
    tensors = darknet_tensors(topo)
    folder = write_tfjs(tmp_path_factory.mktemp("tfjs") / "tiny-darknet", topo, tensors, split_group=3)
    return folder, topo, tensors


def test_tfjs_classifier_matches_keras_reference(darknet):
    folder, topo, tensors = darknet
    model = load_tfjs_darknet(folder / "model.json", classifier=True)
    rgb = np.random.default_rng(2).random((32, 48, 3))
    ref_taps, ref_logits = keras_forward(topo, tensors, rgb)
    x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None]
    with torch.no_grad():
        for ours, ref in zip(model(x), ref_taps, strict=True):
            close(ours, ref)
        logits = model.classify(x)[0].double().numpy()
    assert np.abs(logits - ref_logits).max() < 1e-4 * np.abs(ref_logits).max()


@pytest.mark.parametrize("hw", [(32, 48), (31, 37)])
def test_tfjs_colorizer_stem_folds_rgb_to_gray(darknet, hw):
    folder, topo, tensors = darknet
    model, meta = convert(folder, final_width=8)
    assert model.config.backbone == "tiny-darknet" and meta["head"] == "untrained"
    gray = np.random.default_rng(3).random(hw)
    ref_taps, _ = keras_forward(topo, tensors, np.repeat(gray[..., None], 3, -1))
    ours = encoder_taps(model, gray)
    n = len(ours) if hw[0] % 16 == 0 else 1      # Keras 'same' pools round odd sizes up, torch down
    for o, r in zip(ours[:n], ref_taps[:n]):
        close(o, r)


def test_tfjs_network_order_is_taken_from_topology(darknet, tmp_path):
    """conv2d_10 comes after conv2d_9 in the network but before conv2d_2 in text order."""
    folder, _, tensors = darknet
    model = load_tfjs_darknet(folder, classifier=False)
    assert torch.equal(model.conv10.weight, tf_to_torch_conv(torch.from_numpy(tensors["conv2d_10/kernel"])))
    assert torch.equal(model.bn2.running_var, torch.from_numpy(tensors["batch_normalization_2/moving_variance"]))


def test_tfjs_corrupt_shards_and_manifest(darknet, tmp_path):
    folder = Path(shutil.copytree(darknet[0], tmp_path / "m"))
    shard = folder / "group5-shard1of1"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(TintError, match="too short for tensor"):
        convert(folder)
    folder = Path(shutil.copytree(darknet[0], tmp_path / "m2"))
    m = json.loads((folder / "model.json").read_text())
    m["weightsManifest"][0]["weights"][1]["name"] = "batch_normalization_1/betta"
    (folder / "model.json").write_text(json.dumps(m))
    with pytest.raises(TintError, match="missing tensor 'batch_normalization_1/beta'"):
        convert(folder)


# --------------------------------------------------------------------------- fold + layout helpers
def test_fold_rgb_conv_is_exact_at_borders():
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    scale, mean = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64), torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    g = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    x3 = scale.view(1, 3, 1, 1) * g - mean.view(1, 3, 1, 1)                # the source's input, zero padded
    folded = fold_rgb_conv(w, scale, mean)
    assert folded.shape == (5, 2, 3, 3) and folded.dtype == w.dtype
    a = torch.nn.functional.conv2d(x3, w, padding=1)
    b = torch.nn.functional.conv2d(torch.cat((g, torch.ones_like(g)), 1), folded, padding=1)
    assert torch.allclose(a, b, atol=1e-12)
    with pytest.raises(ValueError):
        fold_rgb_conv(w, 1.0, [1.0, 2.0])


def test_tf_to_torch_conv_matches_channels_last_conv():
    k = np.random.default_rng(4).standard_normal((3, 1, 4, 6))          # non-square kernel
    x = np.random.default_rng(5).standard_normal((5, 7, 4))
    ours = torch.nn.functional.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None],
                                      tf_to_torch_conv(torch.from_numpy(k)), padding=(1, 0))
    close(ours, conv_same(x, k), tol=1e-12)


# --------------------------------------------------------------------------- torch state dicts
def test_tint_state_dict_round_trips_and_needs_backbone(tmp_path):
    src = Colorizer(ColorizerConfig(backbone="tiny-darknet", final_width=8))
    torch.save({"state_dict": src.state_dict()}, tmp_path / "c.pt")
    with pytest.raises(TintError, match="--backbone"):
        convert(tmp_path / "c.pt")
    model, meta = convert(tmp_path / "c.pt", backbone="tiny-darknet", final_width=8)
    assert meta["head"] == "imported"
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(TintError, match="shape"):
        convert(tmp_path / "c.pt", backbone="tiny-darknet", final_width=4)


class NotATensor:
    pass


def test_pickle_with_code_is_refused(tmp_path):
    torch.save({"w": torch.zeros(2), "x": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(TintError, match="refusing a pickle"):
        convert(tmp_path / "evil.pt")


# --------------------------------------------------------------------------- CLI
def test_cli_convert_end_to_end(darknet, tmp_path, capsys):
    folder = darknet[0]
    out = tmp_path / "init.safetensors"
    argv = ["convert", str(folder), "-o", str(out), "--backbone", "tiny-darknet",
            "--head", "bins", "--final-width", "8"]
    assert main(argv) == 0
    config, meta = read_header(out)
    assert (config.backbone, config.output, config.final_width) == ("tiny-darknet", "bins", 8)
    assert meta["head"] == "untrained" and meta["source"] == "tiny-darknet/model.json"
    assert len(meta["sha256"]) == 64 and "TF.js" in meta["format"]
    model, _ = load_weights(out)
    with torch.no_grad():
        ab = model(torch.rand(1, 1, 32, 48) * 100)
    assert ab.shape == (1, 2, 32, 48) and torch.isfinite(ab).all()
    ref, _ = convert(folder)                          # the encoder does not depend on the head
    assert torch.allclose(model.encoder.conv3.weight, ref.encoder.conv3.weight, rtol=1e-3, atol=1e-4)

    capsys.readouterr()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(argv[:6] + ["--overwrite", "--fp32"]) == 0                # ab head: quick to build
    model, _ = load_weights(out)
    assert model.config.output == "ab" and torch.equal(model.encoder.conv3.weight, ref.encoder.conv3.weight)

    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 10)
    for args in (["convert", str(bad), "-o", str(tmp_path / "x.safetensors")],
                 ["convert", str(folder), "-o", str(tmp_path / "y.safetensors"), "--backbone", "vgg16"],
                 ["convert", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "z.safetensors")]):
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("tint convert: error:") and err.count("\n") == 1, err


# --------------------------------------------------------------------------- the real files
def test_real_tiny_darknet_matches_reference(data_dir):
    folder = data_dir / "weights" / "tiny-darknet"
    m = json.loads((folder / "model.json").read_text())
    tensors = {}                          # read the shards independently of the importer
    for g in m["weightsManifest"]:
        blob = b"".join((folder / p).read_bytes() for p in g["paths"])
        off = 0
        for w in g["weights"]:
            n = math.prod(w["shape"])
            tensors[w["name"]] = np.frombuffer(blob, "<f4", n, off).reshape(w["shape"])
            off += 4 * n
    model = load_tfjs_darknet(folder)
    rgb = np.random.default_rng(6).random((32, 32, 3))
    _, ref = keras_forward(m["modelTopology"], tensors, rgb)
    with torch.no_grad():
        ours = model.classify(torch.from_numpy(rgb).float().permute(2, 0, 1)[None])[0].double().numpy()
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
