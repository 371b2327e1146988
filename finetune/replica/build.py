"""A tiny GLM-4.5 / -Air / GLM-4.6 / GLM-4.7 that trains on a CPU: the real architecture with small shapes.

The replica is a real `Glm4MoeForCausalLM` built from the model's own description in `recipes/models/`, with
every structural feature kept (dense first layer(s), shared expert, sigmoid router with its fp32 correction
bias, partial rotary 0.5, q/k/v bias, qk-norm where the model has it, three eos ids, per-expert checkpoint
layout) and only the sizes shrunk. Weights are random but seeded, so a build is the same on every machine.
The tokenizer carries the model's own chat template and context (`replica/tokenizer.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.paths import cache_dir
from finetune.recipes.models import ModelSpec, get_model
from finetune.replica.tokenizer import EOS_TOKENS, SPECIAL_TOKENS, chat_template_path, vocab_size_padded

FORMAT_VERSION = 3  # bump when the build below changes what it writes
MOE_LAYERS = 2
SEED = 0
STAMP = "replica.json"

# Sizes that replace the real ones; every other config value is the real model's.
TINY_SHAPES: dict[str, Any] = {
    "hidden_size": 64,
    "num_attention_heads": 4,  # 4 x 32 = 128 attention width, twice the hidden size (96 x 128 vs 5120 for real)
    "num_key_value_heads": 2,  # grouped-query attention kept
    "head_dim": 32,  # vLLM's CPU attention kernels reject 16; 32 is the smallest they run
    "intermediate_size": 128,
    "moe_intermediate_size": 32,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 4096,
    "num_nextn_predict_layers": 0,  # the real MTP layer is ignored by Hugging Face training anyway
}
_DROP = {"architectures", "model_type", "torch_dtype", "bos_token_id", "eos_token_id", "pad_token_id"}


def tiny_shapes(tiny: dict[str, Any] | None = None) -> dict[str, Any]:
    """TINY_SHAPES with `tiny`'s entries instead (a test that needs other shapes, e.g. non-square experts);
    only keys TINY_SHAPES has, so a typo cannot build a replica that silently keeps the default."""
    unknown = sorted(set(tiny or {}) - set(TINY_SHAPES))
    if unknown:
        raise FinetuneError(f"tiny shapes {unknown}: not replica shapes; choose from {sorted(TINY_SHAPES)}.")
    return {**TINY_SHAPES, **(tiny or {})}


def replica_config(spec: ModelSpec, token_ids: dict[str, int], tiny: dict[str, Any] | None = None) -> dict[str, Any]:
    """The real config with tiny shapes: same dense/MoE layout, router, rotary, biases and norms."""
    config = {k: v for k, v in spec.config.items() if k not in _DROP}
    config.update(tiny_shapes(tiny))
    config["num_hidden_layers"] = spec.n_dense_layers + MOE_LAYERS
    config["vocab_size"] = vocab_size_padded()
    config["eos_token_id"] = [token_ids[t] for t in EOS_TOKENS]
    config["pad_token_id"] = token_ids["<|endoftext|>"]
    return config


def build_fingerprint(spec: ModelSpec, tiny: dict[str, Any] | None = None) -> str:
    """Hash of everything a build depends on, so a cached replica is rebuilt when any of it changes."""
    parts = {
        "format": FORMAT_VERSION,
        "spec": spec.model_dump(),
        "tiny": tiny_shapes(tiny),
        "moe_layers": MOE_LAYERS,
        "seed": SEED,
        "special": SPECIAL_TOKENS,
        "template": chat_template_path(spec).read_text(encoding="utf-8"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _build_into(spec: ModelSpec, out: Path, tiny: dict[str, Any] | None = None) -> None:
    import torch
    from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

    from finetune.replica.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(out, spec.name)
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Glm4MoeConfig(**replica_config(spec, token_ids, tiny))
    torch.manual_seed(SEED)
    model = Glm4MoeForCausalLM(config)
    with torch.no_grad():
        # the real router carries a learned correction bias; zeros would hide a loader that drops it
        for layer in model.model.layers[spec.n_dense_layers :]:
            bias = layer.mlp.gate.e_score_correction_bias
            bias.copy_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(SEED)) * 0.01)
    # Stored in float32 (the real checkpoint is bf16): CPUs compute in fp32, and comparisons between runs
    # (single process vs ZeRO-3) stay exact instead of drowning in bf16 rounding.
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)


def build_replica(model_name: str, out: Path, tiny: dict[str, Any] | None = None) -> Path:
    """Build the replica of `model_name` into `out`, which must be absent, empty, or this same replica; `tiny`
    overrides entries of TINY_SHAPES (None: the standard replica)."""
    spec = get_model(model_name)
    out = Path(out).expanduser().resolve()
    fingerprint = build_fingerprint(spec, tiny)
    stamp = out / STAMP
    if out.exists() and any(out.iterdir()):
        if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            return out
        raise FinetuneError(
            f"--out {out} exists and is not this replica; it is never overwritten: choose an empty or new folder."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        staging = Path(tmp) / "replica"
        _build_into(spec, staging, tiny)
        (staging / STAMP).write_text(json.dumps({"model": spec.name, "fingerprint": fingerprint}, indent=2) + "\n")
        try:
            if out.exists():
                out.rmdir()  # empty, checked above
            os.rename(staging, out)  # atomic: readers see no replica or a whole one
        except OSError:
            # another process (a second node's launcher, a parallel test) finished the same build first
            if not (stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint):
                raise
    return out


def replica_path(model_name: str, tiny: dict[str, Any] | None = None) -> Path:
    """Where the cached replica of `model_name` (with `tiny`'s shapes) lives."""
    return cache_dir() / "replicas" / f"{model_name}-{build_fingerprint(get_model(model_name), tiny)}"


def ensure_replica(model_name: str, tiny: dict[str, Any] | None = None) -> Path:
    """The cached replica of `model_name` (with `tiny`'s shapes), built on first use."""
    return build_replica(model_name, replica_path(model_name, tiny), tiny)
