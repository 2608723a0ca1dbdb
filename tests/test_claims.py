"""Every claim predicate on planted series: a positive control that must hold, negatives that must fail."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harness import config
from harness.verdicts import claims

L = 10
LAYERS = list(range(L + 1))
T = config.thresholds_for("planted")


def series(values):
    return pd.Series([float(v) for v in values], index=LAYERS)


def paper_like_bundle():
    """Shapes the paper reports: plateau then tail drop, J-shaped change, late emergence, three stages."""
    depth = np.array(LAYERS) / L
    tail = np.clip((depth - 0.8) / 0.2, 0, 1)
    change = 0.05 + 0.001 * np.array(LAYERS) + 0.08 * tail**2
    change[0] = np.nan
    rank = np.array([3.0, 9.0, 9.1, 9.0, 9.2, 9.1, 9.0, 9.1, 9.0, 4.0, 1.0])
    norm = np.array([1.0, 40, 41, 42, 41, 43, 42, 44, 45, 120, 500])
    bundle = {
        "cka": series(0.995 - 0.001 * depth - 0.06 * tail),
        "cosine": series(0.99 - 0.002 * depth - 0.3 * tail),
        "mean_shift": series(0.3 + 0.1 * depth + 14 * tail),
        "weight_change": series(change),
        "abs_delta_spectral_norm": series(np.nan_to_num(change, nan=0.05) * 100),
        "sft.probe_accuracy": series(0.01 + 0.02 * depth + 0.6 * tail),
        "base.probe_accuracy": series(0.01 + 0.02 * depth + 0.5 * tail),
    }
    for model, wobble in (("base", 1.0), ("sft", 1.02)):
        bundle[f"{model}.effective_rank"] = series(rank * wobble)
        bundle[f"{model}.spectral_norm"] = series(norm * wobble)
        bundle[f"{model}.dataset_entropy"] = series(rank / 10 * wobble)
        bundle[f"{model}.condition_number"] = series(1000 / rank * wobble)
    return bundle


def flat(bundle, names, value_of=lambda s: s.mean()):
    out = dict(bundle)
    for name in names:
        out[name] = pd.Series(value_of(bundle[name]), index=bundle[name].index) + 1e-3 * np.sin(LAYERS)
    return out


def mirrored(bundle, names):
    out = dict(bundle)
    for name in names:
        values = bundle[name].to_numpy()
        out[name] = pd.Series(np.concatenate([[values[0]], values[1:][::-1]]), index=LAYERS)
    return out


@pytest.mark.parametrize("claim", sorted(claims.CLAIMS))
def test_every_claim_holds_on_the_planted_positive(claim):
    verdict = claims.CLAIMS[claim](paper_like_bundle(), T)
    assert verdict.holds, verdict.explain()


NEGATIVES = {
    "C1": [
        ("uniform", lambda b: flat(b, ["cka", "cosine", "mean_shift"], lambda s: s.min())),
        ("early", lambda b: mirrored(b, ["cka", "cosine", "mean_shift"])),
    ],
    "C2": [
        ("uniform", lambda b: flat(b, ["weight_change"], lambda s: s.max())),
        ("early", lambda b: mirrored(b, ["weight_change"])),
    ],
    "C5": [
        ("uniform", lambda b: flat(b, ["sft.probe_accuracy"], lambda s: s.max())),
        ("early", lambda b: mirrored(b, ["sft.probe_accuracy"])),
    ],
    "C6": [
        ("untracked", lambda b: {**b, "sft.effective_rank": b["sft.effective_rank"][::-1].set_axis(LAYERS)}),
        (
            "no bottleneck",
            lambda b: flat(b, [f"{m}.{n}" for m in ("base", "sft") for n in ("effective_rank", "spectral_norm")]),
        ),
    ],
    "C7": [
        ("unrelated", lambda b: {**b, "cosine": series(0.5 + 0.4 * np.cos(LAYERS))}),
        ("early", lambda b: mirrored(b, ["weight_change"])),
    ],
}


@pytest.mark.parametrize(
    "claim,label,make", [(c, label, make) for c, cases in NEGATIVES.items() for label, make in cases]
)
def test_every_claim_fails_on_planted_negatives(claim, label, make):
    verdict = claims.CLAIMS[claim](make(paper_like_bundle()), T)
    assert not verdict.holds, f"{claim} passed the {label} negative control: {verdict.explain()}"


def test_thresholds_come_from_the_config_not_the_code():
    custom = config.thresholds_for("planted")
    custom["C1"] = {**custom["C1"], "cka_drop_min": 0.5}
    assert not claims.CLAIMS["C1"](paper_like_bundle(), custom).holds


def test_per_model_overrides_apply_and_unknown_keys_are_refused(tmp_path):
    path = tmp_path / "claims.yaml"
    base = config.load_config()
    path.write_text(__import__("yaml").safe_dump({**base, "models": {"m": {"C1": {"cka_drop_min": 0.5}}}}))
    loaded = config.load_config(path)
    assert config.thresholds_for("m", loaded)["C1"]["cka_drop_min"] == 0.5
    assert config.thresholds_for("other", loaded)["C1"]["cka_drop_min"] == base["defaults"]["C1"]["cka_drop_min"]
    path.write_text(__import__("yaml").safe_dump({**base, "models": {"m": {"C1": {"typo": 1}}}}))
    with pytest.raises(config.ConfigError, match="unknown key 'typo'"):
        config.thresholds_for("m", config.load_config(path))
    path.write_text("format: 99\n")
    with pytest.raises(config.ConfigError, match="format"):
        config.load_config(path)


def test_each_load_of_the_config_is_the_callers_own_copy(tmp_path):
    """The parsed YAML is kept per text: a caller that changes its config changes no later load, and an edited file
    is read anew."""
    first = config.load_config()
    first["defaults"]["C1"]["cka_drop_min"] = -1.0
    assert config.load_config()["defaults"]["C1"]["cka_drop_min"] != -1.0
    path = tmp_path / "claims.yaml"
    path.write_text(__import__("yaml").safe_dump(config.load_config()))
    assert config.load_config(path) == config.load_config()
    path.write_text("format: 1\ndefaults: {}\n")  # a user's file takes what it leaves out from claims.yaml
    assert config.load_config(path) == {"format": 1, "defaults": config.load_config()["defaults"]}


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("C1.cka_plateau_min=abc", r"setting.C1.cka_plateau_min: 'abc' is not a number \(claims.yaml has 0.98\)"),
        ("C3.segment_counts=3", r"setting.C3.segment_counts: 3 is not a list of integers"),
        ("C3.segment_counts=[3, 5.5]", r"is not a list of integers"),
        ("C1=3", r"setting.C1: 3 is not a mapping of its keys"),
        ("C4.decides=3", r"setting.C4.decides: 3 is not a text"),
        ("C8.compared=[11111, 00001]", r"\[11111, 1\] is not a list of texts .*quote each one, as in \['01110'\]"),
        ("tuning.steps=true", r"setting.tuning.steps: True is not an integer"),
        ("bootstrap.confidence=1.5", r"bootstrap.confidence must be between 0 and 1, exclusive; got 1.5"),
        ("C3.segment_counts=[3, 0]", r"every value of C3.segment_counts must be at least 3; got \[3, 0\]"),
        ("tuning.steps=0", r"tuning.steps must be at least 1; got 0"),
        ("tuning.learning_rate=0", r"tuning.learning_rate must be above 0; got 0"),
        ("evaluation.limit=0", r"evaluation.limit must be at least 1; got 0"),
        ("tuning.seeds=[]", r"tuning.seeds is empty"),
        ("bootstrap.seed=-1", r"bootstrap.seed must be between 0 and 4294967295; got -1"),
        ("tuning.seeds=[0, -2]", r"every value of tuning.seeds must be between 0 and 4294967295; got \[0, -2\]"),
    ],
)
def test_a_setting_of_the_wrong_kind_or_outside_its_range_is_refused_naming_it(setting, expected):
    with pytest.raises(config.ConfigError, match=expected):
        config.with_settings(None, [setting])


def test_settings_of_the_right_kind_inside_their_ranges_are_taken():
    config.check_config(config.load_config())  # claims.yaml itself, every model's thresholds
    chosen = config.with_settings(
        None,
        [
            "bootstrap.confidence=0.9",
            "tuning.fixed_alpha=64",
            "evaluation.limit=5",
            "C3.segment_counts=[3]",
            "directional.margin=1e9",  # YAML 1.1 reads an exponent without a dot as text; a number is meant
        ],
    )
    thresholds = config.thresholds_for("any", chosen)
    assert thresholds["directional"]["margin"] == 1e9
    assert thresholds["bootstrap"]["confidence"] == 0.9 and thresholds["tuning"]["fixed_alpha"] == 64
    assert thresholds["evaluation"]["limit"] == 5 and thresholds["C3"]["segment_counts"] == [3]


def test_a_claims_config_file_that_cannot_be_read_or_holds_a_wrong_kind_is_refused_naming_it(tmp_path):
    with pytest.raises(config.ConfigError, match=r"claims config .*none.yaml cannot be read"):
        config.load_config(tmp_path / "none.yaml")
    (tmp_path / "broken.yaml").write_text("format: 1\ndefaults:\n  C1: {cka_plateau_min: [0.9\n")
    with pytest.raises(config.ConfigError, match=r"broken.yaml is not valid YAML: .* at line 4, column 1$"):
        config.load_config(tmp_path / "broken.yaml")
    (tmp_path / "wrong.yaml").write_text("format: 1\ndefaults:\n  C1: {cka_plateau_min: high}\n")
    with pytest.raises(config.ConfigError, match=r"wrong.yaml: defaults.C1.cka_plateau_min: 'high' is not a number"):
        config.load_config(tmp_path / "wrong.yaml")


def test_constant_series_give_no_correlation_and_no_verdict():
    assert math.isnan(claims.pearson(series([1.0] * 11), series(range(11))))
    bundle = {**paper_like_bundle(), "weight_change": series([1.0] * 11)}
    assert not claims.CLAIMS["C7"](bundle, T).holds


# Subnormal inputs are left out: scipy's centring loses their few bits (``claims._pearson`` rescales them first),
# so it is no reference there; ``test_pearson_of_subnormal_series_is_that_of_the_rescaled_series`` covers them.
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False), min_size=3, max_size=40),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_pearson_and_spearman_agree_with_scipy(values, seed):
    x = np.asarray(values)
    y = x * np.random.default_rng(seed).normal() + np.random.default_rng(seed + 1).normal(size=len(x))

    def layers(values):
        return pd.Series(values, index=range(len(values)))

    r = claims.pearson(layers(x), layers(y))
    if np.ptp(x) == 0:
        assert math.isnan(r)
        return
    assert r == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-9)
    assert claims.spearman(layers(x), layers(y)) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)


def test_jackknife_interval_is_the_estimate_plus_minus_t_standard_errors():
    bundle = paper_like_bundle()
    rng = np.random.default_rng(0)
    shifts = rng.normal(0, 0.002, 20)
    replicates = [{**bundle, "cka": bundle["cka"] + shift} for shift in shifts]
    verdict = claims.evaluate("C1", bundle, T, replicates)
    drops = np.array([claims.evaluate("C1", b, T).main.value for b in replicates])
    error = math.sqrt(19 / 20 * ((drops - drops.mean()) ** 2).sum())
    half = stats.t.ppf(0.975, 19) * error
    low, high = verdict.ci
    assert (low, high) == pytest.approx((verdict.main.value - half, verdict.main.value + half), abs=1e-12)
    assert low <= verdict.main.value <= high
    assert "jackknife" in verdict.ci_note
    assert claims.evaluate("C2", bundle, T).ci is None


@pytest.mark.parametrize(
    ("scale", "point", "replicates", "forward"),
    [
        ("log", 2.0, [1.8, 2.1, 2.3, 1.9], np.log),
        ("fisher", -0.8, [-0.78, -0.83, -0.81, -0.76], np.arctanh),
        ("angular", 0.04, [0.03, 0.05, 0.045, 0.035], lambda p: np.arcsin(np.sqrt(p))),
        ("proportion", 0.04, [0.03, 0.05, 0.045, 0.035], np.log),
    ],
)
def test_a_scaled_jackknife_interval_is_the_plain_one_on_the_transformed_values(scale, point, replicates, forward):
    """Every scale maps the estimate ± t standard errors of the transformed values back: the interval holds its
    estimate, and a value the transform cannot take (a correlation of 1, a ratio of 0) has no interval."""
    from harness.verdicts import intervals

    low, high = intervals.jackknife_interval(point, replicates, 0.95, scale=scale)
    plain = intervals.jackknife_interval(float(forward(point)), forward(np.array(replicates)), 0.95)
    assert (float(forward(low)), float(forward(high))) == pytest.approx(plain, abs=1e-12)
    assert low <= point <= high
    assert all(map(math.isnan, intervals.jackknife_interval(1.0, [0.9, 1.0], 0.95, scale="fisher")))
    with pytest.raises(ValueError, match="unknown scale"):
        intervals.jackknife_interval(point, replicates, 0.95, scale="logit")


def test_a_jackknife_interval_contains_its_estimate_however_biased_the_replicates():
    """A percentile interval of biased resamples can miss the estimate; the jackknife's never does."""
    bundle = paper_like_bundle()
    replicates = [{**bundle, "cka": bundle["cka"] * 0 + 0.999 - 1e-4 * g} for g in range(20)]
    verdict = claims.evaluate("C1", bundle, T, replicates)
    for condition in verdict.conditions:
        if condition.interval is not None and all(map(math.isfinite, condition.interval)):
            assert condition.interval[0] <= condition.value <= condition.interval[1], condition.name


