"""scripts/gallery.py: the before/after contact sheet, on a tiny synthetic folder."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gallery():
    path = Path(__file__).resolve().parents[1] / "scripts" / "gallery.py"
    spec = importlib.util.spec_from_file_location("gallery", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_published_list(gallery):
    assert len(gallery.PHOTOS) == 24 and len(set(gallery.PHOTOS)) == 24
    assert gallery.PHOTOS[0] == "1890sPingPong" and gallery.PHOTOS[-1] == "LondonStreets1900"


def test_sheet_from_two_fake_photos(gallery, tiny_weights, tmp_path, capsys):
    bw = tmp_path / "bw"
    bw.mkdir()
    rng = np.random.default_rng(0)
    names = list(gallery.PHOTOS[:2])
    for name, (h, w) in zip(names, [(120, 200), (300, 180)]):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(bw / f"deoldify_{name}.jpg")
    out = tmp_path / "sheet.jpg"
    assert gallery.main(["--weights", str(tiny_weights), "--bw", str(bw), "-o", str(out), "--names", *names,
                         "--device", "cpu", "--height", "60", "--columns", "2", "--title", "test"]) == 0
    assert "2 photos" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.height > 60 and im.width >= 2 * (2 * 60 * 200 // 120)     # two pairs side by side
    with pytest.raises(SystemExit, match="not found"):
        gallery.main(["--weights", str(tiny_weights), "--bw", str(bw), "-o", str(out),
                      "--names", "NoSuchPhoto"])
