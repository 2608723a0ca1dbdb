"""C4, its referee control and C8 on planted arm scores: positives that must hold, negatives that must fail.

The predicates are checked alone, then through a LoraStudy whose runs are drawn here per item and text
(no adapter is trained: the suites' planted pairs do that), so that the averaging over seeds, the paired
bootstrap and the retention distances are exercised on results whose answer is known.
"""

import copy
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import config
from harness.depth import segment_groups
from harness.lora import judge
from harness.lora import plan as lora_plan
from harness.lora import runs as lora_runs
from harness.lora import study as lora_study
from harness.verdicts import claims

T = config.thresholds_for("planted")
MIDDLE = ["01000", "00100", "00010", "01110"]


def scores(**values):
    return pd.Series({label.removeprefix("m"): float(v) for label, v in values.items()})


PAPER_LIKE = scores(m10000=0.22, m01000=0.375, m00100=0.33, m00010=0.30, m00001=0.25, m11111=0.28, m01110=0.34)


def test_c4_holds_when_a_middle_mask_beats_full_and_both_edges():
    verdict = claims.mid_block_beats_full(PAPER_LIKE, MIDDLE, T)
    assert verdict.holds, verdict.explain()
    assert verdict.main.value == pytest.approx(0.375 - 0.28)
    assert verdict.evidence["best_middle"] == ["01000"]


@pytest.mark.parametrize(
    "label, change",
    [
        ("full LoRA is best", {"11111": 0.40}),
        ("the first segment ties the best middle", {"10000": 0.375}),
        ("the last segment is best", {"00001": 0.50}),
    ],
)
def test_c4_fails_on_planted_negatives(label, change):
    planted = PAPER_LIKE.copy()
    for mask, value in change.items():
        planted[mask] = value
    assert not claims.mid_block_beats_full(planted, MIDDLE, T).holds, label


def test_single_segment_inverted_u_holds_on_a_peak_and_fails_on_a_slope():
    groups = segment_groups(40, 10)
    table_2 = pd.Series([0.4503, 0.4589, 0.4693, 0.4761, 0.4771, 0.4754, 0.4502, 0.4215, 0.3966, 0.3821])
    assert claims.single_segment_inverted_u(table_2, groups, T).holds  # App. A, Table 2
    rising = pd.Series(np.linspace(0.3, 0.5, 10))
    assert not claims.single_segment_inverted_u(rising, groups, T).holds
    falling = pd.Series(np.linspace(0.5, 0.3, 10))
    assert not claims.single_segment_inverted_u(falling, groups, T).holds
    flat = pd.Series(np.zeros(10))  # every arm at zero: the middle ties the edges, but nothing rises or falls
    verdict = claims.single_segment_inverted_u(flat, groups, T)
    assert not verdict.holds and "score_range" in verdict.explain()


def test_position_control_holds_only_when_the_mid_block_beats_random_layers_and_both_edges():
    planted = scores(m01110=0.35, random1=0.30, random2=0.28, first20=0.22, last20=0.25)
    assert claims.position_not_budget(planted, "01110", ["random1", "random2"], "first20", "last20", T).holds
    budget_only = planted.copy()
    budget_only[["random1", "random2"]] = [0.36, 0.35]  # random layers at the same budget do as well
    assert not claims.position_not_budget(budget_only, "01110", ["random1", "random2"], "first20", "last20", T).holds


def test_c8_holds_when_the_middle_arm_stays_closest_to_the_base_on_every_set():
    table_4 = {
        "ifeval": pd.Series({"00110": 0.01, "11111": 0.17, "10000": 0.08, "00001": 0.12}),
        "mt_bench": pd.Series({"00110": 0.02, "11111": 0.18, "10000": 0.05, "00001": 0.14}),
    }
    verdict = claims.retention_closest(table_4, "00110", T)
    assert verdict.holds and verdict.main.value == pytest.approx(0.03)
    table_4["mt_bench"]["10000"] = 0.01  # the first segment forgets less on one set
    assert not claims.retention_closest(table_4, "00110", T).holds


# --- through a study, with planted per-item results ---------------------------------------------------

ITEMS, TEXTS, N_LAYERS = 400, 40, 10


@dataclass(frozen=True)
class PlantedResults:
    name: str
    success: dict[str, float]  # arm label -> planted task success rate
    perplexity: dict[str, float]  # arm label (and "base") -> planted retention perplexity
    expected: dict[str, bool]
    description: str


