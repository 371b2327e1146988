"""`finetune prepare`: read, convert, validate, split and write one dataset, streaming row by row (run.py).

Everything is written into a staging folder that replaces the dataset's folder only when the run succeeds, so
a failed or interrupted run never leaves half a dataset behind, and an existing dataset is never overwritten by
a different one unless `--force` says so. Re-running on the same input with the same options is a no-op
(fingerprint.py), unless token statistics are asked for with another tokenizer or recipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.prepare.datasets import PreparedDataset, data_root, load_prepared
from finetune.prepare.fingerprint import content_hash, outputs_intact
from finetune.prepare.manifest import FORMAT_VERSION, MANIFEST, Manifest, read_manifest, write_manifest
from finetune.prepare.options import PrepareOptions, SequenceLimit
from finetune.prepare.readers import expand_inputs
from finetune.prepare.run import Run
from finetune.prepare.tokens import check_tokenizer, dataset_token_stats, is_current

__all__ = ["PrepareOptions", "PrepareResult", "SequenceLimit", "prepare"]


@dataclass
class PrepareResult:
    status: str  # written, replaced, unchanged, stats-updated
    dataset: PreparedDataset
    seconds: float = 0.0
    rejected_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)


def prepare(options: PrepareOptions) -> PrepareResult:
    """Prepare `options.inputs` as dataset `options.name`; see the module docstring."""
    started = time.monotonic()
    options.check()
    check_tokenizer(options)
    root = data_root(options.out_root)
    folder = root / options.name
    sources = expand_inputs(options.inputs, options.split)
    digest = content_hash(sources, options.shaping())
    existing = read_manifest(folder) if folder.exists() else None
    unchanged = existing is not None and digest is not None and existing.content_hash == digest
    if unchanged and not options.force and outputs_intact(folder, existing):
        status = _refresh_token_stats(folder, existing, options)
        return PrepareResult(status, load_prepared(folder), time.monotonic() - started)
    if folder.exists() and not options.force:
        what = _what_is_there(folder, existing, options.name, digest)
        raise FinetuneError(
            f"{folder} already holds {what}; it is never overwritten. "
            "Choose another --name, or pass --force to replace it."
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{options.name}-staging-"))
    try:
        run = Run(options, staging)
        run.read_all(sources)
        manifest = run.finish(digest)
        if options.token_stats:
            manifest = dataclasses.replace(manifest, token_stats=dataset_token_stats(staging, manifest.kind, options))
        write_manifest(staging, manifest)
        status = _move_into_place(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return PrepareResult(
        status, load_prepared(folder), time.monotonic() - started, run.rejected_examples, run.duplicate_examples
    )


def _what_is_there(folder: Path, existing: Manifest | None, name: str, digest: str | None) -> str:
    version = existing.format_version if existing is not None else _written_format(folder)
    if version is not None and version < FORMAT_VERSION:
        return f"dataset `{name}` written by an older `prepare` (format {version}, this one writes {FORMAT_VERSION})"
    if existing is None:
        return "a folder that is not a prepared dataset"
    if existing.content_hash == digest:
        return f"dataset `{name}` with files missing or changed"
    origin = ", ".join(s.path for s in existing.sources) or "other inputs"
    return f"dataset `{name}` prepared from {origin} (other content or options)"


def _written_format(folder: Path) -> int | None:
    """The format version of a manifest today's types cannot read (an older `prepare` wrote it), if it has one."""
    try:
        version = json.loads((folder / MANIFEST).read_text()).get("format_version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) else None


def _move_into_place(staging: Path, folder: Path) -> str:
    if not folder.exists():
        staging.rename(folder)
        return "written"
    old = folder.with_name(f".{folder.name}-replaced-{os.getpid()}")
    folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return "replaced"


def _refresh_token_stats(folder: Path, manifest: Manifest, options: PrepareOptions) -> str:
    """Nothing to write for unchanged input, unless token statistics were asked for with other settings."""
    if not options.token_stats or is_current(manifest.token_stats, options):
        return "unchanged"
    stats = dataset_token_stats(folder, manifest.kind, options)
    write_manifest(folder, dataclasses.replace(manifest, token_stats=stats))
    return "stats-updated"
