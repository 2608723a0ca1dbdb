import pytest

from harness import cli


@pytest.mark.slow
def test_run_prints_the_tiny_pair_summary(capsys):
    assert cli.main(["run", "--pair", "tiny_olmo2"]) == 0
    out = capsys.readouterr().out
    for field in ("pair        tiny_olmo2", "10 decoder layers", "parameters", "exact match", "base 0.0"):
        assert field in out


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
