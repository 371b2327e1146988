"""A merged model against its base model with the adapter applied, computed in the framework's environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from finetune.frameworks.base import Framework
from tests.conftest import REPO_ROOT


def merge_difference(framework: Framework, base: Path, adapter: Path, merged: Path) -> dict[str, float]:
    """{"merged_vs_adapted": max |logits difference|, "adapter_effect": how far the adapter moves the base model}."""
    check = subprocess.run(
        [str(framework.python()), "tests/helpers/merged_logits.py", str(base), str(adapter), str(merged)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    return json.loads(check.stdout.strip().splitlines()[-1])
