"""Drives the studio page in a real headless Chromium: the browser test and the latency benchmark.

Debian's `chromium` and `chromedriver` (`make browser` installs them) through Selenium (the `dev`
extra); nothing is downloaded. `Page` speaks in photo pixels: `click(x, y)`, `drag(start, end)`,
`set_color("#rrggbb")`, `points()`, and waits for the server's answer after each gesture (the page
counts its answers in `body[data-version]` and says `body[data-busy]`).
"""

import os
import re
import time

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags this machine's Chromium needs (closed network, root, no GPU).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900")
TIMEOUT = 120.0


def chrome(tmp_path):
    """A headless Chromium session (`pathlib.Path` folder for its profile) downloading into
    `tmp_path/downloads`; returns `(driver, downloads)`. AssertionError without the browser."""
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