MID_WINS = {
    "10000": 0.15,
    "01000": 0.45,
    "00100": 0.55,
    "00010": 0.40,
    "00001": 0.12,
    "11111": 0.30,
    "01110": 0.50,
    "01100": 0.47,
    "00110": 0.48,
    "random1": 0.25,
    "random2": 0.28,
    "random3": 0.30,
}
MID_CLOSE = {
    "base": 14.5,
    "10000": 14.7,
    "01000": 14.55,
    "00100": 14.56,
    "00010": 14.6,
    "00001": 14.9,
    "11111": 15.2,
    "01110": 14.58,
    "01100": 14.59,
    "00110": 14.57,
    "random1": 14.9,
    "random2": 15.0,
    "random3": 14.8,
}

PLANTED: dict[str, PlantedResults] = {
    control.name: control
    for control in (
        PlantedResults(
            "planted_mid_block",
            MID_WINS,
            MID_CLOSE,
            {"C4": True, "C4:M5": True, "C4-control": True, "C8": True},
            "middle masks score best and forget least, at the same budget",
        ),
        PlantedResults(
            "planted_full_depth",
            {**MID_WINS, "11111": 0.70, "random1": 0.60, "random2": 0.62, "random3": 0.61},
            {**MID_CLOSE, "11111": 14.51},
            {"C4": False, "C4:M5": True, "C4-control": False, "C8": False},
            "full-depth LoRA and random layers score best, and full LoRA forgets least",
        ),
    )
}


def planted_study(
    control: PlantedResults, thresholds: dict, seeds: tuple[int, ...] = (0, 1, 2), seed: int = 0, items: int = ITEMS
) -> lora_study.LoraStudy:
    """A study of a 10-layer model whose runs are drawn from the control's planted rates."""
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=seeds, retention_sets=("wikitext-local",))
    plan = lora_plan.plan_arms(N_LAYERS, thresholds, settings, segment_counts=[5])
    missing = sorted({arm.label for arm in plan.arms} - set(control.success))
    if missing:
        raise KeyError(f"control {control.name} plants no result for the arms {missing}")
    rng = np.random.default_rng(seed)

    def retention(perplexity: float) -> dict:
        tokens = rng.integers(50, 200, TEXTS)
        nll = tokens * math.log(perplexity) * rng.uniform(0.999, 1.001, TEXTS)
        return {
            "wikitext-local": {"perplexity": perplexity, "per_text": {"nll": nll.tolist(), "tokens": tokens.tolist()}}
        }

    def run(label: str) -> dict:
        per_item = (rng.random(items) < control.success[label]).astype(float).tolist()
        return {
            "task": {
                "score": float(np.mean(per_item)),
                "stderr": float(np.std(per_item) / math.sqrt(items)),
                "per_item": per_item,
            },
            "likelihood": {"score": math.nan},
            "retention": retention(control.perplexity[label]),
            "final_loss": math.nan,
            "trainable_parameters": plan.arms[0].full_budget,
            "seconds": {"train": 0.0, "score": 0.0},
        }

    study = lora_study.LoraStudy(control.name, None, thresholds, settings, plan)
    study.untuned = {
        "task": {"score": 0.0, "stderr": 0.0},
        "likelihood": {"score": math.nan},
        "retention": retention(control.perplexity["base"]),
    }
    study.runs = {(arm.label, s): run(arm.label) for arm in plan.arms for s in seeds}
    return study


def planted(name, seeds=(0, 1, 2)):
    return planted_study(PLANTED[name], T, seeds)


def test_a_planted_mid_block_study_gives_every_verdict_with_an_interval_around_it():
    study = planted("planted_mid_block")
    verdicts = study.all_verdicts()
    assert sorted(verdicts) == ["C4", "C4-control", "C4:M5", "C8"] and not study.skipped
    for key, verdict in verdicts.items():
        assert verdict.holds, verdict.explain()
        low, high = verdict.ci
        assert low <= verdict.main.value <= high, key
        assert low > 0, f"{key}: a planted gap this large should have an interval above zero"


