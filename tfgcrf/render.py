"""Pictures made for people (Pillow + numpy, no TensorFlow): contact sheets, edit markers and
attention maps, as written by `tfgcrf colorize`, `tfgcrf edit` and `tfgcrf demo`."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Contact sheets: tile height, gap between tiles and height of the label strip, in pixels.
_TILE_HEIGHT = 192
_GAP = 6
_LABEL_HEIGHT = 22
# Tiles of tiny photos are enlarged (nearest neighbour, whole factors) to at least this side.
_MIN_TILE_SIDE = 32
# The paper draws attention in blue (Fig. 6: "darker shades correspond to stronger correlations").
_ATTENTION_BLUE = np.array([20.0, 60.0, 200.0])


def _font(size):
    return ImageFont.load_default(size=size)


def contact_sheet(images, labels, tile_height=_TILE_HEIGHT):
    """Labeled tiles of same-sized images in a near-square grid (aspect ratio kept).

    Args:
      images: uint8 `[H, W, 3]` arrays, all the same size.
      labels: one text per image, drawn under its tile.
      tile_height: height of each tile in pixels (larger photos are shrunk to it; tiny ones are
        enlarged by a whole factor to a side of at least 32 pixels where that fits the height).

    Returns:
      uint8 `[h, w, 3]` array; every cell is at least as wide as its label.
    """
    height, width = np.asarray(images[0]).shape[:2]
    if height > tile_height:
        scale, resample = tile_height / height, Image.LANCZOS
    else:  # a 1 x 1 or 3 x 2 photo would be an invisible dot
        wanted = int(np.ceil(_MIN_TILE_SIDE / min(height, width)))
        scale, resample = float(max(1, min(wanted, tile_height // height))), Image.NEAREST
    tile = (max(1, round(width * scale)), max(1, round(height * scale)))
    font = _font(14)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(int(np.ceil(draw.textlength(label, font=font))) + 4 for label in labels)
    columns = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / columns))
    cell = (max(tile[0], label_width) + _GAP, tile[1] + _LABEL_HEIGHT + _GAP)
    sheet = Image.new("RGB", (columns * cell[0] + _GAP, rows * cell[1] + _GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels)):
        left = _GAP + (index % columns) * cell[0]
        top = _GAP + (index // columns) * cell[1]
        sheet.paste(Image.fromarray(np.asarray(image, np.uint8)).resize(tile, resample), (left, top))
        draw.text((left + 2, top + tile[1] + 3), label, fill="black", font=font)
    return np.asarray(sheet)


def _marker_radius(height, width):
    return max(3, min(height, width) // 60)


def _draw_marker(draw, x, y, radius, fill):
    """A filled disk with a white and a black ring, visible on any background."""
    for extra, outline in ((2, "black"), (1, "white")):
        r = radius + extra
        draw.ellipse((x - r, y - r, x + r, y + r), fill=outline)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def draw_points(image, points, colors):
    """Edit markers: each point drawn as a disk of its requested color.

    Args:
      image: uint8 `[H, W, 3]`.
      points: `(x, y)` pixel positions.
      colors: `(r, g, b)` per point.

    Returns:
      uint8 `[H, W, 3]` copy with the markers.
    """
    picture = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(picture)
    radius = _marker_radius(picture.height, picture.width)
    for (x, y), rgb in zip(points, colors):
        _draw_marker(draw, x, y, radius, tuple(int(c) for c in rgb))
    return np.asarray(picture)


def attention_overlay(lightness, attention, point):
    """An attention map as in the paper's Fig. 6: blue over the gray photo, darker = stronger.

    Args:
      lightness: `[H, W]` CIE L* of the photo (0-100), shown as gray.
      attention: `[H, W]` non-negative weights (a row of S, resized).
      point: `(x, y)` of the edited pixel, marked in red.

    Returns:
      uint8 `[H, W, 3]`.
    """
    gray = np.asarray(lightness, np.float64)[..., None] / 100.0 * 255.0
    weights = np.asarray(attention, np.float64)
    strength = (weights / max(weights.max(), 1e-12))[..., None]
    # Faded gray background so that the blue stands out.
    background = 0.45 * gray + 0.55 * 255.0
    blended = background * (1.0 - strength) + _ATTENTION_BLUE * strength
    picture = Image.fromarray(np.round(blended).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    _draw_marker(draw, point[0], point[1], _marker_radius(picture.height, picture.width), (230, 20, 20))
    return np.asarray(picture)
