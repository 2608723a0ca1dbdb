"""One error policy: everything a user's input can cause is a BadInputError (one line, exit 2 on the command
line, one line per test under pytest); anything else is a bug and keeps its traceback, in both."""

import importlib
import inspect
import pkgutil

import pytest

import harness
from harness import cli
from harness.errors import BadInputError
from harness.sources import models

# errors that mean the harness itself went wrong (or, for the metrics, which import nothing of the harness,
# a pure function's precondition that the profile turns into a user-facing DegenerateStatesError)
NOT_INPUT_ERRORS = {"RunsFailedError", "DegenerateInputError"}


def _error_classes():
    for module_info in pkgutil.walk_packages(harness.__path__, "harness."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__:
                yield name, value


def test_every_error_the_harness_defines_for_a_users_input_is_a_bad_input_error():
    classes = dict(_error_classes())
    assert {"ModelUnavailableError", "MaskError", "ProbeDataError", "CheckpointError", "UnknownPairError"} <= set(
        classes
    )
    strays = sorted(
        name for name, value in classes.items() if name not in NOT_INPUT_ERRORS and not issubclass(value, BadInputError)
    )
    assert strays == []


def test_an_unknown_pair_is_one_line_and_exit_2(capsys):
    assert cli.main(["build", "--pair", "no_such_pair"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown pair 'no_such_pair'") and err.count("\n") == 1


def test_a_planted_bug_keeps_its_traceback_on_the_command_line(monkeypatch):
    def typo(spec):
        raise KeyError("a typo in the harness")

    monkeypatch.setattr(models, "unavailable_reason", typo)
    with pytest.raises(KeyError, match="a typo in the harness"):
        cli.main(["list"])


def test_under_pytest_a_bad_input_is_one_line_and_a_bug_keeps_its_traceback(pytester):
    pytester.makepyfile(
        test_policy="""
        from harness.errors import BadInputError

        def helper_with_a_typo():
            return {}["missing key"]

        def test_refused():
            raise BadInputError("the checkpoint is cut short")

        def test_bug():
            helper_with_a_typo()
    """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "test_refused is refused: the checkpoint is cut short" in out
    refused = out.split("test_refused")[1].split("test_bug")[0]
    assert "raise BadInputError" not in refused  # no traceback for the refusal
    assert "def helper_with_a_typo" in out and "KeyError: 'missing key'" in out  # the bug's full traceback
