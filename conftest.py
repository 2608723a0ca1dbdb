"""Root pytest configuration, shared by the unit tests and the claim suites.

Hypothesis profiles: ``dev`` (quick, the default on a workstation) and
``nightly`` (thorough), chosen with HYPOTHESIS_PROFILE. When CI is set and no
profile is named, Hypothesis's own ``ci`` profile applies.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("nightly", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_chosen = os.environ.get("HYPOTHESIS_PROFILE")
if _chosen:
    settings.load_profile(_chosen)
elif not os.environ.get("CI"):
    settings.load_profile("dev")

# The claim suites' plugin (options, markers, fixtures) is loaded through its pytest11 entry point
# (pytest_layerwise_sft), which `pip install` of the project registers; pytester tests that plugin.
pytest_plugins = ["pytester"]
