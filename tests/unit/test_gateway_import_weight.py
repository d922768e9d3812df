"""The gateway process stays light: the report writers' libraries (polars, pyarrow, numpy,
xlsxwriter, fpdf2) load only when a report file is written. Imported at start they took the
gateway from 76 to 181 MB of RSS (the issue-10 target is 200 MB under load)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("polars", "pyarrow", "numpy", "xlsxwriter", "fpdf")


def test_starting_the_gateway_imports_none_of_the_report_writers_libraries() -> None:
    code = ("import sys, infra.cli, infra.runner, infra.container, gateway.app; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []

