"""The head of a budgeted run's report.md: which device, how much of the budget went where, and what was left.

The tables below it come from `bench report`; this part says, before any figure, whether they are GPU figures,
how many configurations were measured, and which units the budget (or absent packages) left out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def header(device: dict[str, Any], options, spent_s: float, rows: list[dict[str, Any]], outcomes) -> str:
    tiny = options.tiny
    title = f"# Benchmark run on {device.get('device', '?')}"
    if tiny:
        title += " (CPU rehearsal, tiny shapes: NOT GPU figures)"
    statuses = Counter(r["status"] for r in rows if r.get("kind") == "train_step")
    train_total = sum(statuses.values())
    budget_skips = sum(1 for r in rows if r["status"] == "skipped" and str(r.get("reason", "")).startswith("budget"))
    lines = [
        title,
        "",
        f"Budget {options.budget_s:.0f} s, spent {spent_s:.0f} s. Training-step configurations: "
        f"{statuses.get('ok', 0)} of {train_total} measured"
        + "".join(f", {n} {status}" for status, n in sorted(statuses.items()) if status != "ok")
        + f"; {budget_skips} records skipped for the budget.",
        "",
        "| unit (most valuable first) | outcome | seconds |",
        "|---|---|---|",
    ]
    for o in outcomes:
        outcome = o.status if not o.reason else f"{o.status}: {o.reason}"
        lines.append(f"| {o.unit} | {outcome} | {'-' if o.wall_s is None else f'{o.wall_s:.0f}'} |")
    return "\n".join(lines) + "\n"
