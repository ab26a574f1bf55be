"""The studio page's answers to bad uploads, in a real headless Chromium, with a stand-in colorizer.

The stand-in gives the photo itself as its samples and edits (no model, no training): what is tested
is the page, not the colorization. Marked `slow` (a browser and a server), as studio_browser_test.py.
"""

import os
import threading
import time
import types

import numpy as np
import pytest

from tfgcrf.studio import StudioApp, StudioServer
from tfgcrf.studio import app as studio_app
from tfgcrf.studio.browser import TIMEOUT, Page, chrome

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256
OTHER = os.path.join(DATA, "photos", "opencv_fruits.png")


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

    def open_photo(wrap=None, size=None):
        """wrap: a function of the WSGI app giving the one served; size: the window's (w, h)."""
        app = StudioApp(_PhotoAsSamples(), num_samples=2)
        server = StudioServer(app if wrap is None else wrap(app)).start()
        opened.append(server.stop)
        driver, _ = chrome(tmp_path)
        opened.append(driver.quit)
        if size is not None:
            driver.set_window_size(*size)
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
    # A click lands on the picture (within a pixel: 1.3 screen px per photo px here).
    page.click(60, 30)
    (x, y), = page.points()
    assert abs(x - 60) <= 1 and abs(y - 30) <= 1
    attention = page.find("#attention")
    # Hovering the point shows its attention map; a right click removes the point, the pointer
    # resting where it was: the map goes with it.
    page.at(page.actions(), 60, 30).perform()
    page.wait(lambda: attention.get_attribute("hidden") is None, "the attention map")
    page.act(lambda chain: chain.context_click())
    assert page.points() == []
    time.sleep(0.5)  # a hover that would show it again has had its 150 ms
    assert attention.get_attribute("hidden") is not None


@pytest.mark.slow
def test_answers_about_the_previous_photo_are_dropped(photo_page):
    """An edit's answer arriving after another photo was opened was shown as the new photo's
    picture (the old photo's colors, stretched to the new frame), with the page idle."""
    held, release = threading.Event(), threading.Event()

    def hold_edits(app):
        def served(environ, start_response):
            body = app(environ, start_response)  # computed on the first photo
            if environ["PATH_INFO"] == "/api/edit" and not release.is_set():
                held.set()
                release.wait(TIMEOUT)  # answered once the page has opened the other photo
            return body
        return served

    page = photo_page(wrap=hold_edits)
    driver = page.driver
    # Every picture the page shows, with the photo named above it at that moment.
    driver.execute_script("""
        window.shown = [];
        new MutationObserver(() => window.shown.push(
            [document.getElementById("photo-name").textContent, document.getElementById("after").src])
        ).observe(document.getElementById("after"), {attributes: true, attributeFilter: ["src"]});
    """)
    page.at(page.actions(), 60, 30).click().perform()
    assert held.wait(TIMEOUT)
    page.find("#file").send_keys(OTHER)
    page.wait(lambda: page.find("#photo-name").text.startswith("opencv_fruits.png"), "the other photo")
    release.set()
    time.sleep(1.0)  # the held answer reaches the page
    page.wait(lambda: page.find("body").get_attribute("data-busy") == "0", "the page idle")
    gray = page.find("#before").get_attribute("src")
    shown = driver.execute_script("return window.shown;")
    assert shown and all(src == gray for name, src in shown if name.startswith("opencv_fruits")), [
        (name, src[:60]) for name, src in shown]
    assert page.find("#after").get_attribute("src") == gray
    assert page.items() == [] and page.find("#status").text.startswith("opened in")


@pytest.mark.slow
def test_a_refused_edit_says_so_with_the_list_s_numbers(photo_page):
    """After a refused edit the status said "solving ..." until the next change, and the refusal
    named the points by the edit session's ids."""
    page = photo_page()
    page.set_color("#c06020")
    page.click(60, 30)
    page.set_color("#2050a0")
    page.click(200, 100)
    version = page.version()
    page.at(page.actions(), 200, 100).click_and_hold().pause(0.1).move_by_offset(
        *np.subtract(page.offset(60, 30), page.offset(200, 100))).pause(0.1).release().perform()
    page.idle_after(version)
    assert page.error() is not None and page.error().startswith(
        "points 1 and 2 are on the same pixel (60, 30) with different colors"), page.error()
    assert page.points() == [(60, 30), (200, 100)]
    status = page.find("#status").text
    assert status.startswith("not applied; 2 points, 0 links"), status


@pytest.mark.slow
def test_open_photo_is_reachable_with_the_keyboard(photo_page):
    """The file input was display:none and its label not focusable: Tab never reached it."""
    from selenium.webdriver.common.keys import Keys

    page = photo_page()
    page.find("h1").click()
    reached = []
    for _ in range(4):
        page.actions().send_keys(Keys.TAB).perform()
        reached.append(page.driver.execute_script("return document.activeElement.id;"))
    assert "file" in reached, reached


@pytest.mark.slow
def test_a_narrow_window_gives_the_picture_the_full_width(photo_page, tmp_path):
    """At 500 px (a phone; Chromium's headless minimum) the picture was 1x1 px and the page
    scrolled sideways."""
    page = photo_page(size=(500, 900))
    width, scroll, inner = page.driver.execute_script(
        "return [document.getElementById('marks').getBoundingClientRect().width, "
        "document.documentElement.scrollWidth, window.innerWidth];")
    assert inner <= 520 and scroll <= inner and width >= inner - 40, (width, scroll, inner)
    page.driver.save_screenshot(str(tmp_path / "narrow.png"))
    # A click lands on the picture (within a pixel: 1.3 screen px per photo px here).
    page.click(60, 30)
    (x, y), = page.points()
    assert abs(x - 60) <= 1 and abs(y - 30) <= 1
