"""`tint image` / `tint info` end to end (in-process, tiny random model): batches go on
after a bad file, the summary and exit status are right, and stderr never has a traceback."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tint.cli.main import main
from tint.cli.image import SAMPLE


def write_gray(path, h=40, w=56, seed=0, **kw):
    a = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, **kw)
    return path


def tint(capsys, *argv):
    argv = [str(a) for a in argv]
    if argv[0] == "image" and "--size" not in argv:
        argv += ["--size", "64", "--device", "cpu"]     # a small working size keeps tests fast
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "in"
    for i, name in enumerate(["a.jpg", "b.png", "c.tif"]):
        write_gray(d / name, seed=i)
    return d


def test_one_file_to_file(tmp_path, capsys, tiny_weights):
    src = write_gray(tmp_path / "old.jpg", 30, 50)
    code, out, err = tint(capsys, "image", src, "-o", tmp_path / "new.png", "--weights", tiny_weights)
    assert code == 0, err
    assert "1 colorized, 0 failed, 0 skipped" in out
    im = Image.open(tmp_path / "new.png")
    assert im.mode == "RGB" and im.size == (50, 30)


def test_folder_and_summary(tmp_path, capsys, tiny_weights, photos):
    (photos / "notes.txt").write_text("not an image, and not picked up from a folder")
    out_dir = tmp_path / "out"
    code, out, err = tint(capsys, "image", photos, "-o", out_dir, "--weights", tiny_weights)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.jpg", "b.png", "c.tif"]
    assert "3 colorized, 0 failed, 0 skipped (exist)" in out


def test_batch_goes_on_after_failures(tmp_path, capsys, tiny_weights, photos):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").touch()
    data = (photos / "a.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 2])
    (bad / "notes.txt").write_text("hello")
    code, out, err = tint(capsys, "image", photos / "a.jpg", bad / "empty.jpg", bad / "cut.jpg",
                          bad / "notes.txt", tmp_path / "missing.png", photos / "b.png",
                          "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 1
    assert "2 colorized, 4 failed, 0 skipped (exist)" in out
    lines = [line for line in err.splitlines() if line.startswith("tint image: ")]
    for name in ("empty.jpg", "cut.jpg", "notes.txt", "missing.png"):
        assert sum(name in line for line in lines) == 1, err
    assert (tmp_path / "out" / "a.jpg").exists() and (tmp_path / "out" / "b.png").exists()


def test_skip_existing_then_overwrite(tmp_path, capsys, tiny_weights, photos):
    out_dir = tmp_path / "out"
    assert tint(capsys, "image", photos, "-o", out_dir, "--weights", tiny_weights)[0] == 0
    (out_dir / "b.png").unlink()                         # as if the batch had been killed
    stamp = (out_dir / "a.jpg").stat().st_mtime_ns
    code, out, err = tint(capsys, "image", photos, "-o", out_dir, "--weights", tiny_weights)
    assert code == 0 and "1 colorized, 0 failed, 2 skipped (exist)" in out
    assert "--overwrite" in err
    assert (out_dir / "a.jpg").stat().st_mtime_ns == stamp
    time.sleep(0.01)
    code, out, err = tint(capsys, "image", photos, "-o", out_dir, "--weights", tiny_weights, "--overwrite")
    assert code == 0 and "3 colorized, 0 failed, 0 skipped" in out
    assert (out_dir / "a.jpg").stat().st_mtime_ns != stamp


def test_input_never_overwritten(tmp_path, capsys, tiny_weights):
    src = write_gray(tmp_path / "x.png")
    before = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, out, err = tint(capsys, "image", src, "-o", src, "--weights", tiny_weights, *extra)
        assert code == 1 and "input" in err
    # the same file through its folder, as output folder too
    code, out, err = tint(capsys, "image", tmp_path, "-o", tmp_path, "--weights", tiny_weights, "--overwrite")
    assert code == 1 and "input" in err
    assert src.read_bytes() == before


def test_recursive_keeps_layout_and_format(tmp_path, capsys, tiny_weights):
    root = tmp_path / "album"
    write_gray(root / "x.jpg")
    write_gray(root / "1900" / "y.jpg")
    write_gray(root / "1900" / "paris" / "z.png")
    out_dir = tmp_path / "out"
    code, out, err = tint(capsys, "image", root, "-o", out_dir, "--recursive", "--format", "png",
                          "--weights", tiny_weights)
    assert code == 0, err
    got = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert got == ["1900/paris/z.png", "1900/y.png", "x.png"]
    # without --recursive only the top level is taken
    code, out, err = tint(capsys, "image", root, "-o", tmp_path / "flat", "--weights", tiny_weights)
    assert code == 0 and "1 colorized" in out


def test_glob_expanded_in_process(tmp_path, capsys, tiny_weights, photos):
    code, out, err = tint(capsys, "image", str(photos / "*.jpg"), str(tmp_path / "none*.png"),
                          "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 1 and "1 colorized, 1 failed" in out and "no file matches" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.jpg"]


def test_name_clash_is_a_failure_not_an_overwrite(tmp_path, capsys, tiny_weights):
    a = write_gray(tmp_path / "one" / "p.jpg", seed=1)
    b = write_gray(tmp_path / "two" / "p.jpg", seed=2)
    code, out, err = tint(capsys, "image", a, b, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 1 and "1 colorized, 1 failed" in out and "already the output" in err


def test_usage_errors(tmp_path, capsys, tiny_weights, photos):
    # no inputs
    code, out, err = tint(capsys, "image", "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 2 and "no inputs" in err
    # output folder that cannot be created (a file is in the way)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = tint(capsys, "image", photos, "-o", blocker / "out", "--weights", tiny_weights)
    assert code == 2 and "output folder" in err
    # several inputs but OUT names one file
    code, out, err = tint(capsys, "image", photos, "-o", tmp_path / "one.png", "--weights", tiny_weights)
    assert code == 2 and "one file" in err
    # bad quality
    code, out, err = tint(capsys, "image", photos, "-o", tmp_path / "o", "--quality", "0", "--weights", tiny_weights)
    assert code == 2 and "--quality" in err
    # folder with no images
    (tmp_path / "emptydir").mkdir()
    code, out, err = tint(capsys, "image", tmp_path / "emptydir", "-o", tmp_path / "o2", "--weights", tiny_weights)
    assert code == 2 and "no images" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir(tmp_path, capsys, tiny_weights, photos):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, out, err = tint(capsys, "image", photos, "-o", locked, "--weights", tiny_weights)
        assert code == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


def test_unwritable_output_dir_simulated(tmp_path, capsys, tiny_weights, photos, monkeypatch):
    """The same as above where the tests run as root: the folder's write probe fails."""
    import tempfile

    def denied(*a, **kw):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    code, out, err = tint(capsys, "image", photos, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 2 and "not writable" in err and "Permission denied" in err


def test_disk_full_on_one_file(tmp_path, capsys, tiny_weights, photos, monkeypatch):
    """A write that fails half way: that file fails, leaves no temp file, the batch goes on."""
    real_save = Image.Image.save

    def save(self, fp, format=None, **kw):
        if ".b.png." in str(fp):
            Path(fp).write_bytes(b"half")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, format, **kw)
    monkeypatch.setattr(Image.Image, "save", save)
    out_dir = tmp_path / "out"
    code, out, err = tint(capsys, "image", photos, "-o", out_dir, "--weights", tiny_weights)
    assert code == 1 and "2 colorized, 1 failed, 0 skipped" in out
    assert "No space left on device" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.jpg", "c.tif"]    # no .part left


