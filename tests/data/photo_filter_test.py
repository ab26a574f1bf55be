"""Grayscale / non-photo / cut-out / duplicate tests of the offline collection, on synthetic images."""

import io

import numpy as np
import pytest
from PIL import Image

from tfgcrf.data import photo_filter
from tfgcrf.data.photo_filter import (
    DuplicateFinder,
    flat_fraction,
    flatten_alpha,
    photo_stats,
    rejection_reason,
    thumbnails,
)


def photo_like(seed=0, size=(96, 128), noise=4.0):
    """A smooth colorful scene (two color gradients and a disk) with camera-like noise."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    rgb = np.stack([200 * x + 30, 160 * (1 - y) + 40, 120 + 80 * np.sin(6 * x + rng.uniform(0, 6))], -1)
    disk = (y - 0.4) ** 2 + (x - 0.5) ** 2 < 0.04
    rgb[disk] = rng.uniform(20, 235, 3)
    rgb += rng.normal(0, noise, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def cartoon(size=(96, 128)):
    """Uniform color fills with black outlines, like a drawing."""
    rgb = np.full(size + (3,), (250, 220, 40), np.uint8)
    rgb[20:70, 10:60] = (200, 30, 30)
    rgb[30:90, 70:120] = (30, 90, 200)
    rgb[19, 10:60] = rgb[70, 10:60] = 0
    return rgb


def reason_for(rgb, opaque=None):
    opaque = np.ones(rgb.shape[:2], bool) if opaque is None else opaque
    return rejection_reason(photo_stats(rgb, opaque))


def jpeg_roundtrip(rgb, quality):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_a_noisy_colorful_scene_is_kept():
    assert reason_for(photo_like()) is None


def test_gray_and_faintly_tinted_pictures_are_near_grayscale():
    gray = photo_like().mean(axis=-1, keepdims=True).repeat(3, axis=-1).astype(np.uint8)
    assert reason_for(gray).startswith("near-grayscale")
    sepia = np.clip(gray.astype(int) + [12, 4, -8], 0, 255).astype(np.uint8)  # uniform warm tint
    assert reason_for(sepia).startswith("near-grayscale")


def test_uniform_fills_are_non_photos():
    assert reason_for(cartoon()).startswith("non-photo")
    # Noise that is not there in the fills is what tells them apart: the same drawing with
    # camera noise added passes the flatness test.
    noisy = np.clip(cartoon() + np.random.default_rng(1).normal(0, 3, (96, 128, 3)), 0, 255).astype(np.uint8)
    assert photo_stats(noisy, np.ones((96, 128), bool)).flat_fraction == 0.0


def test_jpeg_blocks_alone_do_not_make_a_photo_flat():
    # A smooth, low-noise sky saved as a strong JPEG is made of exactly flat 8x8 blocks: most 3x3
    # patches are uniform, but few 9x9 patches, since those always span two blocks.
    y, x = np.mgrid[0:96, 0:128]
    sky = np.stack([100 + 0.3 * x, 150 + 0.3 * y, 220 - 0.3 * x], -1)
    sky += np.random.default_rng(0).normal(0, 0.7, sky.shape)
    sky = jpeg_roundtrip(np.clip(np.round(sky), 0, 255).astype(np.uint8), quality=50)
    opaque = np.ones(sky.shape[:2], bool)
    assert flat_fraction(sky, opaque, window=3) > 4 * photo_filter.MAX_FLAT_FRACTION
    assert flat_fraction(sky, opaque) < photo_filter.MAX_FLAT_FRACTION


def brute_force_flat_fraction(rgb, opaque, window):
    """Reference: pixel by pixel, with the picture's border replicated outward."""
    half = window // 2
    padded = np.pad(rgb, ((half, half), (half, half), (0, 0)), mode="edge")
    padded_opaque = np.pad(opaque, half, mode="edge")
    flat = []
    for i, j in zip(*np.nonzero(opaque)):
        patch = padded[i : i + window, j : j + window].reshape(-1, 3)
        flat.append(bool(padded_opaque[i : i + window, j : j + window].all() and (patch == patch[0]).all()))
    return float(np.mean(flat))


