"""The reports' public names, kept where users import them from (``harness.reports.table(report, "pair")``);
they live in ``harness.output.reports``."""

from harness.output.reports import (  # noqa: F401
    LATEST,
    SCHEMA_VERSION,
    ReportError,
    load_report,
    report_file,
    table,
    write_report,
)
