import os

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from tfgcrf import Colorizer
from tfgcrf.errors import InputError, UserError
from tfgcrf.imageio import read_image
from tfgcrf.models.points import grid_index

DATA = os.path.join(os.path.dirname(__file__), "data")
# 384x256: non-square, 24x the 16x16 grid of the smoke model.
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")


@pytest.fixture(scope="module")
def colorizer(smoke_run):
    return Colorizer.load(os.path.join(smoke_run.run_dir, "model.keras"))


@pytest.fixture(scope="module")
def photo():
    return read_image(PHOTO)


def _lab(rgb):
    return skcolor.rgb2lab(np.asarray(rgb))


def in_gamut_color(lightness, a, b):
    """An sRGB color (0-255) with the given Lab values, so that the pixel's L can keep it."""
    rgb = skcolor.lab2rgb(np.array([[[lightness, a, b]]], np.float64))[0, 0]
    return tuple(int(round(c * 255)) for c in rgb)


def test_colorize_at_input_resolution_with_input_lightness(colorizer, photo):
    samples, scores = colorizer.colorize(PHOTO, num_samples=3, return_scores=True)
    assert samples.shape == (3, 256, 384, 3) and samples.dtype == np.uint8
    assert scores.shape == (3,) and np.all(np.diff(scores) <= 0)
    lightness = _lab(photo)[..., 0]
    for sample in samples:
        assert np.abs(_lab(sample)[..., 0] - lightness).mean() <= 1.0
    assert_samples_differ(samples)


def test_default_sample_count_is_8_or_the_models_components(colorizer):
    """The smoke model has 4 mixture components: "top" gives all 4 by default, "draw" 8."""
    assert colorizer.default_samples("top") == 4 and colorizer.default_samples("draw") == 8
    np.testing.assert_array_equal(colorizer.colorize(PHOTO), colorizer.colorize(PHOTO, num_samples=4))
    assert colorizer.colorize(PHOTO, mode="draw").shape[0] == 8


def assert_samples_differ(samples, min_fraction=0.05):
    """Every pair of samples differs on a good part of the image.

    (The session's smoke model is trained for a few steps only: its samples differ little.)
    """
    for first in range(len(samples)):
        for second in range(first + 1, len(samples)):
            differing = np.any(samples[first] != samples[second], axis=-1)
            assert differing.mean() > min_fraction, (first, second, differing.mean())


def test_image_kinds_give_the_same_result(colorizer, photo):
    gray = np.round(skcolor.rgb2gray(photo) * 255).astype(np.uint8)
    from_gray = colorizer.colorize(gray, num_samples=1)
    np.testing.assert_array_equal(from_gray, colorizer.colorize(gray[..., None], num_samples=1))
    np.testing.assert_array_equal(from_gray, colorizer.colorize(np.repeat(gray[..., None], 3, -1), 1))
    np.testing.assert_array_equal(from_gray, colorizer.colorize(Image.fromarray(gray), num_samples=1))
    np.testing.assert_array_equal(
        colorizer.colorize(PHOTO, num_samples=1), colorizer.colorize(Image.open(PHOTO), num_samples=1)
    )


def test_encoded_bytes_and_file_objects_are_images(colorizer, tmp_path):
    import io

    with open(PHOTO, "rb") as handle:
        data = handle.read()
    expected = colorizer.colorize(PHOTO, num_samples=1)
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(colorizer.colorize(source, num_samples=1), expected)
    with open(PHOTO, "rb") as handle:
        np.testing.assert_array_equal(colorizer.colorize(handle, num_samples=1), expected)
    point, rgb = (100, 50), (200, 40, 40)
    np.testing.assert_array_equal(colorizer.edit(data, [point], [rgb]), colorizer.edit(PHOTO, [point], [rgb]))
    np.testing.assert_array_equal(colorizer.explain(io.BytesIO(data), point), colorizer.explain(PHOTO, point))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with open(text) as handle, pytest.raises(InputError, match="binary mode") as info:
        colorizer.colorize(handle, num_samples=1)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "source, message",
    [
        (b"\x00not an image" * 5000, r"unsupported image format: unknown format .*<65000 bytes>"),
        (b"", "empty image data"),
        (bytes(30000), "unsupported image format"),
    ],
)
def test_bad_encoded_bytes_give_a_short_error(colorizer, source, message):
    with pytest.raises(InputError, match=message) as info:
        colorizer.colorize(source, num_samples=1)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_draw_mode_follows_the_seed(colorizer):
    first = colorizer.colorize(PHOTO, num_samples=6, seed=3, mode="draw")
    assert first.shape[0] == 6  # more than the 4 components
    np.testing.assert_array_equal(first, colorizer.colorize(PHOTO, num_samples=6, seed=3, mode="draw"))
    assert np.any(first != colorizer.colorize(PHOTO, num_samples=6, seed=4, mode="draw"))


