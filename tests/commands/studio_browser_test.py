"""`tfgcrf studio` driven in a real headless Chromium (Debian's chromium + chromedriver, Selenium).

One session as a person would do it: a broken file dropped on the page (message in the page), the
fixture photo through the file picker,
a start sample, two points, a move, undo (button), redo and undo (keys), a point removed by a right click, a "same color"
link, a hover (attention map), the compare slider, and both downloads. The downloaded PNG is checked pixel by pixel against the photo
(lightness kept, the points' colors at their places) and the downloaded JSON is replayed by
`tfgcrf edit --points-json`, which must give the same image within one level.

The browser is installed by `make test` (Makefile target `browser`); without it this test fails,
it never skips. Marked `slow` (a browser and a server): `make test-fast` leaves it out.
"""

import json
import os
import re
import time

import numpy as np
import pytest
from skimage import color as skcolor

from tfgcrf import cli
from tfgcrf.colorizer import Colorizer
from tfgcrf.imageio import read_image
from tfgcrf.studio import StudioApp, StudioServer

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags this machine's Chromium needs (closed network, root, no GPU).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900")
TIMEOUT = 120.0


def chrome(tmp_path):
    """A headless Chromium session downloading into `tmp_path/downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), (
            f"{path} is missing: `make test` installs Debian's chromium and chromium-driver "
            "(make browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(TIMEOUT)
    return driver, downloads


class Page:
    """The studio page in the browser, with photo-pixel coordinates."""

    def __init__(self, driver, width, height):
        self.driver = driver
        self.width, self.height = width, height

    def find(self, css):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait(self, condition, what):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; page status: "
                             f"{self.find('#status').text!r}, error: {self.error()!r}")

    def idle_after(self, version):
        """Waits until the page has had an answer after `version` and nothing is in flight."""
        self.wait(lambda: self.version() > version and self.find("body").get_attribute(
            "data-busy") == "0", "the server's answer")

    def version(self):
        return int(self.find("body").get_attribute("data-version"))

    def error(self):
        box = self.find("#error")
        return None if box.get_attribute("hidden") is not None else self.find("#error-text").text

    def offset(self, x, y):
        """Offset from the center of the picture to the center of photo pixel (x, y)."""
        rect = self.driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
            self.find("#marks"))
        return ((x + 0.5) / self.width * rect[0] - rect[0] / 2,
                (y + 0.5) / self.height * rect[1] - rect[1] / 2)

    def actions(self):
        from selenium.webdriver import ActionChains

        return ActionChains(self.driver, duration=50)

    def act(self, build):
        """Runs a gesture and waits for the server's answer to it."""
        version = self.version()
        build(self.actions()).perform()
        self.idle_after(version)
        assert self.error() is None, self.error()

    def at(self, chain, x, y):
        dx, dy = self.offset(x, y)
        return chain.move_to_element_with_offset(self.find("#marks"), round(dx), round(dy))

    def set_color(self, hex_color):
        self.driver.execute_script(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
            self.find("#color"), hex_color)

    def click(self, x, y):
        self.act(lambda chain: self.at(chain, x, y).click())

    def drag(self, start, end):
        self.act(lambda chain: self.at(chain, *start).click_and_hold()
                 .pause(0.1).move_by_offset(*np.subtract(self.offset(*end), self.offset(*start)))
                 .pause(0.1).release())

    def points(self):
        """(x, y) of the points, as the page lists them."""
        found = [re.match(r"point \((\d+), (\d+)\)", text) for text in self.items()]
        return [(int(m.group(1)), int(m.group(2))) for m in found if m]

    def items(self):
        from selenium.webdriver.common.by import By

        return [item.text.rstrip("\u00d7 ") for item in
                self.driver.find_elements(By.CSS_SELECTOR, "#item-list li")]


def _color_with_lightness(photo_lab, point, a, b):
    """A `#rrggbb` color with the photo's own lightness at `point` (reachable by an edit)."""
    lightness = photo_lab[point[1], point[0], 0]
    rgb = skcolor.lab2rgb(np.array([[[lightness, a, b]]]))[0, 0]
    rounded = np.round(rgb * 255.0)
    # Inside the sRGB gamut at that lightness: the edit can give exactly this color there.
    assert np.all(rgb > 0.02) and np.all(rgb < 0.98), rgb
    assert abs(skcolor.rgb2lab(rounded / 255.0)[0] - lightness) < 0.5
    return "#" + "".join(f"{int(c):02x}" for c in rounded)


def _wait_for_file(folder, name):
    path = folder / name
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder holds {os.listdir(folder)}")


@pytest.fixture
def studio(smoke_model):
    app = StudioApp(Colorizer(smoke_model), num_samples=3)
    server = StudioServer(app).start()
    yield app, server.url
    server.stop()


