"""The lambdacov layer: coverage.py for the target runtime plus the coverage_wrapper runtime.

``build_layer`` writes a reproducible layer zip; its result is a frozen
``LayerBuild`` that the CLI renders and that publishing reads.
"""

from __future__ import annotations

from lambdacov.layer.build import (
    FORMATS,
    MAX_UNZIPPED_BYTES,
    MAX_ZIP_BYTES,
    LayerBuild,
    build_layer,
    default_output_name,
)
from lambdacov.layer.targets import SUPPORTED_ARCHS, SUPPORTED_PYTHONS, Target, parse_target

__all__ = [
    "FORMATS",
    "MAX_UNZIPPED_BYTES",
    "MAX_ZIP_BYTES",
    "SUPPORTED_ARCHS",
    "SUPPORTED_PYTHONS",
    "LayerBuild",
    "Target",
    "build_layer",
    "default_output_name",
    "parse_target",
]
