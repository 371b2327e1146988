"""Which GPU-only extras (requirements/gpu-extras.txt, vLLM's CUDA wheel) a framework environment lacks, so a GPU
test skips naming them instead of failing half-way on a GPU machine set up without them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

_FIND = """
import importlib.util, json, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        return False
print(json.dumps([m for m in sys.argv[1:] if not found(m)]))
"""


def missing_modules(python: Path, modules: tuple[str, ...]) -> list[str]:
    out = subprocess.run([str(python), "-c", _FIND, *modules], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def require_modules(python: Path, modules: tuple[str, ...], how: str) -> None:
    """Skip the calling GPU test when `python`'s environment lacks any of `modules`; `how` says how to add them."""
    missing = missing_modules(python, modules)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed in {python.parent.parent}: {how}")
