"""One table of options and one report builder, shared by the command line and the pytest plugin."""

import re
from pathlib import Path

import pytest

from harness import cli, options
from harness.errors import BadInputError
from harness.output import reports
from harness.sources import models

ROOT = Path(__file__).resolve().parent.parent


def _subparser(name):
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    return commands.choices[name]


def test_the_command_line_and_the_plugin_declare_the_shared_options_alike(pytester):
    for command in ("verify", "evaluate"):
        declared = {flag: action.dest for action in _subparser(command)._actions for flag in action.option_strings}
        for option in options.SHARED_OPTIONS:
            assert all(declared.get(flag) == option.dest for flag in option.flags), (command, option.flags)
    declared = {flag: action.dest for action in _subparser("tune")._actions for flag in action.option_strings}
    for option in options.STUDY_OPTIONS:  # the same names, and the command line's older spellings
        assert all(declared.get(flag) == option.dest for flag in (*option.flags, *option.command_line_aliases))
    for command in ("verify", "profile", "tune"):
        declared = {flag: action.dest for action in _subparser(command)._actions for flag in action.option_strings}
        assert all(declared.get(flag) == option.dest for option in options.PROBE_OPTIONS for flag in option.flags)
    help_text = pytester.runpytest("--help").stdout.str()
    for option in (*options.SHARED_OPTIONS, *options.STUDY_OPTIONS, *options.PROBE_OPTIONS):
        assert all(re.search(rf"{re.escape(flag)}\b", help_text) for flag in option.flags), option.flags


@pytest.mark.parametrize(
    ("pair", "asked", "expected"),
    [
        ("tiny_olmo2", [], (1000, 100)),  # §4.1's sizes
        ("tiny_olmo2", ["--pooled-samples", "64"], (64, 64)),  # fewer pooled samples than 100: all of them
        ("tiny_olmo2", ["--pooled-samples", "64", "--token-samples", "10"], (64, 10)),
        ("planted_late", [], (300, 100)),  # a planted control's profile is 300 samples
        ("planted_late", ["--pooled-samples", "40"], (40, 40)),
    ],
)
def test_the_token_level_samples_are_100_or_every_pooled_sample_when_fewer(pair, asked, expected):
    from harness.plants.build import register

    register()
    spec = models.get_spec(pair)
    for command, required in (("verify", []), ("profile", ["--out", "profile.json"]), ("tune", [])):
        chosen = cli.profile_options(_subparser(command).parse_args(["--pair", pair, *asked, *required]), spec)
        assert (chosen.pooled_samples, chosen.token_samples) == expected


def test_more_token_level_samples_than_pooled_ones_are_refused_with_both_counts():
    with pytest.raises(BadInputError, match=r"token_samples \(100\) must lie between 0 and pooled_samples \(64\)"):
        cli.profile_options(
            _subparser("verify").parse_args(["--pooled-samples", "64", "--token-samples", "100"]),
            models.get_spec("tiny_olmo2"),
        )


def test_the_shared_options_become_one_claims_config():
    args = _subparser("verify").parse_args(
        [
            "--set",
            "tuning.steps=7",
            "--tasks",
            "gsm8k_local,mmlu_local",
            "--tasks",
            "mmlu_local",
            "--limit",
            "3",
            "--num_fewshot",
            "0",
            "--max-gen-toks",
            "12",
        ]
    )
    config = cli.claims_config_of(args)
    same = options.claims_config_of(
        {
            "settings": ["tuning.steps=7"],
            "eval_tasks": [["gsm8k_local", "mmlu_local"], ["mmlu_local"]],
            "eval_limit": 3,
            "eval_num_fewshot": 0,
            "eval_max_gen_toks": 12,
        }
    )
    assert config == same
    from harness import config as claims_config

    evaluation = claims_config.thresholds_for("custom", config)["evaluation"]
    assert evaluation["tasks"] == ["gsm8k_local", "mmlu_local"]  # in order, without repeats
    assert (evaluation["limit"], evaluation["num_fewshot"], evaluation["max_gen_toks"]) == (3, 0, 12)
    assert claims_config.thresholds_for("custom", config)["tuning"]["steps"] == 7


def test_every_report_is_built_by_one_function():
    writers = []
    for path in [*(ROOT / "harness").rglob("*.py"), *(ROOT / "pytest_layerwise_sft").rglob("*.py")]:
        if path.name != "reports.py" and '"schema_version":' in path.read_text():
            writers.append(str(path.relative_to(ROOT)))
    assert writers == []
    report = reports.new_report("claims", pairs={})
    assert (report["schema_version"], report["kind"]) == (reports.SCHEMA_VERSION, "claims") and report["environment"]
    plugin = (ROOT / "pytest_layerwise_sft" / "plugin.py").read_text()
    command_line = (ROOT / "harness" / "cli.py").read_text()
    assert "verification.pair_section(" in plugin and command_line.count("verification.pair_section(") >= 2


@pytest.mark.parametrize("alpha", ["-1", "inf", "nan"])
def test_a_matrix_entropy_order_below_zero_is_refused_before_any_work(alpha):
    with pytest.raises(BadInputError, match=r"alpha, the order of the matrix entropy \(eq. 2-3\), must be 0 or above"):
        cli.profile_options(_subparser("verify").parse_args(["--alpha", alpha]), models.get_spec("tiny_olmo2"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["swap", "--segments", "3", "2"], "argument --segments: a segment count M must be at least 3; got 2"),
        (["tune", "--tune-segments", "0"], "a segment count M must be at least 3; got 0"),
        (["calibrate", "--simulations", "0"], "argument --simulations: a number of simulations must be at least 1"),
        (["calibrate", "--power-simulations", "x"], "argument --power-simulations: 'x' is not a whole number"),
    ],
)
def test_counts_that_could_give_no_verdict_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(argv)
    assert stopped.value.code == 2 and expected in capsys.readouterr().err


def test_lm_eval_s_batch_size_is_auto_or_a_whole_number():
    assert cli.build_parser().parse_args(["evaluate", "--batch-size", "auto"]).batch_size == "auto"
    assert cli.build_parser().parse_args(["evaluate", "--batch_size", "4"]).batch_size == 4


def test_pytest_refuses_a_segment_count_below_three(pytester):
    result = pytester.runpytest("--tune-segments", "5", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "argument --tune-segments: a segment count M must be at least 3; got 2" in result.stderr.str()
