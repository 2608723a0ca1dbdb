"""The claims config: thresholds per claim, per-model overrides, regression tolerances."""

from __future__ import annotations

import copy
import functools
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
        config = _parsed(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"claims config {path or 'claims.yaml'} is not valid YAML: {error}") from error
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"claims config {path or 'claims.yaml'} must be a mapping with format: {CONFIG_FORMAT}")
    return copy.deepcopy(config)  # the caller's own copy: the parsed one is shared


@functools.lru_cache(maxsize=16)
def _parsed(text: str):
    """The YAML of a config text, parsed once per process (15 ms each: the regression comparison reads a
    tolerance per column, and every threshold lookup reads the config)."""
    return yaml.safe_load(text)


def thresholds_for(model: str, config: dict | None = None) -> dict:
    """The defaults with ``model``'s overrides applied, then the user's (``with_settings``)."""
    config = config or load_config()
    merged = _merge(config["defaults"], (config.get("models") or {}).get(model, {}), f"models.{model}")
    return _merge(merged, config.get(USER_SETTINGS) or {}, "setting")


USER_SETTINGS = "user_settings"  # KEY=VALUE settings of one run, above the defaults and every model's own


def parse_setting(text: str) -> tuple[list[str], object]:
    """``evaluation.num_fewshot=0`` as (["evaluation", "num_fewshot"], 0); the value is read as YAML, so
    ``[gsm8k, mmlu]``, ``null`` and ``1.0e-3`` mean what they do in claims.yaml."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"a setting is KEY=VALUE, e.g. evaluation.num_fewshot=0; got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"setting {key}: {value!r} is not a value ({error})") from error
    return key.strip().split("."), parsed


def with_settings(config: dict | None, settings: list[str] | tuple[str, ...]) -> dict:
    """``config`` (default: claims.yaml) with one run's KEY=VALUE settings, which apply to every pair and win
    over the pair's own entries: how a user gives a custom pair's evaluation or tuning settings."""
    config = copy.deepcopy(config or load_config())
    user = config.setdefault(USER_SETTINGS, {})
    for text in settings:
        path, value = parse_setting(text)
        nested = value
        for part in reversed(path):
            nested = {part: nested}
        _merge(config["defaults"], nested, "setting")  # refuses a key claims.yaml does not know
        target = user
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return config


def tolerance_for(column: str, config: dict | None = None) -> dict:
    config = config or load_config()
    tolerances = config["tolerances"]
    return tolerances["columns"].get(column, tolerances["default"])
