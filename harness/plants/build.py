"""Building a planted control and caching it: from the tiny OLMo-2 pair, by the construction the catalogue
names, into the harness cache under a key derived from everything that makes it (``code_version``)."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import types

import torch

from harness import cache
from harness.plants.catalogue import CONTROLS, Control
from harness.plants.constructions import CONSTRUCTIONS, SOURCE_PAIR
from harness.sources import models, zoo

CONTROLS_FORMAT = 6  # 6: keys derived from the constructions' code and constants (``code_version``)


def code_version(function, _seen: set | None = None) -> str:
    """A hash of what ``function`` computes with: its source, the values of the constants it reads, the free
    variables it closes over, and the same of every function of the harness's plants it calls, transitively.
    Library code (torch, transformers) is left out: its versions key the tiny pair the controls are made from."""
    seen = _seen if _seen is not None else set()
    if id(function) in seen:
        return ""
    seen.add(id(function))
    parts = [inspect.getsource(function)]
    code = function.__code__
    names = set(code.co_names)
    for constant in code.co_consts:  # lambdas and comprehensions inside the function
        if isinstance(constant, types.CodeType):
            names |= set(constant.co_names)
    values = {name: function.__globals__[name] for name in sorted(names) if name in function.__globals__}
    for name, module in list(values.items()):  # emergence.place_reader: a function read off a plants module
        if isinstance(module, types.ModuleType) and module.__name__.startswith("harness.plants"):
            values.update(
                {
                    f"{name}.{attribute}": getattr(module, attribute)
                    for attribute in sorted(names)
                    if hasattr(module, attribute)
                }
            )
    for cell_name, cell in zip(code.co_freevars, function.__closure__ or (), strict=True):
        values[f"closure:{cell_name}"] = cell.cell_contents
    defaults = (*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values())
    values.update({f"default:{index}": value for index, value in enumerate(defaults)})
    for name, value in values.items():
        if isinstance(value, types.FunctionType) and value.__module__.startswith("harness.plants"):
            parts.append(code_version(value, seen))
        elif isinstance(value, int | float | str | bool | tuple | type(None)):
            parts.append(f"{name}={value!r}")
        elif isinstance(value, dict) and all(isinstance(v, int | float | str) for v in value.values()):
            parts.append(f"{name}={sorted(value.items())!r}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def recipe(control: Control, source_key: str) -> dict:
    """Everything a planted pair is made from: the tiny pair, the control's noise profile, dose and sides, and
    the code version of each construction it runs (and of the build itself)."""
    made_by = [name for name in (control.base_construction, control.construction) if name is not None]
    return {
        "format": CONTROLS_FORMAT,
        "source": source_key,
        "control": control.name,
        "clean": control.clean,
        "dose": control.dose,
        "scales": [control.profile(i / 10) for i in range(1, 11)],
        "constructions": {name: code_version(CONSTRUCTIONS[name]) for name in made_by},
        "build": code_version(_build_into),
    }


def build_control(name: str, progress: bool = True) -> zoo.BuiltPair:
    """The planted pair ``name``, built from the tiny base on first use and cached.

    A reversed control (``reverse_of``) is its forward pair with base and SFT
    swapped: it reuses that pair's models, and so its profiles.
    """
    control = CONTROLS[name]
    if control.reverse_of is not None:
        forward = build_control(control.reverse_of, progress=progress)
        info = {
            **forward.info,
            "name": name,
            "reverse_of": control.reverse_of,
            "description": control.description,
            "expected": control.expected,
        }
        return zoo.BuiltPair(name=name, base_dir=forward.sft_dir, sft_dir=forward.base_dir, info=info)
    source = zoo.build_pair(SOURCE_PAIR, progress=progress)
    key = cache.stable_hash(recipe(control, source.info["key"]))
    clean_dir = source.base_dir if control.clean == "base" else source.sft_dir
    directory = cache.cache_root() / "zoo" / f"{name}-{key}"
    cache.build_once(directory, lambda scratch: _build_into(scratch, control, clean_dir, source))
    info = json.loads((directory / "build.json").read_text())
    return zoo.BuiltPair(name=name, base_dir=directory / "base", sft_dir=directory / "sft", info=info)


def _build_into(scratch, control: Control, clean_dir, source: zoo.BuiltPair) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(clean_dir, dtype=torch.float32)
    if control.base_construction is None:
        shutil.copytree(clean_dir, scratch / "base")
    else:  # the base is made too, and the SFT from it
        CONSTRUCTIONS[control.base_construction](model, control)
        model.save_pretrained(scratch / "base")
        AutoTokenizer.from_pretrained(clean_dir).save_pretrained(scratch / "base")
    CONSTRUCTIONS[control.construction](model, control)
    model.save_pretrained(scratch / "sft")
    AutoTokenizer.from_pretrained(clean_dir).save_pretrained(scratch / "sft")
    cache.write_json_atomic(
        scratch / "build.json",
        {
            "name": control.name,
            "source": source.info["key"],
            "description": control.description,
            "expected": control.expected,
        },
    )


class PlantedPairs:
    """The planted controls as a source of pairs for the registry (``models.add_pair_source``): each is
    named ``harness-control:NAME`` and built from the tiny OLMo-2 pair on first use."""

    def spec(self, name: str) -> models.ModelSpec | None:
        if name not in CONTROLS:
            return None
        ref = models.ModelRef(f"harness-control:{name}")
        return models.ModelSpec(
            name,
            ref,
            ref,
            "olmo2",
            dtype="float32",
            builder=name,
            notes="a planted control built from the tiny OLMo-2 pair",
        )

    def build(self, name: str, progress: bool = True) -> zoo.BuiltPair:
        return build_control(name, progress=progress)


PLANTED_PAIRS = PlantedPairs()


def register() -> None:
    """Let the registry name and build the planted controls (the pytest plugin and the command line do)."""
    models.add_pair_source(PLANTED_PAIRS)