def test_no_default_weights_is_a_clear_error(tmp_path, capsys, photos, monkeypatch):
    from tint.core import weights
    monkeypatch.setattr(weights, "REGISTRY", {})               # an install without bundled weights
    code, out, err = tint(capsys, "image", photos, "-o", tmp_path / "out")
    assert code == 2 and "--weights" in err
    assert not (tmp_path / "out").exists()                # failed before touching anything


def test_sample(tmp_path, capsys, tiny_weights):
    assert SAMPLE.is_file() and SAMPLE.stat().st_size < 100_000
    assert max(Image.open(SAMPLE).size) <= 640
    code, out, err = tint(capsys, "image", "--sample", "-o", tmp_path / "out", "--weights", tiny_weights,
                          "--size", "128")
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "sample.jpg").size == Image.open(SAMPLE).size


def test_alpha_exif_icc_16bit_survive(tmp_path, capsys, tiny_weights):
    from PIL import ImageCms
    from tint.media.io import read_image, write_image
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rng = np.random.default_rng(0)
    src = tmp_path / "in" / "deep.png"
    src.parent.mkdir()
    a = rng.integers(0, 65536, (24, 40, 4), dtype=np.uint16)
    exif = Image.Exif()
    exif[0x010F] = "TintCam"
    write_image(src, a, icc=icc, exif=exif.tobytes())
    code, out, err = tint(capsys, "image", src, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert code == 0, err
    d = read_image(tmp_path / "out" / "deep.png")
    assert d.pixels.dtype == np.uint16 and d.pixels.shape == (24, 40, 3)
    assert np.array_equal(d.alpha, a[:, :, 3]) and d.icc == icc
    got = Image.Exif()
    got.load(d.exif)
    assert got.get(0x010F) == "TintCam"


def test_exif_rotated_input_comes_out_upright(tmp_path, capsys, tiny_weights):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 36), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6                                    # stored sideways
    im.save(tmp_path / "side.jpg", exif=exif)
    code, out, err = tint(capsys, "image", tmp_path / "side.jpg", "-o", tmp_path / "up.jpg", "--weights", tiny_weights)
    assert code == 0, err
    res = Image.open(tmp_path / "up.jpg")
    assert res.size == (20, 36) and res.getexif().get(0x0112) in (None, 1)


