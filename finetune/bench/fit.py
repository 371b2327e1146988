"""Coefficients fitted from measured steps, in the planner's own terms, and the planner re-checked against them.

The planner splits per-GPU memory into static terms (weights, gradients, optimizer states) and a dynamic part
(activations + logits, plus 10 % overhead) that grows with the sequence. From the measured peaks:

- per checkpointing mode, `measured - planned static = offset + scale x planned dynamic` (least squares over the
  sequence lengths): `scale` is the factor the planner's activation and logits model should carry (its reserve
  is 1.2), `offset` what it misses at every length (workspaces, allocator rounding);
- where the same configuration ran with two MoE-layer counts, the measured bytes per token of one more MoE layer,
  beside the planner's `layer_activation_bytes` (no checkpointing) or its kept 2h (checkpointing);
- the MFU reached, beside the planner's utilisation band for a single GPU without ZeRO-3.

Then every record is re-predicted with the fitted scale and offset, and the share within 15 % of the measured
peak (the planner's calibration target) is given before and after.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from finetune.errors import FinetuneError

TARGET = 0.15


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("kind") == "train_step" and r.get("status") == "ok"]


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(offset, slope) of y = offset + slope x; with one point, or all x equal, the line through the origin."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if n < 2 or var == 0:
        total_x = sum(xs)
        return 0.0, (sum(ys) / total_x if total_x else 1.0)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return mean_y - slope * mean_x, slope


def _measured_dynamic(r: dict) -> float:
    return r["metrics"]["peak_memory_bytes"] - r["planned"]["static_bytes"]


def memory_fit(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per checkpointing mode: offset and scale of the measured dynamic memory against the planned one."""
    by_mode: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in _ok(records):
        xs, ys = by_mode["on" if r["config"]["checkpointing"] else "off"]
        xs.append(r["planned"]["dynamic_bytes"])
        ys.append(_measured_dynamic(r))
    fit = {}
    for mode, (xs, ys) in sorted(by_mode.items()):
        offset, scale = least_squares(xs, ys)
        fit[f"checkpointing_{mode}"] = {"scale": scale, "offset_bytes": offset, "points": len(xs)}
    return fit


def _planner_layer_bytes(r: dict, checkpointing: bool) -> float:
    """The planner's bytes per token of one more MoE layer for the record's model and mode."""
    from finetune.bench.slice import make_slice
    from finetune.planner.memory import layer_activation_bytes
    from finetune.planner.params import ModelShape

    s = r["slice"]
    shape = ModelShape.from_config(make_slice(s["model"], s["layers"], tiny=s["tiny"]).config)
    if checkpointing:
        return 2 * shape.hidden
    split, replicated = layer_activation_bytes(shape, moe=True)
    return split + replicated


def per_layer_fit(records: list[dict]) -> list[dict[str, Any]]:
    """Bytes per token of one more MoE layer, where a configuration ran with two MoE-layer counts."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _ok(records):
        c, s = r["config"], r["slice"]
        groups[
            (s["model"], s["tiny"], s["dense_layers"], c["method"], c["checkpointing"], c["seq_len"], c["experts_impl"])
        ].append(r)
    rows = []
    for (model, _tiny, _dense, method, on, seq_len, impl), group in sorted(groups.items(), key=str):
        layer_counts = {r["slice"]["moe_layers"] for r in group}
        if len(layer_counts) < 2:
            continue
        xs = [float(r["slice"]["moe_layers"]) for r in group]
        ys = [_measured_dynamic(r) for r in group]  # static terms differ by the layer's weights: planned, removed
        _, per_layer = least_squares(xs, ys)
        rows.append(
            {
                "model": model,
                "method": method,
                "checkpointing": on,
                "seq_len": seq_len,
                "experts_impl": impl,
                "measured_bytes_per_token": per_layer / seq_len,
                "planned_bytes_per_token": _planner_layer_bytes(group[0], on),
            }
        )
    return rows


def mfu_fit(records: list[dict]) -> list[dict[str, Any]]:
    """MFU reached per model, method, checkpointing and expert implementation (min-max over sequence lengths)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _ok(records):
        if r["metrics"].get("mfu") is None:
            continue
        c = r["config"]
        groups[(r["slice"]["model"], c["method"], c["checkpointing"], c["experts_impl"])].append(r)
    rows = []
    for (model, method, on, impl), group in sorted(groups.items(), key=str):
        values = [r["metrics"]["mfu"] for r in group]
        band = group[0]["planned"].get("mfu_range")
        rows.append(
            {
                "model": model,
                "method": method,
                "checkpointing": on,
                "experts_impl": impl,
                "mfu_min": min(values),
                "mfu_max": max(values),
                "planner_band": band,
            }
        )
    return rows


def recheck(records: list[dict], memory: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Share of records within 15 % of the measured peak: the planner as it is, and with the fitted terms."""
    rows = []
    for r in _ok(records):
        measured = r["metrics"]["peak_memory_bytes"]
        coeffs = memory.get(f"checkpointing_{'on' if r['config']['checkpointing'] else 'off'}")
        fitted = r["planned"]["static_bytes"] + coeffs["offset_bytes"] + coeffs["scale"] * r["planned"]["dynamic_bytes"]
        rows.append({"as_is": r["planned"]["memory_bytes"] / measured - 1, "fitted": fitted / measured - 1})
    if not rows:
        return {"records": 0}
    return {
        "records": len(rows),
        "as_is_within_target": sum(abs(x["as_is"]) <= TARGET for x in rows) / len(rows),
        "fitted_within_target": sum(abs(x["fitted"]) <= TARGET for x in rows) / len(rows),
        "as_is_worst": max((x["as_is"] for x in rows), key=abs),
        "fitted_worst": max((x["fitted"] for x in rows), key=abs),
    }


def fit(records: list[dict]) -> dict[str, Any]:
    """Everything above for records of one device (mixing devices would mix their allocators)."""
    ok = _ok(records)
    devices = {(r["device_kind"], r["device"]) for r in ok}
    if len(devices) != 1:
        raise FinetuneError(f"Fit the records of one device at a time; these come from {sorted(devices) or 'none'}.")
    ((kind, name),) = devices
    memory = memory_fit(ok)
    return {
        "device": name,
        "device_kind": kind,
        "memory": memory,
        "per_moe_layer": per_layer_fit(ok),
        "mfu": mfu_fit(ok),
        "recheck": recheck(ok, memory),
    }
