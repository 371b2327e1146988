"""A tiny, deterministic stand-in for the GLM tokenizer (GLM-4.5 to GLM-4.7 share its special tokens).

Tests and smoke runs need a tokenizer that speaks a model's chat format (its special
tokens and chat template) without downloading the real ~151k-token vocabulary. This one
is byte-level BPE with no merges: every UTF-8 byte is one token whose id is the byte
value, followed by GLM-4.5's special tokens. Nothing is trained, so the files are the
same on every machine, and any text round-trips through encode/decode. The chat template
and model_max_length follow the model: its format's template written from the format
(`spec.chat.replica_template`, in this folder) and its context (`spec.context`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.catalog import DEFAULT_MODEL
from finetune.recipes.models import ModelSpec, get_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|begin_of_audio|>",
    "<|end_of_audio|>",
    "<|begin_of_transcription|>",
    "<|end_of_transcription|>",
    "<|code_prefix|>",
    "<|code_middle|>",
    "<|code_suffix|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "/nothink",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "<|image|>",
    "<|video|>",
)
"""GLM-4.5's special tokens, in the order of their ids (after the 256 byte tokens)."""

EOS_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")
"""Tokens that end generation: GLM-4.5 stops when the model hands the turn back."""


def chat_template_path(spec: ModelSpec) -> Path:
    """The template the replica of `spec` carries: its chat format's, written from the format."""
    return Path(__file__).with_name(spec.chat.replica_template)


def _byte_symbols() -> list[str]:
    """The printable character that byte-level BPE (GPT-2 style) uses for each byte 0..255.

    Bytes that are already printable stand for themselves; the rest are shifted to 256+ in
    byte order. Indexing by byte value gives the vocabulary a fixed, documented order.
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def vocab_size_padded() -> int:
    """Vocabulary size rounded up to a multiple of 64, the embedding size for a tiny model.

    Padding keeps embedding/LM-head shapes friendly to GPU kernels and tensor parallelism.
    """
    return -(-(256 + len(SPECIAL_TOKENS)) // 64) * 64


def build_tokenizer(out_dir: Path, model: str = DEFAULT_MODEL) -> PreTrainedTokenizerFast:
    """Write tokenizer files (tokenizer.json, tokenizer_config.json, chat template) of `model` to out_dir.

    Returns the tokenizer as reloaded with AutoTokenizer, so callers use exactly what a
    training run loading out_dir would see.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    spec = get_model(model)
    vocab = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    # No post-processor: nothing is added around encoded text; the chat template writes [gMASK]<sop>.
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])

    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=spec.context,
        padding_side="right",
        clean_up_tokenization_spaces=False,  # keep decode(encode(text)) == text
    )
    tok.chat_template = chat_template_path(spec).read_text(encoding="utf-8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    # transformers 5 records "TokenizersBackend", a class 4.x lacks; the alias loads in both.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return AutoTokenizer.from_pretrained(out_dir)
