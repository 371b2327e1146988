"""The progress line's format, shared by the trainer that prints it and the launcher that shows it (no imports:
the launcher reads it without loading a framework)."""

from __future__ import annotations

import json

PREFIX = "[finetune-progress] "


def format_progress(line: str) -> str | None:
    """The launcher's rendering of a progress line, or None when `line` is not one."""
    at = line.find(PREFIX)  # a progress bar drawn without a newline may stand before it
    if at < 0:
        return None
    try:
        r = json.loads(line[at + len(PREFIX) :])
    except ValueError:
        return None
    parts = [f"step {r['step']}/{r['max_steps']}", f"loss {r['loss']:.4f}"]
    if r.get("tokens_per_s") is not None:
        parts.append(f"{r['tokens_per_s']:,.0f} tokens/s")
    if r.get("eta_s") is not None:
        minutes, seconds = divmod(round(r["eta_s"]), 60)
        parts.append(f"ETA {minutes}:{seconds:02d}")
    return "  " + ", ".join(parts)
