"""`tfgcrf studio` driven in a real headless Chromium (Debian's chromium + chromedriver, Selenium).

One session as a person would do it: a broken file dropped on the page (message in the page), the
fixture photo through the file picker, a start sample, two points, a move, undo (button), redo and
undo (keys), a point removed by a right click, a "same color" link, a hover (attention map), the
compare slider, and both downloads. The downloaded PNG is checked pixel by pixel against the photo
(lightness kept, the points' colors at their places) and the downloaded JSON is replayed by
`tfgcrf edit --points-json`, which must give the same image within one level.

The browser is installed by `make test` (Makefile target `browser`); without it this test fails,
it never skips. Marked `slow` (a browser and a server): `make test-fast` leaves it out.
"""

import json
import os
import time

import numpy as np
import pytest
from skimage import color as skcolor

from tfgcrf import cli
from tfgcrf.colorizer import Colorizer
from tfgcrf.imageio import read_image
from tfgcrf.studio import StudioApp, StudioServer
from tfgcrf.studio.browser import TIMEOUT, Page, chrome

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256

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
        assert page.error().startswith("unsupported image format")
        assert page.error().endswith(": broken.png") and "bytes>" not in page.error()

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
