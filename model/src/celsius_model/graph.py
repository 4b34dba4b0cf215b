"""The computation, as a TensorFlow graph and as its plain-float reference."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"
INPUT = "fahrenheit"
OUTPUT = "celsius"


class FahrenheitToCelsius(tf.Module):
    """celsius = (fahrenheit - 32) * 5 / 9 on float64 vectors.

    Three separate IEEE double operations in exactly this order, like the C++ service's
    native path (`server/src/convert.hpp`), so both give bit-identical results for every
    finite input.

    The constants are non-trainable variables, not tf.constant: Grappler's constant folding
    (which TF Serving runs when it loads a model) rewrites `x * 5 / 9` with constant 5 and 9
    into `x * (5 / 9)`, which rounds differently for about a third of all inputs (measured by
    tests/test_export.py). Variables are opaque to constant folding.
    """

    def __init__(self) -> None:
        super().__init__(name="fahrenheit_to_celsius")
        self.offset = tf.Variable(32.0, dtype=tf.float64, trainable=False, name="offset")
        self.numerator = tf.Variable(5.0, dtype=tf.float64, trainable=False, name="numerator")
        self.denominator = tf.Variable(9.0, dtype=tf.float64, trainable=False, name="denominator")

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.float64, name=INPUT)])
    def convert(self, fahrenheit: tf.Tensor) -> dict[str, tf.Tensor]:
        celsius = tf.math.divide(tf.math.multiply(tf.math.subtract(fahrenheit, self.offset), self.numerator),
                                 self.denominator)
        return {OUTPUT: tf.identity(celsius, name=OUTPUT)}


def reference_celsius(fahrenheit: np.ndarray) -> np.ndarray:
    """The same expression in NumPy float64 (IEEE double, no fused operations)."""
    f = np.asarray(fahrenheit, dtype=np.float64)
    return ((f - 32.0) * 5.0) / 9.0