@pytest.mark.slow
def test_a_browser_session(tmp_path, studio, smoke_model_file, capsys):
    from selenium.webdriver.common.keys import Keys

    app, url = studio
    photo = read_image(PHOTO)
    photo_lab = skcolor.rgb2lab(photo)
    height, width = photo.shape[:2]
    point_a, point_b, moved_b = (60, 30), (190, 160), (250, 120)
    link = ((40, 220), (340, 40))
    color_a = _color_with_lightness(photo_lab, point_a, 10.0, 20.0)
    color_b = _color_with_lightness(photo_lab, point_b, -20.0, -20.0)
    driver, downloads = chrome(tmp_path)
    try:
        driver.get(url)
        page = Page(driver, width, height)
        assert page.find("h1").text == "tfgcrf studio"

        # A broken file dropped on the page: a message in the page, the app keeps running.
        driver.execute_script("""
            const data = new DataTransfer();
            data.items.add(new File([arguments[0]], "broken.png", {type: "image/png"}));
            document.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        """, "this is text, not pixels\n")
        page.wait(page.error, "the error message")
        assert page.error().startswith("broken.png: unsupported image format")

        version = page.version()
        page.find("#file").send_keys(PHOTO)
        page.idle_after(version)
        assert page.error() is None
        tiles = driver.find_elements("css selector", "#sample-list .tile")
        assert len(tiles) == 1 + 3
        assert "weight" in tiles[1].text

        # Start from sample 1, then two points, a move, an undo (the move) and a link.
        page.act(lambda chain: chain.click(tiles[2]))
        page.set_color(color_a)
        page.click(*point_a)
        page.set_color(color_b)
        page.click(*point_b)
        assert page.items() == [f"point ({point_a[0]}, {point_a[1]}) {color_a}",
                                f"point ({point_b[0]}, {point_b[1]}) {color_b}"]
        page.drag(point_b, moved_b)
        assert f"point ({moved_b[0]}, {moved_b[1]})" in page.items()[1]
        page.act(lambda chain: chain.click(page.find("#undo")))
        assert page.points() == [point_a, point_b]
        page.act(lambda chain: chain.key_down(Keys.CONTROL).send_keys("y").key_up(Keys.CONTROL))
        assert page.points() == [point_a, moved_b]
        page.act(lambda chain: chain.key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL))
        assert page.points() == [point_a, point_b]
        # A third point, removed by a right click.
        page.click(330, 60)
        assert len(page.points()) == 3
        page.act(lambda chain: page.at(chain, 330, 60).context_click())
        assert page.points() == [point_a, point_b]
        page.find("#tool-link").click()
        page.drag(*link)
        assert len(page.items()) == 3 and "same color" in page.items()[2]
        timing = page.find("#timing").text
        assert timing.startswith("re-solved in ") and " ms" in timing

        # Hovering a point shows its attention map over the photo.
        first = page.find("#item-list li").get_attribute("data-point")
        page.actions().move_to_element(page.find(f"#marks g.point[data-point='{first}']")).perform()
        page.wait(lambda: page.find("#attention").get_attribute("hidden") is None, "the attention map")
        page.actions().move_to_element(page.find("h1")).perform()

        # The compare slider shows the start sample on the left.
        driver.execute_script("const s = arguments[0]; s.value = 50; s.dispatchEvent(new Event('input'));",
                              page.find("#compare"))
        assert "50%" in page.find("#before").value_of_css_property("clip-path")

        page.find("#download-png").click()
        page.find("#download-json").click()
        png = _wait_for_file(downloads, "sklearn_china_edit.png")
        edit = _wait_for_file(downloads, "sklearn_china_edit.json")
        assert page.error() is None
    finally:
        driver.quit()

    result = read_image(png)
    assert result.shape == photo.shape
    result_lab = skcolor.rgb2lab(result)
    # Lightness is the photo's (up to uint8 rounding); the points have their colors.
    assert np.abs(result_lab[..., 0] - photo_lab[..., 0]).mean() < 0.5
    for (x, y), hex_color in ((point_a, color_a), (point_b, color_b)):
        wanted = skcolor.rgb2lab(np.array([[[int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]]]) / 255.0)
        assert np.linalg.norm(result_lab[y, x, 1:] - wanted[0, 0, 1:]) < 3.0

    document = json.loads(edit.read_text())
    assert document["from_sample"] == 1 and document["width"] == width
    assert [(p["x"], p["y"], p["color"]) for p in document["points"]] == [
        (*point_a, color_a), (*point_b, color_b)]
    assert [(tuple(l["from"]), tuple(l["to"])) for l in document["links"]] == [link]
    # Replayed from the command line: the same picture within one level.
    replay = tmp_path / "replay.png"
    code = cli.main(["edit", PHOTO, "--points-json", str(edit), "--out", str(replay),
                     "--model", smoke_model_file])
    assert code == 0, capsys.readouterr().err
    assert np.abs(read_image(replay).astype(int) - result.astype(int)).max() <= 1
    # Every interaction was measured by the server.
    assert len(app.latencies) >= 6 and all(r["solve_ms"] > 0 for r in app.latencies)