@pytest.mark.parametrize("window", [3, 9])
def test_flat_fraction_matches_a_brute_force_reference(window):
    rng = np.random.default_rng(window)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    rgb[0:12, 0:15] = (10, 200, 30)  # a fill touching the border
    rgb[15:28, 20:38] = (90, 90, 250)
    opaque = np.ones((30, 40), bool)
    opaque[20:30, 30:40] = False  # a transparent corner cuts into the second fill
    assert flat_fraction(rgb, opaque, window) == pytest.approx(brute_force_flat_fraction(rgb, opaque, window))


def test_small_pictures_are_rejected():
    assert reason_for(photo_like(size=(32, 32))).startswith("too small")


def cut_out(rgb, opaque):
    rgba = np.zeros((rgb.shape[0] + 40, rgb.shape[1] + 60, 4), np.uint8)
    rgba[20:-20, 30:-30, :3] = rgb
    rgba[20:-20, 30:-30, 3] = np.where(opaque, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def test_cut_outs_are_cropped_composited_on_white_and_measured_on_opaque_pixels():
    rgb = photo_like()
    y, x = np.mgrid[0:96, 0:128]
    disk = (y - 47.5) ** 2 / 48**2 + (x - 63.5) ** 2 / 64**2 <= 1
    flat_rgb, opaque = flatten_alpha(cut_out(rgb, disk))
    assert flat_rgb.shape == (96, 128, 3)  # the transparent margin is cropped away
    np.testing.assert_array_equal(flat_rgb[~opaque], 255)
    np.testing.assert_array_equal(flat_rgb[opaque], rgb[disk])
    stats = photo_stats(flat_rgb, opaque)
    assert stats.coverage == pytest.approx(disk.mean())
    assert stats.flat_fraction == 0.0  # the white background is not counted as a fill
    assert rejection_reason(stats) is None


def test_mostly_transparent_cut_outs_are_rejected():
    ring = np.zeros((96, 128), bool)
    ring[:, :3] = ring[:, -3:] = ring[:3] = ring[-3:] = True
    flat_rgb, opaque = flatten_alpha(cut_out(photo_like(), ring))
    assert rejection_reason(photo_stats(flat_rgb, opaque)).startswith("cut-out mostly transparent")


def test_fully_transparent_picture_has_no_pixels():
    rgb, opaque = flatten_alpha(Image.new("RGBA", (50, 40), (0, 0, 0, 0)))
    assert rgb.shape == (0, 0, 3)
    assert rejection_reason(photo_stats(rgb, opaque)).startswith("too small")


def test_exif_orientation_is_applied():
    image = Image.fromarray(photo_like(size=(60, 100)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    rgb, _ = flatten_alpha(Image.open(buffer))
    assert rgb.shape == (100, 60, 3)


def test_duplicates_survive_rescaling_reencoding_and_mirroring_but_different_photos_do_not():
    finder = DuplicateFinder()
    original = photo_like(seed=3, size=(120, 160))
    finder.add(thumbnails(original), "original")
    rescaled = np.asarray(Image.fromarray(original).resize((80, 60), Image.Resampling.LANCZOS))
    assert finder.find(thumbnails(jpeg_roundtrip(rescaled, quality=70))) == "original"
    assert finder.find(thumbnails(original[:, ::-1].copy())) == "original"
    assert finder.find(thumbnails(photo_like(seed=4, size=(120, 160)))) is None
    # Same layout, other colors: a different object on the same background.
    recolored = original.copy()
    recolored[..., [0, 2]] = recolored[..., [2, 0]]
    assert finder.find(thumbnails(recolored)) is None