def test_every_condition_names_where_its_threshold_comes_from():
    verdicts = [predicate(paper_like_bundle(), T) for predicate in claims.CLAIMS.values()]
    arms = pd.Series(
        {
            "10000": 0.2,
            "01000": 0.4,
            "00100": 0.3,
            "00010": 0.3,
            "00001": 0.2,
            "11111": 0.3,
            "01110": 0.35,
            "r1": 0.3,
            "first20": 0.2,
            "last20": 0.2,
        }
    )
    groups = {"first": [0], "middle": [1, 2, 3], "last": [4]}
    segment_scores = pd.Series([0.2, 0.4, 0.3, 0.3, 0.2])
    verdicts += [
        claims.inverted_u_swap(segment_scores, groups, T, host=0.35),
        claims.single_segment_inverted_u(segment_scores, groups, T),
        claims.mid_block_beats_full(arms, ["01000", "00100", "00010", "01110"], T, "01110"),
        claims.position_not_budget(arms, "01110", ["r1"], "first20", "last20", T),
        claims.retention_closest({"text": arms}, "01110", T),
    ]
    for verdict in verdicts:
        for condition in verdict.conditions:
            assert condition.source.startswith(("paper: §", "paper: App.", "paper: Fig.", "harness: ")), (
                f"{verdict.claim}.{condition.name}: {condition.source!r}"
            )


