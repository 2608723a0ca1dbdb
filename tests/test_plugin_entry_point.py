"""The plugin as an installed package gives it to any test directory (pytester: a directory outside this
project, without its conftest)."""


def test_an_installed_project_gives_any_test_directory_its_options_and_fixtures(pytester):
    pytester.makepyfile(test_elsewhere="""
        import pytest

        def test_the_session_reads_the_options(harness_session):
            assert harness_session.inconclusive == "xfail" and harness_session.regression

        @pytest.mark.tiny_olmo2
        def test_a_pair_marker_is_registered():
            pass
    """)
    result = pytester.runpytest("--inconclusive", "xfail", "--baseline", "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_options_are_in_the_help(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--base=BASE*", "*--update-baselines*", "*--tune=PAIR*", "*--inconclusive*"])


def test_base_without_sft_is_a_usage_error_anywhere(pytester):
    pytester.makepyfile(test_elsewhere="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--base", "somewhere")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*give both*"])
