"""Which decoded pictures count as color photographs, for the offline collection.

Three pixel tests, measured on the opaque pixels of the picture (see `docs/DATASETS.md`):

- **near-grayscale**: Hasler & Suesstrunk colorfulness M (`colorfulness` below, also an evaluation metric) below
  `MIN_COLORFULNESS`. On their scale 15 is "slightly colorful"; below it are gray, sepia and
  washed-out pictures, which teach a colorization model nothing but gray.
- **non-photo**: `flat_fraction`, the share of pixels at the centre of an exactly uniform
  `FLAT_WINDOW` x `FLAT_WINDOW` patch, above `MAX_FLAT_FRACTION`. Camera noise leaves no
  uniform patch in a photograph except where it is clipped to pure black or white; drawings,
  charts, logos and screenshots are made of uniform fills. The window is 9 pixels because JPEG
  flattens smooth 8x8 blocks: a 9x9 patch always spans two blocks, so it is uniform only where
  neighbouring blocks agree exactly too (clipped or very flat areas), not in a whole photo.
- **too small**: shorter side below `MIN_SIDE` pixels (thumbnails, 32x32 dataset samples).

Transparent cut-outs (stamps, sprites) are cropped to the bounding box of their opaque pixels and
composited on white, as a viewer shows them; the tests read only the opaque pixels, so the white
background counts neither as gray nor as flat. A cut-out whose opaque part covers less than
`MIN_COVERAGE` of its box is mostly background and is dropped.

Near-duplicates (the same photo in two packages, a mirrored stamp, a re-encoded copy) are found
by comparing 16x16 color thumbnails of the picture and of its mirror image.
"""

import dataclasses
import math

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

MIN_COLORFULNESS = 15.0
MAX_FLAT_FRACTION = 0.1
FLAT_WINDOW = 9
MIN_SIDE = 64
MIN_COVERAGE = 0.2
# Thumbnails closer than this mean absolute difference (0-255 levels) show the same picture.
MAX_DUPLICATE_DIFFERENCE = 12.0
_OPAQUE = 128
_WHITE = 255


@dataclasses.dataclass(frozen=True)
class PhotoStats:
    """Pixel measurements of one picture.

    Args:
        width: width in pixels after cropping a cut-out to its opaque part.
        height: height in pixels, likewise.
        colorfulness: Hasler & Suesstrunk M of the opaque pixels (0-255 scale).
        flat_fraction: share of opaque pixels centred in a uniform `FLAT_WINDOW`-wide patch.
        coverage: share of opaque pixels in the (cropped) picture; 1 without transparency.
    """

    width: int
    height: int
    colorfulness: float
    flat_fraction: float
    coverage: float


def flatten_alpha(image):
    """Upright RGB pixels of a Pillow image and the mask of its opaque pixels.

    EXIF orientation is applied. A picture with transparency is cropped to the bounding box of its
    opaque pixels and composited on white.

    Returns:
        `(rgb uint8 [H, W, 3], opaque bool [H, W])`.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        opaque = rgba[..., 3] >= _OPAQUE
        rows, cols = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
        if rows.size == 0:
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), bool)
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        rgba, opaque = rgba[box], opaque[box]
        alpha = rgba[..., 3:].astype(np.float64) / 255.0
        rgb = rgba[..., :3] * alpha + _WHITE * (1.0 - alpha)
        return np.round(rgb).astype(np.uint8), opaque
    rgb = np.asarray(image.convert("RGB"))
    return rgb, np.ones(rgb.shape[:2], bool)


def flat_fraction(rgb, opaque, window=FLAT_WINDOW):
    """Share of opaque pixels centred in an exactly uniform, fully opaque `window`-wide patch."""
    if not opaque.any():
        return 1.0
    # Separable min/max filters; outside the picture counts as opaque.
    uniform = ndimage.minimum_filter(opaque.view(np.uint8), size=window, mode="nearest") > 0
    for channel in np.moveaxis(rgb, -1, 0):
        low = ndimage.minimum_filter(channel, size=window, mode="nearest")
        uniform &= ndimage.maximum_filter(channel, size=window, mode="nearest") == low
    return float(uniform[opaque].mean())


def photo_stats(rgb, opaque):
    """`PhotoStats` of RGB pixels `[H, W, 3]` uint8 with their opaque mask `[H, W]`."""
    height, width = opaque.shape
    pixels = rgb[opaque]
    return PhotoStats(
        width=width,
        height=height,
        colorfulness=colorfulness(pixels[None]) if len(pixels) else 0.0,
        flat_fraction=flat_fraction(rgb, opaque),
        coverage=float(opaque.mean()) if opaque.size else 0.0,
    )


def rejection_reason(stats):
    """Why a picture is not kept as a color photograph, or None when it is."""
    if min(stats.width, stats.height) < MIN_SIDE:
        return f"too small ({stats.width}x{stats.height} < {MIN_SIDE} px)"
    if stats.coverage < MIN_COVERAGE:
        return f"cut-out mostly transparent (coverage {stats.coverage:.2f} < {MIN_COVERAGE})"
    if stats.colorfulness < MIN_COLORFULNESS:
        return f"near-grayscale (colorfulness {stats.colorfulness:.1f} < {MIN_COLORFULNESS:g})"
    if stats.flat_fraction > MAX_FLAT_FRACTION:
        return f"non-photo: uniform fills (flat fraction {stats.flat_fraction:.3f} > {MAX_FLAT_FRACTION:g})"
    return None


def thumbnails(rgb):
    """16x16 color thumbnails of a picture and of its mirror image, as int16 arrays.

    Two pictures are the same photo when their thumbnails differ by at most
    `MAX_DUPLICATE_DIFFERENCE` levels on average: rescaled, re-encoded and mirrored copies do,
    different photos with a similar layout (two fruits on white) do not, since color counts too.
    """
    small = np.asarray(Image.fromarray(rgb).resize((16, 16), Image.Resampling.BOX), dtype=np.int16)
    return small, small[:, ::-1]


class DuplicateFinder:
    """Remembers kept pictures and tells whether a new one repeats one of them."""

    def __init__(self, max_difference=MAX_DUPLICATE_DIFFERENCE):
        self._max_difference = max_difference
        self._names = []
        self._kept = np.zeros((0, 16, 16, 3), np.int16)

    def find(self, thumbs):
        """Name of a kept picture whose thumbnail matches one of `thumbs`, or None."""
        for thumb in thumbs:
            difference = np.abs(self._kept - thumb).mean(axis=(1, 2, 3))
            close = np.flatnonzero(difference <= self._max_difference)
            if close.size:
                return self._names[close[0]]
        return None

    def add(self, thumbs, name):
        """Remembers the picture `name` by its own (unmirrored) thumbnail."""
        self._kept = np.concatenate([self._kept, thumbs[0][None]])
        self._names.append(name)


def colorfulness(rgb):
    """Hasler & Suesstrunk (2003) colorfulness M on the 0-255 scale.

    `rg = R - G`, `yb = (R + G) / 2 - B`, `M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 +
    mean_yb^2)`.

    Args:
      rgb: `[H, W, 3]` image, uint8 or float in [0, 1].

    Returns:
      M (0 for a gray image; about 30 is "moderately", 60 "quite" colorful).
    """
    rgb = np.asarray(rgb)
    rgb = rgb.astype(np.float64) * (1.0 if rgb.dtype == np.uint8 else 255.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = math.sqrt(np.var(rg) + np.var(yb))
    return float(spread + 0.3 * math.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2))
