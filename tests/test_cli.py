import pytest

from harness import cli


@pytest.mark.slow
def test_run_prints_the_tiny_pair_summary_and_the_verdict_table(capsys, tmp_path):
    assert cli.main(["run", "--pair", "tiny_olmo2", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for field in ("pair        tiny_olmo2", "10 decoder layers", "parameters", "exact match", "base 0.0",
                  "outcome", "statistic", "holds, ", "refuted, ", "inconclusive", "C1", "C2", "C5", "C6", "C7",
                  "report", "summary"):
        assert field in out
    (folder,) = tmp_path.iterdir()
    assert (folder / "report.json").is_file() and (folder / "summary.md").is_file()
    assert len(list(folder.glob("*.png"))) == 7  # the five profile figures, the layer swaps, the LoRA arms
    assert "C3:base_with_sft_block:M5" in out
    assert "gsm8k_local" in out and "exact_match,strict-match" in out and "mmlu_local" in out
    for key in ("C4 ", "C4:M5", "C4-control", "C8", "LoRA arms", "01110", "random1"):
        assert key in out
    assert "Block finder" in (folder / "summary.md").read_text()


@pytest.mark.slow
def test_tune_trains_only_the_named_masks_and_says_which_verdicts_it_cannot_give(capsys, tmp_path):
    assert cli.main(["tune", "--pair", "tiny_olmo2", "--masks", "01000,11111", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "01000" in out and "11111" in out and "untuned" in out
    assert "C4: not given (C4 needs the masks" in out
    (folder,) = tmp_path.iterdir()
    assert (folder / "tiny_olmo2-lora.png").is_file() and (folder / "report.json").is_file()


def test_tune_refuses_a_malformed_mask(capsys):
    assert cli.main(["tune", "--pair", "tiny_olmo2", "--masks", "01a00"]) == 2
    assert "a mask is a string of 0 and 1" in capsys.readouterr().err


def test_list_shows_every_registered_pair(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "olmo2_32b" in out and "tiny_mistral" in out and "built offline" in out


def test_unknown_pair_is_an_error_not_a_traceback(capsys):
    assert cli.main(["build", "--pair", "nope"]) == 2
    assert "unknown pair" in capsys.readouterr().err


def test_base_without_sft_is_refused():
    with pytest.raises(SystemExit, match="--base and --sft go together"):
        cli.main(["build", "--base", "some/model"])


@pytest.mark.parametrize("shard", ["3/2", "0/2", "1", "a/b"])
def test_tune_refuses_a_malformed_shard(capsys, shard):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["tune", "--pair", "tiny_olmo2", "--shard", shard])
    assert stopped.value.code == 2 and "shard" in capsys.readouterr().err
