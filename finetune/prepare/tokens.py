"""Token statistics: how long every prepared conversation is in tokens, and what a recipe does with the longer ones.

Every canonical conversation is rendered with the tokenizer's own chat template (what the model sees) and its
tokens counted, so a user sees how many rows a recipe's framework would cut or delete before a GPU is touched.
Without `--tokenizer` the replica's tokenizer of the model named (the `--recipe`'s) is used: that model's official
template, byte-level tokens (an upper bound); the statistics say which tokenizer counted them.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from finetune.catalog import DEFAULT_MODEL, MODELS
from finetune.errors import FinetuneError
from finetune.prepare.lengths import SPLITS, count_over, measure
from finetune.prepare.manifest import TokenStats
from finetune.prepare.options import PrepareOptions, SequenceLimit
from finetune.prepare.readers import HUB_ID
from finetune.prepare.stats import percentiles


def check_tokenizer(options: PrepareOptions) -> None:
    """Fail before reading any data when the tokenizer for token statistics is not there."""
    if not options.token_stats or not options.tokenizer or options.tokenizer in MODELS:
        return
    path = Path(options.tokenizer).expanduser()
    if path.exists() and not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise FinetuneError(f"--tokenizer {options.tokenizer}: no tokenizer files there (tokenizer.json).")
    if not path.exists() and not HUB_ID.match(options.tokenizer):
        raise FinetuneError(
            f"--tokenizer {options.tokenizer}: no such folder (give the model's local folder, its hub id, or a "
            f"model name for its replica's tokenizer: {', '.join(MODELS)})."
        )


def replica_model(options: PrepareOptions) -> str | None:
    """The model whose replica tokenizer counts (its official chat template, byte-level tokens): `--tokenizer
    NAME`, else without `--tokenizer` the `--recipe`'s model, else the default model; None for a real tokenizer."""
    if options.tokenizer in MODELS:
        return options.tokenizer
    if options.tokenizer:
        return None
    return options.limit.model if options.limit is not None and options.limit.model else DEFAULT_MODEL


def token_label(options: PrepareOptions) -> str:
    """How the statistics say which tokenizer counted them."""
    model = replica_model(options)
    if model is None:
        return str(options.tokenizer)
    from finetune.recipes.models import get_model

    name = get_model(model).display_name
    return (
        f"{model} replica ({name}'s chat template; byte-level stand-in: counts are bytes, an upper bound on {name} "
        "tokens)"
    )


def is_current(stored: TokenStats | None, options: PrepareOptions) -> bool:
    """Whether statistics already stored were counted with the tokenizer and recipe `options` ask for."""
    if stored is None:
        return False
    recipe = options.limit.recipe if options.limit is not None else None
    return stored.tokenizer == token_label(options) and stored.recipe == recipe


def dataset_token_stats(folder: Path, kind: str, options: PrepareOptions) -> TokenStats:
    """Token statistics of the prepared dataset in `folder`, with the tokenizer and limit `options` name."""
    model = replica_model(options)
    if model is not None:
        path: Path | str = replica_tokenizer_dir(model)
    else:
        path = Path(str(options.tokenizer)).expanduser()
        if not path.exists():
            path = str(options.tokenizer)  # a hub id, for machines that reach the hub
    return token_stats(folder, kind, path, token_label(options), options.limit)


def replica_tokenizer_dir(model: str = DEFAULT_MODEL) -> Path:
    """A tokenizer folder with the family's special tokens and `model`'s official chat template, built offline.

    The replica's own folder when it has been built; otherwise just its tokenizer (no model weights needed).
    """
    from finetune.paths import cache_dir
    from finetune.replica.build import replica_path

    replica = replica_path(model)
    if (replica / "tokenizer.json").is_file():
        return replica
    folder = cache_dir() / "tokenizers" / replica.name
    if not (folder / "tokenizer.json").is_file():
        from finetune.replica.tokenizer import build_tokenizer

        build_tokenizer(folder, model)
    return folder


def token_stats(
    folder: Path, kind: str, tokenizer_path: Path | str, label: str, limit: SequenceLimit | None
) -> TokenStats:
    """Token lengths of every prepared row, rendered with the tokenizer's chat template (finetune/prepare/lengths.py);
    with a recipe's limit, the rows over it per split and what the recipe's framework does with them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_path))
    if not tok.chat_template:
        raise FinetuneError(f"--tokenizer {tokenizer_path}: the tokenizer has no chat template to render with.")
    lengths = measure(folder, kind, tok)
    every = array("I", (n for split in SPLITS for n in lengths.tokens[split]))
    if limit is None or limit.seq_len is None:
        return TokenStats(label, percentiles(every))
    report = count_over(lengths, limit.policy, label)
    handling = f"{limit.policy.consequence()} ({limit.policy.setting})"
    answers = sum(count.answer_over for count in report.splits.values())
    if answers:
        handling += f"; in {answers:,} of them the answer alone is longer than the limit and is cut as well"
    return TokenStats(
        label,
        percentiles(every),
        limit.recipe,
        limit.seq_len,
        report.over,
        [f"{location} ({tokens:,} tokens)" for location, tokens in report.longest],
        {split: count.over for split, count in report.splits.items()},
        {split: count.rows for split, count in report.splits.items()},
        handling,
    )
