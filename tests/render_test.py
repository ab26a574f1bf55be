"""Contact sheets (`tfgcrf.render.contact_sheet`): tile sizes, tiny photos and label room."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tfgcrf import render

LABELS = ["input", "s0  weight 0.50", "s1  weight 0.25"]


def _label_width(label):
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(label, font=render._font(14))


def test_large_photos_are_shrunk_to_the_tile_height():
    images = [np.full((600, 800, 3), value, np.uint8) for value in (0, 100, 200)]
    sheet = render.contact_sheet(images, LABELS, tile_height=150)
    # 3 tiles -> 2 columns x 2 rows of 200 x 150 tiles (aspect kept) + gaps and label strips.
    assert sheet.shape == (2 * (150 + 22 + 6) + 6, 2 * (200 + 6) + 6, 3)
    np.testing.assert_array_equal(sheet[6 + 75, 6 + 100], [0, 0, 0])
    np.testing.assert_array_equal(sheet[6 + 75, 6 + 206 + 100], [100, 100, 100])


@pytest.mark.parametrize("shape, factor", [((1, 1), 32), ((2, 3), 16), ((100, 2), 1)])
def test_tiny_photos_are_enlarged_pixel_for_pixel(shape, factor):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    sheet = render.contact_sheet([image, image], ["input", "s0"], tile_height=192)
    tile = sheet[6:6 + shape[0] * factor, 6:6 + shape[1] * factor]
    np.testing.assert_array_equal(tile, np.repeat(np.repeat(image, factor, 0), factor, 1))


@pytest.mark.parametrize("shape, tile_height", [((300, 1), 192), ((1, 1), 32), ((192, 20), 192)])
def test_every_cell_is_as_wide_as_its_label(shape, tile_height):
    """Narrow tiles used to let the next tile cover the label ("s0  weight 0.50" -> "s0")."""
    images = [np.zeros((*shape, 3), np.uint8)] * 3
    sheet = render.contact_sheet(images, LABELS)
    width = _label_width(LABELS[1])
    cell = (sheet.shape[1] - 6) // 2  # 2 columns
    assert cell >= width + 2 + 6
    # The top row's second label strip: its text reaches (almost) its full rendered width.
    strip = sheet[6 + tile_height:6 + tile_height + 22, 6 + cell:]
    dark_columns = np.flatnonzero((strip < 128).any(axis=(0, 2)))
    assert dark_columns.size and dark_columns[-1] >= 0.9 * width
