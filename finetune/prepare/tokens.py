"""Token statistics: how long every prepared conversation is in tokens, and which rows a recipe would truncate.

Every canonical conversation is rendered with the tokenizer's own chat template (what the model sees) and its
tokens counted, so a user sees how many rows a recipe's sequence length would truncate before a GPU is touched.
Without `--tokenizer` the replica's tokenizer is used: GLM-4.5's template, byte-level tokens (an upper bound).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.prepare.jsonio import loads
from finetune.prepare.manifest import TokenStats
from finetune.prepare.options import PrepareOptions, SequenceLimit
from finetune.prepare.readers import HUB_ID
from finetune.prepare.stats import percentiles

TOKEN_BATCH = 256
OVER_LIMIT_EXAMPLES = 5
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


def _conversations(row: dict[str, Any], kind: str) -> list[tuple[list[dict[str, Any]], bool]]:
    """(messages, add_generation_prompt) for each text a row turns into during training."""
    if kind == "preference":
        return [(row["messages"] + [row[k]], False) for k in ("chosen", "rejected")]
    return [(row["messages"], kind == "rl")]


def _canonical_rows(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for split in ("train", "val"):
        path = folder / "canonical" / f"{split}.jsonl"
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                yield f"canonical/{split}.jsonl:{n}", loads(line)


def token_stats(
    folder: Path, kind: str, tokenizer_path: Path | str, label: str, limit: SequenceLimit | None
) -> TokenStats:
    """Token lengths of every prepared row, rendered with the tokenizer's chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_path))
    if not tok.chat_template:
        raise FinetuneError(f"--tokenizer {tokenizer_path}: the tokenizer has no chat template to render with.")
    seq_len = limit.seq_len if limit is not None else None
    lengths = array("I")
    over: list[str] = []
    n_over = 0
    batch: list[tuple[str, list[str]]] = []

    def flush() -> None:
        nonlocal n_over
        texts = [t for _, ts in batch for t in ts]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        i = 0
        for location, ts in batch:
            longest = max(len(x) for x in ids[i : i + len(ts)])
            i += len(ts)
            lengths.append(longest)
            if seq_len is not None and longest > seq_len:
                n_over += 1
                if len(over) < OVER_LIMIT_EXAMPLES:
                    over.append(f"{location} ({longest} tokens)")
        batch.clear()

    for location, row in _canonical_rows(folder):
        texts = [
            tok.apply_chat_template(msgs, tools=row["tools"] or None, tokenize=False, add_generation_prompt=gen)
            for msgs, gen in _conversations(row, kind)
        ]
        batch.append((location, texts))
        if len(batch) >= TOKEN_BATCH:
            flush()
    if batch:
        flush()
    if limit is None:
        return TokenStats(label, percentiles(lengths))
    return TokenStats(label, percentiles(lengths), limit.recipe, limit.seq_len, n_over, over)