def test_a_planted_study_where_full_lora_wins_and_forgets_least_fails():
    verdicts = planted("planted_full_depth").all_verdicts()
    assert not verdicts["C4"].holds and verdicts["C4"].ci[1] < 0
    assert not verdicts["C4-control"].holds
    assert not verdicts["C8"].holds
    assert verdicts["C4:M5"].holds  # the single segments still peak in the middle: only full LoRA moved


def test_a_control_that_plants_no_result_for_an_arm_is_refused():
    control = PLANTED["planted_mid_block"]
    partial = PlantedResults("partial", {"11111": 0.3}, control.perplexity, {}, "")
    with pytest.raises(KeyError, match="plants no result"):
        planted_study(partial, T)


def test_verdicts_that_need_arms_outside_the_plan_say_which():
    study = planted("planted_mid_block")
    assert "--tune-segments 3 5" in study.unavailable("C4:M3")
    with pytest.raises(LookupError, match="M = 10"):
        study.verdict("C4:M10")
    masks_only = lora_study.LoraStudy(
        "planted", None, T, study.settings, lora_plan.plan_masks(["01100", "11111"], 10, study.settings)
    )
    assert "C4 needs the masks" in masks_only.unavailable("C4")
    assert "whole study" in masks_only.unavailable("C4-control")
    no_retention = lora_study.LoraStudy(
        "planted", None, T, dataclasses.replace(study.settings, retention_sets=()), study.plan
    )
    assert "measures no retention" in no_retention.unavailable("C8")


def test_the_arm_table_has_one_row_per_arm_and_seed_and_the_summary_starts_with_the_base():
    study = planted("planted_mid_block", seeds=(0, 1, 2))
    table = study.table()
    assert len(table) == len(study.plan.arms) * 3
    summary = study.summary()
    assert summary.index[0] == "base" and summary.loc["base", "ppl:wikitext-local"] == 14.5
    assert summary.loc["00100", "score"] == pytest.approx(table[table.arm == "00100"]["score"].mean())
    assert summary.loc["00100", "score"] == pytest.approx(0.55, abs=0.06)  # the planted rate, within noise


def test_a_study_section_is_written_as_strict_json(tmp_path):
    import json

    from harness.output import reports

    study = planted("planted_mid_block")
    study.all_verdicts()
    path = reports.write_report(tmp_path / "report.json", {"lora": study.section()})  # base score_sd is NaN

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    section = json.loads(path.read_text(), parse_constant=refuse)["lora"]
    assert section["summary"][0]["arm"] == "base" and section["summary"][0]["score_sd"] is None
    assert {row["arm"] for row in section["arms"]} == {arm.label for arm in study.plan.arms}
    assert section["verdicts"]["C8"]["holds"] is True


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_of_a_study_train_every_run_exactly_once(monkeypatch, count):
    from harness.lora import runs as lora_runs

    thresholds = config.thresholds_for("tiny_olmo2")
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=(0, 1, 2))
    plan = lora_plan.plan_arms(10, thresholds, settings, segment_counts=[5])
    study = lora_study.LoraStudy("x", None, thresholds, settings, plan)
    trained = []
    monkeypatch.setattr(
        lora_runs, "run_arm", lambda base, arm, seed, *args, **kwargs: trained.append((arm.label, seed))
    )
    sizes = [study.run_shard(index, count, progress=False) for index in range(1, count + 1)]
    expected = [(arm.label, seed) for arm in plan.arms for seed in settings.seeds]
    assert sorted(trained) == sorted(expected) and len(trained) == len(set(trained)) == sum(sizes)
    assert max(sizes) - min(sizes) <= 1  # the shards are as even as the run count allows
    with pytest.raises(ValueError, match="between 1 and"):
        study.run_shard(count + 1, count)


def _gathered_means(matrix, seeds, drawn):
    """Each resample's arm means by gathering its seeds and items: the definition the contraction must match."""
    return np.stack([matrix[:, s][:, :, d].mean(axis=(1, 2)) for s, d in zip(seeds, drawn, strict=True)])


@pytest.mark.parametrize("binary", [True, False])
def test_all_resamples_mean_at_once_as_each_resample_gathered_alone(binary):
    rng = np.random.default_rng(3)
    matrix = rng.integers(0, 2, (5, 3, 40)).astype(float) if binary else rng.normal(size=(5, 3, 40))
    seeds, drawn = rng.integers(0, 3, (50, 3)), rng.integers(0, 40, (50, 40))
    expected = _gathered_means(matrix, seeds, drawn)
    measured = judge.resampled_means(matrix, seeds, drawn)
    if binary:  # sums of zeros and ones are exact in any order: the verdicts of real studies do not move
        assert np.array_equal(measured, expected)
    else:
        np.testing.assert_allclose(measured, expected, rtol=1e-12)


