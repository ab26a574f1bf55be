"""The loaded version: what a client reads when a served signature's assertion fails
(`op_error_message`), and a refused request leaves the signature as it was."""

import numpy as np
import pytest
import tensorflow as tf

from runtime_graphs import runtime_ops
from serving_toys import export_accumulating_toy
from tfgcrf.export import signatures
from tfgcrf.serving import ServingError
from tfgcrf.serving.repository import Servable, op_error_message


def _assertion_error(condition, message, *values):
    """The error of the assertion as a served (graph) signature raises it."""
    @tf.function
    def signature():
        signatures._check(condition, message, *values)
        return tf.constant(0)

    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        signature()
    return raised.value


def test_an_assertion_reads_as_its_message_and_values():
    error = _assertion_error(tf.constant([False]),
                             "points must be (x, y) relative to the image width/height, in [0, 1]; got",
                             tf.constant([[1.5, 0.4]]))
    assert op_error_message(error) == (
        "points must be (x, y) relative to the image width/height, in [0, 1]; got [1.5 0.4]")


def test_every_batch_size_is_shown():
    """Assert showed 3 values per tensor, which hid the input whose batch size differs."""
    sizes = tf.constant([1, 1, 1, 1, 1, 2])
    error = _assertion_error(tf.equal(sizes, sizes[0]),
                             "all inputs must have the same batch size (first dimension); got", sizes)
    assert op_error_message(error) == (
        "all inputs must have the same batch size (first dimension); got 1 1 1 1 1 2")


@pytest.mark.parametrize("message, expected", [
    # A loaded graph's error: node locations around the assertion are dropped.
    ("Graph execution error:\n\nDetected at node Assert/Assert defined at (most recent call last):\n"
     "<stack traces unavailable>\nassertion failed: [num_points must be >= 0; got] [-1]\n"
     "\t [[{{node Assert/Assert}}]]", "num_points must be >= 0; got -1"),
    ("assertion failed: [an edit needs at least one color point]",
     "an edit needs at least one color point"),
    ("Input to reshape is a tensor with 3 values, but the requested shape has 4",
     "Input to reshape is a tensor with 3 values, but the requested shape has 4"),
])
def test_messages(message, expected):
    assert op_error_message(tf.errors.InvalidArgumentError(None, None, message)) == expected


def test_a_refused_request_leaves_no_temporary_variable_behind(tmp_path):
    """Grappler's memory optimizer turns the toy's sum into a per-step TemporaryVariable; a call
    refused while it lived left it behind, and every later call of a plain eagerly loaded
    signature failed with ALREADY_EXISTS (session 13: the default preset's edit, HTTP 409 from
    `tfgcrf serve` until restart). The server runs signatures without that rewrite."""
    path = export_accumulating_toy(str(tmp_path), 1)
    plain = tf.saved_model.load(path).signatures["accumulate"]
    assert runtime_ops(plain, scale=tf.constant([1.0]))["TemporaryVariable"] == 1  # the toy's risk
    servable = Servable(1, path)
    good, refused = np.array([1.0], np.float32), np.array([-1.0], np.float32)
    expected = servable.predict("accumulate", {"scale": good})["total"]
    assert expected.tolist() == [9.0 * 4096 * 4096]
    for _ in range(3):
        with pytest.raises(ServingError, match="scale must be >= 0"):
            servable.predict("accumulate", {"scale": refused})
        assert servable.predict("accumulate", {"scale": good})["total"].tolist() == expected.tolist()