@pytest.mark.parametrize("claim", ["C1", "C2", "C7"])
def test_nothing_moved_never_verifies_a_claim(claim):
    """An SFT identical to its base: every difference is zero, every ratio undefined; no claim about the change
    may hold. (C5 and C6 are about each model's own curves, which an identical pair keeps.)"""
    bundle = paper_like_bundle()
    for name in list(bundle):
        if name.startswith("sft."):
            bundle[name] = bundle["base." + name.removeprefix("sft.")]
    bundle.update(
        cka=series([1.0] * 11),
        cosine=series([1.0] * 11),
        mean_shift=series([0.0] * 11),
        weight_change=series([np.nan] + [0.0] * 10),
        abs_delta_spectral_norm=series([0.0] * 11),
    )
    assert claims.CLAIMS[claim](bundle, T).outcome != claims.HOLDS


def test_a_condition_decides_from_its_whole_interval():
    def condition(interval, value=0.5, comparison=">="):
        return claims.Condition("x", value, 0.3, comparison, interval=interval)

    assert condition((0.35, 0.6)).outcome == claims.HOLDS
    assert condition((0.1, 0.29)).outcome == claims.REFUTED
    assert condition((0.2, 0.6)).outcome == claims.INCONCLUSIVE
    assert condition(None).outcome == claims.HOLDS  # exact: decided on its value
    assert condition(None, value=0.2).outcome == claims.REFUTED
    assert condition((0.35, 0.6), value=math.nan).outcome == claims.INCONCLUSIVE  # NaN is neither outcome
    assert condition((0.0, 0.25), comparison="<=").outcome == claims.HOLDS
    assert condition((0.1, 0.3), comparison=">").outcome == claims.REFUTED  # 0.3 does not exceed 0.3
    verdict = claims.Verdict("X", "t", [condition((0.35, 0.6)), condition((0.2, 0.6))], "x")
    assert verdict.outcome == claims.INCONCLUSIVE
    verdict.conditions.append(condition((0.1, 0.2)))
    assert verdict.outcome == claims.REFUTED
    reported_only = claims.Condition("y", 0.0, 0.3, ">=", decides=False)
    assert claims.Verdict("X", "t", [condition((0.35, 0.6)), reported_only], "x").outcome == claims.HOLDS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_the_predicates_median_and_mean_are_numpys_to_the_last_bit(values):
    array = np.asarray(values, dtype=float)
    assert claims._median(array) == np.median(array)
    assert claims._mean(array) == np.mean(array)


