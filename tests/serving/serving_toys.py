"""Toy SavedModels shaped like the serving contract, for the server tests (seconds to export)."""

import os

import tensorflow as tf


class Toy(tf.Module):
    """`sample` (bytes in, `_bytes` + float outputs), `double` and `spin` (CPU work on demand)."""

    def __init__(self, offset):
        super().__init__()
        self.offset = tf.Variable(float(offset))

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="image_bytes"),
        tf.TensorSpec([None], tf.int64, name="seed"),
    ])
    def sample(self, image_bytes, seed):
        tf.debugging.assert_non_negative(seed, message="seed must be >= 0")
        doubled = tf.stack([image_bytes, tf.strings.join([image_bytes, image_bytes])], axis=1)
        scores = tf.cast(tf.stack([seed, seed + 1], axis=1), tf.float32) / 10.0 + self.offset
        return {"colorized_bytes": doubled, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2.0 * x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="iterations")])
    def spin(self, iterations):
        """`iterations[0]` 128x128 matrix products in a loop: CPU work that only cancellation stops."""
        def body(i, x):
            return i + 1, tf.tanh(tf.matmul(x, x) * 0.01)

        _, x = tf.while_loop(lambda i, x: i < iterations[0], body,
                             (tf.constant(0, tf.int64), tf.ones([128, 128])))
        return {"total": tf.fill(tf.shape(iterations), tf.reduce_sum(x))}


def export_toy(base, version, offset):
    """Writes `Toy(offset)` as `base/version` (signatures sample = serving_default, double, spin)."""
    toy = Toy(offset)
    signatures = {"serving_default": toy.sample, "sample": toy.sample, "double": toy.double,
                  "spin": toy.spin}
    path = os.path.join(base, str(version))
    tf.saved_model.save(toy, path, signatures=signatures)
    return path


class Accumulating(tf.Module):
    """`accumulate`: a sum of three 4096x4096 tensors, the third computed after a check of the
    request. Grappler's memory optimizer makes the sum a per-step TemporaryVariable (its static
    memory estimate is above 80 % of the CPU device's 256 MB), alive when the check fails."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="scale")])
    def accumulate(self, scale):
        x = tf.fill([4096, 4096], scale[0])
        a, b = 2.0 * x, 3.0 * x
        check = tf.debugging.Assert(tf.reduce_all(scale >= 0.0) & (tf.reduce_sum(b) >= 0.0),
                                    ["scale must be >= 0"])
        with tf.control_dependencies([check]):
            c = 4.0 * x
        return {"total": tf.fill(tf.shape(scale), tf.reduce_sum(a + b + c))}


def export_accumulating_toy(base, version):
    """Writes `Accumulating()` as `base/version` (signature accumulate = serving_default)."""
    toy = Accumulating()
    path = os.path.join(base, str(version))
    tf.saved_model.save(toy, path, signatures={"serving_default": toy.accumulate,
                                               "accumulate": toy.accumulate})
    return path
