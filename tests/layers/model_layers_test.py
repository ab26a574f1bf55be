"""The model's Keras layers: shapes, math vs numpy references, get_config, .keras round trips."""

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf
from layer_testing import grid_photos, saving_round_trip

from tfgcrf.layers.color_encoder import LOG_VAR_RANGE, ColorEncoder
from tfgcrf.layers.gray_trunk import GrayTrunk
from tfgcrf.layers.mixture_density import MixtureDensityHead, mdn_loss, mixture_distribution
from tfgcrf.layers.structure_branch import StructureBranch, similarity_with_gradient
from tfgcrf.layers.unary_decoder import UnaryDecoder

SIZE = 16
WIDTHS = (4, 8, 8)


@pytest.fixture(scope="module")
def gray_batch():
    """Three real photos (fixture PNGs) on a 16x16 grid: l [3, 16, 16, 1], ab [3, 16, 16, 2]."""
    return grid_photos(SIZE, slice(0, 3))


def _features(l):
    return GrayTrunk(WIDTHS)(l)


def _roundtrip(model, inputs, tmp_path):
    """Saves a functional model as .keras, reloads it and checks identical outputs and config."""
    return saving_round_trip(model, inputs, tmp_path)


def test_gray_trunk_scales_and_roundtrip(gray_batch, tmp_path):
    l, _ = gray_batch
    trunk = GrayTrunk(WIDTHS, name="trunk")
    features = trunk(l)
    assert [tuple(f.shape) for f in features] == [(3, 16, 16, 4), (3, 8, 8, 8), (3, 4, 4, 8)]
    assert trunk.compute_output_shape((3, 16, 16, 1)) == [tuple(f.shape) for f in features]
    assert all(float(tf.reduce_min(f)) >= 0.0 for f in features)  # ReLU features
    inputs = keras.Input((SIZE, SIZE, 1))
    _roundtrip(keras.Model(inputs, trunk(inputs)), l, tmp_path)


def test_color_encoder_gaussian_parameters(gray_batch, tmp_path):
    l, ab = gray_batch
    encoder = ColorEncoder(latent_dim=5, widths=(4, 8))
    mean, log_var = encoder(l, ab)
    assert mean.shape == (3, 5) and log_var.shape == (3, 5)
    low, high = LOG_VAR_RANGE
    assert np.all(log_var.numpy() >= low) and np.all(log_var.numpy() <= high)
    # q(z | x, g) depends on the colors, not only on the gray image.
    other_mean, _ = encoder(l, -ab)
    assert not np.allclose(mean.numpy(), other_mean.numpy())
    gray, chroma = keras.Input((SIZE, SIZE, 1)), keras.Input((SIZE, SIZE, 2))
    _roundtrip(keras.Model([gray, chroma], encoder(gray, chroma)), [l, ab], tmp_path)


def test_unary_decoder_starts_gray_and_uses_z(gray_batch, tmp_path):
    l, _ = gray_batch
    features = _features(l)
    decoder = UnaryDecoder(grid_size=SIZE, widths=(8, 8, 4))
    z = tf.random.stateless_normal([3, 6], seed=[1, 2])
    alpha = decoder(z, features)
    assert alpha.shape == (3, SIZE, SIZE, 2)
    # The output layer starts at zero: neutral gray chroma before training.
    np.testing.assert_array_equal(alpha.numpy(), 0.0)
    assert decoder.top_layers == [decoder.top_conv, decoder.top_out]
    decoder.top_out.kernel.assign(tf.random.stateless_normal(decoder.top_out.kernel.shape, [3, 4]))
    alpha = decoder(z, features).numpy()
    assert np.all(np.abs(alpha) < 1.0) and np.abs(alpha).max() > 0.01
    assert not np.allclose(alpha, decoder(z + 1.0, features).numpy())
    inputs = [keras.Input((6,))] + [keras.Input(tuple(f.shape[1:])) for f in features]
    model = keras.Model(inputs, decoder(inputs[0], inputs[1:]))
    _roundtrip(model, [z, *features], tmp_path)


