"""The control protocol of the paper's Table 3 (Zhang et al. 2017's): revealed 7x7 patches.

Every method gets the same hints on the same 256x256 image: `|H|` patches of 7x7 pixels at random
locations, each carrying the ground truth's mean ab over the patch. The locations depend only on
the seed and the image's index, and the sets are nested (the 10 patches are the first 10 of the
50), so the PSNR-vs-|H| curve of one method is not shuffled by independent draws.
"""

import numpy as np

CONTROL_SIZE = 256
PATCH_SIZE = 7
POINT_COUNTS = (1, 5, 10, 50, 100)


def patch_corners(seed, image_index, count=max(POINT_COUNTS), size=CONTROL_SIZE):
    """Top-left `(y, x)` corners of `count` random patches, fully inside a `size x size` image.

    Args:
      seed: the run's seed.
      image_index: position of the image in the evaluation set.
      count: number of patches; use the first k for |H| = k.
      size: image side.

    Returns:
      `[count, 2]` int array of (y, x).
    """
    rng = np.random.default_rng([seed, image_index])
    return rng.integers(0, size - PATCH_SIZE + 1, size=(count, 2))


def patch_colors(ab, corners):
    """The ground truth's mean chroma over each patch.

    Args:
      ab: `[H, W, 2]` ground-truth chroma (model units).
      corners: `[K, 2]` (y, x) patch corners.

    Returns:
      `[K, 2]` float64 mean chroma.
    """
    ab = np.asarray(ab, dtype=np.float64)
    return np.array(
        [ab[y : y + PATCH_SIZE, x : x + PATCH_SIZE].mean(axis=(0, 1)) for y, x in corners]
    ).reshape(-1, 2)


def hint_image(corners, colors, size=CONTROL_SIZE):
    """Paints the patches: `(mask [size, size] bool, ab [size, size, 2])` (Levin's input).

    Where patches overlap, the later patch wins.
    """
    mask = np.zeros((size, size), bool)
    ab = np.zeros((size, size, 2))
    for (y, x), color in zip(corners, colors):
        mask[y : y + PATCH_SIZE, x : x + PATCH_SIZE] = True
        ab[y : y + PATCH_SIZE, x : x + PATCH_SIZE] = color
    return mask, ab


def patch_centers_xy(corners, size=CONTROL_SIZE):
    """Patch centers as relative `(x, y)` in [0, 1] (pixel i spans [i, i + 1) / size).

    This is the point format of `tfgcrf.models.points_to_grid`, which puts each patch onto the
    model grid cell under its center.
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    return (corners[:, ::-1] + PATCH_SIZE / 2.0) / size
