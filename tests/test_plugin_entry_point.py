"""The plugin as an installed package gives it to any test directory (pytester: a directory outside this
project, without its conftest)."""


def test_an_installed_project_gives_any_test_directory_its_options_and_fixtures(pytester):
    pytester.makepyfile(
        test_elsewhere="""
        import pytest

        def test_the_session_reads_the_options(harness_session):
            assert harness_session.inconclusive == "xfail" and harness_session.regression

        @pytest.mark.tiny_olmo2
        def test_a_pair_marker_is_registered():
            pass
    """
    )
    result = pytester.runpytest("--inconclusive", "xfail", "--baseline", "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_options_are_in_the_help(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--base=BASE*", "*--update-baselines*", "*--tune=PAIR*", "*--inconclusive*"])


def test_base_without_sft_is_a_usage_error_anywhere(pytester):
    pytester.makepyfile(test_elsewhere="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--base", "somewhere")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--base needs --sft*"])
    (pytester.path / "sft").mkdir()
    result = pytester.runpytest("--sft", "sft")  # a folder that is no adapter names no base
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--sft sft alone: only an SFT published as a PEFT adapter names its base*"])


def test_a_custom_pairs_evaluation_and_tuning_settings_are_pytest_options(pytester):
    pytester.makepyfile(
        test_elsewhere="""
        from harness import config

        def test_the_settings_win_over_every_pairs_own(harness_session):
            for pair in ("custom", "tiny_olmo2"):
                thresholds = config.thresholds_for(pair, harness_session.claims_config)
                assert thresholds["evaluation"]["num_fewshot"] == 0
                assert thresholds["evaluation"]["max_gen_toks"] == 16
                assert thresholds["tuning"]["steps"] == 7 and thresholds["C1"]["cka_plateau_min"] == 0.9
    """
    )
    result = pytester.runpytest(
        "--num-fewshot",
        "0",
        "--max-gen-toks",
        "16",
        "--set",
        "tuning.steps=7",
        "--set",
        "C1.cka_plateau_min=0.9",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)


def test_a_setting_the_claims_config_does_not_know_is_a_usage_error(pytester):
    pytester.makepyfile(test_elsewhere="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--set", "evaluation.shots=0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*unknown key 'shots'*"])


def test_loading_the_plugin_changes_nothing_in_another_projects_session(pytester, monkeypatch):
    # another project's tests, in an environment where the harness is installed: their matplotlib backend
    # and the harness's pair registry are as they were, and matplotlib is not even imported by the plugin
    monkeypatch.setenv("MPLBACKEND", "svg")
    pytester.makepyfile(
        test_foreign="""
        import sys

        def test_the_backend_and_the_registry_are_untouched():
            assert "pytest_layerwise_sft.plugin" in sys.modules  # loaded through its entry point
            assert "matplotlib.pyplot" not in sys.modules and "harness.output.plots" not in sys.modules
            import matplotlib
            assert matplotlib.get_backend().lower() == "svg"
            from harness.sources import models
            assert models.PAIR_SOURCES == []
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