def test_structure_branch_similarity_matches_numpy(gray_batch, tmp_path):
    l, _ = gray_batch
    features = _features(l)
    branch = StructureBranch(embed_dim=6, width=8, num_scales=len(WIDTHS), initial_temperature=4.0)
    similarity = branch(l, features).numpy()
    pixels = SIZE * SIZE
    assert similarity.shape == (3, pixels, pixels)
    embeddings = branch.embed(l, features).numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)
    # Reference: row softmax of tau * E E^T over the other pixels (the diagonal excluded).
    logits = 4.0 * embeddings @ embeddings.transpose(0, 2, 1)
    logits[:, np.arange(pixels), np.arange(pixels)] = -np.inf
    expected = np.exp(logits - logits.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(similarity, expected, atol=1e-6)
    np.testing.assert_allclose(similarity.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.diagonal(similarity, axis1=1, axis2=2) == 0.0)
    inputs = [keras.Input((SIZE, SIZE, 1))] + [keras.Input(tuple(f.shape[1:])) for f in features]
    model = keras.Model(inputs, branch(inputs[0], inputs[1:]))
    loaded = _roundtrip(model, [l, *features], tmp_path)
    assert float(loaded.layers[-1].log_temperature.numpy()) == pytest.approx(np.log(4.0))



def test_similarity_gradient_matches_float64_finite_differences():
    """`similarity_with_gradient`: S and log Z vs numpy, its analytic gradients (E, log tau, with
    a loss on S and on log Z) vs central differences in float64 and vs TF autodiff of the softmax."""
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(2, 7, 3))
    embeddings /= np.linalg.norm(embeddings, axis=-1, keepdims=True)
    log_tau = np.log(3.0)
    weight_s, weight_z = rng.normal(size=(2, 7, 7)), rng.normal(size=(2, 7))

    def numpy_loss(e, log_t):
        logits = np.exp(log_t) * e @ e.transpose(0, 2, 1)
        logits[:, np.arange(7), np.arange(7)] = -np.inf
        log_z = scipy.special.logsumexp(logits, axis=-1)
        return np.exp(logits - log_z[..., None]), log_z

    e, t = tf.constant(embeddings), tf.constant(log_tau, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([e, t])
        similarity, log_z = similarity_with_gradient(e, t)
        loss = tf.reduce_sum(weight_s * similarity) + tf.reduce_sum(weight_z * log_z)
        logits = tf.exp(t) * tf.linalg.matmul(e, e, adjoint_b=True) - 1e9 * tf.eye(7, dtype=e.dtype)
        autodiff_loss = (tf.reduce_sum(weight_s * tf.nn.softmax(logits, axis=-1))
                         + tf.reduce_sum(weight_z * tf.reduce_logsumexp(logits, axis=-1)))
    expected_s, expected_z = numpy_loss(embeddings, log_tau)
    np.testing.assert_allclose(similarity, expected_s, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(log_z, expected_z, rtol=1e-12)
    d_e, d_t = tape.gradient(loss, [e, t])
    for analytic, autodiff in zip((d_e, d_t), tape.gradient(autodiff_loss, [e, t])):
        np.testing.assert_allclose(analytic, autodiff, rtol=1e-10, atol=1e-12)

    def scalar(e, log_t):
        s, z = numpy_loss(e, log_t)
        return np.sum(weight_s * s) + np.sum(weight_z * z)

    step = 1e-6
    for index in [(0, 0, 0), (0, 3, 1), (1, 6, 2), (1, 2, 0)]:
        delta = np.zeros_like(embeddings)
        delta[index] = step
        numerical = (scalar(embeddings + delta, log_tau) - scalar(embeddings - delta, log_tau))
        assert d_e.numpy()[index] == pytest.approx(numerical / (2 * step), rel=1e-6, abs=1e-9)
    numerical = (scalar(embeddings, log_tau + step) - scalar(embeddings, log_tau - step)) / (2 * step)
    assert float(d_t) == pytest.approx(numerical, rel=1e-6)

def test_mixture_head_distribution_and_roundtrip(gray_batch, tmp_path):
    l, _ = gray_batch
    features = _features(l)
    head = MixtureDensityHead(latent_dim=5, num_components=3, sigma=0.2, hidden=16)
    logits, means = head(features)
    assert logits.shape == (3, 3) and means.shape == (3, 3, 5)
    z = tf.random.stateless_normal([3, 5], seed=[5, 6])
    log_prob = head.distribution(logits, means).log_prob(z).numpy()
    expected = -_numpy_mixture_nll(z.numpy(), logits.numpy(), means.numpy(), 0.2)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    inputs = [keras.Input(tuple(f.shape[1:])) for f in features]
    _roundtrip(keras.Model(inputs, head(inputs)), features, tmp_path)


def _numpy_mixture_nll(z, logits, means, sigma):
    z, logits, means = (np.asarray(a, np.float64) for a in (z, logits, means))
    log_pi = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    squared = ((z[:, None, :] - means) ** 2).sum(-1)
    dim = z.shape[-1]
    log_normal = -squared / (2 * sigma**2) - dim * np.log(sigma) - 0.5 * dim * np.log(2 * np.pi)
    joint = log_pi + log_normal
    top = joint.max(-1)
    return -(top + np.log(np.exp(joint - top[:, None]).sum(-1)))


def test_mdn_nearest_loss_matches_hand_computation():
    # Two images, three components in 2-D, sigma 0.5.
    z = np.array([[0.9, 1.1], [-2.0, 0.0]], np.float32)
    means = np.array(
        [[[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]], [[-1.0, 0.0], [2.0, 2.0], [-2.5, 0.5]]], np.float32
    )
    logits = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, -0.5]], np.float32)
    loss = mdn_loss(tf.constant(z), tf.constant(logits), tf.constant(means), 0.5).numpy()
    # Image 0: nearest mean is component 1 (distance^2 0.02); log pi_1 = 1 - logsumexp(0, 1, 2).
    log_pi_0 = 1.0 - np.log(np.exp(0.0) + np.exp(1.0) + np.exp(2.0))
    expected_0 = -log_pi_0 + 0.02 / (2 * 0.25)
    # Image 1: distances^2 are 1.0, 20.0 and 0.5 -> component 2.
    log_pi_1 = -0.5 - np.log(np.exp(0.5) + np.exp(0.0) + np.exp(-0.5))
    expected_1 = -log_pi_1 + 0.5 / (2 * 0.25)
    np.testing.assert_allclose(loss, [expected_0, expected_1], rtol=1e-5)
    nll = mdn_loss(tf.constant(z), tf.constant(logits), tf.constant(means), 0.5, kind="nll")
    np.testing.assert_allclose(nll.numpy(), _numpy_mixture_nll(z, logits, means, 0.5), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown MDN loss"):
        mdn_loss(tf.constant(z), tf.constant(logits), tf.constant(means), 0.5, kind="bogus")


def test_mixture_distribution_is_tfp_mixture():
    import tensorflow_probability as tfp

    dist = mixture_distribution(tf.zeros([2, 3]), tf.zeros([2, 3, 4]), 0.1)
    assert isinstance(dist, tfp.distributions.MixtureSameFamily)
    assert dist.batch_shape == (2,) and dist.event_shape == (4,)


def test_mixture_initialized_from_codes_starts_at_their_cluster_centers(gray_batch):
    l, _ = gray_batch
    features = _features(l)
    head = MixtureDensityHead(latent_dim=4, num_components=3, sigma=0.2, hidden=16)
    head(features)
    # Three well separated clusters of 60, 30 and 10 codes around known centers.
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0, 0, 0], [0, -5.0, 0, 0], [0, 0, 0, 5.0]])
    sizes = [60, 30, 10]
    codes = np.concatenate([c + 0.1 * rng.standard_normal((n, 4)) for c, n in zip(centers, sizes)])
    found = head.initialize_from_codes(codes, seed=1, kernel_scale=0.0)
    assert sorted(found.tolist()) == sorted(sizes)
    logits, means = (t.numpy() for t in head(features))
    # With a zero kernel every image gets the centers, weighted by the cluster frequencies.
    for image_means, image_logits in zip(means, logits):
        order = np.argsort([np.argmin(np.linalg.norm(centers - m, axis=1)) for m in image_means])
        np.testing.assert_allclose(image_means[order], centers, atol=0.05)
        weights = np.exp(image_logits) / np.exp(image_logits).sum()
        np.testing.assert_allclose(weights[order], np.array(sizes) / 100, atol=0.01)
    # The nearest loss (paper Eq. 9) of the codes is far lower than from the random start.
    fresh = MixtureDensityHead(latent_dim=4, num_components=3, sigma=0.2, hidden=16)
    z = tf.constant(codes[::10], tf.float32)
    repeat = lambda t: tf.repeat(t[:1], len(z), axis=0)  # noqa: E731
    before = mdn_loss(z, *(repeat(t) for t in fresh(features)), 0.2).numpy().mean()
    after = mdn_loss(z, *(repeat(t) for t in head(features)), 0.2).numpy().mean()
    assert after < 0.01 * before


