"""The claims config: thresholds per claim, per-model overrides, regression tolerances."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from harness.errors import BadInputError

CONFIG_FORMAT = 1


class ConfigError(BadInputError):
    """The claims config is missing, malformed, or names an unknown key."""


def _merge(base: dict, override: dict, where: str) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in merged:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {sorted(merged)}")
        merged[key] = _merge(merged[key], value, f"{where}.{key}") if isinstance(value, dict) else value
    return merged


def load_config(path: Path | None = None) -> dict:
    text = Path(path).read_text() if path else resources.files("harness").joinpath("claims.yaml").read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"claims config {path or 'claims.yaml'} is not valid YAML: {error}") from error
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"claims config {path or 'claims.yaml'} must be a mapping with format: {CONFIG_FORMAT}")
    return config


def thresholds_for(model: str, config: dict | None = None) -> dict:
    """The defaults with ``model``'s overrides applied."""
    config = config or load_config()
    return _merge(config["defaults"], (config.get("models") or {}).get(model, {}), f"models.{model}")


def tolerance_for(column: str, config: dict | None = None) -> dict:
    config = config or load_config()
    tolerances = config["tolerances"]
    return tolerances["columns"].get(column, tolerances["default"])