def _far_mask(shape, point, fraction=0.3):
    """Pixels farther than `fraction` of the image diagonal from `point`."""
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    distance = np.hypot(columns - point[0], rows - point[1])
    return distance > fraction * np.hypot(*shape[:2])


def test_edit_honors_the_point_and_propagates(colorizer, photo):
    point = (60, 30)  # the sky
    lightness = _lab(photo)[point[1], point[0], 0]
    requested = np.array([-20.0, 35.0])
    rgb = in_gamut_color(lightness, *requested)
    edited = colorizer.edit(photo, [point], [rgb])
    assert edited.shape == photo.shape
    lab = _lab(edited)
    assert np.abs(lab[..., 0] - _lab(photo)[..., 0]).mean() <= 1.0
    assert np.linalg.norm(lab[point[1], point[0], 1:] - requested) < 8.0
    # From a single point, the color spreads through the learned similarity: far pixels are
    # colored in the same direction (the input has no colors of its own here).
    far = lab[_far_mask(photo.shape, point)][:, 1:]
    cosine = far @ requested / (np.linalg.norm(far, axis=1) * np.linalg.norm(requested) + 1e-9)
    assert np.median(np.linalg.norm(far, axis=1)) > 3.0 and np.median(cosine) > 0.7


def test_edit_on_a_sample_keeps_the_sample_elsewhere(colorizer, photo):
    point = (300, 200)
    lightness = _lab(photo)[point[1], point[0], 0]
    requested = np.array([30.0, -25.0])
    sample = colorizer.colorize(photo, num_samples=2)[1]
    edited = colorizer.edit(photo, [point], [in_gamut_color(lightness, *requested)], from_sample=1)
    lab, sample_lab = _lab(edited), _lab(sample)
    # The sample's other colors pull on the edited pixel (weak prior everywhere else), so the
    # point gets most of the way to the requested color rather than all of it.
    before = np.linalg.norm(sample_lab[point[1], point[0], 1:] - requested)
    assert np.linalg.norm(lab[point[1], point[0], 1:] - requested) < 0.4 * before
    change = np.linalg.norm(lab[..., 1:] - sample_lab[..., 1:], axis=-1)
    assert change.mean() > 0.5  # the edit reaches beyond its pixel ...
    # ... and elsewhere keeps the sample more than an edit from the point alone.
    points_only = colorizer.edit(photo, [point], [in_gamut_color(lightness, *requested)])
    far = _far_mask(photo.shape, point)
    other = np.linalg.norm(_lab(points_only)[..., 1:] - sample_lab[..., 1:], axis=-1)
    assert change[far].mean() < other[far].mean()