def test_mixture_initialization_refuses_bad_codes(gray_batch):
    head = MixtureDensityHead(latent_dim=4, num_components=3, sigma=0.2, hidden=16)
    head(_features(gray_batch[0]))
    with pytest.raises(ValueError, match=r"codes must be \[N, 4\]"):
        head.initialize_from_codes(np.zeros((10, 5)))
    with pytest.raises(ValueError, match="need at least 3 codes"):
        head.initialize_from_codes(np.zeros((2, 4)))


@pytest.mark.parametrize("head", ["regression", "classification"])
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16", "bfloat16"])
def test_unary_decoder_output_is_float32_under_a_half_precision_policy(gray_batch, head, policy):
    # The decoder's output is cast in one place, the decoder itself: its callers (sampling,
    # reconstruction, the latent fits of an edit) read float32 alpha whatever the policy.
    from tfgcrf.models.gcrf_backbone import policy_scope

    l, _ = gray_batch
    with policy_scope(policy):  # as the backbone builds them: every sublayer in the policy
        features = GrayTrunk(WIDTHS)(l)
        decoder = UnaryDecoder(grid_size=SIZE, widths=(8, 8, 4), head=head)
    assert decoder.top_out.dtype_policy.name == policy
    z = tf.random.stateless_normal([3, 6], seed=[1, 2])
    decoder(z, features)  # built
    decoder.top_out.kernel.assign(tf.random.stateless_normal(decoder.top_out.kernel.shape, [3, 4]))
    alpha = decoder(z, features)
    half = decoder.compute_dtype
    assert half in ("bfloat16", "float16")
    assert keras.backend.standardize_dtype(alpha.dtype) == "float32" and alpha.shape == (3, SIZE, SIZE, 2)
    assert keras.backend.standardize_dtype(decoder.head_output(z, features).dtype) == half
    if head == "regression":  # the half-precision top layer's values, only widened
        np.testing.assert_array_equal(
            alpha.numpy(), tf.cast(decoder.head_output(z, features), tf.float32).numpy())
    assert np.all(np.isfinite(alpha.numpy())) and np.abs(alpha.numpy()).max() > 0.01
    inputs = [keras.Input((6,))] + [keras.Input(tuple(f.shape[1:])) for f in features]
    symbolic = decoder(inputs[0], inputs[1:])
    assert keras.backend.standardize_dtype(symbolic.dtype) == "float32"
