"""Chroma upsampling quality: guided (`tfgcrf.fullres.upsample_chroma`) vs plain bilinear.

For each photo the true chroma is shrunk to a model grid, brought back to full resolution by both
methods and compared with the truth, at luminance edges (the strongest 10 % of L gradients) and
over all pixels (`edge_errors` below; tests/fullres_test.py asserts the same on the fixture
photos with it).

    .venv/bin/python benchmarks/upsampling_quality.py

Photo sets: the lossless fixture photos (tests/data/photos, 128 px) at 4x and 8x,
and the five scikit-image photos the guided filter's parameters were tuned on, at 8x.
"""

import glob
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage import color as skcolor  # noqa: E402
from skimage import transform  # noqa: E402

from tfgcrf import fullres  # noqa: E402
from tfgcrf.imageio import read_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def edge_errors(rgb, grid, all_pixels=False):
    """Chroma error (Lab units) at the strongest 10 % of L gradients: (guided, bilinear).

    The ground-truth chroma is shrunk to a `grid`^2 model grid (skimage, antialiased), brought
    back by both methods, and compared with the original full-resolution chroma. With
    `all_pixels`, the errors over all pixels follow: (guided, bilinear, guided_all, bilinear_all).
    Also used by tests/fullres_test.py.
    """
    lab = skcolor.rgb2lab(rgb)
    lightness, ab = lab[..., 0], lab[..., 1:] / 110.0
    ab_small = transform.resize(ab, (grid, grid), order=1, anti_aliasing=True)[None].astype(np.float32)
    guided = fullres.upsample_chroma(ab_small, lightness.astype(np.float32)).numpy()[0]
    bilinear = tf.image.resize(ab_small, lightness.shape, method="bilinear").numpy()[0]
    gradient = np.hypot(ndimage.sobel(lightness, 0), ndimage.sobel(lightness, 1))
    edges = gradient >= np.percentile(gradient, 90)

    def error(up, where):
        return float(np.mean(np.linalg.norm(up - ab, axis=-1)[where]) * 110.0)

    errors = (error(guided, edges), error(bilinear, edges))
    if all_pixels:
        everywhere = np.ones_like(edges)
        errors += (error(guided, everywhere), error(bilinear, everywhere))
    return errors


def _tuning_photos():
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.retina()]


def main():
    fixtures = [read_image(path) for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "photos", "*.png")))]
    sets = [
        ("fixture photos, 128 px from a 32x32 grid (4x)", fixtures, 32),
        ("fixture photos, 128 px from a 16x16 grid (8x)", fixtures, 16),
        ("tuning photos (skimage), ~512 px from 64x64 (8x)", _tuning_photos(), 64),
    ]
    print("| photos | n | edge error guided | edge error bilinear | ratio | all-pixel guided | "
          "all-pixel bilinear | ratio | guided better at edges |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, photos, grid in sets:
        errors = np.array([edge_errors(photo, grid, all_pixels=True) for photo in photos])
        edge_guided, edge_bilinear, all_guided, all_bilinear = errors.mean(axis=0)
        wins = int(np.sum(errors[:, 0] < errors[:, 1]))
        print(f"| {name} | {len(photos)} | {edge_guided:.2f} | {edge_bilinear:.2f} | "
              f"{edge_guided / edge_bilinear:.2f} | {all_guided:.2f} | {all_bilinear:.2f} | "
              f"{all_guided / all_bilinear:.2f} | {wins}/{len(photos)} |")
    print("\nerrors: mean Euclidean distance in the CIE ab plane (Lab units)")


if __name__ == "__main__":
    main()
