"""The harness's wiring, checked with an oracle model whose outputs are known functions of the truth."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tfgcrf import color
from tfgcrf.errors import UserError
from tfgcrf.evaluation import control, harness, metrics, report
from tfgcrf.layers import edit_terms

PHOTOS = "tests/data/photos"
SIZE = 32
ONE_AT_A_TIME = {"images_in_flight": 1}


class OracleColorizer:
    """Samples [truth, truth] through the "G-CRF" and [truth/2, truth/2] without; edits to the truth.

    Stands for `tfgcrf.Colorizer`'s grid functions; checks that S is computed once per image and
    handed to the G-CRF sampling and to the edits. It names the images by the order of its calls,
    so the harness runs it one image at a time (`ONE_AT_A_TIME`).
    """

    grid_size = SIZE

    def __init__(self, truths):
        self.truths = truths  # model-size ground-truth ab, in data order
        self.index = -1
        self.calls = []
        self.sessions, self.solved, self.fitted = [], [], []

    def similarity(self, l):
        self.index += 1
        self.calls.append("similarity")
        return tf.fill([1, 3, 3], float(self.index))  # a token S naming the image

    def sample_grid(self, l, num_samples, seed, mode, use_gcrf, similarity):
        self.calls.append((seed, mode, use_gcrf))
        assert (similarity is not None) == use_gcrf
        if use_gcrf:
            assert float(similarity[0, 0, 0]) == self.index
        truth = self.truths[self.index]
        scale = 1.0 if use_gcrf else 0.5
        return tf.repeat(scale * truth[None], num_samples, axis=1), tf.zeros([1, num_samples])

    def edit_session_grid(self, l, similarity, **options):
        assert np.all(similarity.numpy() == self.index)  # S of this image, computed once
        self.sessions.append(options)
        return OracleSession(self.truths[self.index], self.solved)

    def hint_prior_grid(self, l, cells, chroma):
        assert len(cells) == len(chroma)
        self.fitted.append(len(cells))
        return tf.fill([SIZE * SIZE, 2], float(len(cells))), tf.zeros([4])


class OracleSession:
    """Answers every point set with the truth at model size; records how many grid pixels it got
    and the prior it was handed (None, or the fake fitted prior naming its number of points)."""

    def __init__(self, truth, solved):
        self.truth, self.solved = truth, solved

    def solve(self, pixels, colors, prior_unary=None):
        assert len(pixels) == len(colors)
        self.solved.append((len(pixels), None if prior_unary is None else float(prior_unary[0, 0])))
        return tf.reshape(self.truth, [-1, 2])


@pytest.fixture(scope="module")
def pairs():
    return list(harness.examples(PHOTOS, "test", [SIZE], limit=2))


def test_examples_are_the_evaluation_crops_of_the_data_pipeline(pairs):
    from tfgcrf.data import make_dataset

    assert len(pairs) == 2 and pairs[0].domain is None
    expected = list(make_dataset(PHOTOS, "test", image_size=SIZE, batch_size=1, training=False).take(2))
    for example, (l, ab) in zip(pairs, expected):
        np.testing.assert_array_equal(example.grids[SIZE][0].numpy(), l.numpy())
        np.testing.assert_array_equal(example.grids[SIZE][1].numpy(), ab.numpy())
    l_full, ab_full = pairs[0].control
    assert ab_full.shape == (1, 256, 256, 2)
    shrunk = tf.image.resize(l_full, (SIZE, SIZE), antialias=True)
    np.testing.assert_allclose(shrunk.numpy(), pairs[0].grids[SIZE][0].numpy(), atol=0.03)


def test_oracle_scores_match_the_truth(pairs):
    truths = [example.grids[SIZE][1] for example in pairs]
    model = OracleColorizer(truths)
    results, kept = harness.evaluate(model, pairs, num_samples=2, seed=7, mode="draw", keep_images=1,
                                     **ONE_AT_A_TIME)
    gcrf, vae, gray = (results["methods"][name] for name in ("gcrf", "vae_mdn", "gray"))
    assert gcrf["eob"] == 0.0 and gcrf["variance"] == 0.0
    assert gcrf["ssim_pairwise"] == pytest.approx(1.0, abs=1e-5)
    assert gcrf["speckle"] == pytest.approx(1.0) and gcrf["speckle_flat"] == pytest.approx(1.0)
    assert gcrf["colorfulness"] == pytest.approx(results["ground_truth"]["colorfulness"])
    assert gcrf["colorfulness_ratio"] == pytest.approx(1.0)
    assert gcrf["auc"] == pytest.approx(1.0) and gcrf["auc_best"] == pytest.approx(1.0)
    assert vae["auc"] < 1.0 and gray["auc"] < vae["auc"]
    # Half the chroma: a quarter of the gradient energy and of the gray floor's error.
    assert vae["speckle"] == pytest.approx(0.25) and vae["speckle_flat"] == pytest.approx(0.25)
    assert vae["eob"] == pytest.approx(0.25 * gray["eob"])
    expected_gray_eob = np.mean([metrics.eob(np.zeros((1,) + ab.shape[1:]), ab[0]) for ab in truths])
    assert gray["eob"] == pytest.approx(expected_gray_eob)
    # Same seed for both diverse methods of an image, offset per image.
    assert model.calls == ["similarity", (7, "draw", True), (7, "draw", False),
                           "similarity", (8, "draw", True), (8, "draw", False)]
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
        "similarity", "gcrf_sample", "vae_mdn_sample", "levin_control", "gcrf_control", "total",
        "run",
    }
    # One edit session per image answers the nested hint sets: every pixel of a 7x7 patch is a
    # point (a patch covers 2x2 to 3x3 cells of the 32x32 grid); more patches reach more cells.
    defaults = {"prior_weight": edit_terms.MODEL_PRIOR_WEIGHT, "local_weight": edit_terms.LOCAL_WEIGHT}
    assert [{k: v for k, v in o.items() if k != "last"} for o in model.sessions] == [defaults] * 2
    counts = [n for n, prior in model.solved[:len(control.POINT_COUNTS)]]
    # The nested sets' cells are factored last (`_factored_last`): all of the largest set's.
    last = model.sessions[0]["last"]
    assert len(last) == len(set(last)) == counts[-1]
    assert all(prior is None for _, prior in model.solved)  # no fitted prior by default
    assert 1 <= counts[0] <= 9 and np.all(np.diff(counts) >= 0) and counts[-1] > 200
    assert len(kept) == 1 and set(kept[0]["samples"]) == {"gcrf", "vae_mdn"}
    shown = kept[0]["control"]
    assert shown["truth"].shape == (256, 256, 3) and shown["truth"].dtype == np.uint8


def test_two_models_side_by_side_and_domains(pairs):
    truths = [example.grids[SIZE][1] for example in pairs]
    tagged = [example._replace(domain=domain) for example, domain in zip(pairs, ("faces", "scenes"))]
    models = {"old": OracleColorizer(truths), "new": OracleColorizer(truths)}
    results, _ = harness.evaluate(models, tagged, num_samples=2, seed=7, **ONE_AT_A_TIME)
    methods = results["methods"]
    assert list(methods) == ["gcrf/old", "vae_mdn/old", "gcrf/new", "vae_mdn/new", "levin", "gray"]
    assert methods["gcrf/old"] == methods["gcrf/new"] and methods["gcrf/old"]["eob"] == 0.0
    assert set(results["domains"]) == {"faces", "scenes"}
    faces = results["domains"]["faces"]
    assert faces["images"] == 1 and faces["methods"]["gcrf/new"]["auc"] == pytest.approx(1.0)
    # The domains partition the images: the per-image means recombine to the overall mean.
    overall = results["methods"]["gray"]["eob"]
    parts = [part["methods"]["gray"]["eob"] for part in results["domains"].values()]
    assert overall == pytest.approx(np.mean(parts))


def test_domains_come_from_the_folder_manifest(tmp_path):
    import shutil

    from tfgcrf.data import folders

    names = [os.path.basename(path) for path in folders.list_images(PHOTOS)[:12]]
    for name in names:
        shutil.copy(os.path.join(PHOTOS, name), tmp_path / name)
    (tmp_path / "manifest.csv").write_text(
        "file,package,domain\n" + "".join(f"{name},x,{'faces' if i % 2 else 'objects'}\n"
                                           for i, name in enumerate(names))
    )
    found = {example.name: example.domain for example in harness.examples(str(tmp_path), "train", [SIZE])}
    assert found and all(found[name] == ("faces" if names.index(name) % 2 else "objects") for name in found)


def test_needs_two_samples_and_images(pairs):
    with pytest.raises(UserError, match="at least 2 samples"):
        harness.evaluate(OracleColorizer([]), pairs, num_samples=1, seed=0)
    with pytest.raises(UserError, match="no images"):
        harness.evaluate(OracleColorizer([]), [], num_samples=2, seed=0)
    with pytest.raises(UserError, match="images_in_flight must be >= 1"):
        harness.evaluate(OracleColorizer([]), pairs, num_samples=2, seed=0, images_in_flight=0)


def _without_timings(results):
    return {key: value for key, value in results.items() if key != "seconds_per_image"}


@pytest.mark.slow
def test_images_in_flight_give_the_numbers_of_one_at_a_time(tiny_preset):
    """A real model (compiled TF functions, PARDISO/SuperLU, Levin et al.) on 3 photos, evaluated
    one at a time and two at once in worker threads: the same results to the last bit, the same
    renderings, the progress callback in image order."""
    from tfgcrf.colorizer import Colorizer

    colorizer = Colorizer.load(str(tiny_preset))
    images = list(harness.examples(PHOTOS, "test", [colorizer.grid_size], limit=3))
    runs = {}
    for in_flight in (1, 2):
        seen = []
        runs[in_flight] = harness.evaluate(
            colorizer, images, num_samples=3, seed=5, keep_images=2,
            on_image=lambda index, seconds, name: seen.append((index, name)),
            images_in_flight=in_flight)
        assert seen == [(index, image.name) for index, image in enumerate(images)]
    (one, kept_one), (two, kept_two) = runs[1], runs[2]
    assert one["images"] == 3 and _without_timings(one) == _without_timings(two)
    assert two["seconds_per_image"]["run"] > 0
    for first, second in zip(kept_one, kept_two, strict=True):
        np.testing.assert_array_equal(first["control"]["gcrf"], second["control"]["gcrf"])
        np.testing.assert_array_equal(first["samples"]["gcrf"], second["samples"]["gcrf"])


@pytest.mark.slow
def test_a_fresh_model_traces_once_with_images_in_flight(tiny_preset, caplog):
    """Two images at once on a freshly loaded model: the first image runs alone and traces the
    compiled functions, so the worker threads do not trace them again side by side (TF's
    "triggered tf.function retracing" warnings in every `tfgcrf evaluate` run before)."""
    from tfgcrf.colorizer import Colorizer

    colorizer = Colorizer.load(str(tiny_preset))
    images = list(harness.examples(PHOTOS, "test", [colorizer.grid_size], limit=3))
    with caplog.at_level("WARNING", logger="tensorflow"):
        harness.evaluate(colorizer, images, num_samples=3, seed=5, images_in_flight=2)
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]


@pytest.mark.slow
def test_two_models_side_by_side_trace_once_each_without_warnings(tiny_preset, caplog):
    """Two fresh models: each traces its `sample` twice (G-CRF and VAE-MDN) on the first image and
    never again; TF, which counts traces per code object across instances, warned about the four
    first traces in every two-model `tfgcrf evaluate`."""
    from tfgcrf.colorizer import Colorizer

    models = {name: Colorizer.load(str(tiny_preset)) for name in ("a", "b")}
    images = list(harness.examples(PHOTOS, "test", [models["a"].grid_size], limit=3))
    with caplog.at_level("WARNING", logger="tensorflow"):
        harness.evaluate(models, images, num_samples=3, seed=5, images_in_flight=2,
                         with_control=False)
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
    assert [model._sample.experimental_get_tracing_count() for model in models.values()] == [2, 2]
    assert logging.getLogger("tensorflow").filters == []  # the filter ends with the first image


def test_ablation_scores_every_step(pairs):
    model = OracleColorizer([example.grids[SIZE][1] for example in pairs[:1]])
    results, _ = harness.evaluate(model, pairs[:1], num_samples=2, seed=7, ablation=True,
                                  **ONE_AT_A_TIME)
    steps = [name for name in harness.CONTROL_VARIANTS if name != "gcrf"]
    assert all("psnr_points" in results["methods"][name] for name in steps)
    tables = report.markdown_tables(results)  # every step has a row label (as `tfgcrf evaluate`)
    assert all(report.METHOD_LABELS[name] in tables for name in steps)
    # Variants with the same grid energy (defaults filled in) share one session.
    energies = {(o.get("hint_prior") or o.get("prior_weight", edit_terms.MODEL_PRIOR_WEIGHT),
                 o.get("local_weight", edit_terms.LOCAL_WEIGHT))
                for o, *_ in harness.CONTROL_VARIANTS.values()}
    assert len(model.sessions) == len(energies) < len(harness.CONTROL_VARIANTS)
    assert {(o["prior_weight"], o["local_weight"]) for o in model.sessions} == energies
    # The fitted prior: one fit per hint set, from its patches' pixels, handed to that set's solve.
    pixels_per_set = [count * control.PATCH_SIZE ** 2 for count in control.POINT_COUNTS]
    assert model.fitted == pixels_per_set
    fitted_solves = [prior for _, prior in model.solved if prior is not None]
    assert fitted_solves == [float(n) for n in pixels_per_set]


def test_compiled_control_finish_matches_the_eager_reference(pairs):
    """The control answers go through compiled functions; the eager ops give the same pixels."""
    from tfgcrf import fullres, hints

    example = pairs[0]
    model = OracleColorizer([example.grids[SIZE][1]])
    l, _ = example.grids[SIZE]
    l_full, ab_full = example.control
    lightness = l_full[0, ..., 0] * color.L_SCALE
    corners = control.patch_corners(7, 0)
    colors = control.patch_colors(ab_full[0].numpy(), corners).astype(np.float32)
    similarity = model.similarity(l)
    fast = harness._gcrf_control(model, l, similarity, lightness, corners, colors,
                                 ["gcrf", "gcrf_grid"])
    grid = tf.reshape(example.grids[SIZE][1], [1, SIZE, SIZE, 2])
    centers = np.floor(control.patch_centers_xy(corners) * 256).astype(np.int32)
    cell = hints.grid_cell(256, 256, SIZE)
    upsampled = fullres.upsample_chroma(grid, lightness)[0]
    propagation = hints.Propagation(lightness.numpy())
    for index, count in enumerate(control.POINT_COUNTS):
        mask, hint_ab = control.hint_image(corners[:count], colors[:count])
        propagated = propagation.solve(upsampled.numpy(), mask, hint_ab).astype(np.float32)
        refined = hints.refine_at_points(propagated, lightness, centers[:count], colors[:count], cell)
        for name, ab in (("gcrf", refined), ("gcrf_grid", upsampled)):
            reference = fullres.compose(lightness, ab[None]).numpy()[0]
            difference = np.abs(fast[name][index].astype(int) - reference.astype(int))
            assert fast[name].dtype == np.uint8 and difference.max() <= 1
            assert np.mean(difference > 0) < 1e-3


def test_nested_hint_sets_are_trailing_blocks_of_the_factored_last_pixels():
    sets = [[7], [7, 3, 9], [9, 1, 7, 3, 12]]
    last = harness._factored_last(sets)
    assert sorted(last) == [1, 3, 7, 9, 12]
    for pixels in sets:
        assert sorted(last[len(last) - len(pixels):]) == sorted(pixels)
    assert harness._factored_last([[7], [3, 9]]) is None  # not nested: no order


def test_a_missing_offline_collection_says_how_to_build_it(tmp_path, monkeypatch):
    from tfgcrf.data import pipeline

    monkeypatch.setenv("TFGCRF_OFFLINE_DIR", str(tmp_path / "not built"))
    for read in (lambda: next(harness.examples("offline", "test", [SIZE])),
                 lambda: pipeline.make_dataset("offline", "train", image_size=SIZE, batch_size=1)):
        with pytest.raises(UserError, match=r"not a folder.*make data.*TFGCRF_OFFLINE_DIR=DIR\)$"):
            read()
    with pytest.raises(UserError) as info:  # any other folder: no hint about the collection
        next(harness.examples(str(tmp_path / "elsewhere"), "test", [SIZE]))
    assert "make data" not in str(info.value)
