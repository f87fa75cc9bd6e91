"""tint serve end to end in headless Chromium: upload a photo, see it colored, zip, webcam.

Needs the Debian ``chromium`` package and the ``playwright`` Python package (its bundled
browsers are NOT used: no ``playwright install``).  Skips cleanly without them.
With TINT_SCREENSHOT=1 it also refreshes the screenshot docs/serve.png (tests leave the
checkout alone otherwise).
"""
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")

import tint  # noqa: E402
from tint.serve.server import BackgroundServer, Limits, create_app
from tint.core.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tint" / "samples" / "sample.jpg"
CHROMIUM = os.environ.get("TINT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # a synthetic camera and an auto-accepted permission prompt, for the webcam mode
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

# mean chroma (max - min channel, 0..255) of an <img>, read back through a canvas
CHROMA_JS = """(sel) => {
  const img = document.querySelector(sel);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s += Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
  return {chroma: s / (d.length / 4), w: c.width, h: c.height};
}"""


@pytest.fixture(scope="module")
def url():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    runner = tint.load(None, "cpu", size=256)        # the bundled model, as a user gets it
    with BackgroundServer(create_app(runner, Limits(concurrency=2))) as u:
        yield u


@pytest.fixture(scope="module")
def page(url, tmp_path_factory):
    with sync_api.sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
                args=ARGS, viewport={"width": 1280, "height": 860}, accept_downloads=True)
        except Exception as e:  # a browser that cannot start here is an environment problem
            pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
        # anything but this server is refused: the page must work with no network
        ctx.route(lambda u: not u.startswith(url), lambda route: route.abort())
        pg = ctx.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url + "/")
        pg.wait_for_function("() => document.getElementById('health').textContent.includes('cpu')", timeout=15000)
        pg.errors = errors
        yield pg
        ctx.close()


def test_upload_shows_colored_result(page):
    page.set_input_files("#file", str(SAMPLE))
    page.wait_for_selector(".card.done", timeout=60000)
    after = page.evaluate(CHROMA_JS, ".card.done img.after")
    before = page.evaluate(CHROMA_JS, ".card.done img.before")
    assert (after["w"], after["h"]) == (before["w"], before["h"]) == Image.open(SAMPLE).size
    assert before["chroma"] < 2, "the sample is black and white"
    assert after["chroma"] > before["chroma"] + 5, after
    assert "ms" in page.text_content(".card.done .status")
    # slider moves the split
    page.eval_on_selector(".card.done input[type=range]",
                          "r => { r.value = 35; r.dispatchEvent(new Event('input')); }")
    assert "35%" in page.get_attribute(".card.done img.after", "style")
    png = page.screenshot(type="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("TINT_SCREENSHOT") == "1":
        atomic_write(ROOT / "docs" / "serve.png", lambda tmp: Path(tmp).write_bytes(png))
    assert not page.errors, page.errors


def test_zip_download_holds_every_result(page, tmp_path):
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1)))
    extra = tmp_path / "ramp.png"
    gray.save(extra)
    page.set_input_files("#file", str(extra))
    page.wait_for_function("() => document.querySelectorAll('.card.done').length >= 2", timeout=60000)
    with page.expect_download() as dl:
        page.click("#zip")
    path = tmp_path / "all.zip"
    dl.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        names = sorted(z.namelist())
        assert names == ["ramp_color.png", "sample_color.png"], names
        img = Image.open(io.BytesIO(z.read("ramp_color.png")))
        assert img.size == gray.size and img.mode == "RGB"


def test_error_is_shown_on_the_card(page, tmp_path):
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"not a jpeg at all")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector(".card.error", timeout=30000)
    assert "not an image" in page.text_content(".card.error .status")


def test_webcam_mode_reports_fps(page):
    page.click("#camstart")
    page.wait_for_function("() => (document.getElementById('fps') || {}).textContent > 0", timeout=30000)
    page.wait_for_function("() => document.getElementById('camout').naturalWidth > 0", timeout=30000)
    page.click("#camstart")          # stop
    assert page.text_content("#camstart") == "start webcam"
    assert not page.errors, page.errors


def test_saturation_slider_reaches_the_server(page, tmp_path):
    """The 'colour' slider at 0 gives back a gray result; the card says which value ran."""
    assert page.input_value("#saturation") == "1" and page.text_content("#satval") == "1.00"
    page.eval_on_selector("#saturation", "r => { r.value = 0; r.dispatchEvent(new Event('input')); }")
    assert page.text_content("#satval") == "0.00"
    ramp = tmp_path / "ramp0.png"
    Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))).save(ramp)
    n = page.evaluate("() => document.querySelectorAll('.card.done').length")
    page.set_input_files("#file", str(ramp))
    page.wait_for_function(f"() => document.querySelectorAll('.card.done').length > {n}", timeout=60000)
    card = ".card.done:first-child"
    assert page.evaluate(CHROMA_JS, f"{card} img.after")["chroma"] < 1.5
    assert "colour 0" in page.text_content(f"{card} .status")
    page.eval_on_selector("#saturation", "r => { r.value = 1; r.dispatchEvent(new Event('input')); }")
    assert not page.errors, page.errors
