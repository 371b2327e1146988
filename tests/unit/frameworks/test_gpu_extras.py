"""The GPU tests' skip reasons: what an environment lacks is found without importing it (tests/helpers/gpu_extras)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.helpers.gpu_extras import missing_modules


def test_missing_modules_are_named_even_under_an_absent_parent_package():
    python = Path(sys.executable)
    assert missing_modules(python, ("json", "no_such_package.core", "no_such_module")) == [
        "no_such_package.core",
        "no_such_module",
    ]


def test_the_gpu_extras_file_pins_what_the_megatron_test_requires():
    pins = {
        line.split("==")[0].split("[")[0]
        for line in (REPO_ROOT / "requirements/gpu-extras.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"megatron-core", "transformer-engine", "flash-attn"} <= pins
