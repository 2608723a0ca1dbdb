"""The claim registry (``harness.verdicts.registry``) is complete: every condition a predicate emits is declared
once, with a provenance entry and a calibration design the calibration runs, and nothing is declared that no
predicate emits."""

from __future__ import annotations

import numpy as np
import pytest

from harness import calibration, config
from harness.verdicts import claims, directional, registry

T = config.thresholds_for("calibration")


@pytest.fixture(scope="module")
def emitted() -> dict[str, claims.Verdict]:
    """Every verdict the engines give, once each, on simulated data at the paper's effects."""
    rng = np.random.default_rng(0)
    sizes = calibration.SMALL
    verdicts = {
        **calibration.layer_verdicts("paper", sizes, T, rng, (*calibration.PER_LAYER, *calibration.DIRECTIONAL)),
        **calibration.swap_verdicts("paper", sizes, T, rng),
        **calibration.lora_verdicts("paper", sizes, T, rng),
    }
    assert set(verdicts) == set(calibration.CLAIM_KEYS)
    return verdicts


def test_every_condition_a_predicate_emits_is_declared_in_the_registry(emitted):
    for key, verdict in emitted.items():
        entry = registry.claim(key)
        for condition in verdict.conditions:
            spec = entry.condition(condition.name)  # raises when undeclared
            if "{role}" not in spec.name:  # C4's roles: C4.decides in the config names the deciding one
                assert spec.decides == condition.decides, f"{key}.{condition.name}"
            if spec.comparison != "< or >":
                assert spec.comparison == condition.comparison, f"{key}.{condition.name}"


def test_every_declared_condition_is_emitted_by_its_predicate(emitted):
    for entry in registry.CLAIMS.values():
        key = calibration.calibration_key(entry.key)
        names = [condition.name for condition in emitted[key].conditions]
        for spec in entry.conditions:
            assert any(spec.matches(name) for name in names), f"{entry.key} declares {spec.name}, never emitted"


def test_every_threshold_has_a_provenance_entry():
    provenance = T["provenance"]
    specs = [spec for entry in registry.CLAIMS.values() for spec in entry.conditions]
    for spec in specs:
        assert provenance.get(spec.threshold), f"{spec.name}: no provenance entry for {spec.threshold}"


def test_a_condition_under_80_percent_power_names_the_sizes_that_reach_it():
    """Item by item: the power at the paper's effect is measured per condition; where it is under 80%, the
    provenance line names the sizes that reach 80% (tests/test_calibration.py measures them again)."""
    for key, entry in registry.CLAIMS.items():
        for spec in entry.conditions:
            low = {scenario for scenario, share in spec.power if share < 0.8}
            named = {scenario for scenario, _, share in spec.powered_at if share >= 0.8}
            assert low <= named, f"{key}.{spec.name} is under 80% power in {sorted(low - named)} and names no size"
            assert all(size in registry.SIZE_NAMES for _, sizes, _ in spec.powered_at for size, _ in sizes)


def test_every_condition_has_a_boundary_design_the_calibration_runs():
    simulated = {(batch.family, batch.scenario) for batch in calibration.boundary_batches()}
    for entry in registry.CLAIMS.values():
        for spec in entry.conditions:
            design = spec.boundary
            assert design, f"{entry.key}.{spec.name} has no calibration design"
            if spec.is_simulated:
                family, _, scenario = design.partition(":")
                assert family == entry.family or (family, entry.family) == ("layers", "directional")
                assert scenario == "null" or (family, scenario) in simulated, f"{design} is not simulated"
            elif design.startswith(registry.IMPLIED):
                assert registry.implication_holds(T), f"{entry.key}.{spec.name}: {design}"
            elif design != registry.EXACT:
                assert spec.is_open and len(design) > len(registry.OPEN) + 20, f"{design!r} says no reason"


def test_every_claims_null_and_power_design_is_known_to_the_calibration():
    for entry in registry.CLAIMS.values():
        for design in filter(None, (entry.null, entry.power)):
            family, _, scenario = design.partition(":")
            assert family in calibration.FAMILIES and scenario in ("null", "paper"), design


def test_exact_designs_are_only_for_statistics_without_sampling_variance(emitted):
    for entry in registry.CLAIMS.values():
        for spec in entry.conditions:
            if spec.boundary == registry.EXACT:
                condition = next(c for c in emitted[entry.key].conditions if spec.matches(c.name))
                assert condition.interval is None, f"{entry.key}.{spec.name} is declared exact but has an interval"


def test_no_condition_is_left_without_a_design():
    """Every condition is simulated at its threshold, implied by its claim's others or exact: none is open."""
    assert registry.open_designs() == []


def test_each_directional_hypothesis_has_the_design_of_its_level():
    """Sample-level hypotheses (eq. 8) and dataset-level ones (eq. 9) are simulated at their boundary, each
    dataset-level metric by its own design, and rank deficiency is exact: as ``directional.HYPOTHESES`` says each
    is measured."""
    assert set(registry.SAMPLE_LEVEL + registry.DATASET_LEVEL + registry.EXACT_COUNT) == set(directional.HYPOTHESES)
    for key, hypothesis in directional.HYPOTHESES.items():
        (spec,) = registry.claim(key).conditions
        if hypothesis.exact:
            assert spec.boundary == registry.EXACT
        elif hypothesis.level == directional.SAMPLE:
            assert spec.boundary == "layers:boundary:directional_sample", key
        else:
            assert spec.boundary == f"layers:boundary:directional_{hypothesis.metric}", key


def test_an_undeclared_condition_is_refused():
    with pytest.raises(KeyError, match="declares no condition"):
        registry.condition("C1", "cka_plateau_mean")
    with pytest.raises(KeyError, match="no claim"):
        registry.claim("C9")