def test_an_undefined_item_makes_only_the_resamples_that_draw_it_undefined():
    matrix = np.ones((2, 1, 4))
    matrix[1, 0, 3] = np.nan
    drawn = np.array([[0, 1, 2, 2], [3, 0, 1, 2]])
    means = judge.resampled_means(matrix, np.zeros((2, 1), dtype=int), drawn)
    assert means[0].tolist() == [1.0, 1.0] and means[1, 0] == 1.0 and np.isnan(means[1, 1])
    assert np.array_equal(np.isnan(means), np.isnan(_gathered_means(matrix, np.zeros((2, 1), dtype=int), drawn)))


def test_a_studys_verdicts_share_one_set_of_resamples_drawn_in_turn():
    judge.resample_indices.cache_clear()
    study = planted("planted_mid_block")
    for key in ("C4", "C4:M5"):
        study.verdict(key)
    assert judge.resample_indices.cache_info().misses == 1  # drawn once, read by both verdicts
    drawn = judge.resample_indices(5, 2, 3, 4, (("texts", 2),))
    rng = np.random.default_rng(5)  # each resample in turn: its seeds, its items, then each text set's
    for row in range(2):
        assert drawn["joint"][0][row].tolist() == rng.integers(0, 3, 3).tolist()
        assert drawn["joint"][1][row].tolist() == rng.integers(0, 4, 4).tolist()
        assert drawn["joint"][2]["texts"][row].tolist() == rng.integers(0, 2, 2).tolist()
    assert drawn["seeds"][2] is None and drawn["items"][0].tolist() == [[0, 1, 2]] * 2
    assert not drawn["joint"][1].flags.writeable  # shared between verdicts: nobody may change them
    assert judge.resample_indices(5, 0, 3, 4, ()) == {"joint": None, "seeds": None, "items": None}


def test_the_minimum_detectable_difference_shrinks_as_the_root_of_the_items_scored():
    control = PLANTED["planted_mid_block"]
    small, large = (
        planted_study(control, T, items=n).minimum_detectable_difference("01110", "11111") for n in (100, 1600)
    )
    for power in (small, large):
        low, high = power["interval"]
        assert low < power["difference"] < high
        assert power["minimum_detectable"] == pytest.approx(power["half_width"] * (1 + 0.8416 / 1.96), rel=1e-3)
    assert small["minimum_detectable"] / large["minimum_detectable"] == pytest.approx(4, rel=0.35)


def test_a_study_reports_its_power_for_the_best_middle_mask_against_full_lora():
    power = planted("planted_mid_block").power()
    assert power["arms"] == ["00100", "11111"]  # the planted best middle mask (0.55) against full LoRA (0.30)
    assert 0 < power["minimum_detectable"] < power["difference"]


def test_a_difference_with_no_finite_resample_has_no_minimum_detectable_difference():
    study = planted("planted_mid_block")
    for seed in study.settings.seeds:
        study.runs[("11111", seed)]["task"]["per_item"] = [float("nan")] * ITEMS
    power = study.minimum_detectable_difference("01110", "11111")
    assert power["interval"] is None and power["minimum_detectable"] is None


HOLD_AND_WRITE = """
import sys, time
from pathlib import Path
from harness import cache
folder = Path(sys.argv[1])
with cache.exclusive(folder):
    (folder.parent / "held").write_text("yes")
    time.sleep(1.5)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text("{}")
"""