def test_explain_is_the_similarity_row(colorizer):
    size = colorizer.grid_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    point = (5, 9)
    attention = colorizer.explain(image, point)
    _, l_small = colorizer._prepare(image)
    similarity = colorizer.model.similarity(l_small).numpy()[0]
    np.testing.assert_allclose(attention, similarity[9 * size + 5].reshape(size, size), atol=1e-6)
    full = colorizer.explain(PHOTO, (100, 50))
    assert full.shape == (256, 384) and full.min() >= 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.colorize(PHOTO, num_samples=0), "at least 1"),
        (lambda c: c.colorize(PHOTO, num_samples=5), "at most 4 samples"),
        (lambda c: c.colorize(PHOTO, mode="best"), "mode must be one of"),
        (lambda c: c.colorize(np.zeros((4, 4, 3), np.float32), 1), "uint8 array"),
        (lambda c: c.colorize(np.zeros((0, 4), np.uint8), 1), "no pixels"),
        (lambda c: c.colorize(np.zeros((7000, 6000), np.uint8), 1), "too large"),
        (lambda c: c.colorize(os.path.join(DATA, "missing.png"), 1), "no such image file"),
        (lambda c: c.edit(PHOTO, [(384, 10)], [(1, 2, 3)]), r"point \(384, 10\) is outside the 384x256"),
        (lambda c: c.edit(PHOTO, [(-1, 10)], [(1, 2, 3)]), "outside"),
        (lambda c: c.edit(PHOTO, [("300", 10)], [(1, 2, 3)]),
         r"^point coordinates must be numbers \(pixels\), got '300'$"),
        (lambda c: c.edit(PHOTO, [(True, 10)], [(1, 2, 3)]), "must be numbers .pixels., got True"),
        (lambda c: c.session(PHOTO).add_point(None, 10, (1, 2, 3)), "must be numbers"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(1, 2, 256)]), "0..255"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(1, 2)]), "one .r, g, b. color per point"),
        (lambda c: c.edit(PHOTO, [(1, 10)], np.array([[1.0, 0.0, 0.0]])), r"0..1 floats: multiply"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(True, False, False)]), "integers in 0..255"),
        (lambda c: c.edit(PHOTO, [], []), "^an edit needs at least one color point, one link or a "
         r"sample to start from \(from_sample >= 0\)$"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(1, 2, 3)], links=[((0, 0), (400, 5))]),
         r"link end \(400, 5\) is outside"),
        (lambda c: c.edit(PHOTO, [], [], links=[((7, 9), (7, 9))]), r"link from \(7, 9\) to itself"),
        (lambda c: c.edit(PHOTO, [], [], links=[(1, 2, 3)]), "pairs of points"),
        (lambda c: c.edit(PHOTO, [(5, 5), (5, 5)], [(200, 0, 0), (0, 0, 200)]),
         r"points 1 and 2 are on the same pixel \(5, 5\) with different colors"),
        (lambda c: c.edit(PHOTO, [(i % 384, i // 384) for i in range(257)], [(9, 9, 9)] * 257),
         "at most 256 points"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(1, 2, 3)], from_sample=4), "no sample 4"),
        (lambda c: c.edit(PHOTO, [(1, 10)], [(1, 2, 3)], from_sample=-1), ">= 0"),
        (lambda c: c.explain(PHOTO, (10, 256)), "outside"),
    ],
)
def test_bad_input_raises_one_line_input_error(colorizer, call, message):
    with pytest.raises(InputError, match=message) as info:
        call(colorizer)
    assert "\n" not in str(info.value)


def test_session_errors_name_points_by_their_session_ids(colorizer):
    session = colorizer.session(PHOTO)
    first = session.add_point(5, 5, (200, 0, 0))
    for x in (50, 90):
        session.add_point(x, 5, (0, 0, 200))
    with pytest.raises(InputError, match=rf"^points {first} and {first + 3} are on the same pixel "
                       r"\(5, 5\) with different colors"):
        session.add_point(5, 5, (0, 200, 0))  # its id would have been first + 3
    assert sorted(session.points) == [first, first + 1, first + 2]  # nothing added
    with pytest.raises(InputError, match="outside"):
        session.add_point(10_000, 5, (0, 200, 0))
    # Refused calls use up no id: the next point gets the id the error named.
    assert session.add_point(7, 7, (0, 200, 0)) == first + 3


def test_loading_errors(tmp_path):
    with pytest.raises(UserError, match="no such model file"):
        Colorizer.load(tmp_path / "missing.keras")
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("hello")
    with pytest.raises(UserError, match="cannot load model"):
        Colorizer.load(not_a_model)
    with pytest.raises(UserError, match="preset 'no-such-preset' is not installed"):
        Colorizer.from_preset("no-such-preset")


