"""Shared fixtures: the cached replicas, the reference folder beside the repository, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU; its CPU twin runs here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def air_replica() -> Path:
    from finetune.replica.build import ensure_replica

    return ensure_replica("glm-4.5-air")


@pytest.fixture(scope="session")
def glm45_replica() -> Path:
    from finetune.replica.build import ensure_replica

    return ensure_replica("glm-4.5")


@pytest.fixture(scope="session")
def glm46_replica() -> Path:
    from finetune.replica.build import ensure_replica

    return ensure_replica("glm-4.6")


@pytest.fixture(scope="session")
def glm47_replica() -> Path:
    from finetune.replica.build import ensure_replica

    return ensure_replica("glm-4.7")


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run `python -m finetune ARGS` as a user would; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "finetune", *args],
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