def test_a_shared_study_passes_over_the_run_another_process_trains_and_waits_for_its_result(monkeypatch, tmp_path):
    import subprocess
    import sys
    import time

    from harness import cache
    from harness.lora import runs as lora_runs

    thresholds = config.thresholds_for("tiny_olmo2")
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=(0, 1))
    plan = lora_plan.plan_arms(10, thresholds, settings, segment_counts=[5])
    study = lora_study.LoraStudy("x", None, thresholds, settings, plan)
    folder_of = {(arm.label, seed): tmp_path / f"{arm.label}-{seed}" for arm, seed in study.jobs()}
    trained = []

    def run_arm(base, arm, seed, *args, **kwargs):
        folder = folder_of[(arm.label, seed)]
        with cache.exclusive(folder):
            if not (folder / "result.json").exists():
                trained.append((arm.label, seed))
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "result.json").write_text("{}")

    monkeypatch.setattr(lora_runs, "run_folder", lambda base, arm, seed, settings: folder_of[(arm.label, seed)])
    monkeypatch.setattr(
        lora_runs,
        "cached_result",
        lambda base, arm, seed, settings: {} if (folder_of[(arm.label, seed)] / "result.json").exists() else None,
    )
    monkeypatch.setattr(lora_runs, "run_arm", run_arm)
    first = study.jobs()[0]
    other = subprocess.Popen([sys.executable, "-c", HOLD_AND_WRITE, str(folder_of[(first[0].label, first[1])])])
    while not (tmp_path / "held").exists():
        time.sleep(0.01)
    count = study.run_shared(progress=False)
    assert other.wait() == 0
    expected = [(arm.label, seed) for arm, seed in study.jobs()[1:]]
    assert trained == expected and count == len(expected)  # the held run was trained by the other process only
    assert all((folder / "result.json").exists() for folder in folder_of.values())


def test_reading_a_study_that_has_not_run_says_so_and_never_trains(monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("reading a study trained it")

    monkeypatch.setattr(lora_runs, "run_arm", train)
    monkeypatch.setattr(lora_runs, "base_scores", train)
    thresholds = config.thresholds_for("tiny_olmo2")
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=(0, 1))
    plan = lora_plan.plan_arms(10, thresholds, settings, segment_counts=[5])
    study = lora_study.LoraStudy("unrun", None, thresholds, settings, plan)
    reads = [
        study.scores,
        study.table,
        study.summary,
        study.evidence,
        study.section,
        study.untuned_scores,
        lambda: study.verdict("C4"),
        lambda: study.minimum_detectable_difference("11111", "01110"),
    ]
    for read in reads:
        with pytest.raises(lora_study.StudyNotRunError, match="has not run: train it with `harness tune"):
            read()
    assert not study.has_run and study.runs == {}


def test_a_model_too_shallow_for_an_inverted_u_count_has_that_verdict_withheld_with_the_reason():
    thresholds = {**T, "C4": {**T["C4"], "inverted_u_counts": [3, 5, 10]}}
    settings = lora_runs.TuneSettings(task="gsm8k_local")
    plan = lora_plan.plan_arms(6, thresholds, settings)
    assert plan.roles["single:10"] == [] and all(len(arm.label) != 10 for arm in plan.arms)
    assert len(plan.roles["single:3"]) == 3 and len(plan.roles["single:5"]) == 5
    study = lora_study.LoraStudy("shallow", None, thresholds, settings, plan)
    assert study.verdict_keys() == ["C4", "C4:M3", "C4:M5", "C4:M10", "C4-control", "C8"]
    assert "shallow has 6 decoder layers: C4 at M = 10 needs at least 10" in study.unavailable("C4:M10")
    assert study.unavailable("C4:M3") is None and study.unavailable("C4:M5") is None


def test_the_lora_figure_and_table_show_a_retention_set_that_could_not_be_read_as_unavailable(tmp_path):
    from harness.output import plots

    study = planted("planted_mid_block")
    unreadable = {"unavailable": "probe set 'ifeval' is not in the datasets cache"}  # a real set offline
    for scored in (study.untuned, *study.runs.values()):
        scored["retention"]["ifeval"] = unreadable
    assert plots.lora_figure("planted_mid_block", study, tmp_path / "lora.png").is_file()
    table = plots.lora_markdown("planted_mid_block", study)
    rows = [row for row in table if row.startswith("| ") and row.count("|") == table[2].count("|")][1:]
    assert table[2].endswith("| ppl:wikitext-local | ppl:ifeval |") and rows[0].startswith("| base | untuned |")
    assert len(rows) == 1 + len(study.plan.arms) and all(row.endswith(" | unavailable |") for row in rows)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_a_study_whose_arms_all_score_one_value_on_every_item_gives_no_verdict_on_the_arms(rate):
    # no arm solves an item (or every arm every item): each resample is the same, so a percentile interval would
    # be the point itself and refute "the middle scores higher" on data that cannot compare the arms
    bound = PlantedResults("bound", dict.fromkeys(MID_WINS, rate), MID_CLOSE, {}, "every arm at one score")
    study = planted_study(bound, T)
    for key in ("C4", "C4:M5", "C4-control"):
        verdict = study.verdict(key)
        assert verdict.outcome == "inconclusive", verdict.explain()
        assert f"every arm scored {rate:g} on every item with every seed" in verdict.ci_note
        assert all(math.isnan(low) and math.isnan(high) for low, high in (c.interval for c in verdict.conditions))
    assert study.verdict("C8").holds  # the retention texts still separate the arms


