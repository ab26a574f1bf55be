"""`op_error_message`: what a client reads when a served signature's assertion fails."""

import pytest
import tensorflow as tf

from tfgcrf.export import signatures
from tfgcrf.serving.repository import op_error_message


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
