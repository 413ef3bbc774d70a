"""Moved: `--set` parsing lives in jaxcnn.config.overrides, the validators in jaxcnn.config.checks.

This module keeps the old import path working.
"""

from jaxcnn.config.checks import non_negative_int, positive_int  # noqa: F401
from jaxcnn.config.overrides import (  # noqa: F401
    apply_overrides, convert, convert_field, field_types, parse_assignment,
)