def test_arms_at_the_floor_beside_arms_that_score_keep_their_verdicts():
    edges_at_zero = {**MID_WINS, "10000": 0.0, "00001": 0.0}
    study = planted_study(PlantedResults("edges", edges_at_zero, MID_CLOSE, {}, "edges never score"), T)
    assert study.verdict("C4").holds and study.verdict("C4:M5").holds
    assert "every arm scored" not in study.verdict("C4").ci_note


def test_a_condition_on_arms_that_scored_alike_on_every_item_has_no_interval_and_the_others_keep_theirs():
    study = planted("planted_mid_block")
    for seed in study.settings.seeds:  # the first 20% arm answers every item as the mid-block does
        study.runs[("10000", seed)]["task"] = copy.deepcopy(study.runs[("01110", seed)]["task"])
    verdict = study.verdict("C4-control")
    alike = next(c for c in verdict.conditions if c.name == "middle_minus_first_20pct")
    assert alike.value == 0 and all(math.isnan(bound) for bound in alike.interval)
    assert alike.outcome == "inconclusive" and "middle_minus_first_20pct: the arms compared scored alike" in (
        verdict.ci_note
    )
    assert verdict.outcome == "inconclusive", verdict.explain()  # it was refuted on the point [0, 0]
    kept = next(c for c in verdict.conditions if c.name == "middle_minus_last_20pct")
    assert kept.interval[0] < kept.value < kept.interval[1] and kept.outcome == "holds"


# Every resample of a study or a swap is judged at once, over columns (``claims.Resampled``): each resample's
# conditions must be exactly those its own verdict gives, and both exactly what the claim's definition gives in
# plain Python floats (written out below), undefined, infinite, tied and signed-zero scores included.
SCORE = st.one_of(
    st.sampled_from([0.0, -0.0, 0.25, 0.5, math.nan, math.inf, -math.inf]),
    st.floats(min_value=-1, max_value=1, allow_nan=False),
)
ARMS = ["01000", "00100", "00010", "01110", "11111", "10000", "00001", "r1", "r2", "r3"]
MIDDLE_ARMS, RANDOM_ARMS, SEGMENT_ARMS = ARMS[:4], ARMS[7:], ARMS[:5]


