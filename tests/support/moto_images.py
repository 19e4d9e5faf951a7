"""moto's Lambda model, completed where image functions need it.

moto (5.2) ignores the ImageConfig of UpdateFunctionConfiguration. Lambda
replaces the whole ImageConfig with the one sent (fields left out are
cleared, ``{}`` clears every override). The moto server runs in the tests'
process, so its model can be patched for a test.
"""

from __future__ import annotations

from typing import Any

import pytest


def apply_image_config_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's UpdateFunctionConfiguration apply ImageConfig, as Lambda does."""
    from moto.awslambda import models

    original = models.LambdaFunction.update_configuration

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "ImageConfig" in config_updates:
            self.image_config = models.ImageConfig(config_updates["ImageConfig"] or {})
        return dict(original(self, config_updates))

    monkeypatch.setattr(models.LambdaFunction, "update_configuration", update_configuration)