def test_large_photo(tmp_path, capsys, tiny_weights):
    """3000x2000 goes through the strip-wise join without trouble (a few seconds on CPU)."""
    src = tmp_path / "big.jpg"
    y, x = np.mgrid[0:2000, 0:3000]
    Image.fromarray(((x + y) % 256).astype(np.uint8)).save(src, quality=80)
    t = time.perf_counter()
    code, out, err = tint(capsys, "image", src, "-o", tmp_path / "big.png", "--weights", tiny_weights)
    assert code == 0, err
    assert Image.open(tmp_path / "big.png").size == (3000, 2000)
    assert time.perf_counter() - t < 120


def test_info(capsys, tiny_weights, monkeypatch):
    code, out, err = tint(capsys, "info", "--weights", tiny_weights, "--device", "cpu")
    assert code == 0
    for key in ("tint", "torch", "python", "device", "config", "parameters"):
        assert key in out
    assert "tiny-darknet" in out and "random test weights" in out
    code, out, err = tint(capsys, "info", "--device", "cpu")          # the bundled model
    assert code == 0 and "tint-default.safetensors" in out and "temperature=0.3" in out
    from tint.core import weights
    monkeypatch.setattr(weights, "REGISTRY", {})
    code, out, err = tint(capsys, "info", "--device", "cpu")
    assert code == 0 and "no default weights" in out


def test_info_bad_weights(tmp_path, capsys):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"garbage")
    code, out, err = tint(capsys, "info", "--weights", bad, "--device", "cpu")
    assert code == 2 and "w.safetensors" in err


def test_as_a_real_process(tmp_path, tiny_weights):
    """The installed entry point: exit code and one-line error, nothing else on stderr."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "tint", "image", str(tmp_path / "missing.jpg"),
                        "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"tint image: {tmp_path / 'missing.jpg'}: file not found"]
    assert "0 colorized, 1 failed, 0 skipped (exist)" in r.stdout
