"""Latency of `tfgcrf studio` per interaction: a scripted 30-click session in headless Chromium.

    .venv/bin/python benchmarks/studio_latency.py [--model default] [--clicks 30] [--screenshot F]

The bundled example photo is resized to 1024 x 768 and opened in the page; then 30 interactions
as a person would make them: points added with different colors (20), points dragged (5), undo
(3) and "same color" links (2), each waiting for the server's answer. The server measures every
interaction (`StudioApp.latencies`: the session update and re-solve, then the display encoding);
the page measures the round trip. Prints median and worst of each.

`--screenshot FILE` instead makes the README's picture: the example photo at its own size, sample 0
with four points on top (the `tfgcrf demo` sky and trees, water, a roof) and a link, the
compare slider at 30 %.
"""

import argparse
import importlib.resources
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tfgcrf.studio.browser import Page, chrome

# (x, y, #rrggbb) of the added points, on the 1024 x 768 pagoda photo: sky, trees, roof, water.
_COLORS = ["#e89850", "#3c7a3c", "#b04030", "#5080c0", "#d0b070", "#2f6b4f", "#c86040",
           "#7090d0", "#a08050", "#406030"]


def _photo(folder):
    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    with importlib.resources.as_file(examples.joinpath("pagoda.jpg")) as path:
        picture = Image.open(path).convert("RGB").resize((1024, 768), Image.LANCZOS)
    out = Path(folder) / "pagoda_1024x768.png"
    picture.save(out)
    return out


def _script(clicks, rng):
    """The interactions: ('add', x, y, color) | ('move', index, x, y) | ('undo',) | ('link', ...)."""
    steps = []
    kinds = ["add"] * 20 + ["move"] * 5 + ["undo"] * 3 + ["link"] * 2
    kinds = kinds[:clicks] + ["add"] * max(0, clicks - len(kinds))
    order = ["add"] * 4 + list(rng.permutation(kinds[4:]))  # points exist before moves
    added = 0
    for kind in order:
        x, y = int(rng.integers(20, 1004)), int(rng.integers(20, 748))
        if kind == "add":
            steps.append(("add", x, y, _COLORS[added % len(_COLORS)]))
            added += 1
        elif kind == "move":
            steps.append(("move", int(rng.integers(0, 4)), x, y))
        elif kind == "undo":
            steps.append(("undo",))
        else:
            steps.append(("link", x, y, int(rng.integers(20, 1004)), int(rng.integers(20, 748))))
    return steps


def screenshot(colorizer, path, folder):
    """The README's picture of the page with a real edit of the example photo."""
    from tfgcrf.studio import StudioApp, StudioServer

    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    app = StudioApp(colorizer)
    server = StudioServer(app).start()
    driver, _ = chrome(folder)
    try:
        driver.set_window_size(1400, 820)
        driver.get(server.url)
        page = Page(driver, 512, 342)
        version = page.version()
        with importlib.resources.as_file(examples.joinpath("pagoda.jpg")) as photo:
            page.find("#file").send_keys(str(photo))
            page.idle_after(version)
        page.wait(lambda: app.session_setups, "the edit session")
        # Start from the best sample.
        tile = driver.find_elements("css selector", "#sample-list .tile")[1]
        page.act(lambda chain: chain.click(tile))
        # The `tfgcrf demo` sky and trees, the water, a roof; a link from that roof to another.
        for x, y, color in ((400, 50, "#fa963c"), (420, 300, "#286e28"), (330, 215, "#4a7aa8"),
                            (113, 87, "#963c28")):
            page.set_color(color)
            page.click(x, y)
        page.find("#tool-link").click()
        page.drag((262, 204), (120, 160))
        driver.execute_script("const s = arguments[0]; s.value = 30; s.dispatchEvent(new Event('input'));",
                              page.find("#compare"))
        page.actions().move_to_element(page.find("h1")).perform()
        page.wait(lambda: page.find("#attention").get_attribute("hidden") is not None,
                  "the attention map to hide")
        time.sleep(0.5)
        driver.save_screenshot(path)
    finally:
        driver.quit()
        server.stop()
    print(f"wrote {path}; server latencies: {app.latencies}")


def _percentiles(values):
    values = np.asarray(values, np.float64)
    return np.median(values), values.max()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=None,
                        help="start sample (default: the points alone)")
    parser.add_argument("--screenshot", default=None)
    args = parser.parse_args()

    from tfgcrf.colorizer import Colorizer
    from tfgcrf.studio import StudioApp, StudioServer

    folder = Path(tempfile.mkdtemp(prefix="studio_latency_"))
    colorizer = Colorizer.load(args.model)
    if args.screenshot:
        screenshot(colorizer, args.screenshot, folder)
        return
    photo = _photo(folder)
    app = StudioApp(colorizer)
    server = StudioServer(app).start()
    driver, _ = chrome(folder)
    gestures = []
    try:
        driver.get(server.url)
        page = Page(driver, 1024, 768)
        version = page.version()
        started = time.perf_counter()
        page.find("#file").send_keys(str(photo))
        page.idle_after(version)
        open_seconds = time.perf_counter() - started
        # A person looks at the samples first: the edit session is prepared meanwhile.
        page.wait(lambda: app.session_setups, "the edit session")
        if args.start is not None:
            tile = driver.find_elements("css selector", "#sample-list .tile")[args.start + 1]
            page.act(lambda chain: chain.click(tile))
        app.latencies.clear()
        rng = np.random.default_rng(args.seed)
        for step in _script(args.clicks, rng):
            started = time.perf_counter()
            if step[0] == "add":
                page.set_color(step[3])
                page.click(step[1], step[2])
            elif step[0] == "move":
                points = page.points()
                page.drag(points[step[1] % len(points)], step[2:4])
            elif step[0] == "undo":
                page.act(lambda chain: chain.click(page.find("#undo")))
            else:
                page.find("#tool-link").click()
                page.drag(step[1:3], step[3:5])
                page.find("#tool-point").click()
            gestures.append((time.perf_counter() - started) * 1000.0)
        round_trips = driver.execute_script("return roundTrips;")[-len(app.latencies):]
    finally:
        driver.quit()
        server.stop()

    records = app.latencies
    first, later = records[:1], records[1:]
    rows = [
        ("session setup after opening (S, prior, factorization, warm-up; in the background)",
         app.session_setups),
        ("first change", [r["solve_ms"] for r in first]),
        ("later changes: session update + re-solve (solve_ms)", [r["solve_ms"] for r in later]),
        ("later changes: + display JPEG encoding (total_ms)", [r["total_ms"] for r in later]),
        ("all 30: session update + re-solve (solve_ms)", [r["solve_ms"] for r in records]),
        ("all 30: page, request sent to answer received", round_trips),
        ("all 30: WebDriver, scripted gesture to updated picture", gestures),
    ]
    print(f"photo 1024x768, model {args.model}, {len(gestures)} interactions "
          f"({len(records)} server answers), opening (8 samples) took {open_seconds:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| measure | median ms | worst ms |")
    print("| --- | ---: | ---: |")
    for name, values in rows:
        median, worst = _percentiles(values)
        print(f"| {name} | {median:.0f} | {worst:.0f} |")
    print("per interaction (solve_ms):", [r["solve_ms"] for r in records])


if __name__ == "__main__":
    main()
