"""Regression mode: baselines, per-layer differences, `harness diff`, and the suites' --baseline run."""

import copy
import json
import re
from pathlib import Path

import pytest

from harness import cli
from harness.output import reports
from harness.verdicts import regression

ROOT = Path(__file__).resolve().parent.parent
TINY_BASELINE = sorted((ROOT / "baselines" / "tiny_olmo2").glob("gsm8k-local.build-*.json"))[0]


def _stored_under(tmp_path):
    """Baselines and reports under ``tmp_path``."""
    return ("--baselines-dir", str(tmp_path / "baselines"), "--report-dir", str(tmp_path / "reports"))


@pytest.fixture
def baseline():
    return reports.load_report(TINY_BASELINE)


def _nudge(section, table, column, layer, delta):
    changed = copy.deepcopy(section)
    payload = changed["tables"][table]
    row, col = payload["index"].index(layer), payload["columns"].index(column)
    payload["data"][row][col] += delta
    return changed


def test_identical_sections_do_not_differ(baseline):
    assert regression.compare_sections(baseline, copy.deepcopy(baseline)) == []


def test_an_undefined_interval_matches_its_stored_self(baseline, tmp_path):
    # a report stores NaN as null: the measured verdict (NaN) and its baseline (None) agree
    measured = copy.deepcopy(baseline)
    measured["verdicts"]["C1"]["ci"] = [float("nan"), float("nan")]
    stored = reports.load_report(reports.write_report(tmp_path / "stored.json", measured))
    assert stored["verdicts"]["C1"]["ci"] == [None, None]
    assert regression.compare_sections(stored, measured) == []
    assert regression.compare_sections(baseline, measured) != []  # a defined interval is not an undefined one


def test_a_changed_value_is_reported_with_its_table_column_and_layer(baseline):
    differences = regression.compare_sections(baseline, _nudge(baseline, "pair", "cka", 3, 0.01))
    assert [(d.where, d.column, d.layer) for d in differences] == [("pair table", "cka", 3)]
    text = regression.format_differences(differences)
    assert "pair table" in text and "cka" in text and "rtol" in text


def test_changes_within_tolerance_are_not_drift(baseline):
    value = reports.table(baseline, "pair").loc[3, "cka"]
    assert regression.compare_sections(baseline, _nudge(baseline, "pair", "cka", 3, value * 1e-6)) == []


@pytest.mark.parametrize("outcome", ["holds", "refuted", "inconclusive"])
def test_a_changed_outcome_is_drift(baseline, outcome):
    changed = copy.deepcopy(baseline)
    changed["verdicts"]["C1"]["outcome"] = outcome
    expected = [] if outcome == baseline["verdicts"]["C1"]["outcome"] else [("verdict C1", "outcome")]
    assert [(d.where, d.column) for d in regression.compare_sections(baseline, changed)] == expected


def test_missing_and_corrupt_baselines_are_clear_errors(tmp_path):
    with pytest.raises(reports.ReportError, match="--update-baselines"):
        regression.load_baseline(tmp_path / "none.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema_version": 1, "tables": ')
    with pytest.raises(reports.ReportError, match="not valid JSON"):
        regression.load_baseline(corrupt)
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"schema_version": 0}))
    with pytest.raises(reports.ReportError, match="schema version 0"):
        regression.load_baseline(older)


def _damage(report: dict, damage: str) -> None:
    """Change ``report`` in place as a hand edit or a broken write might."""
    tables, verdicts = report["tables"], report["verdicts"]
    if damage == "tables_a_list":
        report["tables"] = []
    elif damage == "table_without_data":
        del tables["pair"]["data"]
    elif damage == "short_row":
        tables["base"]["data"][0] = tables["base"]["data"][0][:-1]
    elif damage == "text_value":
        tables["sft"]["data"][1][0] = "x"
    elif damage == "verdict_as_text":
        verdicts["C1"] = "holds"
    elif damage == "verdict_without_value":
        del verdicts["C2"]["value"]
    elif damage == "one_sided_interval":
        verdicts["C1"]["ci"] = [0.1]
    elif damage == "no_pair_name":
        del report["pair"]["name"]


