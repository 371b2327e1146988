"""Token statistics: how long every prepared conversation is in tokens, and what a recipe does with the longer ones.

Every canonical conversation is rendered with the tokenizer's own chat template (what the model sees) and its
tokens counted, so a user sees how many rows a recipe's framework would cut or delete before a GPU is touched.
Without `--tokenizer` the replica's tokenizer is used: GLM-4.5's template, byte-level tokens (an upper bound).
"""

from __future__ import annotations

from array import array
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.prepare.lengths import SPLITS, count_over, measure
from finetune.prepare.manifest import TokenStats
from finetune.prepare.options import PrepareOptions, SequenceLimit
from finetune.prepare.readers import HUB_ID
from finetune.prepare.stats import percentiles

REPLICA_TOKENIZER = "replica (byte-level stand-in: counts are bytes, an upper bound on GLM-4.5 tokens)"


def check_tokenizer(options: PrepareOptions) -> None:
    """Fail before reading any data when the tokenizer for token statistics is not there."""
    if not options.token_stats or not options.tokenizer:
        return
    path = Path(options.tokenizer).expanduser()
    if path.exists() and not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise FinetuneError(f"--tokenizer {options.tokenizer}: no tokenizer files there (tokenizer.json).")
    if not path.exists() and not HUB_ID.match(options.tokenizer):
        raise FinetuneError(f"--tokenizer {options.tokenizer}: no such folder (give the model's local folder).")


def token_label(options: PrepareOptions) -> str:
    return options.tokenizer or REPLICA_TOKENIZER


def is_current(stored: TokenStats | None, options: PrepareOptions) -> bool:
    """Whether statistics already stored were counted with the tokenizer and recipe `options` ask for."""
    if stored is None:
        return False
    recipe = options.limit.recipe if options.limit is not None else None
    return stored.tokenizer == token_label(options) and stored.recipe == recipe


def dataset_token_stats(folder: Path, kind: str, options: PrepareOptions) -> TokenStats:
    """Token statistics of the prepared dataset in `folder`, with the tokenizer and limit `options` name."""
    path: Path | str = Path(options.tokenizer).expanduser() if options.tokenizer else replica_tokenizer_dir()
    if options.tokenizer and not Path(path).exists():
        path = options.tokenizer  # a hub id, for machines that reach the hub
    return token_stats(folder, kind, path, token_label(options), options.limit)


def replica_tokenizer_dir() -> Path:
    """A tokenizer folder with GLM-4.5's special tokens and official chat template, built offline.

    The replica's own folder when it has been built; otherwise just its tokenizer (no model weights needed).
    """
    from finetune.paths import cache_dir
    from finetune.replica.build import replica_path

    replica = replica_path("glm-4.5-air")
    if (replica / "tokenizer.json").is_file():
        return replica
    folder = cache_dir() / "tokenizers" / replica.name
    if not (folder / "tokenizer.json").is_file():
        from finetune.replica.tokenizer import build_tokenizer

        build_tokenizer(folder)
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
