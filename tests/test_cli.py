import re
from pathlib import Path

import pytest
import yaml

from harness import cli, rescore
from harness.output import reports

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_run_prints_the_tiny_pair_summary_and_the_verdict_table(capsys, tmp_path):
    assert cli.main(["run", "--pair", "tiny_olmo2", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for field in (
        "pair        tiny_olmo2",
        "10 decoder layers",
        "parameters",
        "exact match",
        "base 0.0",
        "outcome",
        "statistic",
        "holds, ",
        "refuted, ",
        "inconclusive",
        "C1",
        "C2",
        "C5",
        "C6",
        "C7",
        "report",
        "summary",
    ):
        assert field in out
    folder = _only_run(tmp_path, "tiny_olmo2")
    assert (folder / "report.json").is_file() and (folder / "summary.md").is_file()
    assert len(list(folder.glob("*.png"))) == 7  # the five profile figures, the layer swaps, the LoRA arms
    assert "C3:base_with_sft_block:M5" in out
    assert "gsm8k_local" in out and "exact_match,strict-match" in out and "mmlu_local" in out
    for key in ("C4 ", "C4:M5", "C4-control", "C8", "LoRA arms", "01110", "random1"):
        assert key in out
    assert "Block finder" in (folder / "summary.md").read_text()
    _rescoring_gives_every_verdict_again(tmp_path / "tiny_olmo2", capsys, tmp_path)


def _only_run(report_dir, pair):
    """The one run folder of ``pair`` under ``report_dir``, checked against its ``latest`` pointer."""
    (folder,) = [path for path in (report_dir / pair).iterdir() if path.name != "latest"]
    assert re.fullmatch(r"\d{8}T\d{6}Z-([0-9a-f]{10}|no-commit)(-dirty)?", folder.name)
    assert (report_dir / pair / "latest").resolve() == folder.resolve()
    return folder


def _rescoring_gives_every_verdict_again(pair_folder, capsys, tmp_path):
    """From the stored report alone: the same verdicts, value for value; under a claims config that asks for
    an impossible margin, every directional verdict is refuted, and `harness diff` sees the drift."""
    report = reports.load_report(pair_folder)
    rescored = rescore.rescore_report(report)
    for name, result in rescored.items():
        assert set(result.verdicts) == set(report["pairs"][name]["verdicts"])
        for key, verdict in result.verdicts.items():
            assert reports.strict_json(verdict.to_dict()) == result.stored[key], key
    assert cli.main(["rescore", str(pair_folder)]) == 0
    assert "0 verdicts changed outcome" in capsys.readouterr().out
    config = yaml.safe_load((ROOT / "harness" / "claims.yaml").read_text())
    config["defaults"]["directional"]["margin"] = 1e9
    (tmp_path / "strict.yaml").write_text(yaml.safe_dump(config))
    assert (
        cli.main(
            [
                "rescore",
                str(pair_folder),
                "--claims-config",
                str(tmp_path / "strict.yaml"),
                "--out",
                str(tmp_path / "rescored.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    stored = {key: v["outcome"] for name in report["pairs"] for key, v in report["pairs"][name]["verdicts"].items()}
    flipped = [key for key, outcome in stored.items() if key.startswith("D:") and outcome != "refuted"]
    assert f"{len(flipped)} verdicts changed outcome" in out
    assert cli.main(["rescore", str(pair_folder), "--set", "directional.margin=1e9"]) == 0  # one setting alone
    assert f"{len(flipped)} verdicts changed outcome" in capsys.readouterr().out
    again = reports.load_report(tmp_path / "rescored.json")
    assert all(
        v["outcome"] == "refuted"
        for section in again["pairs"].values()
        for key, v in section["verdicts"].items()
        if key.startswith("D:")
    )
    assert cli.main(["diff", str(pair_folder), str(tmp_path / "rescored.json")]) == (1 if flipped else 0)


@pytest.mark.slow
def test_tune_trains_only_the_named_masks_and_says_which_verdicts_it_cannot_give(capsys, tmp_path):
    assert cli.main(["tune", "--pair", "tiny_olmo2", "--masks", "01000,11111", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "01000" in out and "11111" in out and "untuned" in out
    assert "C4: not given (C4 needs the masks" in out
    folder = _only_run(tmp_path, "tiny_olmo2")
    assert (folder / "tiny_olmo2-lora.png").is_file() and (folder / "report.json").is_file()


@pytest.mark.slow
def test_tune_studies_several_pairs_in_one_process(capsys, tmp_path):
    assert (
        cli.main(
            [
                "tune",
                "--pairs",
                "tiny_olmo2,tiny_mistral",
                "--masks",
                "01000",
                "--seeds",
                "0",
                "--steps",
                "1",
                "--report-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "LoRA arms on tiny_olmo2" in out and "LoRA arms on tiny_mistral" in out
    for pair in ("tiny_olmo2", "tiny_mistral"):
        assert (_only_run(tmp_path, pair) / "report.json").is_file()


def test_tune_refuses_an_unknown_pair_among_several_before_training_any(capsys):
    assert cli.main(["tune", "--pairs", "tiny_olmo2,nope", "--masks", "01000"]) == 2
    assert "unknown pair 'nope'" in capsys.readouterr().err


def test_tune_refuses_a_malformed_mask(capsys):
    assert cli.main(["tune", "--pair", "tiny_olmo2", "--masks", "01a00"]) == 2
    assert "a mask is a string of 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "verify", "tune"])
def test_a_report_folder_that_cannot_be_written_is_refused_before_any_work(command, capsys, tmp_path, monkeypatch):
    from harness.sources import models

    monkeypatch.setattr(models, "resolve_pair", lambda *a, **k: pytest.fail("a pair was resolved"))
    (tmp_path / "a_file").write_text("")
    assert cli.main([command, "--pair", "tiny_olmo2", "--report-dir", str(tmp_path / "a_file" / "reports")]) == 2
    error = capsys.readouterr().err
    assert (
        error == f"error: the report folder {tmp_path}/a_file/reports cannot be written: {tmp_path}/a_file is a file\n"
    )


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            ["--device", "cuda"],
            r"error: device .cuda.: torch \S+ has no cuda device here; use --device cpu \(or auto\)",
        ),
        (["--device", "tpu"], r"error: unknown device .tpu.; use auto, cpu, cuda or cuda:N"),
        (["--dtype", "int8"], "error: unknown dtype 'int8'; use float32, float64, bfloat16, float16 or auto"),
        # floating point, but a storage type only: a traceback from torch.set_default_dtype mid-run
        (
            ["--dtype", "float8_e4m3fn"],
            "error: unknown dtype 'float8_e4m3fn'; use float32, float64, bfloat16, float16 or auto",
        ),
    ],
)
def test_a_device_or_dtype_this_machine_cannot_run_is_refused_before_any_work(option, expected, capsys, monkeypatch):
    import torch

    from harness.sources import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    monkeypatch.setattr(models, "resolve_pair", lambda *a, **k: pytest.fail("a pair was resolved"))
    for command in ("verify", "profile", "evaluate", "tune"):
        out = ["--out", "x.json"] if command == "profile" else []
        assert cli.main([command, "--pair", "tiny_olmo2", *option, *out]) == 2
        assert re.fullmatch(expected + "\n", capsys.readouterr().err)


def test_pytest_refuses_a_device_this_machine_lacks_before_any_test(pytester, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = pytester.runpytest("--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "has no cuda device here" in result.stderr.str()


def test_pytest_refuses_a_report_folder_that_cannot_be_written_before_any_test(pytester):
    pytester.makefile(".txt", a_file="")
    result = pytester.runpytest("--report-dir", "a_file.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "the report folder a_file.txt cannot be written: a_file.txt is a file" in result.stderr.str()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["verify", "--pair", "tiny_mistral", "--base", "b", "--sft", "s"],
            "error: --pair tiny_mistral and --base/--sft name two pairs: give one",
        ),
        (["tune", "--pairs", ","], "error: --pairs takes registered pairs, comma-separated, instead of"),
        (
            ["tune", "--pairs", "tiny_olmo2", "--base", "b", "--sft", "s"],
            "error: --pairs takes registered pairs, comma-separated, instead of",
        ),
    ],
)
def test_two_pairs_or_none_named_at_once_are_refused_before_any_work(argv, expected, capsys, monkeypatch):
    from harness.sources import models

    monkeypatch.setattr(models, "resolve_pair", lambda *a, **k: pytest.fail("a pair was resolved"))
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert str(refused.value).startswith(expected)


def test_an_empty_task_list_is_a_usage_error_on_the_command_line_and_in_pytest(capsys, pytester):
    with pytest.raises(SystemExit) as refused:
        cli.main(["evaluate", "--tasks", ","])
    assert refused.value.code == 2 and "argument --tasks: ',' names no task" in capsys.readouterr().err
    result = pytester.runpytest("--tasks", " , ")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "names no task" in result.stderr.str()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--tune", "tiny_olmo"], "--tune tiny_olmo: no such pair"),
        (
            ["--tune", "custom"],
            "--tune custom trains the pair of --base and --sft: give both (or --sft alone, a PEFT adapter)",
        ),
        (["--baseline", "--baselines-dir", "a_file.txt"], "--baselines-dir a_file.txt is a file"),
        (
            ["--update-baselines", "--baselines-dir", "a_file.txt/pairs"],
            "the baselines folder a_file.txt/pairs cannot be written: a_file.txt is a file",
        ),
    ],
)
def test_pytest_refuses_a_misspelt_tuned_pair_or_a_baselines_file_before_any_test(option, expected, pytester):
    pytester.makefile(".txt", a_file="")
    result = pytester.runpytest(*option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and expected in result.stderr.str()


def test_an_interrupted_command_says_how_to_resume_instead_of_a_traceback(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "command_list", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == (
        "\ninterrupted: run `harness list` again to resume (finished steps are read from the cache)\n"
    )


def test_the_summary_of_a_planted_control_says_what_was_planted_and_the_answers_expected(micro_pair):
    from harness.plants.catalogue import CONTROLS
    from harness.sources import models

    spec = models.ModelSpec("planted_edges", models.ModelRef(str(micro_pair.base_dir)), models.ModelRef("x"), "olmo2")
    info = {"name": "planted_edges", "description": CONTROLS["planted_edges"].description, "source": "ee441d2c"}
    info["expected"] = {"C3:base_with_sft_block": True, "C3:sft_with_base_block": False}
    summary = cli.pair_summary(models.ResolvedPair(spec, spec.base, spec.sft, build_info=info))
    assert f"planted     {info['description']} (edited from the tiny pair's build ee441d2c)" in summary
    assert "expected    C3:base_with_sft_block holds, C3:sft_with_base_block refuted" in summary
    summary = cli.pair_summary(models.ResolvedPair(spec, spec.base, spec.sft, build_info={**info, "expected": {}}))
    assert "expected" not in summary and "planted" in summary


@pytest.mark.parametrize("command", ["run", "verify"])
def test_fewer_probe_samples_than_the_verdicts_take_are_refused_before_any_work(command, capsys, monkeypatch):
    from harness.sources import models

    monkeypatch.setattr(models, "resolve_pair", lambda *a, **k: pytest.fail("a pair was resolved"))
    for samples in ("2", "4"):
        assert cli.main([command, "--pair", "tiny_olmo2", "--pooled-samples", samples]) == 2
        assert capsys.readouterr().err == (
            f"error: verifying the claims needs at least 5 pooled probe samples (the debiased CKA of eq. 6 and its "
            f"jackknife); got {samples} (`harness profile` takes 2 or more)\n"
        )


def test_pytest_refuses_fewer_probe_samples_than_the_verdicts_take_before_any_test(pytester):
    result = pytester.runpytest("--pooled-samples", "4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "verifying the claims needs at least 5 pooled probe samples" in result.stderr.str()


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--seed", "-1"],
        ["calibrate", "--seed", "-1"],
        ["profile", "--seed", "-1", "--out", "x.json"],
        ["tune", "--seeds", "0", "-1"],
        ["evaluate", "--seed", str(2**32)],
    ],
)
def test_a_seed_numpy_cannot_take_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2
    assert re.search(r"argument --seeds?: --seeds? must be at (least 0|most 4294967295); got", capsys.readouterr().err)


def test_list_shows_every_registered_pair(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "olmo2_32b" in out and "tiny_mistral" in out and "built offline" in out
    assert "qwen3_8b" in out and "8.2B" in out and "gpt_neox" in out  # the pairs people study, the families


def test_unknown_pair_is_an_error_not_a_traceback(capsys):
    assert cli.main(["build", "--pair", "nope"]) == 2
    assert "unknown pair" in capsys.readouterr().err


def test_base_without_sft_is_refused(capsys):
    assert cli.main(["build", "--base", "some/model"]) == 2
    assert "--base needs --sft" in capsys.readouterr().err


def test_an_sft_alone_that_is_no_adapter_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "sft").mkdir()
    for sft in (str(tmp_path / "sft"), "someorg/not-cached"):
        assert cli.main(["build", "--sft", sft]) == 2
        err = capsys.readouterr().err
        assert f"--sft {sft} alone: only an SFT published as a PEFT adapter names its base" in err
        assert "give --base too" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shard", ["3/2", "0/2", "1", "a/b"])
def test_tune_refuses_a_malformed_shard(capsys, shard):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["tune", "--pair", "tiny_olmo2", "--shard", shard])
    assert stopped.value.code == 2 and "shard" in capsys.readouterr().err


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_custom_pairs_evaluation_settings_are_command_line_options(
    micro_pair, isolated_cache, tmp_path, monkeypatch, capsys
):
    from harness.measure import evaluate

    asked = []

    def scores(model, tokenizer, tasks, options):
        asked.append((tuple(tasks), options))
        return {task: {"score": 0.0, "stderr": 0.0, "metric": "exact_match"} for task in tasks}

    monkeypatch.setattr(evaluate, "lm_eval_scores", scores)
    assert (
        cli.main(
            [
                "verify",
                "--base",
                str(micro_pair.base_dir),
                "--sft",
                str(micro_pair.sft_dir),
                "--no-tune",
                "--pooled-samples",
                "40",
                "--token-samples",
                "8",
                "--tasks",
                "gsm8k_local",
                "--num_fewshot",
                "0",
                "--max_gen_toks",
                "12",
                "--limit",
                "3",
                "--set",
                "C3.items=6",
                "--report-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert {tasks for tasks, _ in asked} == {("gsm8k_local",)} and len(asked) == 2  # base and SFT
    assert all((o.num_fewshot, o.max_gen_toks, o.limit) == (0, 12, 3) for _, o in asked)
    section = reports.load_report(tmp_path / "custom")["pairs"]["custom"]
    assert section["thresholds"]["evaluation"] == {
        "tasks": ["gsm8k_local"],
        "limit": 3,
        "num_fewshot": 0,
        "max_gen_toks": 12,
    }
    assert len(section["swaps"]["base_with_sft_block"]["host"]["per_item"]) == 6
    out = capsys.readouterr().out
    assert "(40 probe samples of gsm8k-local, 3 decoder layers)" in out
    assert "C3:base_with_sft_block:M5: not given" in out  # three layers cannot be split into five segments
