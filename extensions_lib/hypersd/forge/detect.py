"""Which WebUI is running, from what it provides (never from a version string)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any


def is_forge(sd_samplers: Any, find_spec: Callable[[str], Any] = importlib.util.find_spec) -> bool:
    """Forge: ``modules.sd_samplers`` has ``add_sampler()`` and Forge's own ``backend`` package is importable.

    A1111 v1.10 has neither (its samplers are appended by hand, its models load through ldm/sgm); both tests
    together keep an A1111 extension that happens to ship a top-level ``backend`` from switching adapters.
    """
    return callable(getattr(sd_samplers, "add_sampler", None)) and find_spec("backend") is not None
