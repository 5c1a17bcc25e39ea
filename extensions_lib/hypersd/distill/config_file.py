"""Reading a distillation config file (JSON or TOML) into a table of settings, with messages that say what to fix."""

from __future__ import annotations

import json
import pathlib
from typing import Any


class ConfigError(ValueError):
    """A bad setting; the message says which one and what to do."""


def load_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a flat JSON or TOML table of DistillConfig fields (a ``[distill]`` table in TOML also works)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"Hyper-SD: config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Hyper-SD: cannot read the config file {path}: {err}") from err
    try:
        return _parse_config_text(path, text)
    except ValueError as err:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"Hyper-SD: the config file {path} is not valid {path.suffix[1:].upper()}: {err}") from err


def _parse_config_text(path: pathlib.Path, text: str) -> dict[str, Any]:
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as err:
                raise ConfigError("Hyper-SD: TOML config files need Python 3.11+ or `pip install tomli`") from err
        data = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ConfigError(f"Hyper-SD: config file must end in .json or .toml: {path}")
    if "distill" in data and isinstance(data["distill"], dict):
        data = data["distill"]
    if not isinstance(data, dict):
        raise ConfigError(f"Hyper-SD: config file {path} must hold a table of settings")
    return data
