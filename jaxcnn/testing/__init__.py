"""Test helpers for users' own models (imported lazily: they need Keras)."""

from jaxcnn.testing.keras import assert_keras_parity  # noqa: F401
