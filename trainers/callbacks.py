"""Keras callbacks of the three-stage training: the HOC reveal schedule and image previews."""

import keras
import tensorflow as tf

from tfgcrf import color


def hoc_schedule(epoch, schedule):
    """Fraction of unary pixels revealed to the G-CRF at `epoch` (0-based).

    Args:
        epoch: the epoch index.
        schedule: (first epoch, fraction) pairs with increasing epochs, starting at epoch 0,
            e.g. the paper's ((0, 1.0), (2, 0.75), (4, 0.5), (6, 0.25), (8, 0.1)).
    """
    fraction = schedule[0][1]
    for first_epoch, value in schedule:
        if epoch >= first_epoch:
            fraction = value
    return float(fraction)


class HocSchedule(keras.callbacks.Callback):
    """Sets `model.reveal_fraction` from `hoc_schedule` at the start of every epoch.

    Driven by the epoch index, so a run resumed by `BackupAndRestore` continues at the right level.

    Args:
        schedule: (first epoch, fraction) pairs, see `hoc_schedule`.
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = tuple(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reveal_fraction.assign(hoc_schedule(epoch, self.schedule))


class PreviewImages(keras.callbacks.Callback):
    """Writes TensorBoard image summaries of what the current stage produces, every epoch.

    Each summary image is one row per preview photo: ground truth, then
      * vae: the VAE reconstruction (decoder at the posterior mean) and two samples with z drawn
        from the prior N(0, I);
      * hoc: the unary colors and the G-CRF restoration at the current reveal fraction;
      * mdn: the top three samples of the mixture, through the G-CRF.

    Args:
        log_dir: TensorBoard folder of the stage.
        gray: `[N, H, W, 1]` preview gray images.
        ab: `[N, H, W, 2]` their true chroma.
    """

    def __init__(self, log_dir, gray, ab):
        super().__init__()
        self.log_dir = str(log_dir)
        self.gray = tf.convert_to_tensor(gray)
        self.ab = tf.convert_to_tensor(ab)
        self._writer = None

    def panels(self):
        """The chroma fields shown next to the ground truth, each `[N, H, W, 2]`."""
        model = self.model
        # The training solver: previews must not cost a dense O(P^3) solve per image each epoch.
        solver = model.model_config.train_solver
        if model.stage == "vae":
            # The MDN is not trained yet: samples draw z from the VAE prior N(0, I).
            shape = [len(self.gray), model.model_config.latent_dim]
            prior = [tf.random.stateless_normal(shape, seed=[seed, 0]) for seed in (1, 2)]
            return [model.reconstruct(self.gray, self.ab, use_gcrf=False)] + [
                model.unary(self.gray, z) for z in prior
            ]
        if model.stage == "hoc":
            fraction = model.reveal_fraction
            return [
                model.reconstruct(self.gray, self.ab, use_gcrf=False),
                model.reconstruct(self.gray, self.ab, reveal_fraction=fraction, solver=solver),
            ]
        count = min(3, model.model_config.num_components)
        samples, _ = model.sample(self.gray, count, mode="top", solver=solver)
        return tf.unstack(samples, axis=1)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        fields = [self.ab, *self.panels()]
        rows = tf.concat([color.model_to_rgb(self.gray, field) for field in fields], axis=2)
        with self._writer.as_default():
            tag = f"{self.model.stage}/previews"
            tf.summary.image(tag, rows, step=epoch, max_outputs=len(rows))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
