"""Read an offline wandb run back: its project, name, group and id, config, history rows and summary.

wandb keeps an offline run's data only in `run-<id>.wandb`, and wandb 0.31 ships no reader for it. The file is
a LevelDB-style log: a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then 32 KiB blocks of records, each
with a 7-byte header (CRC-32 of type and data, length, type: full, first, middle, last) and a protobuf
`wandb.proto.wandb_internal_pb2.Record` as data. Used by `finetune sync --dry-run` and by the tests.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    def series(self, key: str) -> list[Any]:
        """The values of `key` in history order, one per row that has it."""
        return [row[key] for row in self.history if key in row]


def record_payloads(path: Path) -> Iterator[bytes]:
    """The data of every record of a `.wandb` file, reassembled across blocks, checksums verified."""
    data = Path(path).read_bytes()
    if not data.startswith(FILE_HEADER):
        raise ValueError(f"{path}: not a wandb run file (header {data[:7]!r})")
    pos, pending = len(FILE_HEADER), b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # the block's tail is padding
            pos += left_in_block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a file still being written
            break
        body = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        if zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: checksum mismatch at byte {pos}")
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body
            pending = b""


def _set(target: dict[str, Any], item) -> None:
    keys = list(item.nested_key) or [item.key]
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = _value(item)


def _value(item) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if "value" in {o.name for o in item.DESCRIPTOR.oneofs} else None
    if kind is None or kind == "none":
        return None
    if kind == "json":
        return json.loads(item.json)
    return getattr(item, kind)


def _config_values(config: dict[str, Any]) -> dict[str, Any]:
    """wandb stores each config key as {"value": ...} (plus its own `_wandb` entry): unwrap them."""
    return {
        k: v.get("value") if isinstance(v, dict) and "value" in v else v for k, v in config.items() if k != "_wandb"
    }


def read_offline_run(path: Path) -> OfflineRun:
    """Read an offline run from its `run-<id>.wandb` file or from the folder that holds it."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise ValueError(f"{path}: no run-*.wandb file")
        path = files[0]
    run = OfflineRun(path=path)
    config: dict[str, Any] = {}
    for payload in record_payloads(path):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.project, run.entity = r.run_id, r.project, r.entity
            run.name, run.group, run.tags = r.display_name, r.run_group, list(r.tags)
            for item in r.config.update:
                _set(config, item)
        elif kind == "config":
            for item in record.config.update:
                _set(config, item)
            for item in record.config.remove:
                config.pop(item.key, None)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, item)
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, item)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config = _config_values(config)
    return run


def offline_run_dirs(run_dir: Path) -> list[Path]:
    """The offline wandb runs of a run directory (`RUN_DIR/wandb/offline-run-*`), oldest first."""
    wandb_dir = Path(run_dir) / "wandb"
    return sorted(p for p in wandb_dir.glob("offline-run-*") if p.is_dir()) if wandb_dir.is_dir() else []
