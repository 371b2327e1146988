"""The length gate of a launch: what the framework will do to the dataset's over-length rows, said before it starts,
and a refusal when it would delete more than a small share of them (finetune/prepare/lengths.py counts).

Rows are counted with the tokenizer of the model the run trains (a local `--model` folder, or its hub id where
this machine reaches the hub); without one, the gate says that it could not count instead of guessing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from finetune.catalog import MAX_DROPPED_ROWS
from finetune.errors import FinetuneError
from finetune.launch.plan import LaunchPlan
from finetune.paths import cache_dir
from finetune.prepare.datasets import load_prepared
from finetune.prepare.lengths import OverLength, count_over, row_lengths


def model_tokenizer(model: str) -> Path | str | None:
    """Where the tokenizer of `model` is: its local folder, or its hub id when the hub answers; else None."""
    folder = Path(model)
    if folder.is_dir():
        return folder if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file() else None
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model)
    except Exception:  # offline, gated, or no such id: the gate says it could not count
        return None
    return model


def over_length(plan: LaunchPlan) -> OverLength | None:
    """The over-length rows of the plan's prepared dataset under its framework's policy (None: nothing to count)."""
    if plan.dataset_root is None:
        return None
    tokenizer = model_tokenizer(plan.model)
    if tokenizer is None:
        return None
    dataset = load_prepared(plan.dataset_root)
    policy = plan.framework.length_policy(dict(plan.config), plan.recipe.meta)
    lengths = row_lengths(dataset.root, dataset.kind, dataset.manifest.content_hash, tokenizer, cache_dir() / "lengths")
    return count_over(lengths, policy, f"{plan.model}'s tokenizer", dataset.root)


def check_lengths(plan: LaunchPlan, max_dropped: float = MAX_DROPPED_ROWS) -> LaunchPlan:
    """Say what the framework does to the over-length rows; refuse when it would delete more than `max_dropped`
    of the training rows. Returns the plan with the count, which the run manifest records."""
    if plan.dataset_root is None:
        return plan
    report = over_length(plan)
    if report is None:
        print(
            f"lengths: not counted: no tokenizer for {plan.model} on this machine (give --model a local folder); "
            f"rows over the limit get: {plan.framework.length_policy(dict(plan.config), plan.recipe.meta).setting}",
            file=sys.stderr,
        )
        return plan
    if report.deleted_share > max_dropped:
        raise FinetuneError(_refusal(plan, report, max_dropped))
    print("\n".join(report.lines()), file=sys.stderr)
    return replace(plan, lengths=report)


def trained_rows_line(plan: LaunchPlan) -> str | None:
    """After a run: the training rows prepared, expected and trained, from the manifest the trainer completed."""
    from finetune.tracking.manifest import manifest_name

    path = plan.run_dir / manifest_name(plan.attempt)
    if plan.topology.node_rank != 0 or plan.dataset_root is None or not path.is_file():
        return None
    dataset = json.loads(path.read_text()).get("dataset") or {}
    trained = (dataset.get("rows_trained") or {}).get("train")
    if trained is None:
        return None
    prepared = dataset["rows"]["train"]
    expected = (dataset.get("rows_expected") or {}).get("train", prepared)
    line = f"rows: {trained:,} of {prepared:,} prepared training rows trained"
    if trained != expected:
        return f"warning: {line}, where {expected:,} were expected: {plan.framework.display_name} left out rows"
    deleted = prepared - trained
    return line + (f" ({deleted:,} deleted for their length, as counted before the start)" if deleted else "")


def _refusal(plan: LaunchPlan, report: OverLength, max_dropped: float) -> str:
    train = report.splits["train"]
    unit = {"pair": "pairs", "prompt": "prompts"}.get(report.policy.applies_to, "rows")
    limit = report.policy.limit or 0
    return "\n".join(
        [
            f"{report.policy.framework} would delete {train.over:,} of {train.rows:,} training {unit} "
            f"({report.deleted_share:.1%}) of `{plan.dataset}`: they are longer than {limit:,} tokens "
            f"({report.policy.setting}; counted with {report.tokenizer}). A launch lets it delete at most "
            f"{max_dropped:.1%} (--max-dropped-rows).",
            "The longest:",
            *(f"  {location}: {tokens:,} tokens" for location, tokens in report.longest),
            "Ways out: raise the limit (--set max_length=N; `finetune plan "
            f"{plan.recipe.id} --seq-len N` says whether it fits), cut instead of delete (--set "
            "truncation_strategy=left keeps each sequence's last tokens, cutting the start of the prompt), "
            "shorten or filter the data and prepare it again, or accept the loss with "
            f"--max-dropped-rows {min(1.0, report.deleted_share + 0.005):.3f}.",
        ]
    )
