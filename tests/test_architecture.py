"""The harness's layout holds: imports flow one way, from the pipeline down through its stages.

Every import of every module is read from its source (those inside functions too), so a lazy import that
runs back up is caught as well as one at the top of a file.
"""

import ast
from pathlib import Path

import pytest

from harness.plants import build
from harness.sources import models

HARNESS = Path(__file__).resolve().parent.parent / "harness"
STAGES = ("sources", "measure", "metrics", "verdicts", "lora", "output", "plants")


def _module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(HARNESS.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The modules ``name`` imports (harness modules resolved to the module a name in them refers to)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return found


GRAPH = {
    name: {imported for imported in _imports(name) if imported in MODULES and imported != name} for name in MODULES
}


def _group(name: str) -> str:
    """A module's stage (``harness.lora`` for ``harness.lora.study``), or the module itself at the top level."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or parts[-1] in STAGES else name


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return [*path[path.index(after) :], after]
            if after not in state and (found := visit(after, [*path, after])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_every_stage_is_a_package_of_the_harness():
    assert {f"harness.{stage}" for stage in STAGES} <= set(MODULES)


def test_the_harness_never_imports_pytest():
    offenders = {name for name in MODULES if any(m.split(".")[0] in {"pytest", "_pytest"} for m in _imports(name))}
    assert not offenders


def test_only_the_command_line_and_the_plants_themselves_import_the_plants():
    importers = {name for name, imported in GRAPH.items() if any(_group(m) == "harness.plants" for m in imported)}
    assert importers <= {"harness.cli"} | {name for name in MODULES if _group(name) == "harness.plants"}


def test_the_metrics_import_nothing_else_of_the_harness():
    for name, imported in GRAPH.items():
        if _group(name) == "harness.metrics":
            assert {m for m in imported if _group(m) != "harness.metrics"} == set(), name


def test_no_module_imports_run_in_a_cycle():
    assert _cycle(GRAPH) is None


def test_no_stage_imports_run_in_a_cycle():
    stages: dict[str, set[str]] = {}
    for name, imported in GRAPH.items():
        stages.setdefault(_group(name), set()).update(_group(m) for m in imported if _group(m) != _group(name))
    assert _cycle(stages) is None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_registry_names_a_planted_pair_only_once_the_plants_are_registered(monkeypatch):
    monkeypatch.setattr(models, "PAIR_SOURCES", [])
    with pytest.raises(KeyError, match="unknown pair 'planted_late'"):
        models.get_spec("planted_late")
    build.register()
    build.register()  # registering twice adds the source once
    assert models.PAIR_SOURCES == [build.PLANTED_PAIRS]
    spec = models.get_spec("planted_late")
    assert (spec.name, spec.builder, spec.base.location) == (
        "planted_late",
        "planted_late",
        "harness-control:planted_late",
    )
    assert models.get_spec("tiny_olmo2").builder == "tiny_olmo2"  # the registered pairs are still found


def test_the_public_names_users_call_keep_working():
    import harness.metrics
    import harness.reports
    from harness import cli
    from harness.output import reports

    assert harness.reports.table is reports.table and harness.reports.load_report is reports.load_report
    assert callable(harness.metrics.linear_cka) and callable(harness.metrics.effective_rank)
    # the `harness` command (pyproject: harness = "harness.cli:main") still routes its main job
    assert cli.build_parser().parse_args(["run", "--pair", "tiny_olmo2"]).handler is cli.command_run
