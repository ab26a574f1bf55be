"""The three training stages' loss terms (pure TensorFlow functions of tensors and knobs).

Read by `GCRFColorizer` (the task); the knobs come from `TrainingConfig`. Sums are over pixels and
channels per image, then averaged over the batch.
"""

import tensorflow as tf


def per_image_sum(values):
    """Per-image sum `[B]` of `values [B, ...]`."""
    return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=-1)


def per_image_mean(values):
    """Batch mean of the per-image sum of `values [B, ...]`."""
    return tf.reduce_mean(per_image_sum(values))


def color_nll(predicted, target, recon_sigma, pixel_weights=None, per_image=False):
    """Gaussian NLL of p(x | z, g) up to a constant: batch mean of the per-image sum of
    w ||predicted - target||^2 / (2 recon_sigma^2).

    Args:
        predicted, target: `[B, ..., 2]` chroma (ab / 110 units).
        recon_sigma: the likelihood's standard deviation (`TrainingConfig.recon_sigma`).
        pixel_weights: optional class-rebalancing weights broadcastable to `predicted`.
        per_image: return the per-image values `[B]` instead of their batch mean.
    """
    squared = tf.square(predicted - target)
    if pixel_weights is not None:
        squared = pixel_weights * squared
    reduce = per_image_sum if per_image else per_image_mean
    return reduce(squared) / (2.0 * recon_sigma**2)


def class_nll(logits, labels, pixel_weights=None, per_image=False):
    """Batch mean of the per-image sum of w * cross-entropy of the true colors' classes.

    The classification head's likelihood p(x | z, g) (Zhang et al. 2016, Eq. 2): with hard labels
    each true color's class is its nearest in-gamut bin; soft labels are a distribution over the
    bins (`soft_color_labels`).

    Args:
        logits: `[B, H, W, Q]`.
        labels: `[B, H, W]` int class indices, or `[B, H, W, Q]` float class probabilities.
        pixel_weights: optional `[B, H, W]` weights.
        per_image: return the per-image values `[B]` instead of their batch mean.
    """
    if labels.dtype.is_floating:
        nll = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    else:
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if pixel_weights is not None:
        nll = pixel_weights * nll
    return per_image_sum(nll) if per_image else per_image_mean(nll)


def soft_color_labels(ab, centers, sigma, neighbors=5):
    """Zhang et al. 2016's soft encoding (Sec. 2.1) of true colors over the classification bins.

    Each color's `neighbors` nearest bin centers get weights exp(-d^2 / (2 sigma^2)) (d: distance
    in the same units as `ab` and `centers`), normalized to sum to 1; all other bins get 0.

    Args:
        ab: `[B, H, W, 2]` true chroma.
        centers: `[Q, 2]` bin centers, Q >= `neighbors`.
        sigma: Gaussian width (> 0), units of `ab`.
        neighbors: how many nearest bins share the probability (5 in the paper).

    Returns:
        `[B, H, W, Q]` float32 class probabilities.
    """
    ab = tf.cast(ab, tf.float32)
    centers = tf.cast(centers, tf.float32)
    squared = tf.reduce_sum(tf.square(ab[..., None, :] - centers), axis=-1)  # [B, H, W, Q]
    # The k-th smallest squared distance per pixel: bins at or below it are the neighbours.
    kth = -tf.math.top_k(-squared, k=neighbors).values[..., -1:]
    nearest = squared <= kth
    # Shifting by the smallest distance keeps exp() away from underflow for far-off colors.
    shifted = squared - tf.reduce_min(squared, axis=-1, keepdims=True)
    weights = tf.where(nearest, tf.exp(-shifted / (2.0 * sigma**2)), 0.0)
    return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


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


def multiple_choice_loss(losses, logits):
    """Multiple-choice learning over M hypotheses (Guzman-Rivera et al. 2012): per example, the
    loss of the best hypothesis plus -log of its mixture weight.

    Only the winner's loss is trained, so each hypothesis specializes on the examples it already
    explains best, and the weights learn which one that is from the gray image alone.

    Args:
        losses: `[B, M]` per-example loss of each hypothesis.
        logits: `[B, M]` mixture logits.

    Returns:
        `(loss [B], winner [B] int)`.
    """
    winner = tf.argmin(tf.stop_gradient(losses), axis=-1, output_type=tf.int32)
    best = tf.gather(losses, winner, batch_dims=1)
    log_weight = tf.gather(tf.nn.log_softmax(logits, axis=-1), winner, batch_dims=1)
    return best - log_weight, winner
