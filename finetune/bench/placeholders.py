"""Records for what a budgeted run did not measure, so the results say why instead of leaving a gap.

A configuration that never started gets `status: skipped` with the reason; one that was running when the budget
ran out gets `status: not_measured`. Both carry the device and versions of the run, so a GPU report renders them
beside the measured rows, and neither has metrics, so no fit or estimate ever reads them.
"""

from __future__ import annotations

from typing import Any

from finetune.bench import records
from finetune.bench.units import FrameworkUnit, TrainConfig, TrainUnit

NOT_MEASURED = "not_measured"


def _head(device: dict[str, Any], kind: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "format": records.FORMAT,
        "created": records.stamp(),
        "device": device["device"],
        "device_kind": device["device_kind"],
        "versions": device["versions"],
        "status": status,
        "reason": reason,
    }


def train(
    device: dict[str, Any], unit: TrainUnit, config: TrainConfig, *, tiny: bool, steps: int, warmup: int, status, reason
) -> dict[str, Any]:
    return _head(device, "train_step", status, reason) | {
        "slice": {
            "model": unit.model,
            "layers": unit.layers,
            "dense_layers": unit.dense_layers,
            "moe_layers": unit.layers - unit.dense_layers,
            "tiny": tiny,
        },
        "config": {
            "method": unit.method,
            "checkpointing": config.checkpointing,
            "seq_len": config.seq_len,
            "micro_batch": 1,
            "experts_impl": config.experts_impl,
            "steps": steps,
            "warmup": warmup,
        },
    }


def framework(device: dict[str, Any], unit: FrameworkUnit, model: str, *, tiny: bool, status, reason):
    return _head(device, "framework_step", status, reason) | {
        "recipe": unit.recipe,
        "framework": unit.framework,
        "slice": {"model": model, "layers": 2, "tiny": tiny},
        "config": {"steps": 2},
    }


def missing_configs(unit: TrainUnit, written: list[dict[str, Any]]) -> list[TrainConfig]:
    """The unit's configurations that have no record among `written`, in the unit's order."""
    done = {
        (r["config"]["checkpointing"], r["config"]["seq_len"], r["config"]["experts_impl"])
        for r in written
        if r.get("kind") == "train_step"
    }
    return [c for c in unit.configs() if (c.checkpointing, c.seq_len, c.experts_impl) not in done]
