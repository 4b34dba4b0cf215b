"""The celsius TensorFlow graph: Fahrenheit to Celsius as a SavedModel for TF Serving."""

from celsius_model.graph import FahrenheitToCelsius, reference_celsius
from celsius_model.export import export

__all__ = ["FahrenheitToCelsius", "export", "reference_celsius"]
