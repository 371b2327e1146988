"""What one `prepare` run is asked to do, checked before any data is read.

Everything here is a plain value: the CLI (finetune/cli/prepare.py) resolves a `--recipe` into its length limit
and what its framework does with longer rows, which token statistics count against, so preparing data needs
neither recipes nor frameworks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.prepare.layouts import KINDS, LAYOUTS
from finetune.prepare.lengths import LengthPolicy
from finetune.prepare.manifest import ShapingOptions
from finetune.prepare.placeholders import NAME as PLACEHOLDER_NAME

ROLE_TARGETS = ("system", "user", "assistant", "tool", "function_call", "tool_call")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SequenceLimit:
    """A recipe's length limit and what its framework does with longer rows: token statistics count them."""

    recipe: str  # the recipe's id, as the summary and the manifest name it
    policy: LengthPolicy
    model: str | None = None  # the model the recipe trains: its replica's tokenizer counts when none is given

    @property
    def seq_len(self) -> int | None:
        return self.policy.limit


@dataclass(frozen=True)
class PrepareOptions:
    inputs: list[str]
    name: str
    out_root: Path | None = None
    layout: str = "auto"
    kind: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)  # --var NAME=VALUE, filled into `{{NAME}}` literally
    strict: bool = False  # an unfilled placeholder makes the row invalid
    val_ratio: float = 0.0
    seed: int = 0
    skip_invalid: bool = False
    dedupe: bool = False
    force: bool = False
    token_stats: bool = True
    tokenizer: str | None = None
    limit: SequenceLimit | None = None
    split: str | None = None
    progress: bool = True
    clear_thinking: bool = True  # False: earlier reasoning stays in the context (GLM-4.7's preserved thinking)

    def shaping(self) -> ShapingOptions:
        """The options that change what is written; part of the content hash."""
        return ShapingOptions(
            name=self.name,
            format=self.layout,
            kind=self.kind,
            map=dict(sorted(self.columns.items())),
            roles=dict(sorted(self.roles.items())),
            vars=dict(sorted(self.vars.items())),
            val_ratio=self.val_ratio,
            seed=self.seed,
            skip_invalid=self.skip_invalid,
            strict=self.strict,
            dedupe=self.dedupe,
            split=self.split,
            clear_thinking=self.clear_thinking,
        )

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
        for name in self.vars:
            if not PLACEHOLDER_NAME.match(name):
                raise FinetuneError(
                    f"--var {name}: a placeholder's name is letters, digits, `_`, `.` and `-`, starting with a letter "
                    "or `_` (write `--var name=Ada` to fill `{{name}}`)."
                )
