"""The claims config: thresholds per claim, per-model overrides, regression tolerances."""

from __future__ import annotations

import copy
import functools
import math
import re
from importlib import resources
from pathlib import Path

import yaml

from harness.errors import BadInputError

CONFIG_FORMAT = 1


class ConfigError(BadInputError):
    """The claims config is missing, malformed, or names an unknown key."""


def _kind(value) -> str:
    """The kind of a config value, as a message names it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


PLURALS = {"an integer": "integers", "a number": "numbers", "a text": "texts", "true or false": "true or false"}


def _fits(default, value) -> bool:
    """Whether ``value`` may replace ``default``: the same kind (an integer where a number is), a list of the
    default list's element kind. A null default is optional: it takes any value."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        kinds = {_kind(item) for item in default}
        return isinstance(value, list) and (len(kinds) != 1 or all(_fits(default[0], item) for item in value))
    return _kind(default) == _kind(value)


def _number_written_as_text(value):
    """``1e9`` as the number it means: YAML 1.1 (PyYAML) reads an exponent without a dot as text."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def _merge(base: dict, override: dict, where: str) -> dict:
    if not isinstance(override, dict):
        raise ConfigError(f"{where}: {override!r} is not a mapping of its keys {sorted(base)}")
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in merged:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {sorted(merged)}")
        if isinstance(merged[key], dict):
            merged[key] = _merge(merged[key], value, f"{where}.{key}")
            continue
        if isinstance(merged[key], float):
            value = _number_written_as_text(value)
        if not _fits(merged[key], value):
            wanted = _kind(merged[key])
            if isinstance(merged[key], list) and merged[key]:
                wanted += " of " + PLURALS.get(_kind(merged[key][0]), "values")
            hint = ""
            if wanted.endswith("of texts") and isinstance(value, list):
                hint = "; quote each one, as in ['01110']: unquoted, YAML reads a mask as a number"
            raise ConfigError(f"{where}.{key}: {value!r} is not {wanted} (claims.yaml has {merged[key]!r}){hint}")
        merged[key] = value
    return merged


# The settings whose values outside a range would give a verdict no meaning (an interval at 150% confidence,
# a segment count of 0): (lowest, highest, whether the ends themselves are allowed), each element of a list.
SEED_MAX = 2**32 - 1
RANGES: dict[str, tuple[float, float, bool]] = {
    "bootstrap.confidence": (0.0, 1.0, False),
    "bootstrap.resamples": (2, math.inf, True),
    "bootstrap.jackknife_groups": (2, math.inf, True),
    "C2.midpoint": (0.0, 1.0, True),
    "C3.segment_counts": (3, math.inf, True),  # first, middle and last segments
    "C3.items": (2, math.inf, True),
    "C4.segment_count": (3, math.inf, True),
    "C4.inverted_u_counts": (3, math.inf, True),
    "C4.random_sets": (0, math.inf, True),
    "block_finder.stable_share": (0.0, 1.0, True),
    "tuning.full_rank": (1, math.inf, True),
    "tuning.steps": (1, math.inf, True),
    "tuning.batch_size": (1, math.inf, True),
    "tuning.learning_rate": (0.0, math.inf, False),
    "tuning.train_examples": (1, math.inf, True),
    "tuning.checkpoint_every": (1, math.inf, True),
    "tuning.eval_limit": (1, math.inf, True),
    "tuning.eval_batch_size": (1, math.inf, True),
    "tuning.max_gen_toks": (1, math.inf, True),
    "tuning.likelihood_items": (2, math.inf, True),
    "tuning.retention_samples": (1, math.inf, True),
    "tuning.retention_max_tokens": (2, math.inf, True),
    "evaluation.limit": (1, math.inf, True),
    "evaluation.num_fewshot": (0, math.inf, True),
    "evaluation.max_gen_toks": (1, math.inf, True),
    "directional.margin": (0.0, math.inf, True),
    # numpy takes seeds of 0 to 2**32 - 1 (its Generator no negative one; lm-eval seeds its legacy state with them)
    "bootstrap.seed": (0, SEED_MAX, True),
    "tuning.seeds": (0, SEED_MAX, True),
}


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"  # 4294967295, not 4.29497e+09


def check_ranges(thresholds: dict, where: str = "claims config") -> None:
    """Refuse a setting outside the range in which it means something (``RANGES``), naming it."""
    for key, (low, high, closed) in RANGES.items():
        section, _, name = key.partition(".")
        value = thresholds.get(section, {}).get(name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            inside = low <= item <= high if closed else low < item < high
            if not inside:
                if high == math.inf:
                    allowed = f"at least {_shown(low)}" if closed else f"above {_shown(low)}"
                else:
                    allowed = f"between {_shown(low)} and {_shown(high)}" + ("" if closed else ", exclusive")
                each = "every value of " if isinstance(value, list) else ""
                raise ConfigError(f"{where}: {each}{key} must be {allowed}; got {value!r}")
    if not thresholds.get("tuning", {}).get("seeds", [0]):
        raise ConfigError(f"{where}: tuning.seeds is empty: a LoRA arm needs at least one seed")


def check_config(config: dict) -> None:
    """Check every pair's thresholds in ``config`` (kinds and ranges), before any work."""
    for model in ["defaults", *(config.get("models") or {})]:
        check_ranges(thresholds_for(model, config), "the claims config" if model == "defaults" else f"models.{model}")


def load_config(path: Path | None = None) -> dict:
    try:
        text = Path(path).read_text() if path else resources.files("harness").joinpath("claims.yaml").read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"claims config {path} cannot be read ({error})") from None
    try:
        config = _parsed(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"claims config {path or 'claims.yaml'} is not valid YAML: {problem}{at}") from None
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"claims config {path or 'claims.yaml'} must be a mapping with format: {CONFIG_FORMAT}")
    config = copy.deepcopy(config)  # the caller's own copy: the parsed one is shared
    if path:  # a user's file: its defaults are checked against claims.yaml's, and those it leaves out taken from it
        config["defaults"] = _merge(load_config()["defaults"], config.get("defaults") or {}, f"{path}: defaults")
    return config


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
    check_config(config)
    return config


def tolerance_for(column: str, config: dict | None = None) -> dict:
    config = config or load_config()
    tolerances = config["tolerances"]
    return tolerances["columns"].get(column, tolerances["default"])
