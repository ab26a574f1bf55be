import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


import collections  # noqa: E402

import pytest  # noqa: E402

SmokeRun = collections.namedtuple("SmokeRun", ["run_dir", "model", "config"])

# The tiny model of the session fixtures: 16x16 grid, a few thousand parameters.
TINY_MODEL = dict(
    image_size=16, latent_dim=8, embed_dim=8, num_components=4, trunk_widths=(8, 16),
    encoder_widths=(8, 16), decoder_widths=(16, 8), structure_width=8, mdn_hidden=16,
)
# Its training settings: the KL weight warms up within the few steps of a test run.
TINY_TRAINING = dict(kl_warmup_steps=4)


def tiny_experiment(epochs=1, steps_per_epoch=4):
    """configs/smoke.yaml shrunk to the tiny model and a few steps per stage (seconds per stage)."""
    import dataclasses

    from tfgcrf.config import ModelConfig, TrainingConfig, load_config

    config = load_config("smoke")
    stages = {
        name: dataclasses.replace(stage, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                  validation_steps=1)
        for name, stage in config.stages.items()
    }
    data = dataclasses.replace(config.data, source=os.path.join(os.path.dirname(__file__),
                                                                 "data", "photos"))
    return dataclasses.replace(config, model=ModelConfig(**TINY_MODEL),
                               training=TrainingConfig(**TINY_TRAINING), data=data, stages=stages)


@pytest.fixture(scope="session", name="tiny_experiment")
def tiny_experiment_fixture():
    """`tiny_experiment(epochs=1, steps_per_epoch=4)` -> a tiny `ExperimentConfig` on the photos."""
    return tiny_experiment


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The tiny model trained through all three stages on tests/data/photos, once per session.

    Runs the real trainer (`tfgcrf.trainers.training.train`): `run_dir` holds the stage
    checkpoints, TensorBoard logs and `model.keras`; `model` is the trained `GCRFColorizer`
    (stage "mdn"); `config` the `ExperimentConfig`.
    """
    from tfgcrf.trainers.training import train

    config = tiny_experiment()
    run_dir = tmp_path_factory.mktemp("smoke_run")
    model = train(config, run_dir, verbose=0, log=lambda message: None)
    return SmokeRun(run_dir, model, config)


@pytest.fixture(scope="session")
def smoke_model(smoke_run):
    """The trained tiny `GCRFColorizer` of `smoke_run` (16x16 model grid, 4 components)."""
    return smoke_run.model


ExportedModel = collections.namedtuple("ExportedModel", ["base", "path", "model", "num_samples"])


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, smoke_run):
    """`smoke_run`'s model.keras exported once per session by `tfgcrf export` as `<base>/tfgcrf/1`.

    `model` is the in-process trained model, for comparisons with the Python API.
    """
    from tfgcrf import cli

    base = tmp_path_factory.mktemp("models") / "tfgcrf"
    num_samples = 3
    code = cli.main(["export", "--model", str(smoke_run.run_dir / "model.keras"),
                     "--out", str(base / "1"), "--num-samples", str(num_samples)])
    assert code == 0, "tfgcrf export failed"
    return ExportedModel(str(base), str(base / "1"), smoke_run.model, num_samples)


@pytest.fixture(scope="session", name="numpy_gcrf")
def numpy_gcrf_fixture():
    """`numpy_gcrf(similarity, unary, weights, ridge)`: the dense float64 G-CRF solve."""
    from tfgcrf.layers.gcrf_reference import numpy_gcrf

    return numpy_gcrf


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory, tiny_experiment):
    """A preset folder written by `save_to_preset` from a tiny `GCRFColorizer` whose zero-initialized
    output layers are randomized (non-trivial colors and scores), once per session; no training."""
    import keras
    import tensorflow as tf

    from tfgcrf.config import ModelConfig
    from tfgcrf.models import GCRFColorizer
    from tfgcrf.models.loading import save_to_preset

    keras.utils.set_random_seed(11)
    model = GCRFColorizer(ModelConfig(**TINY_MODEL), stage="mdn")
    kernel, bias = model.backbone.decoder.top_out.kernel, model.backbone.mdn.logits_out.bias
    kernel.assign(0.3 * tf.random.stateless_normal(kernel.shape, seed=[11, 1]))
    bias.assign(tf.random.stateless_normal(bias.shape, seed=[11, 2]))
    return save_to_preset(model, tmp_path_factory.mktemp("presets") / "tiny", tiny_experiment(),
                          {"note": "tiny test preset"})


@pytest.fixture(scope="session")
def tiny_backbone_preset(tmp_path_factory, tiny_preset, tiny_experiment):
    """A backbone preset (`GCRFBackbone.save_to_preset`) of `tiny_preset`'s backbone, same weights."""
    from tfgcrf.models import GCRFBackbone

    backbone = GCRFBackbone.from_preset(tiny_preset)
    return backbone.save_to_preset(tmp_path_factory.mktemp("presets") / "tiny_backbone", tiny_experiment(),
                                   {"note": "tiny backbone preset"})