DAMAGES = {
    "tables_a_list": "its 'tables' is a list, not an object",
    "table_without_data": "its table 'pair' lacks its columns, index and data lists",
    "short_row": "its table 'base' has rows that do not match its",
    "text_value": "its table 'sft' holds a value that is not a number",
    "verdict_as_text": "its verdict 'C1' is a str, not an object",
    "verdict_without_value": "its verdict 'C2' lacks its statistic or its numeric value",
    "one_sided_interval": "its verdict 'C1' has an interval that is not two numbers",
    "no_pair_name": "not a well-formed baseline report (no pair name)",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_report_shaped_otherwise_than_the_harness_writes_is_one_clear_error(baseline, tmp_path, capsys, damage):
    """Valid JSON of the right schema version, damaged inside: the baseline check, `harness diff` and `harness
    rescore` each refuse it in one line naming the file, never with a traceback."""
    damaged = copy.deepcopy(baseline)
    _damage(damaged, damage)
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(damaged))
    if damage != "no_pair_name":  # a stored baseline is read by the path it is stored under, not by its pair name
        with pytest.raises(reports.ReportError, match=DAMAGES[damage]):
            regression.load_baseline(path)
        claims_report = {
            "schema_version": damaged["schema_version"],
            "kind": "claims",
            "pairs": {"tiny_olmo2": damaged},
            "evidence": {"tiny_olmo2": {}},
        }
        (tmp_path / "claims.json").write_text(json.dumps(claims_report))
        assert cli.main(["rescore", str(tmp_path / "claims.json")]) == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert message.startswith("error: ") and "claims.json" in message and DAMAGES[damage] in message
    assert cli.main(["diff", str(TINY_BASELINE), str(path)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and str(path) in message and DAMAGES[damage] in message


def test_harness_diff_exits_non_zero_on_drift(baseline, tmp_path, capsys):
    same, drifted = tmp_path / "same.json", tmp_path / "drifted.json"
    same.write_text(json.dumps(baseline))
    drifted.write_text(json.dumps(_nudge(baseline, "sft", "effective_rank", 7, 1.0)))
    assert cli.main(["diff", str(TINY_BASELINE), str(same)]) == 0
    assert cli.main(["diff", str(TINY_BASELINE), str(drifted)]) == 1
    out = capsys.readouterr().out
    assert "sft table" in out and "effective_rank" in out and "    7 " in out
    assert cli.main(["diff", str(TINY_BASELINE), str(tmp_path / "missing.json")]) == 2


def test_harness_diff_lists_as_many_differences_as_asked_and_refuses_a_negative_count(baseline, tmp_path, capsys):
    drifted = tmp_path / "drifted.json"
    changed = _nudge(_nudge(baseline, "sft", "effective_rank", 7, 1.0), "sft", "effective_rank", 8, 1.0)
    drifted.write_text(json.dumps(changed))
    assert cli.main(["diff", str(TINY_BASELINE), str(drifted), "--limit", "1"]) == 1
    assert re.search(r"\n\.\.\. and \d+ more", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        cli.main(["diff", str(TINY_BASELINE), str(drifted), "--limit", "-3"])
    assert "argument --limit: --limit must be at least 0; got -3" in capsys.readouterr().err


def _this_build_section():
    """tiny_olmo2 as this machine builds and profiles it (both cached by the warm-up): another CPU builds
    another pair, so a test of the regression mode compares this build with a baseline of this build."""
    from harness import config, verification
    from harness.measure.profile import ProfileOptions
    from harness.sources import data, models

    options = ProfileOptions(
        probe_set="gsm8k-local",
        pooled_samples=data.POOLED_SAMPLES,
        token_samples=data.TOKEN_LEVEL_SAMPLES,
        dtype="float32",
    )
    return verification.measure(
        models.get_spec("tiny_olmo2"), options, progress=False, claims_config=config.with_settings(None, [])
    ).section()


@pytest.mark.slow
def test_suites_compare_a_tiny_pair_with_the_baseline_of_its_own_build_and_fail_on_a_per_layer_diff(
    baseline, run_suites, tmp_path
):
    section = _this_build_section()
    build = regression.build_of(section["pair"])
    own = {**baseline, "pair": section["pair"], "probe": section["probe"], "tables": section["tables"]}
    stored = regression.baseline_path(tmp_path / "baselines", "tiny_olmo2", "gsm8k-local", build)
    stored.parent.mkdir(parents=True)
    for name, payload, returncode in (("same", own, 0), ("nudged", _nudge(own, "base", "spectral_norm", 5, 3.0), 1)):
        stored.write_text(json.dumps(payload))
        run = run_suites("suites/test_regression.py", "-m", "tiny_olmo2", "--baseline", *_stored_under(tmp_path))
        assert run.returncode == returncode, (name, run.stdout[-3000:])
    assert "drifted from its baseline, per layer" in run.stdout
    assert "base table" in run.stdout and "spectral_norm" in run.stdout
    # another build's baseline only: no false failure, a skip that names both builds and what to do
    stored.rename(stored.with_name("gsm8k-local.build-00000000-00000000.json"))
    run = run_suites("suites/test_regression.py", "-m", "tiny_olmo2", "--baseline", *_stored_under(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"no baseline of this build of tiny_olmo2 (weights {build}; stored builds: 00000000-00000000)" in run.stdout
    assert "--update-baselines" in run.stdout and "1 skipped" in run.stdout


def test_a_built_pair_s_baselines_are_kept_per_build(tmp_path):
    weights = {"base_weights": "sha256:4f10a404781a", "sft_weights": "sha256:a0f52081b46c"}
    assert regression.build_of(weights) == "4f10a404-a0f52081"
    path = regression.baseline_path(tmp_path, "tiny_olmo2", "gsm8k-local", regression.build_of(weights))
    assert path == tmp_path / "tiny_olmo2" / "gsm8k-local.build-4f10a404-a0f52081.json"
    assert regression.baseline_path(tmp_path, "olmo2_7b", "gsm8k-local") == tmp_path / "olmo2_7b" / "gsm8k-local.json"
    path.parent.mkdir()
    path.write_text("{}")
    assert regression.stored_builds(tmp_path, "tiny_olmo2", "gsm8k-local") == ["4f10a404-a0f52081"]
    assert regression.stored_builds(tmp_path, "tiny_mistral", "gsm8k-local") == []


BASELINES = sorted((ROOT / "baselines").glob("*/*.json"))


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_stored_interval_contains_its_point_estimate_and_every_verdict_has_an_outcome(path):
    stored = reports.load_report(path)
    assert stored["verdicts"], f"{path} holds no verdict"
    for key, verdict in stored["verdicts"].items():
        assert verdict.get("outcome") in ("holds", "refuted", "inconclusive"), f"{path}: {key} has no outcome"
        for condition in verdict["conditions"]:
            interval, value = condition.get("interval"), condition["value"]
            if interval and value is not None and None not in interval:
                low, high = interval
                assert low <= value <= high, f"{path}: {key}.{condition['name']} = {value} outside [{low}, {high}]"
            assert condition.get("source"), f"{path}: {key}.{condition['name']} has no threshold source"


def test_a_baseline_is_written_only_from_a_complete_run_without_failures(baseline):
    complete = {"tables": {}, "swaps": {"base_with_sft_block": {}, "sft_with_base_block": {}}, "lora": {}}
    assert regression.baseline_refusal("tiny_olmo2", complete, 0, False, tuned=True) is None
    one_way = {**complete, "swaps": {"base_with_sft_block": {}}}
    assert "did not measure the swaps sft_with_base_block" in regression.baseline_refusal(
        "tiny_olmo2", one_way, 0, False, tuned=True
    )
    assert "interrupted" in regression.baseline_refusal("tiny_olmo2", complete, 0, True, tuned=True)
    assert "2 tests on tiny_olmo2 failed" in regression.baseline_refusal("tiny_olmo2", complete, 2, False, True)
    partial = regression.baseline_refusal("tiny_olmo2", {"tables": {}}, 0, False, tuned=True)
    assert "swaps, lora" in partial and "--tune tiny_olmo2" in partial
    assert (
        regression.baseline_refusal("tiny_mistral", {"tables": {}, "swaps": complete["swaps"]}, 0, False, tuned=False)
        is None
    )


def test_a_baseline_of_another_pair_or_other_weights_is_named_as_such(baseline):
    pair = dict(baseline["pair"])
    assert regression.other_source(baseline, pair) is None
    assert "of the pair 'tiny_olmo2', not 'tiny_mistral'" in regression.other_source(
        baseline, {**pair, "name": "tiny_mistral"}
    )
    assert "other weights: sft" in regression.other_source(baseline, {**pair, "sft_weights": "sha256:0"})


def test_an_incomplete_update_run_keeps_the_old_baseline_and_says_why(baseline, run_suites, tmp_path):
    stored = tmp_path / "baselines" / "tiny_olmo2" / "gsm8k-local.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(baseline))
    before = stored.read_bytes()
    run = run_suites(
        "suites/test_c2_weight_change.py", "-m", "tiny_olmo2", "--update-baselines", *_stored_under(tmp_path)
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "baseline of tiny_olmo2 not written: this run did not measure its swaps, lora" in run.stdout
    assert stored.read_bytes() == before


def test_an_update_run_with_failed_tests_keeps_the_old_baseline(run_suites, tmp_path):
    from harness.sources import zoo
    from tests.conftest import MICRO

    built = zoo.build_pair(
        "micro_olmo2",
        zoo.TinyRecipe(family="olmo2", **{**MICRO, "num_layers": 4}),
        root=tmp_path / "zoo",
        progress=False,
    )
    stored = tmp_path / "baselines" / "custom" / "gsm8k-local.json"
    stored.parent.mkdir(parents=True)
    stored.write_text("{}")
    run = run_suites(
        "suites/test_c3_layer_swap.py",
        "suites/test_c2_weight_change.py",
        "--base",
        str(built.base_dir),
        "--sft",
        str(built.sft_dir),
        "--update-baselines",
        "--pooled-samples",
        "40",
        "--token-samples",
        "10",
        "-x",
        *_stored_under(tmp_path),
        env={"HARNESS_CACHE": str(tmp_path / "cache")},
    )
    assert run.returncode == 1, run.stdout[-3000:]  # 4 layers cannot be split into 5 segments
    assert "baseline of custom not written: " in run.stdout and "failed" in run.stdout
    assert stored.read_text() == "{}"


def _claims_report(section):
    return {
        "schema_version": reports.SCHEMA_VERSION,
        "kind": "claims",
        "environment": {},
        "pairs": {section["pair"]["name"]: {k: v for k, v in section.items() if k not in ("kind", "environment")}},
    }


def _write(tmp_path, name, payload):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def test_harness_diff_reads_profile_claims_lora_and_evaluate_reports(baseline, tmp_path):
    profile_report = {**{k: v for k, v in baseline.items() if k != "verdicts"}, "kind": "profile"}
    evaluate_report = {
        "schema_version": reports.SCHEMA_VERSION,
        "kind": "evaluate",
        "environment": {},
        "pair": "tiny_olmo2",
        "scores": {"base": {"gsm8k_local": {"score": 0.1}}},
    }
    lora_report = {
        "schema_version": reports.SCHEMA_VERSION,
        "kind": "lora",
        "environment": {},
        "pairs": {"tiny_olmo2": {"lora": baseline["lora"], "verdicts": {"C4": baseline["verdicts"]["C4"]}}},
    }
    for payload in (profile_report, evaluate_report, lora_report, _claims_report(baseline), baseline):
        path = _write(tmp_path, f"{payload['kind']}.json", payload)
        assert cli.main(["diff", str(path), str(path)]) == 0, payload["kind"]
    higher = copy.deepcopy(evaluate_report)
    higher["scores"]["base"]["gsm8k_local"]["score"] = 0.2
    assert cli.main(["diff", str(tmp_path / "evaluate.json"), str(_write(tmp_path, "higher.json", higher))]) == 1


@pytest.mark.parametrize(
    "change", ["removed verdict", "added verdict", "other weights", "removed layer", "removed part", "other options"]
)
def test_harness_diff_counts_every_kind_of_drift(baseline, tmp_path, capsys, change):
    changed = copy.deepcopy(baseline)
    if change == "removed verdict":
        del changed["verdicts"]["C1"]
    elif change == "added verdict":
        changed["verdicts"]["C9"] = changed["verdicts"]["C1"]
    elif change == "other weights":
        changed["pair"]["sft_weights"] = "sha256:0"
    elif change == "removed layer":
        payload = changed["tables"]["pair"]
        payload["index"], payload["data"] = payload["index"][:-1], payload["data"][:-1]
    elif change == "removed part":
        del changed["swaps"]
    else:
        changed["options"]["pooled_samples"] = 10
    old, new = (
        _write(tmp_path, "old.json", _claims_report(baseline)),
        _write(tmp_path, "new.json", _claims_report(changed)),
    )
    assert cli.main(["diff", str(old), str(new)]) == 1
    assert "differences" in capsys.readouterr().out


def test_harness_diff_with_one_report_compares_it_with_the_stored_baseline(baseline, tmp_path, capsys):
    stored = regression.baseline_path(
        tmp_path / "baselines", "tiny_olmo2", "gsm8k-local", regression.build_of(baseline["pair"])
    )
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(baseline))
    report = _write(tmp_path, "report.json", _claims_report(baseline))
    assert cli.main(["diff", str(report), "--baselines-dir", str(tmp_path / "baselines")]) == 0
    drifted = _write(tmp_path, "drifted.json", _claims_report(_nudge(baseline, "pair", "cka", 3, 0.5)))
    assert cli.main(["diff", str(drifted), "--baselines-dir", str(tmp_path / "baselines")]) == 1
    assert "pair table" in capsys.readouterr().out
    other = copy.deepcopy(baseline)
    other["pair"]["base_weights"] = "sha256:0123456789"
    assert (
        cli.main(
            [
                "diff",
                str(_write(tmp_path, "other.json", _claims_report(other))),
                "--baselines-dir",
                str(tmp_path / "baselines"),
            ]
        )
        == 2
    )
    assert "no baseline of this build of tiny_olmo2 (weights 01234567-" in capsys.readouterr().err


def test_harness_diff_compares_reports_of_other_kinds_on_what_both_hold(baseline, tmp_path, capsys):
    profile = {**{k: v for k, v in baseline.items() if k not in ("verdicts", "swaps", "lora")}, "kind": "profile"}
    lora = {
        "schema_version": reports.SCHEMA_VERSION,
        "kind": "lora",
        "environment": {},
        "pairs": {"tiny_olmo2": {"lora": baseline["lora"], "verdicts": {"C4": baseline["verdicts"]["C4"]}}},
    }
    stored = regression.baseline_path(
        tmp_path / "baselines", "tiny_olmo2", "gsm8k-local", regression.build_of(baseline["pair"])
    )
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(baseline))
    # a profile against its pair's stored baseline: the tables are compared, the rest is named as not compared
    assert (
        cli.main(["diff", str(_write(tmp_path, "profile.json", profile)), "--baselines-dir", str(stored.parents[1])])
        == 0
    )
    out = capsys.readouterr().out
    assert "tiny_olmo2: no drift" in out and "not compared" in out and "swaps: only in the first report" in out
    assert "verdicts only in the first report: C1, C2, " in out
    drifted = _nudge(profile, "base", "spectral_norm", 5, 3.0)
    assert cli.main(["diff", str(TINY_BASELINE), str(_write(tmp_path, "drifted.json", drifted))]) == 1
    assert "base table" in capsys.readouterr().out
    # a LoRA study against a claims report: its verdicts are compared, and a changed one is drift
    lora_path = _write(tmp_path, "lora.json", lora)
    assert cli.main(["diff", str(_write(tmp_path, "claims.json", _claims_report(baseline))), str(lora_path)]) == 0
    moved = copy.deepcopy(lora)
    moved["pairs"]["tiny_olmo2"]["verdicts"]["C4"]["value"] += 1.0
    assert cli.main(["diff", str(TINY_BASELINE), str(_write(tmp_path, "moved.json", moved))]) == 1
    assert "verdict C4" in capsys.readouterr().out
    # nothing in common: one clear error, not "no drift"
    assert cli.main(["diff", str(_write(tmp_path, "profile.json", profile)), str(lora_path)]) == 2
    err = capsys.readouterr().err
    assert "a profile report and a lora report: the two reports hold nothing in common to compare" in err
    # a LoRA study names no weights: its built pair's baseline (one per build) cannot be chosen for it
    assert cli.main(["diff", str(lora_path), "--baselines-dir", str(stored.parents[1])]) == 2
    err = capsys.readouterr().err
    assert "does not record which build of the pair it measured" in err and regression.build_of(baseline["pair"]) in err


def test_reports_of_one_kind_are_compared_whole_and_a_baseline_counts_as_a_claims_report():
    assert regression.same_kind("claims", "baseline") and regression.same_kind("lora", "lora")
    assert not regression.same_kind("profile", "baseline") and not regression.same_kind("lora", "claims")


def test_rescore_refuses_a_report_without_evidence_naming_what_to_rescore_instead(baseline, tmp_path, capsys):
    profile = {**{k: v for k, v in baseline.items() if k not in ("verdicts", "swaps", "lora")}, "kind": "profile"}
    for payload, expected in (
        (baseline, "a baseline keeps the verdicts but not the evidence they are given from"),
        (profile, "a 'profile' report holds no verdicts"),
    ):
        assert cli.main(["rescore", str(_write(tmp_path, f"{payload['kind']}.json", payload))]) == 2
        assert expected in capsys.readouterr().err