def test_a_best_of_k_condition_takes_the_largest_of_its_candidates_bonferroni_intervals():
    """The largest of the candidates' lower bounds at confidence 1 − (1 − c)/k, of their upper bounds at c."""
    from dataclasses import replace

    from harness.verdicts import intervals

    rng = np.random.default_rng(0)
    draws = rng.normal(size=(2000, 3)) + np.array([0.0, 0.5, -0.2])
    labels = ("a", "b", "c")
    picked = claims.Condition(
        "best_minus_other", 0.5, -1.0, ">=", candidates=tuple(zip(labels, (0.0, 0.5, -0.2), strict=True))
    )
    verdict = claims.Verdict("X", "picked", [picked], "best_minus_other")
    resampled = [
        claims.Verdict(
            "X",
            "picked",
            [replace(picked, value=row.max(), candidates=tuple(zip(labels, row.tolist(), strict=True)))],
            "best_minus_other",
        )
        for row in draws
    ]
    judged = claims.with_intervals(verdict, resampled, 0.95, "")
    lows = [intervals.percentile_interval(draws[:, k], 1 - 0.05 / 3)[0] for k in range(3)]
    highs = [intervals.percentile_interval(draws[:, k], 0.95)[1] for k in range(3)]
    assert judged.main.picks == 3
    assert judged.main.interval == pytest.approx((max(lows), max(highs)))
    single = claims.with_intervals(
        claims.Verdict("X", "one", [replace(picked, candidates=())], "best_minus_other"),
        [
            claims.Verdict("X", "one", [replace(picked, value=v, candidates=())], "best_minus_other")
            for v in draws[:, 1]
        ],
        0.95,
        "",
    )
    assert single.main.interval == pytest.approx(intervals.percentile_interval(draws[:, 1], 0.95))