def _defined(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _highest(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return max(defined) if defined else math.nan  # the first of equals


def _lowest(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return min(defined) if defined else math.nan


def _best_of(values: list[float], against: float) -> tuple[float, list[float]]:
    candidates = [_defined(v - against) for v in values]
    return _highest(candidates), candidates


def _mean(values: list[float]) -> float:
    defined = np.array([v for v in values if not math.isnan(v)])
    with np.errstate(invalid="ignore", over="ignore"):  # inf − inf is NaN, as in Python
        return float(defined.sum() / len(defined)) if len(defined) else math.nan


def _by_definition(s: dict, host: float, other: dict, middle: str) -> dict[str, dict[str, tuple]]:
    """Per claim, condition -> (value, candidates) from the definitions, on one resample's scores."""
    full, first, last = "11111", "10000", "00001"
    c4 = {}
    for edge, arm in (("full", full), ("first", first), ("last", last)):
        c4[f"best_middle_minus_{edge}"] = _best_of([s[m] for m in MIDDLE_ARMS], s[arm])
        c4[f"midblock_minus_{edge}"] = (_defined(s["01110"] - s[arm]), [])
    control = {
        "middle_minus_random_mean": (_defined(s["01110"] - _mean([s[r] for r in RANDOM_ARMS])), []),
        "middle_minus_first_20pct": (_defined(s["01110"] - s[first]), []),
        "middle_minus_last_20pct": (_defined(s["01110"] - s[last]), []),
    }
    segments = [s[label] for label in SEGMENT_ARMS]  # segments 0-4 of 10 layers: 0 first, 4 last, 1-3 middle
    best_edge = _highest([segments[0], segments[4]])
    single = {
        "middle_minus_best_edge": _best_of(segments[1:4], best_edge),
        "score_range": (_defined(_highest(segments) - _lowest(segments)), []),
    }
    swap = {
        "middle_minus_best_edge": single["middle_minus_best_edge"],
        "best_edge_minus_host": (_defined(best_edge - host), []),
        "best_middle_minus_host": _best_of(segments[1:4], host),
    }
    compared = T["C8"]["compared"]
    margins = {name: _lowest([d[a] for a in compared]) - d[middle] for name, d in (("a", s), ("b", other))}
    retention = {
        "closest_margin": (_defined(min(margins.values())), []),
        **{f"{name}_margin": (_defined(margin), []) for name, margin in margins.items()},
    }
    return {"C4": c4, "C4-control": control, "C4:M5": single, "C3": swap, "C8": retention}


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def _agrees(claim: str, resampled: claims.Resampled, verdicts: list[claims.Verdict], defined: list[dict]) -> None:
    for row, (verdict, expected) in enumerate(zip(verdicts, defined, strict=True)):
        assert sorted(c.name for c in verdict.conditions) == sorted(expected[claim]), claim
        for condition in verdict.conditions:
            value, candidates = expected[claim][condition.name]
            assert _same_float(condition.value, value), (claim, condition.name, condition.value, value)
            assert _same_float(float(resampled.values(condition.name)[row]), value), (claim, condition.name, row)
            assert len(condition.candidates) == len(candidates)
            for (label, own), wanted in zip(condition.candidates, candidates, strict=True):
                assert _same_float(own, wanted), (claim, condition.name, label)
                assert _same_float(float(resampled.values(condition.name, label)[row]), wanted), (claim, label, row)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(SCORE, min_size=len(ARMS), max_size=len(ARMS)), min_size=1, max_size=6))
def test_every_resample_judged_at_once_gets_the_conditions_its_own_verdict_and_the_definition_give(rows):
    count = len(rows)
    columns = {label: np.array([row[i] for row in rows]) for i, label in enumerate(ARMS)}
    per_row = [dict(zip(ARMS, row, strict=True)) for row in rows]
    reversed_rows = per_row[::-1]  # a second text set's distances: the rows in the other order
    middles = [MIDDLE_ARMS[r % 4] for r in range(count)]  # the middle arm picked in each resample
    hosts = [s["r1"] for s in per_row]
    defined = [_by_definition(s, hosts[r], reversed_rows[r], middles[r]) for r, s in enumerate(per_row)]
    groups = segment_groups(10, 5)
    segments = {n: columns[label] for n, label in enumerate(SEGMENT_ARMS)}

    def by_segment(s: dict) -> dict:
        return {n: s[label] for n, label in enumerate(SEGMENT_ARMS)}

    _agrees(
        "C4",
        claims.mid_block_resampled(columns, MIDDLE_ARMS, T, "01110"),
        [claims.mid_block_beats_full(s, MIDDLE_ARMS, T, "01110") for s in per_row],
        defined,
    )
    _agrees(
        "C4-control",
        claims.position_resampled(columns, "01110", RANDOM_ARMS, "10000", "00001"),
        [claims.position_not_budget(s, "01110", RANDOM_ARMS, "10000", "00001", T) for s in per_row],
        defined,
    )
    _agrees(
        "C4:M5",
        claims.single_segment_resampled(segments, groups),
        [claims.single_segment_inverted_u(by_segment(s), groups, T) for s in per_row],
        defined,
    )
    _agrees(
        "C3",
        claims.inverted_u_swap_resampled(segments, groups, T, columns["r1"]),
        [claims.inverted_u_swap(by_segment(s), groups, T, host=hosts[r]) for r, s in enumerate(per_row)],
        defined,
    )
    other = {label: column[::-1].copy() for label, column in columns.items()}
    _agrees(
        "C8",
        claims.retention_resampled({"a": columns, "b": other}, middles, T),
        [claims.retention_closest({"a": s, "b": reversed_rows[r]}, middles[r], T) for r, s in enumerate(per_row)],
        defined,
    )
