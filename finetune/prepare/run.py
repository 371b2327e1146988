"""One pass over the inputs: every row read, converted, its `--var` placeholders filled (placeholders.py), validated,
checked against the rows before it, split and written, or rejected with its reason.

Memory stays bounded whatever the input size: rows are written as they are read, and the only per-row state
kept is a 16-byte hash (to find exact duplicates) and the row's length (for percentiles).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.prepare.consistency import ColumnTypes
from finetune.prepare.datasets import LF_REGISTRY
from finetune.prepare.jsonio import dumps
from finetune.prepare.layouts.base import ConvertOptions
from finetune.prepare.layouts.convert import RowConverter
from finetune.prepare.manifest import FORMAT_VERSION, LlamaFactoryEntry, Manifest, RowCounts, SourceEntry, SwiftEntry
from finetune.prepare.options import PrepareOptions
from finetune.prepare.placeholders import Placeholders
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers import RawRow, Source, read_source
from finetune.prepare.stats import ContentStats
from finetune.prepare.validate import validate_row
from finetune.prepare.writers import DatasetFiles, JsonlOut, dataset_info_entry

EXAMPLES = 5
"""Rejected and duplicate rows the summary shows."""


KTO_COLUMNS = ("label", "kto_tag")  # TRL's / ms-swift's and LLaMA-Factory's names for KTO's desirability flag


def refuse_kto(data) -> None:
    """A KTO row marks its answer desirable or not; as SFT data its undesirable answers would be trained as good."""
    if not isinstance(data, dict):
        return
    for column in KTO_COLUMNS:
        if isinstance(data.get(column), bool):
            raise RowProblem(
                column,
                f"a KTO row: `{column}` marks its answer as desirable (true) or undesirable (false), and the SFT, "
                "DPO and GRPO data prepared here would train the undesirable answers as good ones",
                f"Keep the rows with {column} true (and drop the column) to fine-tune on them, or pair each prompt's "
                "desirable and undesirable answers as chosen / rejected for the DPO recipes; no recipe here trains "
                "KTO.",
            )


class Run:
    """The state of one pass over the inputs, writing into the staging folder."""

    def __init__(self, options: PrepareOptions, staging: Path) -> None:
        self.options = options
        self.staging = staging
        self.converter = RowConverter(ConvertOptions(options.layout, options.columns, options.roles))
        self.kind = options.kind
        self.files: DatasetFiles | None = None
        self.rejects: JsonlOut | None = None
        self.stats = ContentStats()
        self.types = ColumnTypes()
        self.placeholders = Placeholders(options.vars, options.strict)
        self.seen: set[bytes] = set()
        self.key = options.seed.to_bytes(8, "little", signed=True)
        self.val_threshold = int(options.val_ratio * (1 << 64))
        self.read = self.kept = self.rejected = self.rejected_files = self.duplicates = self.dropped = 0
        self.split_rows = Counter()
        self.per_source: list[SourceEntry] = []
        self.ignored_columns: Counter[str] = Counter()
        self.rejected_examples: list[str] = []
        self.duplicate_examples: list[str] = []

    # -- reading --

    def read_all(self, sources: list[Source]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        total = sum(s.size for s in sources) or None
        columns = (
            TextColumn("[bold]prepare[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TimeRemainingColumn(),
        )
        shown = self.options.progress and console.is_terminal
        with Progress(*columns, console=console, disable=not shown, transient=True) as progress:
            task = progress.add_task(self.options.name, total=total, rows=0)

            def advance(nbytes: int) -> None:
                progress.update(task, advance=nbytes, rows=self.read)

            for index, source in enumerate(sources):
                before = self.read
                for raw in read_source(source, index, advance):
                    self.read += 1
                    self.handle(raw)
                self.per_source.append(SourceEntry(source.label, source.container, self.read - before))

    def handle(self, raw: RawRow) -> None:
        if raw.problem is not None:
            if raw.line is None:
                self.read -= 1  # a problem with a whole file is not a row
            self.reject(raw, raw.problem, whole_file=raw.line is None)
            return
        try:
            refuse_kto(raw.data)
            converted = self.converter.convert(raw.data, self.kind, arrow=raw.from_arrow)
            scan = self.placeholders.fill(converted.row)
            row = scan.row
            validate_row(row, converted.kind)
            self.placeholders.refuse(scan)
            try:
                line = dumps(row)
            except ValueError as exc:
                raise RowProblem(
                    "<row>", f"the row holds text that is not valid Unicode ({exc})", "Re-encode the file as UTF-8."
                ) from None
            self.types.check_tools(raw, converted.tools_type)
            if converted.kind == "rl":
                self.types.check_references(raw, row)
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
        self.placeholders.count(raw.location, scan)

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

    def finish(self, digest: str | None) -> Manifest:
        """Close the files, write LLaMA-Factory's registry, and return the manifest (token statistics to come)."""
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
        val = bool(self.split_rows["val"])
        return Manifest(
            format_version=FORMAT_VERSION,
            name=self.options.name,
            kind=self.kind,
            content_hash=digest,
            sources=self.per_source,
            options=self.options.shaping(),
            counts=RowCounts(
                read=self.read,
                kept=self.kept,
                rejected=self.rejected,
                rejected_files=self.rejected_files,
                duplicates=self.duplicates,
                duplicates_dropped=self.dropped,
                train=self.split_rows["train"],
                val=self.split_rows["val"],
            ),
            statistics=self.stats.summary(),
            placeholders=self.placeholders.report(),
            token_stats=None,
            outputs=outputs,
            llamafactory=self._llamafactory_registry(),
            swift=SwiftEntry("swift/train.jsonl", "swift/val.jsonl" if val else None),
            notes=self._notes(),
        )

    def _llamafactory_registry(self) -> LlamaFactoryEntry | None:
        """Write dataset_info.json (the name, and NAME_val for a validation split); RL prompts have none."""
        name, kind = self.options.name, self.kind
        if kind == "rl":
            return None
        val = f"{name}_val" if self.split_rows["val"] else None
        registry = {name: dataset_info_entry("llamafactory/train.jsonl", kind)}
        if val is not None:
            registry[val] = dataset_info_entry("llamafactory/val.jsonl", kind)
        (self.staging / LF_REGISTRY).write_text(json.dumps(registry, indent=2) + "\n")
        return LlamaFactoryEntry(dataset_dir=".", registry=LF_REGISTRY, train=name, val=val)

    def _notes(self) -> list[str]:
        notes = []
        options, converted = self.options, self.converter.notes
        if options.val_ratio and not self.split_rows["val"]:
            notes.append(f"--val-ratio {options.val_ratio} put no row in the validation split (too few rows).")
        if self.ignored_columns:
            cols = ", ".join(f"{k} ({n} rows)" for k, n in self.ignored_columns.most_common())
            notes.append(f"columns not carried into {self.kind} data: {cols} (rename with --map, or use --kind rl).")
        if converted.ignored_message_fields:
            fields = ", ".join(f"{k} ({n})" for k, n in converted.ignored_message_fields.most_common())
            notes.append(f"message fields not carried: {fields}.")
        if converted.tool_results_as_json:
            notes.append(
                f"{converted.tool_results_as_json} tool results given as JSON objects were written as JSON text."
            )
        if self.duplicates and not options.dedupe:
            notes.append(f"{self.duplicates} exact duplicate rows kept (drop them with --dedupe).")
        return notes + self.placeholders.notes()
