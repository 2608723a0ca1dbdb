"""The options the command line and the pytest plugin share, in one table: the same names, the same meaning,
and one function that turns them into a run's claims config."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import RANGES, SEED_MAX
from harness.sources.data import POOLED_SAMPLES, TOKEN_LEVEL_SAMPLES


def whole_number_of_at_least(minimum: int, what: str, maximum: int | None = None):
    """An option's type: a whole number of at least ``minimum`` (and at most ``maximum``; argparse and pytest say
    which, as a usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}; got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{what} must be at most {maximum}; got {value}")
        return value

    parse.__name__ = "whole number"  # how argparse names the type in its own messages
    return parse


def seed_number(what: str = "a seed"):
    """An option's type for a random seed: what numpy takes (0 to 2**32 - 1; no negative one)."""
    return whole_number_of_at_least(0, what, SEED_MAX)


# M of a layer swap or a single-segment LoRA study: a first, a middle and a last segment (as the claims config's)
segment_count = whole_number_of_at_least(int(RANGES["C3.segment_counts"][0]), "a segment count M")


simulation_count = whole_number_of_at_least(1, "a number of simulations")  # per claim and design, of `calibrate`
_whole_batch = whole_number_of_at_least(1, "a batch size")


def batch_size(text: str) -> int | str:
    """An option's type for lm-eval's batch size: ``auto`` (its search on a GPU) or a whole number of at least 1."""
    return text if text == "auto" else _whole_batch(text)


def _task_list(text: str) -> list[str]:
    tasks = [task.strip() for task in text.split(",") if task.strip()]
    if not tasks:
        raise argparse.ArgumentTypeError(f"{text!r} names no task: give lm-eval task names, comma-separated")
    return tasks


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # the first is the name both interfaces show; lm-eval's spelling may follow
    dest: str
    help: str
    settings_key: str | None = None  # the claims config key the option sets (None: not a setting)
    kwargs: dict = field(default_factory=dict)
    command_line_aliases: tuple[str, ...] = ()  # older spellings the command line keeps accepting


SETTINGS_OPTIONS: tuple[Option, ...] = (
    Option(("--claims-config",), "claims_config", "a claims config file instead of harness/claims.yaml"),
    Option(
        ("--set",),
        "settings",
        "one setting of the claims config for this run, above every pair's own (repeatable), e.g. "
        "--set tuning.steps=50 --set C1.cka_plateau_min=0.95",
        kwargs={"action": "append", "metavar": "KEY=VALUE"},
    ),
)
EVALUATION_OPTIONS: tuple[Option, ...] = (
    Option(
        ("--tasks",),
        "eval_tasks",
        "lm-eval tasks of the downstream scores, comma-separated (default: the config's evaluation.tasks)",
        "evaluation.tasks",
        {"action": "append", "type": _task_list},
    ),
    Option(("--limit",), "eval_limit", "items per lm-eval task", "evaluation.limit", {"type": int}),
    Option(
        ("--num-fewshot", "--num_fewshot"),
        "eval_num_fewshot",
        "shots of the downstream scores and the LoRA arms' scoring",
        "evaluation.num_fewshot",
        {"type": int},
    ),
    Option(
        ("--max-gen-toks", "--max_gen_toks"),
        "eval_max_gen_toks",
        "generated tokens at most per answer",
        "evaluation.max_gen_toks",
        {"type": int},
    ),
)
SHARED_OPTIONS = SETTINGS_OPTIONS + EVALUATION_OPTIONS
# How a LoRA study runs: `harness tune` and pytest's --tune alike.
STUDY_OPTIONS: tuple[Option, ...] = (
    Option(
        ("--tune-segments",),
        "tune_segments",
        "values of M for the single-segment inverted U of C4 (default: the claims config's)",
        kwargs={"type": segment_count, "nargs": "+", "metavar": "M"},
        command_line_aliases=("--segments",),
    ),
    Option(
        ("--tune-executor",),
        "tune_executor",
        "train a study's runs one after another (serial, the default) or as submitit jobs: local (one GPU "
        "per job when there are GPUs) or slurm (a job array); finished runs are never trained again",
        kwargs={"choices": ("serial", "local", "slurm")},
        command_line_aliases=("--executor",),
    ),
    Option(
        ("--tune-workers",),
        "tune_workers",
        "jobs at once with --tune-executor local, or the array's limit with slurm",
        kwargs={"type": int},
        command_line_aliases=("--workers",),
    ),
)
STUDY_DEFAULTS = {"tune_segments": None, "tune_executor": "serial", "tune_workers": 1}
# How many probe samples a profile reads (§4.1): `harness verify`/`profile` and pytest alike.
PROBE_OPTIONS: tuple[Option, ...] = (
    Option(
        ("--pooled-samples",),
        "pooled_samples",
        f"probe samples of the pooled metrics (default {POOLED_SAMPLES})",
        kwargs={"type": int, "default": POOLED_SAMPLES},
    ),
    Option(
        ("--token-samples",),
        "token_samples",
        f"first of them that also get token-level metrics and the logit lens (default {TOKEN_LEVEL_SAMPLES}, "
        "or every pooled sample when there are fewer)",
        kwargs={"type": int},
    ),
)


def add_options(add, options: tuple[Option, ...] = SHARED_OPTIONS, command_line: bool = False) -> None:
    """Declare ``options`` with ``add``: an argparse parser's ``add_argument`` or a pytest group's
    ``addoption`` (both take the same arguments); the command line also takes their older spellings."""
    for option in options:
        flags = (*option.flags, *option.command_line_aliases) if command_line else option.flags
        kwargs = {"default": STUDY_DEFAULTS.get(option.dest), **option.kwargs}
        add(*flags, dest=option.dest, help=option.help, **kwargs)


def settings_of(values: Mapping[str, Any]) -> list[str]:
    """The KEY=VALUE settings a run's options give (``--set`` first, then the named ones)."""
    settings = list(values.get("settings") or [])
    for option in EVALUATION_OPTIONS:
        value = values.get(option.dest)
        if value is None:
            continue
        if option.dest == "eval_tasks":  # --tasks a,b --tasks c: one list, in order, without repeats
            value = "[" + ", ".join(dict.fromkeys(task for group in value for task in group)) + "]"
        settings.append(f"{option.settings_key}={value}")
    return settings


def claims_config_of(values: Mapping[str, Any]) -> dict:
    """The claims config of a run: claims.yaml or ``--claims-config``, with the run's settings above every pair's
    own entries. ``values``: the parsed options by ``dest`` (``vars(args)``, or pytest's ``vars(config.option)``)."""
    from harness import config

    path = values.get("claims_config")
    return config.with_settings(config.load_config(Path(path)) if path else None, settings_of(values))
