"""`finetune prepare`: read, convert, validate, split and write one dataset, streaming row by row.

Memory stays bounded whatever the input size: rows are written as they are read, and the only per-row state
kept is a 16-byte hash (to find exact duplicates) and the row's length (for percentiles). Everything is written
into a staging folder that replaces the dataset's folder only when the run succeeds, so a failed or
interrupted run never leaves half a dataset behind, and an existing dataset is never overwritten by a
different one unless `--force` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.prepare.datasets import LF_REGISTRY, PreparedDataset, data_root, load_prepared
from finetune.errors import FinetuneError
from finetune.prepare.formats import KINDS, LAYOUTS, ConvertOptions, RowConverter
from finetune.prepare.jsonio import dumps
from finetune.prepare.manifest import FORMAT_VERSION, content_hash, outputs_intact, read_manifest, write_manifest
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers import HUB_ID, RawRow, expand_inputs, read_source
from finetune.prepare.stats import ContentStats, replica_tokenizer_dir, token_stats
from finetune.prepare.validate import validate_row
from finetune.prepare.writers import DatasetFiles, JsonlOut, dataset_info_entry

ROLE_TARGETS = ("system", "user", "assistant", "tool", "function_call", "tool_call")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXAMPLES = 5
REPLICA_TOKENIZER = "replica (byte-level stand-in: counts are bytes, an upper bound on GLM-4.5 tokens)"


@dataclass
class PrepareOptions:
    inputs: list[str]
    name: str
    out_root: Path | None = None
    layout: str = "auto"
    kind: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    val_ratio: float = 0.0
    seed: int = 0
    skip_invalid: bool = False
    dedupe: bool = False
    force: bool = False
    token_stats: bool = True
    tokenizer: str | None = None
    recipe: str | None = None
    split: str | None = None
    progress: bool = True

    def shaping(self) -> dict[str, Any]:
        """The options that change what is written; part of the content hash."""
        return {
            "name": self.name,
            "format": self.layout,
            "kind": self.kind,
            "map": dict(sorted(self.columns.items())),
            "roles": dict(sorted(self.roles.items())),
            "val_ratio": self.val_ratio,
            "seed": self.seed,
            "skip_invalid": self.skip_invalid,
            "dedupe": self.dedupe,
            "split": self.split,
        }

    def check(self) -> None:
        if not NAME_PATTERN.match(self.name) or self.name.endswith("_val"):
            raise FinetuneError(
                f"--name {self.name}: use letters, digits, `_`, `.` and `-` (starting with a letter or digit, "
                "not ending in `_val`, which names validation splits)."
            )
        if not 0.0 <= self.val_ratio < 1.0:
            raise FinetuneError(f"--val-ratio {self.val_ratio}: give a fraction in [0, 1), e.g. 0.05.")
        if self.layout not in ("auto", *LAYOUTS):
            raise FinetuneError(f"--format {self.layout}: choose auto, {', '.join(LAYOUTS)}.")
        if self.kind not in ("auto", *KINDS):
            raise FinetuneError(f"--kind {self.kind}: choose auto, {', '.join(KINDS)}.")
        if not self.inputs:
            raise FinetuneError("Give at least one input file.")
        for tag, role in self.roles.items():
            if role not in ROLE_TARGETS:
                raise FinetuneError(f"--role {tag}={role}: map tags to one of {', '.join(ROLE_TARGETS)}.")


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
    _check_token_settings(options)
    root = data_root(options.out_root)
    folder = root / options.name
    sources = expand_inputs(options.inputs, options.split)
    digest = content_hash(sources, options.shaping())
    existing = read_manifest(folder) if folder.exists() else None
    unchanged = existing is not None and digest is not None and existing.get("content_hash") == digest
    if unchanged and not options.force and outputs_intact(folder, existing):
        status = _refresh_token_stats(folder, existing, options)
        return PrepareResult(status, load_prepared(folder), time.monotonic() - started)
    if folder.exists() and not options.force:
        what = "a folder that is not a prepared dataset"
        if existing is not None:
            origin = ", ".join(s.get("path", "?") for s in existing.get("sources", [])) or "other inputs"
            what = f"dataset `{options.name}` prepared from {origin} (other content or options)"
            if existing.get("content_hash") == digest:
                what = f"dataset `{options.name}` with files missing or changed"
        raise FinetuneError(
            f"{folder} already holds {what}; it is never overwritten. Choose another --name, or pass --force "
            "to replace it."
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{options.name}-staging-"))
    try:
        run = _Run(options, staging)
        run.read_all(sources)
        manifest = run.finish(digest)
        if options.token_stats:
            manifest["token_stats"] = _token_stats(staging, manifest["kind"], options)
        write_manifest(staging, manifest)
        status = _move_into_place(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return PrepareResult(
        status, load_prepared(folder), time.monotonic() - started, run.rejected_examples, run.duplicate_examples
    )


def _move_into_place(staging: Path, folder: Path) -> str:
    if not folder.exists():
        staging.rename(folder)
        return "written"
    old = folder.with_name(f".{folder.name}-replaced-{os.getpid()}")
    folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return "replaced"


# -- one run ----------------------------------------------------------------------------------------------------------


class _Run:
    """The state of one pass over the inputs."""

    def __init__(self, options: PrepareOptions, staging: Path) -> None:
        self.options = options
        self.staging = staging
        self.converter = RowConverter(ConvertOptions(options.layout, options.columns, options.roles))
        self.kind = options.kind
        self.files: DatasetFiles | None = None
        self.rejects: JsonlOut | None = None
        self.stats = ContentStats()
        self.seen: set[bytes] = set()
        self.key = options.seed.to_bytes(8, "little", signed=True)
        self.val_threshold = int(options.val_ratio * (1 << 64))
        self.read = self.kept = self.rejected = self.rejected_files = self.duplicates = self.dropped = 0
        self.split_rows = Counter()
        self.per_source: list[dict[str, Any]] = []
        self.ignored_columns: Counter[str] = Counter()
        self.tools_types: dict[int, tuple[str, str]] = {}
        self.reference_types: dict[str, tuple[str, str]] = {}
        self.rejected_examples: list[str] = []
        self.duplicate_examples: list[str] = []

    # -- reading --

    def read_all(self, sources) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        total = sum(s.size for s in sources) or None
        with Progress(
            TextColumn("[bold]prepare[/] {task.description}"), BarColumn(), DownloadColumn(),
            TextColumn("{task.fields[rows]:,} rows"), TimeRemainingColumn(),
            console=console, disable=not (self.options.progress and console.is_terminal), transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task(self.options.name, total=total, rows=0)

            def advance(nbytes: int) -> None:
                progress.update(task, advance=nbytes, rows=self.read)

            for index, source in enumerate(sources):
                before = self.read
                for raw in read_source(source, index, advance):
                    self.read += 1
                    self.handle(raw)
                self.per_source.append(
                    {"path": source.label, "container": source.container, "rows_read": self.read - before}
                )

    def handle(self, raw: RawRow) -> None:
        if raw.problem is not None:
            if raw.line is None:
                self.read -= 1  # a problem with a whole file is not a row
            self.reject(raw, raw.problem, whole_file=raw.line is None)
            return
        try:
            converted = self.converter.convert(raw.data, self.kind, arrow=raw.from_arrow)
            row = converted.row
            validate_row(row, converted.kind)
            try:
                line = dumps(row)
            except ValueError as exc:
                raise RowProblem("<row>", f"the row holds text that is not valid Unicode ({exc})",
                                 "Re-encode the file as UTF-8.") from None  # fmt: skip
            # types are compared with the first accepted row, so a broken first row cannot set them
            self._check_tools_type(raw, converted.tools_type)
            if converted.kind == "rl":
                self._check_reference_types(raw, row)
        except RowProblem as problem:
            self.reject(raw, problem)
            return
        if self.files is None:
            self.kind = converted.kind
            self.files = DatasetFiles(self.staging, self.kind)
        for column in converted.ignored:
            self.ignored_columns[column] += 1
        digest = hashlib.blake2b(line, digest_size=16, key=self.key).digest()
        if digest in self.seen:
            self.duplicates += 1
            if len(self.duplicate_examples) < EXAMPLES:
                self.duplicate_examples.append(f"{raw.location} repeats an earlier row exactly")
            if self.options.dedupe:
                self.dropped += 1
                return
        else:
            self.seen.add(digest)
        split = "val" if int.from_bytes(digest[:8], "little") < self.val_threshold else "train"
        self.files.write(split, line, row)
        self.split_rows[split] += 1
        self.kept += 1
        self.stats.add(row, converted.layout, line)

    def _check_tools_type(self, raw: RawRow, typed: str | None) -> None:
        if typed is None:
            return
        first = self.tools_types.setdefault(raw.source_index, (typed, raw.location))
        if first[0] != typed:
            raise RowProblem(
                "tools", f"tools is {'JSON text' if typed == 'string' else 'a list'} here but "
                f"{'JSON text' if first[0] == 'string' else 'a list'} at {first[1]}: typed differently across rows",
                "Give `tools` one type in every row of a file (a list of tool schemas is best); mixed types break "
                "the Arrow loaders both frameworks use.",
            )  # fmt: skip

    def _check_reference_types(self, raw: RawRow, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key in ("messages", "tools") or value is None:
                continue
            typed = (
                "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
            )
            first = self.reference_types.setdefault(key, (typed, raw.location))
            if first[0] != typed:
                raise RowProblem(
                    key, f"`{key}` is a {typed} here but a {first[0]} at {first[1]}: typed differently across rows",
                    f"Give `{key}` one type in every row; reward functions and Arrow loaders expect that.",
                )  # fmt: skip

    def reject(self, raw: RawRow, problem: RowProblem, *, whole_file: bool = False) -> None:
        message = problem.describe(raw.location)
        if not self.options.skip_invalid:
            raise FinetuneError(
                f"{message}\nNothing was written. Fix the input, or rerun with --skip-invalid to keep going and write "
                "every rejected row with its reason to rejects.jsonl."
            )
        if whole_file:
            self.rejected_files += 1
        else:
            self.rejected += 1
        if len(self.rejected_examples) < EXAMPLES:
            self.rejected_examples.append(message)
        if self.rejects is None:
            self.rejects = JsonlOut(self.staging / "rejects.jsonl")
        entry = {"location": raw.location, "field": problem.field, "error": problem.what, "fix": problem.fix}
        if raw.data is not None:
            entry["row"] = raw.data
        elif raw.raw is not None:
            entry["raw"] = raw.raw
        try:
            line = dumps(entry)
        except ValueError:
            line = json.dumps(entry, ensure_ascii=True, default=str).encode()
        self.rejects.write(line)

    # -- writing --

    def finish(self, digest: str | None) -> dict[str, Any]:
        rejects_info = self.rejects.close() if self.rejects is not None else None
        if self.files is None:
            where = self.staging.parent / f"{self.options.name}.rejects.jsonl"
            if rejects_info is not None:
                shutil.copy(self.staging / "rejects.jsonl", where)
            raise FinetuneError(
                f"No valid rows: {self.read} rows and {self.rejected_files} files were rejected"
                + (f" (reasons in {where})" if rejects_info else "")
                + ". First problems:\n  "
                + "\n  ".join(self.rejected_examples or ["no rows in the inputs"])
            )
        outputs = self.files.close()
        if rejects_info is not None:
            outputs["rejects.jsonl"] = rejects_info
        name, kind = self.options.name, self.kind
        lf = None
        if kind != "rl":
            registry = {name: dataset_info_entry("llamafactory/train.jsonl", kind)}
            if self.split_rows["val"]:
                registry[f"{name}_val"] = dataset_info_entry("llamafactory/val.jsonl", kind)
            (self.staging / LF_REGISTRY).write_text(json.dumps(registry, indent=2) + "\n")
            lf = {"dataset_dir": ".", "registry": LF_REGISTRY, "train": name,
                  "val": f"{name}_val" if self.split_rows["val"] else None}  # fmt: skip
        notes = []
        if self.options.val_ratio and not self.split_rows["val"]:
            notes.append(f"--val-ratio {self.options.val_ratio} put no row in the validation split (too few rows).")
        if self.ignored_columns:
            cols = ", ".join(f"{k} ({n} rows)" for k, n in self.ignored_columns.most_common())
            notes.append(f"columns not carried into {kind} data: {cols} (rename with --map, or use --kind rl).")
        if self.converter.notes.ignored_message_fields:
            fields = ", ".join(f"{k} ({n})" for k, n in self.converter.notes.ignored_message_fields.most_common())
            notes.append(f"message fields not carried: {fields}.")
        if self.converter.notes.tool_results_as_json:
            notes.append(f"{self.converter.notes.tool_results_as_json} tool results given as JSON objects were "
                         "written as JSON text.")  # fmt: skip
        if self.duplicates and not self.options.dedupe:
            notes.append(f"{self.duplicates} exact duplicate rows kept (drop them with --dedupe).")
        return {
            "format_version": FORMAT_VERSION,
            "name": name,
            "kind": kind,
            "content_hash": digest,
            "sources": self.per_source,
            "options": self.options.shaping(),
            "counts": {
                "read": self.read,
                "kept": self.kept,
                "rejected": self.rejected,
                "rejected_files": self.rejected_files,
                "duplicates": self.duplicates,
                "duplicates_dropped": self.dropped,
                "train": self.split_rows["train"],
                "val": self.split_rows["val"],
            },
            "statistics": self.stats.summary(),
            "token_stats": None,
            "outputs": outputs,
            "llamafactory": lf,
            "swift": {"train": "swift/train.jsonl", "val": "swift/val.jsonl" if self.split_rows["val"] else None},
            "notes": notes,
        }


# -- token statistics ----------------------------------------------------------------------------------------------


def _seq_len(options: PrepareOptions) -> int | None:
    if not options.recipe:
        return None
    from finetune.frameworks import get_framework
    from finetune.recipes.recipe import resolve_recipe

    recipe = resolve_recipe(options.recipe)
    return get_framework(recipe.framework).shape(recipe.config).seq_len


def _token_label(options: PrepareOptions) -> str:
    return options.tokenizer or REPLICA_TOKENIZER


def _check_token_settings(options: PrepareOptions) -> None:
    """Fail before reading any data when the tokenizer or recipe for token statistics is wrong."""
    if not options.token_stats:
        return
    _seq_len(options)
    if options.tokenizer:
        path = Path(options.tokenizer).expanduser()
        if path.exists() and not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise FinetuneError(f"--tokenizer {options.tokenizer}: no tokenizer files there (tokenizer.json).")
        if not path.exists() and not HUB_ID.match(options.tokenizer):
            raise FinetuneError(f"--tokenizer {options.tokenizer}: no such folder (give the model's local folder).")


def _token_stats(folder: Path, kind: str, options: PrepareOptions) -> dict[str, Any]:
    path = Path(options.tokenizer).expanduser() if options.tokenizer else replica_tokenizer_dir()
    if options.tokenizer and not path.exists():
        path = options.tokenizer  # a hub id, for machines that reach the hub
    return token_stats(folder, kind, path, _token_label(options), _seq_len(options), options.recipe)


def _refresh_token_stats(folder: Path, manifest: dict[str, Any], options: PrepareOptions) -> str:
    """Nothing to write for unchanged input, unless token statistics were asked for with other settings."""
    if not options.token_stats:
        return "unchanged"
    stored = manifest.get("token_stats") or {}
    if stored.get("tokenizer") == _token_label(options) and stored.get("recipe") == options.recipe:
        return "unchanged"
    manifest["token_stats"] = _token_stats(folder, manifest["kind"], options)
    write_manifest(folder, manifest)
    return "stats-updated"
