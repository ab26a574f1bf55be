"""The one preprocessing object (`GridConverter`) and the one postprocessing path (`to_photo`)."""

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf
from layer_testing import run_layer_test
from PIL import Image

from tfgcrf import fullres
from tfgcrf.preprocessing import GridConverter


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((60, 44), Image.LANCZOS))


def test_grid_converter_layer(photo):
    lightness, l_small = run_layer_test(
        GridConverter, {"image_size": 16}, tf.constant(photo), expected_output_shapes=[(44, 60), (1, 16, 16, 1)]
    )
    reference = skimage.color.rgb2lab(photo)[..., 0]
    np.testing.assert_allclose(lightness.numpy(), reference, atol=5e-4)
    # The grid input: the photo squeezed to 16 x 16 in RGB (antialiased), then its L / 100.
    squeezed = tf.image.resize(photo[None].astype(np.float32) / 255.0, (16, 16), antialias=True).numpy()
    expected = skimage.color.rgb2lab(np.clip(squeezed[0], 0, 1))[..., 0] / 100.0
    np.testing.assert_allclose(l_small.numpy()[0, ..., 0], expected, atol=5e-5)
    with pytest.raises(ValueError, match="positive integer"):
        GridConverter(image_size=0)


def test_the_data_pipeline_crops_through_the_converter(photo):
    from tfgcrf.data.pipeline import evaluation_crop

    side = min(photo.shape[:2])
    left = (photo.shape[1] - side) // 2
    expected = GridConverter(16).squeeze(photo[:, left : left + side])
    np.testing.assert_array_equal(evaluation_crop(photo, 16).numpy(), expected.numpy())


def test_to_photo_is_upsampling_then_recombination(photo):
    lightness, _ = GridConverter(8)(photo)
    ab = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 8, 8, 2)).astype(np.float32)
    out = fullres.to_photo(ab, lightness).numpy()
    assert out.shape == (2, 44, 60, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, fullres.compose(lightness, fullres.upsample_chroma(ab, lightness)).numpy())
    # The output keeps the photo's lightness (L-preserving recombination).
    assert np.abs(skimage.color.rgb2lab(out[0])[..., 0] - lightness.numpy()).mean() < 0.5


def test_from_preset_reads_the_task_config(tiny_preset, tiny_backbone_preset, tmp_path):
    from layer_testing import run_preset_test

    from tfgcrf.errors import UserError
    from tfgcrf.models import GCRFColorizer
    from tfgcrf.models.loading import save_to_preset

    photo = tf.constant(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    converter, (lightness, l_small) = run_preset_test(GridConverter, tiny_preset, photo)
    assert converter.get_config() == GCRFColorizer.from_preset(tiny_preset).preprocessor.get_config()
    expected = GridConverter(16)(photo)
    np.testing.assert_array_equal(l_small.numpy(), expected[1].numpy())
    np.testing.assert_array_equal(lightness.numpy(), expected[0].numpy())
    assert GridConverter.from_preset("default").image_size == 64  # the installed preset's grid
    # A backbone preset has no preprocessor: the task's default for its grid, as for a new task.
    assert GridConverter.from_preset(tiny_backbone_preset).get_config() == converter.get_config()
    bare = save_to_preset(GCRFColorizer.from_preset(tiny_preset, preprocessor=None), tmp_path / "bare")
    with pytest.raises(UserError, match=r"bare/model.keras was saved without a preprocessor \(installed presets: "):
        GridConverter.from_preset(bare)
