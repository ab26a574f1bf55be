"""The three training stages' loss terms (pure TensorFlow functions of tensors and knobs).

Read by `GCRFColorizer` (the task); the knobs come from `TrainingConfig`. Sums are over pixels and
channels per image, then averaged over the batch.
"""

import tensorflow as tf


def per_image_mean(values):
    """Batch mean of the per-image sum of `values [B, ...]`."""
    return tf.reduce_mean(tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=-1))


def color_nll(predicted, target, recon_sigma, pixel_weights=None):
    """Gaussian NLL of p(x | z, g) up to a constant: batch mean of the per-image sum of
    w ||predicted - target||^2 / (2 recon_sigma^2).

    Args:
        predicted, target: `[B, ..., 2]` chroma (ab / 110 units).
        recon_sigma: the likelihood's standard deviation (`TrainingConfig.recon_sigma`).
        pixel_weights: optional class-rebalancing weights broadcastable to `predicted`.
    """
    squared = tf.square(predicted - target)
    if pixel_weights is not None:
        squared = pixel_weights * squared
    return per_image_mean(squared) / (2.0 * recon_sigma**2)


def class_nll(logits, labels, pixel_weights=None):
    """Batch mean of the per-image sum of w * cross-entropy of the true colors' classes.

    The classification head's likelihood p(x | z, g) (Zhang et al. 2016, Eq. 2 with hard labels:
    each true color's class is its nearest in-gamut bin).

    Args:
        logits: `[B, H, W, Q]`.
        labels: `[B, H, W]` int class indices.
        pixel_weights: optional `[B, H, W]` weights.
    """
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if pixel_weights is not None:
        nll = pixel_weights * nll
    return per_image_mean(nll)


def gaussian_kl(mean, log_var):
    """Batch mean of KL(N(mean, exp(log_var)) || N(0, I)), each `[B, Z]`."""
    return tf.reduce_mean(
        0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=-1)
    )


def kl_weight(weight, warmup_steps, step=None):
    """The KL weight after `step` optimizer steps: linear warm-up to `weight` over `warmup_steps`
    steps (the step being taken counts: step 0 gives weight / warmup_steps). `step` None or no
    warm-up gives `weight`."""
    if not warmup_steps or step is None:
        return weight
    progress = tf.cast(step + 1, tf.float32) / warmup_steps
    return weight * tf.minimum(progress, 1.0)