def test_the_photo_path_is_the_models_preprocessor(colorizer, smoke_run):
    assert colorizer.converter is colorizer.model.preprocessor
    from tfgcrf.models import GCRFColorizer

    bare = GCRFColorizer.from_preset(smoke_run.run_dir, preprocessor=None)
    with pytest.raises(UserError, match=r"^the model has no preprocessor .*GridConverter\(16\)$"):
        Colorizer(bare)


def test_default_preset_colorizes_diversely():
    """The bundled default model (once committed): 8 clearly different samples, input lightness."""
    from tfgcrf.models.loading import preset_names

    if "default" not in preset_names():
        pytest.skip("the default preset is not installed yet")
    samples = Colorizer.from_preset("default").colorize(PHOTO)
    assert samples.shape == (8, 256, 384, 3)
    lab = _lab(samples)
    assert np.abs(lab[..., 0] - _lab(read_image(PHOTO))[..., 0]).mean(axis=(1, 2)).max() <= 1.0
    assert_samples_differ(samples, min_fraction=0.5)
    # A trained model colors the photo: clearly non-gray on average.
    assert np.linalg.norm(lab[..., 1:], axis=-1).mean() > 5.0


def test_bad_edits_compute_nothing(colorizer, monkeypatch):
    """Every check runs before the model: nothing is computed for a refused request."""
    def fail(*args):
        raise AssertionError("the model ran for a refused request")

    monkeypatch.setattr(colorizer, "_prepare", fail)
    for points, colors, links in (([(400, 1)], [(1, 2, 3)], None),
                                  ([(1, 1)], [(1, 2, 3)], [((3, 3), (3, 3))]),
                                  ([(1, 1), (1, 1)], [(1, 2, 3), (3, 2, 1)], None)):
        with pytest.raises(InputError):
            colorizer.edit(PHOTO, points, colors, links=links)


def _ab_at(image, point):
    return _lab(image)[point[1], point[0], 1:]


def test_points_8_px_apart_keep_their_colors_at_1024_px(colorizer):
    """Two points closer than a grid cell (64 px here) are not blended into a third color."""
    photo = np.asarray(Image.open(PHOTO).resize((1024, 768), Image.BICUBIC))
    first, second = (300, 500), (308, 500)  # L* 52 and 37: both colors in the sRGB gamut
    requested = {first: np.array([45.0, 25.0]), second: np.array([10.0, -40.0])}
    colors = [in_gamut_color(_lab(photo)[y, x, 0], *requested[(x, y)]) for x, y in requested]
    edited = colorizer.edit(photo, list(requested), colors)
    for point, ab in requested.items():
        assert np.linalg.norm(_ab_at(edited, point) - ab) < 3.0, point
    # The same with a session, point by point, and after moving one point next to the other.
    session = colorizer.session(photo)
    keys = [session.add_point(x, y, rgb) for (x, y), rgb in zip(requested, colors)]
    # The session finishes this size with XLA kernels, `edit` (one result) without: one level.
    assert np.abs(session.result().astype(int) - edited).max() <= 1
    session.move_point(keys[1], 302, 501)
    moved = session.result()
    assert np.linalg.norm(_ab_at(moved, first) - requested[first]) < 3.0
    assert np.linalg.norm(_ab_at(moved, (302, 501)) - requested[second]) < 6.0
    session.remove_point(keys[1])
    alone = colorizer.edit(photo, [first], colors[:1])
    assert np.abs(session.result().astype(int) - alone).max() <= 1
    # Coinciding points: the same color is fine, different colors are refused in one line.
    colorizer.edit(photo, [first, first], [colors[0], colors[0]])
    with pytest.raises(InputError, match="same pixel"):
        session.add_point(*first, colors[1])