def test_pearson_of_subnormal_series_is_that_of_the_rescaled_series():
    tiny = np.array([0.0, 0.0, 5e-324, 5e-324, 1e-323])
    other = np.array([0.3, -1.2, 0.8, 0.1, 2.0])

    def layers(values):
        return pd.Series(values, index=range(len(values)))

    exact = stats.pearsonr(tiny / 5e-324, other).statistic
    assert claims.pearson(layers(tiny), layers(other)) == pytest.approx(exact, abs=1e-12)


def test_the_verdict_table_shows_the_condition_that_gave_the_outcome():
    """A refuted verdict shows its refuted condition even when an inconclusive one comes first; an inconclusive
    verdict its unmet condition; a verdict that holds its main statistic."""
    from harness import verification

    unsure = claims.Condition("unsure_track", 0.99, 0.9, ">=", interval=(-1.0, 1.0))
    wrong = claims.Condition("wrong_ratio", 0.5, 0.9, ">=", interval=(0.4, 0.6))
    met = claims.Condition("met_ratio", 5.0, 1.0, ">=", interval=(4.0, 6.0))
    aside = claims.Condition("aside", 0.0, 1.0, ">=", decides=False)  # reported only: never the reason
    assert (unsure.outcome, wrong.outcome, met.outcome) == (claims.INCONCLUSIVE, claims.REFUTED, claims.HOLDS)
    table = verification.verdict_table(
        {
            "R": claims.Verdict("R", "refuted", [met, unsure, wrong], "met_ratio"),
            "I": claims.Verdict("I", "inconclusive", [met, unsure], "met_ratio"),
            "H": claims.Verdict("H", "holds", [aside, met], "met_ratio"),
        }
    )
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:-1]}
    assert rows["R"][1:3] == ["refuted", "wrong_ratio"]
    assert rows["I"][1:3] == ["inconclusive", "unsure_track"]
    assert rows["H"][1:3] == ["holds", "met_ratio"]
    assert table.splitlines()[-1] == "1 holds, 1 refuted, 1 inconclusive"
