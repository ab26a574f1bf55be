"""The one preprocessing object: a decoded photo -> the model's grid input.

`GridConverter` plays the role of keras-hub's `ImageConverter` for this model: a serializable
Keras layer holding the grid size, used by every path into the model (the data pipeline's crops,
`tfgcrf.Colorizer`, evaluation through it, and the exported SavedModel). The postprocessing path
back to photos is `tfgcrf.fullres.to_photo` (guided chroma upsampling + L-preserving
recombination). Both are TensorFlow ops, so the SavedModel carries them.
"""

import keras

from tfgcrf import fullres


@keras.saving.register_keras_serializable(package="tfgcrf")
class GridConverter(keras.layers.Layer):
    """Decoded sRGB photo -> `(L_full, l_small)`: its lightness and the model's gray input.

    Args:
      image_size: side of the square model grid (the model's `ModelConfig.image_size`).

    Call:
      `rgb` `[H, W, 3]` uint8 (or float in [0, 1]) sRGB, e.g. from `tfgcrf.decode.decode_image`.
      Returns `L_full` `[H, W]` float32 CIE L* in [0, 100] (kept for the recombination) and
      `l_small` `[1, image_size, image_size, 1]` = L / 100 of the photo squeezed to the grid
      (antialiased bilinear resize in RGB, then lightness; `tfgcrf.fullres.prepare`).
    """

    def __init__(self, image_size=64, **kwargs):
        kwargs.setdefault("trainable", False)
        # The color conversions are float32 whatever the global policy (e.g. mixed precision).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.image_size = image_size

    def call(self, rgb):
        return fullres.prepare(rgb, self.image_size)

    def squeeze(self, rgb):
        """`[..., H, W, 3]` photo(s) -> float32 RGB `[..., size, size, 3]` in [0, 1] on the grid
        (the data pipeline's crops take this path; `call` adds the lightness)."""
        return fullres.squeeze(rgb, self.image_size)

    def compute_output_spec(self, rgb):
        size = self.image_size
        return (
            keras.KerasTensor(rgb.shape[:-1], "float32"),
            keras.KerasTensor((1, size, size, 1), "float32"),
        )

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}

    class _Presets:
        # `GridConverter.presets`, as `tfgcrf.models.loading.classproperty` (imported when read:
        # tfgcrf.models imports this module).
        def __get__(self, _, owner):
            from tfgcrf.models.loading import presets

            return presets()

    presets = _Presets()

    @classmethod
    def from_preset(cls, preset):
        """The preprocessor of a preset's task (keras-hub's `ImageConverter.from_preset`), read
        from its config alone (no weights are loaded).

        Args:
          preset: an installed preset's name ("default"), a folder holding `model.keras`, or a
            `.keras` file.

        Raises:
          UserError: one line: unknown preset, broken files, or a task saved without one.
        """
        from tfgcrf.models.loading import PresetLoader

        return PresetLoader(preset).load_preprocessor()