def test_session_answers_as_the_model_edit_on_the_grid(colorizer, photo):
    from tfgcrf.models.points import links_to_grid, points_to_grid

    session = colorizer.session(photo)
    points = [(60, 30), (300, 200), (305, 203)]
    colors = [(200, 120, 40), (40, 90, 200), (60, 80, 200)]
    for point, rgb in zip(points, colors):
        session.add_point(*point, rgb)
    session.link((20, 20), (350, 240))
    relative = colorizer._relative_points(points, 256, 384)
    mask, target = points_to_grid(relative[None], colorizer._point_chroma(colors, 3)[None], [3],
                                  colorizer.grid_size)
    ends = colorizer._relative_points([(20, 20), (350, 240)], 256, 384).reshape(1, 1, 4)
    expected = colorizer.model.edit(session._l_small, mask, target,
                                    links=links_to_grid(ends, colorizer.grid_size), num_links=[1])
    np.testing.assert_allclose(session.grid_result(), expected, atol=1e-4)


def test_session_image_equals_the_stateless_finish(colorizer, photo):
    """The session's image (cached guide statistics, XLA upsampling and recombination) is the
    stateless full-resolution finish of the same grid answer, within one uint8 level."""
    from tfgcrf import hints

    session = colorizer.session(photo)
    session._jit = True  # the path photos of 250k pixels and more take
    points, colors = [(60, 30), (300, 200), (305, 203)], [(200, 120, 40), (40, 90, 200), (60, 80, 200)]
    for point, rgb in zip(points, colors):
        session.add_point(*point, rgb)
    image = session.result().astype(int)
    chroma = colorizer._point_chroma(colors, 3)
    correction = session._propagation.correction(session.grid_result(), points, chroma)
    expected = hints.finish_edit(session.grid_result(), session._lightness,
                                 np.array(points, np.int32), chroma, colorizer.grid_size,
                                 correction=correction).numpy().astype(int)
    difference = np.abs(image - expected).max(axis=-1)
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3, (
        difference.max(), np.mean(difference > 0))


def test_linked_points_keep_their_colors_and_link_ends_near_a_point_follow_it(colorizer, photo):
    """A link between two points of different colors cannot overrule them: each keeps its color at
    its pixel. A link end 2 px from a point (not on it) takes the point's refined color too."""
    first, second, third = mid_lightness_places(photo)
    lightness = _lab(photo)[..., 0]
    requested = [np.array([30.0, 20.0]), np.array([5.0, -30.0])]
    colors = [in_gamut_color(lightness[y, x], *ab) for (x, y), ab in zip((first, third), requested)]
    session = colorizer.session(photo)
    for (x, y), rgb in zip((first, third), colors):
        session.add_point(x, y, rgb)
    key = session.link(first, third)
    image = session.result()
    for place, ab in zip((first, third), requested):
        assert np.linalg.norm(_ab_at(image, place) - ab) < 3.0
    session.unlink(key)
    near = (first[0] + 2, first[1])
    session.link(near, second)
    image = session.result()
    assert np.linalg.norm(_ab_at(image, near) - _ab_at(image, second)) < 3.0


def mid_lightness_places(photo):
    """Three places of lightness L* 45-60 (room for saturated colors in sRGB): two far apart, and
    a third 60-150 px from the second."""
    lightness = _lab(photo)[..., 0]
    candidates = np.argwhere((lightness > 45) & (lightness < 60))[:, ::-1]
    first, second = candidates[0], candidates[-1]
    distance = np.linalg.norm(candidates - second, axis=1)
    third = candidates[np.flatnonzero((distance > 60) & (distance < 150))[0]]
    return [tuple(int(v) for v in place) for place in (first, second, third)]


def propagated_link_case(photo):
    """Points and a link on PHOTO (384x256) whose ends only the full-resolution propagation
    reaches: a red point on the lake 90 px from the link's lake end, a blue point in the sky 70 px
    from its sky end (the point refinement reaches ~30 px here). Returns (points, colors, link)."""
    lightness = _lab(photo)[..., 0]
    points = [(315, 140), (20, 15)]
    colors = [in_gamut_color(lightness[y, x], *ab)
              for (x, y), ab in zip(points, [(30.0, 20.0), (0.0, -30.0)])]
    return points, colors, ((225, 150), (70, 85))


