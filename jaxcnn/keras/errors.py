"""The error every Keras importer raises for a file or model that does not fit (own module, so
that the readers, the spec builder and the converters share it without importing each other)."""

from __future__ import annotations


class WeightConversionError(ValueError):
    """A Keras weight file does not fit the requested architecture (names the file and layer)."""
