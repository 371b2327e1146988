"""The first-run timing script (bench/first_run.py) runs, on its quick setting, and reports every step."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_quick_first_run_table():
    out = subprocess.run(
        [sys.executable, "bench/first_run.py", "--quick"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    found = re.findall(r"^\| `finetune ([^`]+)` \| ([\d.]+) \| ([\d.]+) \|$", out.stdout, re.M)
    rows = {name: (float(first), float(repeated)) for name, first, repeated in found}
    assert set(rows) == {"launch --dry-run", "plan"}, out.stdout
    first, repeated = rows["launch --dry-run"]
    assert first > repeated > 0  # the first dry run runs the framework's parser; the repeated one reads its verdict
