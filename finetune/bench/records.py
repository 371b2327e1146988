"""Benchmark results as JSON lines: one record per measured configuration, each saying which device made it.

Every record carries `device` (the name torch reports, or "cpu"), `device_kind` ("gpu" / "cpu"), the library
versions, the slice, the configuration, a `status` ("ok", "oom", "skipped", "error") and, when measured, the
metrics with the planner's prediction beside them. Nothing reads a figure without its device.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

FORMAT = 1
REQUIRED = ("kind", "device", "device_kind", "versions", "status")


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FinetuneError(f"{path}:{n}: not a JSON line ({exc}).") from exc
            missing = [k for k in REQUIRED if k not in record]
            if missing:
                raise FinetuneError(f"{path}:{n}: not a benchmark record (missing {', '.join(missing)}).")
            records.append(record)
    return records
