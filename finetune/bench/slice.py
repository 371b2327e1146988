"""A slice of GLM-4.5 / GLM-4.5-Air: the real model's config with only N layers.

Everything that sets per-layer cost stays real (hidden size, 96 heads, 128 or 160 experts of the real width, top-8
routing, the 151,552-token vocabulary); only `num_hidden_layers` shrinks, with at least one dense and one MoE layer
so that both layer kinds are measured. `tiny=True` swaps in the replica's small shapes, so the same code runs on a
CPU in seconds (those figures say nothing about a GPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.recipes.models import get_model

NOT_MODEL_KWARGS = ("model_type", "architectures", "torch_dtype", "dtype")
STAMP = "bench_slice.json"  # what a saved slice is: model, layers of each kind, shapes


@dataclass(frozen=True)
class Slice:
    """Which model, how many layers of each kind, and the config.json values of the slice."""

    model: str
    layers: int
    tiny: bool
    config: dict[str, Any]

    @property
    def dense_layers(self) -> int:
        return int(self.config["first_k_dense_replace"])

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "model": self.model,
            "layers": self.layers,
            "dense_layers": self.dense_layers,
            "moe_layers": self.moe_layers,
            "tiny": self.tiny,
            "hidden_size": c["hidden_size"],
            "num_attention_heads": c["num_attention_heads"],
            "n_routed_experts": c["n_routed_experts"],
            "num_experts_per_tok": c["num_experts_per_tok"],
            "moe_intermediate_size": c["moe_intermediate_size"],
            "vocab_size": c["vocab_size"],
        }


def dense_layers_in_slice(real_dense: int, layers: int, dense: int | None = None) -> int:
    """Dense layers kept: the requested number, else the real model's, clamped so one MoE layer remains."""
    wanted = real_dense if dense is None else dense
    return max(1, min(wanted, layers - 1))


def make_slice(model: str, layers: int, *, tiny: bool = False, dense: int | None = None) -> Slice:
    """The slice of `model` with `layers` decoder layers (>= 2: one dense and one MoE at least)."""
    if layers < 2:
        raise FinetuneError(f"--layers {layers}: a slice needs at least 2 layers (one dense, one MoE).")
    spec = get_model(model)
    config = dict(spec.config)
    config["num_hidden_layers"] = layers
    config["first_k_dense_replace"] = dense_layers_in_slice(spec.n_dense_layers, layers, dense)
    config["num_nextn_predict_layers"] = 0  # the MTP layer is not built by Hugging Face models anyway
    if tiny:
        from finetune.replica.build import TINY_SHAPES
        from finetune.replica.tokenizer import EOS_TOKENS, SPECIAL_TOKENS, vocab_size_padded

        config.update(TINY_SHAPES)
        config["num_hidden_layers"] = layers
        config["num_nextn_predict_layers"] = 0
        config["vocab_size"] = vocab_size_padded()
        special_id = {token: 256 + n for n, token in enumerate(SPECIAL_TOKENS)}  # the replica tokenizer's ids
        config["eos_token_id"] = [special_id[t] for t in EOS_TOKENS]
        config["pad_token_id"] = special_id["<|endoftext|>"]
    return Slice(model=model, layers=layers, tiny=tiny, config=config)


def model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Every config.json value as a config keyword: the library defaults are not the real model's."""
    return {k: v for k, v in config.items() if k not in NOT_MODEL_KWARGS}


def hf_config(config: dict[str, Any], **extra: Any):
    from transformers import AutoConfig

    return AutoConfig.for_model(config["model_type"], **model_kwargs(config), **extra)


def build_model(
    piece: Slice, *, device: str, dtype, experts_impl: str | None = None, attn_impl: str = "sdpa", seed: int = 0
):
    """The real Hugging Face model class of the slice, with seeded random weights, built on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"attn_implementation": attn_impl, "dtype": dtype}
    if experts_impl:
        kwargs["experts_implementation"] = experts_impl
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config(piece.config), **kwargs)
    return model


def save_slice(piece: Slice, out: Path, *, device: str = "cpu", seed: int = 0) -> Path:
    """Write the slice as a local Hugging Face folder (bf16 random weights, the replica's byte-level tokenizer),
    for `finetune launch --model DIR`. The tokenizer's ids all fall inside the real vocabulary."""
    import torch

    from finetune.replica.tokenizer import EOS_TOKENS, build_tokenizer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FinetuneError(f"{out} exists and is not empty; a slice is written into a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, piece.model)  # the model's own chat template and context
    config = dict(piece.config)
    config["eos_token_id"] = [tokenizer.convert_tokens_to_ids(t) for t in EOS_TOKENS]
    config["pad_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model = build_model(
        Slice(piece.model, piece.layers, piece.tiny, config), device=device, dtype=torch.bfloat16, seed=seed
    )
    model.generation_config.eos_token_id = config["eos_token_id"]
    model.generation_config.pad_token_id = config["pad_token_id"]
    model.save_pretrained(out)
    (out / STAMP).write_text(json.dumps(piece.describe(), indent=2) + "\n")
    return out
