"""The manifest of a prepared dataset, and the content hash that makes re-running `prepare` a no-op.

The content hash covers every input byte, every option that changes the output and the version of the
conversion, so the same data prepared the same way always hashes the same, wherever the files live.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from finetune.prepare.datasets import LF_REGISTRY, MANIFEST
from finetune.prepare.readers import Source, _arrow_files

FORMAT_VERSION = 1
"""Bump when a change to conversion or writing changes what `prepare` produces from the same input."""

HASH_CHUNK = 1 << 22


def _file_digest(path: Path, sha: Any) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha.update(chunk)


def content_hash(sources: list[Source], options: dict[str, Any]) -> str | None:
    """sha256 of the inputs' bytes and the output-shaping options; None when an input is a hub dataset."""
    sha = hashlib.sha256()
    sha.update(json.dumps({"format_version": FORMAT_VERSION, "options": options}, sort_keys=True).encode())
    for source in sources:
        if source.container == "hub":
            return None
        sha.update(f"\0{source.container}\0".encode())
        files = _arrow_files(source.path) if source.container == "arrow_dir" else [source.path]
        for path in files:
            sha.update(b"\0file\0")
            _file_digest(path, sha)
    return "sha256:" + sha.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def outputs_intact(folder: Path, manifest: dict[str, Any]) -> bool:
    """Every file the manifest lists is there with the row count it states (a cheap check, no hashing)."""
    outputs = manifest.get("outputs") or {}
    if not outputs:
        return False
    for rel, info in outputs.items():
        path = folder / rel
        if not path.is_file():
            return False
        if info.get("bytes") is not None and path.stat().st_size != info["bytes"]:
            return False
    return manifest.get("kind") == "rl" or (folder / LF_REGISTRY).is_file()
