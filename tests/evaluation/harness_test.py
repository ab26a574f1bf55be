"""The harness's wiring, checked with an oracle model whose outputs are known functions of the truth."""

import numpy as np
import pytest
import tensorflow as tf

from tfgcrf.errors import UserError
from tfgcrf.evaluation import control, harness, metrics

PHOTOS = "tests/data/photos"
SIZE = 32


class OracleModel:
    """Samples [truth, truth] through the "G-CRF" and [truth/2, truth/2] without; edits to the truth."""

    def __init__(self, truths):
        self.truths = truths  # model-size ground-truth ab, in data order
        self.index = -1
        self.calls = []

    def sample(self, l, num_samples, seed, mode, use_gcrf):
        self.calls.append((seed, mode, use_gcrf))
        if use_gcrf:
            self.index += 1
        truth = self.truths[self.index]
        scale = 1.0 if use_gcrf else 0.5
        return tf.repeat(scale * truth[None], num_samples, axis=1), tf.zeros([1, num_samples])

    def edit(self, l, mask, target_ab):
        assert mask.shape == (len(control.POINT_COUNTS), SIZE, SIZE)
        # More points reveal more grid cells: the nested hint sets reach the grid.
        counts = tf.reduce_sum(mask, axis=[1, 2]).numpy()
        assert counts[0] == 1 and np.all(np.diff(counts) >= 0) and counts[-1] > 50
        return tf.repeat(self.truths[self.index], l.shape[0], axis=0)


@pytest.fixture(scope="module")
def pairs():
    return list(harness.image_pairs(PHOTOS, "test", SIZE, limit=2))


def test_image_pairs_are_the_same_crop_at_two_sizes(pairs):
    assert len(pairs) == 2
    (l, ab), (l_full, ab_full) = pairs[0]
    assert l.shape == (1, SIZE, SIZE, 1) and ab_full.shape == (1, 256, 256, 2)
    shrunk = tf.image.resize(l_full, (SIZE, SIZE), antialias=True)
    np.testing.assert_allclose(shrunk.numpy(), l.numpy(), atol=0.03)


def test_oracle_scores_match_the_truth(pairs):
    model = OracleModel([ab for (_, ab), _ in pairs])
    results, kept = harness.evaluate(model, pairs, num_samples=2, seed=7, mode="draw", keep_images=1)
    gcrf, vae, gray = (results["methods"][name] for name in ("gcrf", "vae_mdn", "gray"))
    assert gcrf["eob"] == 0.0 and gcrf["variance"] == 0.0
    assert gcrf["ssim_pairwise"] == pytest.approx(1.0, abs=1e-5)
    assert gcrf["speckle"] == pytest.approx(1.0) and gcrf["speckle_flat"] == pytest.approx(1.0)
    assert gcrf["colorfulness"] == pytest.approx(results["ground_truth"]["colorfulness"])
    # Half the chroma: a quarter of the gradient energy and of the gray floor's error.
    assert vae["speckle"] == pytest.approx(0.25) and vae["speckle_flat"] == pytest.approx(0.25)
    assert vae["eob"] == pytest.approx(0.25 * gray["eob"])
    expected_gray_eob = np.mean([metrics.eob(np.zeros((1,) + ab.shape[1:]), ab[0]) for (_, ab), _ in pairs])
    assert gray["eob"] == pytest.approx(expected_gray_eob)
    # Same seed for both diverse methods of an image, offset per image.
    assert model.calls == [(7, "draw", True), (7, "draw", False), (8, "draw", True), (8, "draw", False)]
    # The oracle's edit is the truth at model size: far better than gray at every |H|, and
    # Levin improves with more revealed patches.
    for count in control.POINT_COUNTS:
        key = str(count)
        assert results["methods"]["gcrf"]["psnr_points"][key] > gray["psnr_points"][key] + 3
    levin = results["methods"]["levin"]["psnr_points"]
    assert levin["100"] > levin["1"] + 1 and levin["100"] > gray["psnr_points"]["100"]
    assert len(set(gray["psnr_points"].values())) == 1
    assert results["images"] == 2 and results["samples"] == 2 and results["seed"] == 7
    assert set(results["seconds_per_image"]) == {
        "gcrf_sample", "vae_mdn_sample", "levin_control", "gcrf_control", "total"
    }
    assert len(kept) == 1 and set(kept[0]["samples"]) == {"gcrf", "vae_mdn"}
    shown = kept[0]["control"]
    assert shown["truth"].shape == (256, 256, 3) and shown["truth"].dtype == np.uint8


def test_needs_two_samples_and_images(pairs):
    with pytest.raises(UserError, match="at least 2 samples"):
        harness.evaluate(OracleModel([]), pairs, num_samples=1, seed=0)
    with pytest.raises(UserError, match="no images"):
        harness.evaluate(OracleModel([]), [], num_samples=2, seed=0)
