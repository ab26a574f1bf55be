"""GCRFColorizer: stage variables, losses, sampling/editing against numpy float64 G-CRF solves."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_testing import grid_photos

from tfgcrf.config import ModelConfig, TrainingConfig
from tfgcrf.errors import InputError, UserError
from tfgcrf.models import GCRFColorizer

SIZE = 16
CONFIG = ModelConfig(
    image_size=SIZE, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16,
)
TRAINING = TrainingConfig(kl_warmup_steps=0)


@pytest.fixture(scope="module")
def photos():
    """Four real fixture photos on the model grid: (l [4, 16, 16, 1], ab [4, 16, 16, 2])."""
    return grid_photos(SIZE)


def _random_model(stage="mdn", seed=0):
    """A fresh model whose zero-initialized output layer is randomized (non-trivial colors)."""
    keras.utils.set_random_seed(seed)
    model = GCRFColorizer(CONFIG, stage=stage, training=TRAINING)
    kernel = model.backbone.decoder.top_out.kernel
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[seed, 1]))
    bias = model.backbone.mdn.logits_out.bias
    bias.assign(tf.random.stateless_normal(bias.shape, seed=[seed, 2]))
    return model


@pytest.fixture(scope="module")
def model():
    return _random_model()


def _weights(model):
    return {v.path: v.numpy().copy() for v in model.weights}


STAGE_PREFIXES = {
    "vae": ("gray_trunk/", "color_encoder/", "unary_decoder/"),
    "hoc": ("structure_branch/", "unary_decoder/top_conv/", "unary_decoder/top_out/"),
    "mdn": ("mixture_density/",),
}


@pytest.mark.parametrize("stage", ["vae", "hoc", "mdn"])
def test_stage_trains_exactly_its_variables_and_lowers_its_loss(stage, photos):
    keras.utils.set_random_seed(1)
    model = GCRFColorizer(CONFIG, training=TRAINING)
    model.compile_stage(stage, learning_rate=3e-3)
    model.reveal_fraction.assign(0.5)
    batch = tf.data.Dataset.from_tensors(photos)
    prefixes = STAGE_PREFIXES[stage]
    expected = {v.path for v in model.weights if v.trainable and any(p in v.path for p in prefixes)}
    assert {v.path for v in model.trainable_variables} == expected
    before_loss = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
    before = _weights(model)
    model.fit(batch.repeat(), steps_per_epoch=12, epochs=1, shuffle=False, verbose=0)
    after = _weights(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed == expected
    after_loss = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after_loss) and after_loss < before_loss


@pytest.mark.parametrize("stage, option", [
    ("hoc", {"hoc_loss": "nll"}), ("mdn", {"mdn_loss": "nll"}), ("mdn", {"mdn_loss": "decoded"}),
])
def test_alternative_losses_train(stage, option, photos):
    import dataclasses

    keras.utils.set_random_seed(2)
    model = GCRFColorizer(CONFIG, training=dataclasses.replace(TRAINING, **option))
    kernel = model.backbone.decoder.top_out.kernel
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[2, 1]))
    model.compile_stage(stage, learning_rate=3e-3)
    model.reveal_fraction.assign(0.5)
    batch = tf.data.Dataset.from_tensors(photos)
    before = model.evaluate(batch, verbose=0, return_dict=True)
    model.fit(batch.repeat(), steps_per_epoch=8, epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(batch, verbose=0, return_dict=True)
    assert np.isfinite(after["loss"]) and after["loss"] < before["loss"]
    if option.get("mdn_loss") == "nll":
        # The trained loss is the full mixture NLL, also reported as mixture_nll.
        assert after["loss"] == pytest.approx(after["mixture_nll"], rel=1e-6)


def test_hoc_stage_without_the_decoder_trains_the_structure_branch_only():
    import dataclasses

    model = GCRFColorizer(CONFIG, training=dataclasses.replace(TRAINING, hoc_trains_decoder=False))
    model.compile_stage("hoc")
    paths = {v.path for v in model.trainable_variables}
    assert paths and all("structure_branch/" in path for path in paths)


@pytest.mark.parametrize("kind", ["decoded", "decoded_l2"])
def test_decoded_mdn_loss_is_the_best_components_reconstruction_in_numpy(kind, photos):
    import dataclasses

    l, ab = photos
    model = _random_model(stage="mdn", seed=3)
    model.training_config = dataclasses.replace(TRAINING, mdn_loss=kind, recon_sigma=0.2)
    count = CONFIG.num_components
    # The colors of every component's mean code, from the inference path (best first).
    alpha, scores = model.sample(l, count, mode="top", use_gcrf=False)
    errors = ((alpha.numpy().astype(np.float64) - ab.numpy()[:, None]) ** 2).sum(axis=(2, 3, 4))
    errors /= 2 * 0.2**2
    best = errors.argmin(axis=1)
    expected = errors.min(axis=1) - np.log(scores.numpy().astype(np.float64)[np.arange(len(best)), best])
    logits, means = model.backbone.mdn(model.backbone.features(l))
    value = model._decoded_mdn_loss(model.backbone.features(l), ab, logits, means).numpy()
    np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_stage_switch_needs_and_gets_a_new_optimizer(photos):
    model = GCRFColorizer(CONFIG)
    model.compile_stage("vae")
    first = model.optimizer
    model.compile_stage("mdn")
    assert model.optimizer is not first and model.stage == "mdn"
    with pytest.raises(UserError, match="stage must be one of"):
        model.compile_stage("gan")


def test_top_samples_match_mixture_and_numpy_gcrf(model, photos, numpy_gcrf):
    l, _ = photos
    ab, scores = model.sample(l, 3, mode="top")
    unary_ab, unary_scores = model.sample(l, 3, mode="top", use_gcrf=False)
    assert ab.shape == (4, 3, SIZE, SIZE, 2) and scores.shape == (4, 3)
    np.testing.assert_array_equal(scores.numpy(), unary_scores.numpy())
    # Scores are the three largest mixture weights, best first; samples decode those means.
    probs = model.mixture(l).mixture_distribution.probs_parameter().numpy()
    top = np.argsort(-probs, axis=-1)[:, :3]
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(probs, top, -1), rtol=1e-6)
    _, means = model.backbone.mdn(model.backbone.trunk(l))
    for k in range(3):
        codes = np.take_along_axis(means.numpy(), top[:, k, None, None], axis=1)[:, 0]
        np.testing.assert_allclose(unary_ab[:, k].numpy(), model.unary(l, codes).numpy(), atol=1e-6)
    # The G-CRF with every pixel revealed at beta_train, against numpy float64.
    similarity = model.similarity(l).numpy()
    unary = unary_ab.numpy().transpose(0, 2, 3, 1, 4).reshape(4, SIZE * SIZE, 6)
    weights = np.full((4, SIZE * SIZE), CONFIG.beta_train)
    expected = numpy_gcrf(similarity, unary, weights, CONFIG.ridge).reshape(4, SIZE, SIZE, 3, 2)
    np.testing.assert_allclose(ab.numpy(), expected.transpose(0, 3, 1, 2, 4), atol=2e-5)


def test_beta_sample_weighs_the_unary_of_samples_only(model, photos, numpy_gcrf, tmp_path):
    """`model.beta_sample` is sample's beta (training's beta_train untouched), against numpy
    float64; kept by a save/load round trip; a model saved without it samples at beta_train."""
    l, _ = photos
    config = dataclasses.replace(CONFIG, beta_sample=3.0)
    assert (config.sampling_beta, CONFIG.sampling_beta) == (3.0, CONFIG.beta_train)
    other = GCRFColorizer(config, stage="mdn", training=TRAINING)
    other.set_weights(model.get_weights())
    unary_ab, _ = model.sample(l, 2, use_gcrf=False)
    ab = other.sample(l, 2)[0].numpy()
    similarity = model.similarity(l).numpy()
    unary = unary_ab.numpy().transpose(0, 2, 3, 1, 4).reshape(4, SIZE * SIZE, 4)
    expected = numpy_gcrf(similarity, unary, np.full((4, SIZE * SIZE), 3.0), CONFIG.ridge)
    np.testing.assert_allclose(ab, expected.reshape(4, SIZE, SIZE, 2, 2).transpose(0, 3, 1, 2, 4),
                               atol=2e-5)
    assert np.abs(ab - model.sample(l, 2)[0].numpy()).max() > 1e-3  # beta matters here
    weights = other.backbone.reveal_weights(tf.ones([1, SIZE * SIZE, 2]), 1.0, [0, 0])
    np.testing.assert_array_equal(weights.numpy(), CONFIG.beta_train)  # training's beta
    path = str(tmp_path / "beta.keras")
    other.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.model_config.beta_sample == 3.0
    np.testing.assert_allclose(loaded.sample(l, 2)[0].numpy(), ab, atol=1e-6)


def test_solvers_agree(model, photos):
    l, ab = photos
    mask = np.zeros((4, SIZE, SIZE), np.float32)
    mask[:, 2, 3] = 1.0
    reference = model.sample(l, 2, solver="lu")[0].numpy()
    edited = model.edit(l, mask, ab, solver="lu").numpy()
    for solver in ("cholesky", "cg"):
        np.testing.assert_allclose(model.sample(l, 2, solver=solver)[0].numpy(), reference, atol=1e-4)
        np.testing.assert_allclose(model.edit(l, mask, ab, solver=solver).numpy(), edited, atol=1e-4)
    with pytest.raises(InputError, match="solver must be one of"):
        model.sample(l, 2, solver="qr")


def test_draws_are_deterministic_per_seed(model, photos):
    l, _ = photos
    first, first_scores = model.sample(l, 6, seed=7, mode="draw")
    again, again_scores = model.sample(l, 6, seed=7, mode="draw")
    other, _ = model.sample(l, 6, seed=8, mode="draw")
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    np.testing.assert_array_equal(first_scores.numpy(), again_scores.numpy())
    assert not np.allclose(first.numpy(), other.numpy())
    # More draws than components is fine; scores are component weights, best first.
    scores = first_scores.numpy()
    assert np.all(np.diff(scores, axis=-1) <= 0)
    probs = model.mixture(l).mixture_distribution.probs_parameter().numpy()
    assert all(np.isclose(probs[i], s).any() for i in range(4) for s in scores[i])
    # Top mode does not depend on the seed; [2] seeds are accepted.
    top_a, _ = model.sample(l, 2, seed=1)
    top_b, _ = model.sample(l, 2, seed=tf.constant([9, 9]))
    np.testing.assert_array_equal(top_a.numpy(), top_b.numpy())


def test_keras_roundtrip_identical_outputs_and_stage(tmp_path, photos):
    l, ab = photos
    model = _random_model(stage="hoc", seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GCRFColorizer) and loaded.stage == "hoc"
    assert loaded.model_config == model.model_config
    trainable = [v.path for v in model.trainable_variables]
    assert [v.path for v in loaded.trainable_variables] == trainable
    for fn in (
        lambda m: m.sample(l, 3, seed=5, mode="draw")[0],
        lambda m: m.edit(l, np.ones((4, SIZE, SIZE)) * 0.0 + (np.arange(SIZE) == 3), ab),
        lambda m: m.similarity(l),
        lambda m: m.reconstruct(l, ab, reveal_fraction=0.3, seed=2),
    ):
        np.testing.assert_array_equal(fn(model).numpy(), fn(loaded).numpy())


def test_traced_signature_takes_any_batch_size(model, photos):
    l, ab = photos
    spec_l = tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32)

    scalar, pair = tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)

    @tf.function(input_signature=[spec_l, scalar, pair])
    def draw(gray, count, seed):
        return model.sample(gray, count, seed, mode="draw")

    @tf.function(input_signature=[spec_l, tf.TensorSpec([None, SIZE, SIZE], tf.float32),
                                  tf.TensorSpec([None, SIZE, SIZE, 2], tf.float32)])
    def edit(gray, mask, target):
        return model.edit(gray, mask, target)

    seed = tf.constant([4, 2], tf.int64)
    for batch in (1, 3):
        traced, traced_scores = draw(l[:batch], tf.constant(5), seed)
        eager, eager_scores = model.sample(l[:batch], 5, seed, mode="draw")
        assert traced.shape == (batch, 5, SIZE, SIZE, 2)
        np.testing.assert_allclose(traced.numpy(), eager.numpy(), atol=1e-6)
        np.testing.assert_array_equal(traced_scores.numpy(), eager_scores.numpy())
        mask = np.zeros((batch, SIZE, SIZE), np.float32)
        mask[:, 5, 5] = 1
        expected = model.edit(l[:batch], mask, ab[:batch]).numpy()
        np.testing.assert_allclose(edit(l[:batch], mask, ab[:batch]).numpy(), expected, atol=1e-6)
    assert len(draw._list_all_concrete_functions()) == 1


def test_bad_inputs_give_clear_errors(model, photos):
    l, _ = photos
    with pytest.raises(InputError, match=r"shape \[B, 16, 16, 1\]"):
        model.sample(tf.zeros([1, 32, 32, 1]), 2)
    with pytest.raises(InputError, match="at most 4 samples"):
        model.sample(l, 5, mode="top")
    with pytest.raises(InputError, match="mode must be one of"):
        model.sample(l, 2, mode="best")
    with pytest.raises(InputError, match="num_samples must be >= 1"):
        model.sample(l, 0)


# ----------------------------------------------------------------------------- preprocessor, presets


def test_the_task_owns_its_preprocessor_in_its_config(tmp_path):
    from tfgcrf.preprocessing import GridConverter

    model = GCRFColorizer(CONFIG, name="task")
    assert type(model.preprocessor) is GridConverter and model.preprocessor.image_size == SIZE
    config = model.get_config()
    assert config["preprocessor"]["registered_name"] == "tfgcrf>GridConverter"
    again = GCRFColorizer.from_config(config)
    assert again.get_config() == config and again.preprocessor.get_config() == model.preprocessor.get_config()
    # None is kept as None (grid inputs only), through the config and a .keras file.
    bare = GCRFColorizer(CONFIG, preprocessor=None, name="task")
    assert bare.get_config()["preprocessor"] is None
    assert GCRFColorizer.from_config(bare.get_config()).preprocessor is None
    bare.save(tmp_path / "bare.keras")
    assert keras.saving.load_model(tmp_path / "bare.keras").preprocessor is None
    # A config without the key (saved before the task had a preprocessor) gets the default.
    old = {key: value for key, value in config.items() if key != "preprocessor"}
    assert GCRFColorizer.from_config(old).preprocessor.image_size == SIZE
    # Weightless and not a layer of the network: the weights and parameter count do not change.
    assert model.count_params() == bare.count_params()
    assert [v.path for v in model.weights] == [v.path for v in bare.weights]
    assert model.preprocessor not in model.layers


def test_a_bad_preprocessor_is_a_one_line_error():
    from tfgcrf.preprocessing import GridConverter

    with pytest.raises(UserError, match=r"^the preprocessor's grid \(32\) differs from the model's image_size \(16\)$"):
        GCRFColorizer(CONFIG, preprocessor=GridConverter(32))
    with pytest.raises(UserError, match="^preprocessor must be a GridConverter, None or 'default', got Dense$"):
        GCRFColorizer(CONFIG, preprocessor=keras.layers.Dense(1))
    model = GCRFColorizer(CONFIG)
    with pytest.raises(UserError, match="differs from the model's image_size"):
        model.preprocessor = GridConverter(8)
    model.preprocessor = None
    assert model.preprocessor is None and model.get_config()["preprocessor"] is None
    model.preprocessor = "default"
    assert model.preprocessor.image_size == SIZE


def test_from_preset(tiny_preset, photos):
    from layer_testing import run_preset_test

    l, _ = photos
    model, output = run_preset_test(GCRFColorizer, tiny_preset, l)
    reference = keras.saving.load_model(tiny_preset / "model.keras", compile=False)
    assert model.get_config() == reference.get_config()
    for mine, theirs in zip(model.weights, reference.weights, strict=True):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(output.numpy(), reference(l).numpy())
    # Constructor arguments replace the saved ones, with the saved weights.
    bare = GCRFColorizer.from_preset(tiny_preset, preprocessor=None, stage="vae")
    assert bare.preprocessor is None and bare.stage == "vae"
    np.testing.assert_array_equal(bare(l).numpy(), output.numpy())


def test_from_a_backbone_preset_builds_a_task_around_it(tiny_preset, tiny_backbone_preset, photos):
    """keras-hub's `Task.from_preset` of a preset without `task.json`: the task of default
    arguments around the preset's backbone."""
    from layer_testing import run_preset_test
    from tfgcrf.models.loading import load_model

    l, _ = photos
    model, output = run_preset_test(GCRFColorizer, tiny_backbone_preset, l)
    reference = keras.saving.load_model(tiny_preset / "model.keras", compile=False)
    assert model.backbone.get_config() == reference.backbone.get_config()
    for mine, theirs in zip(model.backbone.weights, reference.backbone.weights, strict=True):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(output.numpy(), reference(l).numpy())
    np.testing.assert_array_equal(model.sample(l, 2)[0].numpy(), reference.sample(l, 2)[0].numpy())
    # Default arguments (the tiny task was saved at stage "mdn"): stage "vae", GridConverter(16).
    assert model.stage == "vae" and model.preprocessor.get_config() == reference.preprocessor.get_config()
    assert load_model(tiny_backbone_preset).get_config() == model.get_config()
    # Constructor arguments as for a task preset; a bad one is a one-line error naming the preset.
    bare = GCRFColorizer.from_preset(tiny_backbone_preset, preprocessor=None, stage="hoc", solver="lu")
    assert bare.preprocessor is None and bare.stage == "hoc" and bare.model_config.solver == "lu"
    with pytest.raises(UserError, match=r"^stage must be one of .*, got 'x' \(installed presets: .*\)$"):
        GCRFColorizer.from_preset(tiny_backbone_preset, stage="x")


def test_save_to_preset_round_trip(tmp_path, photos):
    l, _ = photos
    model = _random_model(seed=5)
    folder = model.save_to_preset(tmp_path / "mine")
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metadata.json", "model.keras"]
    loaded = GCRFColorizer.from_preset(folder)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.sample(l, 2)[0].numpy(), model.sample(l, 2)[0].numpy())
    # Written again from another model, the folder holds the new one (no stale config refused).
    other = _random_model(seed=6)
    other.save_to_preset(folder)
    np.testing.assert_array_equal(GCRFColorizer.from_preset(folder).sample(l, 2)[0].numpy(),
                                  other.sample(l, 2)[0].numpy())