def link_gaps(image, link, radius=4):
    """ΔE (CIE ab distance) between a link's two ends: (of the mean chroma of the
    (2 radius + 1)^2 windows around them, at the end pixels)."""
    lab = _lab(image)
    windows = [lab[y - radius:y + radius + 1, x - radius:x + radius + 1, 1:].reshape(-1, 2).mean(0)
               for x, y in link]
    return (float(np.linalg.norm(windows[0] - windows[1])),
            float(np.linalg.norm(_ab_at(image, link[0]) - _ab_at(image, link[1]))))


def test_a_link_holds_where_the_propagation_brings_the_points_colors(colorizer, photo):
    """Issue 12: a link whose ends get their colors from points through the full-resolution
    propagation (not the point refinement) still gives the two places the same color: the API,
    the session and (tests/export) the SavedModel. Unlinked the places differ. An edit without
    links is the evaluation's finish (`hints.finish_edit` with the propagation's correction and
    no links) bit for bit."""
    from tfgcrf import hints
    from tfgcrf.evaluation.harness import _finish_edit

    points, colors, link = propagated_link_case(photo)
    unlinked = colorizer.edit(photo, points, colors)
    linked = colorizer.edit(photo, points, colors, links=[link])
    assert min(link_gaps(unlinked, link)) > 8.0, link_gaps(unlinked, link)
    assert max(link_gaps(linked, link)) < 3.0, link_gaps(linked, link)
    # The points keep their colors.
    for place in points:
        np.testing.assert_allclose(_ab_at(linked, place), _ab_at(unlinked, place), atol=1.0)
    # The session, link added and removed: the same images.
    session = colorizer.session(photo)
    for (x, y), rgb in zip(points, colors):
        session.add_point(x, y, rgb)
    np.testing.assert_array_equal(session.result(), unlinked)
    key = session.link(*link)
    np.testing.assert_array_equal(session.result(), linked)
    session.unlink(key)
    np.testing.assert_array_equal(session.result(), unlinked)
    # Without links nothing is solved twice: the evaluation's finish gives the same image.
    chroma = colorizer._point_chroma(colors, len(points))
    pixels = np.array(points, np.int32)
    grid = session.grid_result()
    correction = hints.Propagation(np.asarray(session._lightness)).correction(grid, pixels, chroma)
    np.testing.assert_array_equal(
        _finish_edit(grid, session._lightness, pixels, chroma, colorizer.grid_size,
                     correction=correction).numpy(), unlinked)


def test_links_give_separated_regions_the_same_color(colorizer, photo):
    """A link says "the same color" without saying which: a red point at the first place, a blue
    point nearer the second; unlinked the two places differ, linked their regions agree."""
    first, second, third = mid_lightness_places(photo)
    colors = [in_gamut_color(_lab(photo)[y, x, 0], *ab)
              for (x, y), ab in zip((first, third), [(30.0, 20.0), (5.0, -30.0)])]
    results = {}
    for name, links in (("unlinked", []), ("linked", [(first, second)])):
        session = colorizer.session(photo)
        for (x, y), rgb in zip((first, third), colors):
            session.add_point(x, y, rgb)
        for link in links:
            session.link(*link)
        grid = session.grid_result().numpy()[0] * 110.0  # ab units
        cells = [np.unravel_index(int(grid_index((np.array(p) + 0.5) / [384, 256],
                                                 colorizer.grid_size)), grid.shape[:2])
                 for p in (first, second)]
        side = colorizer.grid_size
        windows = [np.array([grid[min(max(r + dy, 0), side - 1), min(max(c + dx, 0), side - 1)]
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)]) for r, c in cells]
        image = session.result()
        results[name] = (np.abs(windows[0] - windows[1]).max(),
                         np.linalg.norm(_ab_at(image, first) - _ab_at(image, second)))
    # On the grid the two linked 3x3 regions agree within 2 ab units (20 apart unlinked); in the
    # photo too: the red point's refinement at its own pixel is carried to the other end.
    assert results["unlinked"][0] > 10.0 and results["linked"][0] < 2.0, results
    assert results["unlinked"][1] > 10.0 and results["linked"][1] < 3.0, results
    # Links alone (no point) are a valid edit.
    colorizer.edit(photo, [], [], links=[(first, second)])
