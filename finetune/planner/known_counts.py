"""Rewrite `known_counts.json`, the parameter counts shipped with the recipes: run this module with `python -m`.

Kept apart from `params.py`, which reads the file: rewriting it plans every recipe, so it needs the whole planner.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from finetune.planner import plan_recipe
from finetune.planner.params import KNOWN_COUNTS
from finetune.recipes.recipe import all_recipes


def refresh_known_counts() -> int:
    """Plan every shipped recipe in an empty cache and ship the counts that took; returns how many."""
    previous = os.environ.get("FINETUNE_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FINETUNE_CACHE"] = tmp
        KNOWN_COUNTS.unlink(missing_ok=True)
        try:
            for recipe in all_recipes():
                plan_recipe(recipe)
        finally:
            if previous is None:
                os.environ.pop("FINETUNE_CACHE")
            else:
                os.environ["FINETUNE_CACHE"] = previous
        counted = Path(tmp, "plan").glob("params-*.json")
        found = {p.stem.removeprefix("params-"): json.loads(p.read_text()) for p in counted}
    KNOWN_COUNTS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    return len(found)


if __name__ == "__main__":
    print(f"{refresh_known_counts()} parameter counts written to {KNOWN_COUNTS}")
