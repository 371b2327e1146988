"""Runs inside a framework environment: checks a DeepSpeed config with DeepSpeed's own config class.

DeepSpeed's pydantic sections reject unknown keys, but its top level ignores them silently; the config dict is
wrapped so that every top-level key DeepSpeed never reads is reported as unknown. `"auto"` values are filled the
way the Hugging Face integration fills them before DeepSpeed sees the config.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class _ReadTracker(dict):
    """A dict that remembers which keys were looked up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def pop(self, key, *default):
        self.read.add(key)
        return super().pop(key, *default)

    def setdefault(self, key, default=None):
        self.read.add(key)
        return super().setdefault(key, default)


def _fill_auto(value: Any, key: str = "", micro_batch: int = 1, grad_accum: int = 1) -> Any:
    if isinstance(value, dict):
        return {k: _fill_auto(v, k, micro_batch, grad_accum) for k, v in value.items()}
    if value != "auto":
        return value
    if key == "train_micro_batch_size_per_gpu":
        return micro_batch
    if key == "gradient_accumulation_steps":
        return grad_accum
    if key == "train_batch_size":
        return micro_batch * grad_accum
    if key == "enabled":
        return False
    return 1


def check_deepspeed(config: dict, micro_batch: int = 1, grad_accum: int = 1) -> list[str]:
    """Problems DeepSpeed finds in `config` (empty when it accepts it)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    tracked = _ReadTracker(_fill_auto(config, micro_batch=micro_batch, grad_accum=grad_accum))
    try:
        DeepSpeedConfig(tracked)
    except Exception as exc:  # DeepSpeed raises pydantic ValidationError, AssertionError, ValueError...
        return [f"{type(exc).__name__}: {exc}"]
    unknown = sorted(set(config) - tracked.read)
    return [f"unknown top-level key `{key}` (DeepSpeed ignores it)" for key in unknown]


def check_deepspeed_file(path: object, micro_batch: int, grad_accum: int) -> list[str]:
    """Problems in the DeepSpeed JSON a framework config names (nothing to check for a preset name)."""
    if not isinstance(path, str) or not path.endswith(".json"):
        return []
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        return [f"deepspeed: cannot read {path}: {exc}"]
    return [f"deepspeed {path}: {problem}" for problem in check_deepspeed(config, micro_batch, grad_accum)]


if __name__ == "__main__":
    print(json.dumps(check_deepspeed(json.loads(sys.stdin.read()))))
