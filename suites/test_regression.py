"""Regression mode (--baseline): every metric of every layer matches the stored baseline."""

import pytest

from harness.output import reports
from harness.verdicts import regression


def test_metric_tables_match_the_baseline(measured_pair, harness_session):
    if not harness_session.regression or harness_session.update_baselines:
        pytest.skip("regression mode is off: run with --baseline to compare with baselines/")
    baseline = harness_session.baseline(measured_pair.name)
    current = {
        **measured_pair.profile.meta,
        "tables": {
            name: reports.table_payload(getattr(measured_pair.profile, name)) for name in ("base", "sft", "pair")
        },
    }
    differences = regression.compare_sections(baseline, current, harness_session.claims_config, verdicts=False)
    source = regression.other_source(baseline, measured_pair.profile.meta["pair"])
    assert not differences, (
        f"{measured_pair.name} drifted from its baseline, per layer"
        + (f" ({source})" if source else "")
        + ":\n"
        + regression.format_differences(differences)
    )
