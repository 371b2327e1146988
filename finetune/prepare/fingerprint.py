"""Whether a re-run of `prepare` has anything to do: the content hash, and whether the files are still there.

The content hash covers every input byte, every option that changes the output and the version of the
conversion, so the same data prepared the same way always hashes the same, wherever the files live.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from finetune.prepare.datasets import LF_REGISTRY
from finetune.prepare.manifest import FORMAT_VERSION, Manifest, ShapingOptions, to_json
from finetune.prepare.readers.source import Source, arrow_files

HASH_CHUNK = 1 << 22


def _file_digest(path: Path, sha: Any) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha.update(chunk)


def content_hash(sources: list[Source], options: ShapingOptions) -> str | None:
    """sha256 of the inputs' bytes and the output-shaping options; None when an input is a hub dataset."""
    sha = hashlib.sha256()
    sha.update(json.dumps({"format_version": FORMAT_VERSION, "options": to_json(options)}, sort_keys=True).encode())
    for source in sources:
        if source.container == "hub":
            return None
        sha.update(f"\0{source.container}\0".encode())
        files = arrow_files(source.path) if source.container == "arrow_dir" else [source.path]
        for path in files:
            sha.update(b"\0file\0")
            _file_digest(path, sha)
    return "sha256:" + sha.hexdigest()


def outputs_intact(folder: Path, manifest: Manifest) -> bool:
    """Every file the manifest lists is there with the size it states (a cheap check, no hashing)."""
    if not manifest.outputs:
        return False
    for rel, info in manifest.outputs.items():
        path = folder / rel
        if not path.is_file():
            return False
        if info.bytes is not None and path.stat().st_size != info.bytes:
            return False
    return manifest.kind == "rl" or (folder / LF_REGISTRY).is_file()
