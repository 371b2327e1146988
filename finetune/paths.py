"""Where things live: the repository's own folders and the local cache.

Everything is resolved from this file's location so the launcher works from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = REPO_ROOT / "recipes"
MODELS_DIR = RECIPES_DIR / "models"
DEEPSPEED_DIR = RECIPES_DIR / "deepspeed"
DATA_DIR = REPO_ROOT / "data"


def cache_dir() -> Path:
    """Cache for replicas, compiled extensions and parser key lists (`FINETUNE_CACHE` moves it)."""
    return Path(os.environ.get("FINETUNE_CACHE", REPO_ROOT / ".cache")).expanduser().resolve()
