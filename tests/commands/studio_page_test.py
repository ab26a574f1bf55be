"""The studio page's answers to bad uploads, in a real headless Chromium, with a stand-in colorizer.

The stand-in gives the photo itself as its samples and edits (no model, no training): what is tested
is the page, not the colorization. Marked `slow` (a browser and a server), as studio_browser_test.py.
"""

import os
import time
import types

import numpy as np
import pytest

from tfgcrf.studio import StudioApp, StudioServer
from tfgcrf.studio import app as studio_app
from tfgcrf.studio.browser import Page, chrome

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256


class _PhotoAsSamples:
    """A colorizer whose samples are the photo itself (the page's open path, in a second)."""

    model = types.SimpleNamespace(model_config=types.SimpleNamespace(num_components=2))

    def default_samples(self, mode):
        return 2 if mode == "top" else 8

    def check_sampling(self, num_samples, mode):
        pass

    def colorize(self, rgb, num_samples, seed=0, mode="top", return_scores=False):
        samples = np.repeat(np.asarray(rgb, np.uint8)[None], num_samples, axis=0)
        return samples, np.full(num_samples, 1.0 / num_samples)

    def session(self, rgb, **kwargs):
        return _PhotoSession(rgb)

    def explain(self, rgb, point):
        return np.full(np.shape(rgb)[:2], 0.5, np.float32)


class _PhotoSession:
    """An edit session whose result is the photo: points are only counted."""

    def __init__(self, rgb):
        self.rgb = np.asarray(rgb, np.uint8)
        self.keys = 0

    def add_point(self, x, y, rgb):
        self.keys += 1
        return self.keys

    def move_point(self, key, x, y, rgb):
        pass

    def remove_point(self, key):
        pass

    def result(self):
        return self.rgb


@pytest.fixture
def photo_page(tmp_path):
    """`open_photo()` -> the page (a `Page`) with the fixture photo open through the file picker;
    the studio's server is made at that call (after a test's monkeypatching)."""
    opened = []

    def open_photo():
        server = StudioServer(StudioApp(_PhotoAsSamples(), num_samples=2)).start()
        opened.append(server.stop)
        driver, _ = chrome(tmp_path)
        opened.append(driver.quit)
        driver.get(server.url)
        page = Page(driver, 384, 256)
        version = page.version()
        page.find("#file").send_keys(PHOTO)
        page.idle_after(version)
        assert page.error() is None
        assert page.find("#photo-name").text == "sklearn_china.jpg (384x256)"
        return page

    yield open_photo
    for close in reversed(opened):
        close()


@pytest.mark.slow
def test_a_bad_upload_keeps_the_open_photo_and_says_so(tmp_path, monkeypatch, photo_page):
    # A 1 MiB limit, so that a file above it is small enough for a test.
    monkeypatch.setattr(studio_app, "MAX_UPLOAD_BYTES", 1 << 20)
    page = photo_page()
    opened = page.find("#photo-name").text

    # Not an image: the server's one line; the status no longer says "opening notes.txt ...".
    notes = tmp_path / "notes.txt"
    notes.write_text("this is text, not pixels\n")
    page.find("#file").send_keys(str(notes))
    page.wait(page.error, "the error message")
    assert page.error().startswith("unsupported image format") and "notes.txt" in page.error()
    page.wait(lambda: page.find("body").get_attribute("data-busy") == "0", "the page idle")
    assert page.find("#status").text == "sklearn_china.jpg is still open"
    assert page.find("#photo-name").text == opened
    page.find("#error-close").click()

    # Above the upload limit: refused in the page with the limit, not "HTTP 413 ...".
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(3 << 19))  # 1.5 MiB
    page.find("#file").send_keys(str(big))
    page.wait(page.error, "the error message")
    assert page.error() == "big.png: upload too large (1.5 MiB): the limit is 1 MiB"
    assert page.find("#status").text == "sklearn_china.jpg is still open"
    assert page.find("#photo-name").text == opened
    assert page.find("#stage").get_attribute("hidden") is None


@pytest.mark.slow
def test_a_removed_point_takes_its_attention_map_along(photo_page):
    page = photo_page()
    page.click(60, 30)
    assert page.points() == [(60, 30)]
    attention = page.find("#attention")
    # Hovering the point shows its attention map; a right click removes the point, the pointer
    # resting where it was: the map goes with it.
    page.at(page.actions(), 60, 30).perform()
    page.wait(lambda: attention.get_attribute("hidden") is None, "the attention map")
    page.act(lambda chain: chain.context_click())
    assert page.points() == []
    time.sleep(0.5)  # a hover that would show it again has had its 150 ms
    assert attention.get_attribute("hidden") is not None
