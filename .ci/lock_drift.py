"""Which installed packages differ from the lock file: the drift a nightly run against the newest releases reports.

Usage: python .ci/lock_drift.py constraints/lock.txt   (prints one line per moved package; exit 0 either way,
the test run that follows decides whether the drift matters)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def locked_versions(path: str) -> dict[str, str]:
    pins = {}
    for line in open(path, encoding="utf-8"):
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(path: str) -> int:
    installed = {_normal(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    pins = locked_versions(path)
    moved = [(name, pins[name], installed.get(name, "absent")) for name in sorted(pins)
             if installed.get(name) != pins[name]]
    print(f"{len(moved)} of {len(pins)} locked packages differ from {path} in the newest releases:")
    for name, locked, now in moved:
        print(f"  {name:<28} {locked:>16} -> {now}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "constraints/lock.txt"))
