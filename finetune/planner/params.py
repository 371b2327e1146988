"""Parameter counts from the real architecture: the model is built on the meta device (no weights) from its
config.json values, and a LoRA's trainable parameters are counted from the PEFT model the installed PEFT builds.

Hand formulas drift from what the libraries really build (from transformers 5 the routed experts are fused 3-D
parameters, and PEFT adapts them with one lora_A per fused gate_up tensor), so every count here is read off an
instantiated model. Building GLM-4.5 on the meta device takes about a second, importing torch and transformers
several more; results are cached as JSON under the cache directory, keyed by the config values that shape a
parameter (every key but `COUNT_NEUTRAL_KEYS`), the LoRA spec and the library versions, so a repeated plan never
imports torch, and GLM-4.6 / GLM-4.7 (GLM-4.5 with a longer context) read GLM-4.5's counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from finetune.frameworks.setup import LoraSpec
from finetune.paths import cache_dir
from finetune.recipes.components import part_of

FORMAT_VERSION = 1  # bump when what is counted changes
LIBRARIES = ("torch", "transformers", "peft")
MEGATRON_TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
# config.json keys that size no parameter, left out of the counts' key: both modelled types use rotary
# positions (no learned position table), and the version that wrote the file is not the one that counts.
COUNT_NEUTRAL_KEYS = ("max_position_embeddings", "transformers_version")


@dataclass(frozen=True)
class ModelShape:
    """The sizes the memory and FLOPs model needs, read from a config.json (glm4_moe or qwen3_moe)."""

    model_type: str
    hidden: int
    layers: int
    dense_layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP
    moe_intermediate: int
    experts: int
    experts_per_token: int
    shared_experts: int
    vocab: int
    qk_norm: bool
    max_positions: int
    mtp_layers: int

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        model_type = config["model_type"]
        heads = int(config["num_attention_heads"])
        if model_type == "glm4_moe":
            dense_layers = int(config["first_k_dense_replace"])
            experts, shared = int(config["n_routed_experts"]), int(config["n_shared_experts"])
            qk_norm, mtp = bool(config.get("use_qk_norm", False)), int(config.get("num_nextn_predict_layers", 0))
        elif model_type == "qwen3_moe":
            if config.get("mlp_only_layers") or int(config.get("decoder_sparse_step", 1)) != 1:
                raise ValueError("qwen3_moe with dense layers between MoE layers is not modelled")
            dense_layers, experts, shared, qk_norm, mtp = 0, int(config["num_experts"]), 0, True, 0
        else:
            raise ValueError(f"model_type `{model_type}` is not modelled (glm4_moe, qwen3_moe)")
        return cls(
            model_type=model_type,
            hidden=int(config["hidden_size"]),
            layers=int(config["num_hidden_layers"]),
            dense_layers=dense_layers,
            heads=heads,
            kv_heads=int(config["num_key_value_heads"]),
            head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
            intermediate=int(config["intermediate_size"]),
            moe_intermediate=int(config["moe_intermediate_size"]),
            experts=experts,
            experts_per_token=int(config["num_experts_per_tok"]),
            shared_experts=shared,
            vocab=int(config["vocab_size"]),
            qk_norm=qk_norm,
            max_positions=int(config["max_position_embeddings"]),
            mtp_layers=mtp,
        )


@dataclass
class ParamCounts:
    """Parameter counts of one model (and one LoRA, when given), as the libraries build them."""

    total: int
    buckets: dict[str, int]  # attention, dense_mlp, shared_experts, routed_experts, router, embeddings, lm_head, norms
    moe_block: int  # one MoE layer's `mlp` module: the leaf ZeRO-3 gathers whole
    mtp_layer: int  # the multi-token-prediction layer Megatron can train (Hugging Face ignores it)
    active_per_token: int  # non-embedding parameters a token passes through, lm_head included
    trainable: int
    trainable_routed_experts: int = 0
    trainable_by_component: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def routed_experts(self) -> int:
        return self.buckets["routed_experts"]


def library_versions() -> dict[str, str]:
    """Versions read from package metadata, without importing the (slow) libraries."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    # every key is set from config.json: the library defaults are not the real model (head_dim, rope_theta, ...)
    return {k: v for k, v in config.items() if k not in ("model_type", "architectures", "torch_dtype", "dtype")}


def build_meta_model(config: dict[str, Any]):
    """The real Hugging Face model class built from `config` on the meta device: shapes, no memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(config["model_type"], **_model_kwargs(config))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def _base_counts(model, shape: ModelShape) -> dict[str, Any]:
    buckets: dict[str, int] = {}
    for name, p in model.named_parameters():
        bucket = part_of(name)
        buckets[bucket] = buckets.get(bucket, 0) + p.numel()
    layers = model.model.layers
    moe_blocks = [sum(p.numel() for p in layer.mlp.parameters()) for layer in layers[shape.dense_layers :]]
    last_layer = sum(p.numel() for p in layers[-1].parameters())
    # the MTP layer: one more decoder layer, plus eh_proj (2h -> h) and three RMSNorms (enorm, hnorm, final)
    mtp_layer = (last_layer + 2 * shape.hidden * shape.hidden + 3 * shape.hidden) if shape.mtp_layers else 0
    routed_active = buckets.get("routed_experts", 0) * shape.experts_per_token // max(shape.experts, 1)
    active = sum(v for k, v in buckets.items() if k not in ("embeddings", "routed_experts")) + routed_active
    return {
        "total": sum(buckets.values()),
        "buckets": buckets,
        "moe_block": max(moe_blocks, default=0),
        "mtp_layer": mtp_layer * shape.mtp_layers,
        "active_per_token": active,
    }


def all_linear_names(model) -> list[str]:
    """LLaMA-Factory's `lora_target: all`: the names of modules whose class is a Linear (not an Embedding),
    the output head excepted (mirrors llamafactory.model.model_utils.misc.find_all_linear_modules)."""
    names = set()
    for name, module in model.named_modules():
        kind = type(module).__name__
        if "lm_head" not in name and "Linear" in kind and "Embedding" not in kind:
            names.add(name.split(".")[-1])
    return sorted(names)


def _peft_trainable(model, spec: LoraSpec) -> tuple[int, int, dict[str, int]]:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from finetune.recipes.components import component_of

    targets = list(spec.target_modules)
    if targets == ["all"]:
        targets = all_linear_names(model)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=spec.rank,
        target_modules=targets,
        target_parameters=list(spec.target_parameters) or None,
        modules_to_save=list(spec.modules_to_save) or None,
        use_dora=spec.use_dora,
        lora_dropout=0.0,  # PEFT refuses dropout on fused-parameter targets; it adds no parameters anyway
    )
    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unsupported layer type")  # the fused experts: counted anyway
        peft_model = get_peft_model(model, lora)
    by_component: dict[str, int] = {}
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            component = component_of(name) or "other"
            by_component[component] = by_component.get(component, 0) + p.numel()
    return sum(by_component.values()), by_component.get("routed_experts", 0), by_component


def _megatron_lora_trainable(model, shape: ModelShape, spec: LoraSpec) -> tuple[int, int, dict[str, int]]:
    """LoRA parameters as Megatron lays the same layers out: q/k/v fused into linear_qkv, gate/up into
    linear_fc1 (dense MLP, shared expert and each routed expert), o_proj -> linear_proj, down_proj -> linear_fc2.
    In/out features are read off the built Hugging Face modules; `all-linear` is every one of them, experts
    included (the output layer excepted), as Megatron-SWIFT resolves it."""
    targets = set(spec.target_modules)
    if "all-linear" in targets:
        targets = set(MEGATRON_TARGETS)
    unknown = targets - set(MEGATRON_TARGETS)
    if unknown:
        known = ", ".join((*MEGATRON_TARGETS, "all-linear"))
        raise ValueError(f"Megatron LoRA targets not modelled: {sorted(unknown)} (known: {known})")
    r = spec.rank

    def lora(n_in: int, n_out: int) -> int:
        return r * (n_in + n_out)

    by_component: dict[str, int] = {}

    def add(component: str, n: int) -> None:
        by_component[component] = by_component.get(component, 0) + n

    def mlp_lora(mlp, component: str) -> None:
        if "linear_fc1" in targets:  # gate and up side by side: one input, both outputs
            add(component, lora(mlp.gate_proj.in_features, mlp.gate_proj.out_features + mlp.up_proj.out_features))
        if "linear_fc2" in targets:
            add(component, lora(mlp.down_proj.in_features, mlp.down_proj.out_features))

    layers = list(model.model.layers) + ([model.model.layers[-1]] * spec.mtp_layers)
    for layer in layers:
        attn = layer.self_attn
        if "linear_qkv" in targets:
            qkv_out = attn.q_proj.out_features + attn.k_proj.out_features + attn.v_proj.out_features
            add("attention", lora(attn.q_proj.in_features, qkv_out))
        if "linear_proj" in targets:
            add("attention", lora(attn.o_proj.in_features, attn.o_proj.out_features))
        mlp = layer.mlp
        if hasattr(mlp, "experts"):
            n_experts, two_i, hidden = mlp.experts.gate_up_proj.shape
            _, _, inter = mlp.experts.down_proj.shape
            if "linear_fc1" in targets:
                add("routed_experts", n_experts * lora(hidden, two_i))
            if "linear_fc2" in targets:
                add("routed_experts", n_experts * lora(inter, hidden))
            if getattr(mlp, "shared_experts", None) is not None:
                mlp_lora(mlp.shared_experts, "shared_experts")
        else:
            mlp_lora(mlp, "dense_mlp")
    if spec.mtp_layers and "linear_fc1" in targets:  # MTP's eh_proj (2h -> h), column-parallel like fc1
        add("other", spec.mtp_layers * lora(2 * shape.hidden, shape.hidden))
    return sum(by_component.values()), by_component.get("routed_experts", 0), by_component


def cache_key(config: dict[str, Any], spec: LoraSpec | None, versions: dict[str, str]) -> str:
    """What the counts depend on: the config less `COUNT_NEUTRAL_KEYS`, the LoRA and the library versions."""
    shaping = {k: v for k, v in config.items() if k not in COUNT_NEUTRAL_KEYS}
    payload = {
        "format": FORMAT_VERSION,
        "config": shaping,
        "spec": asdict(spec) if spec else None,
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:20]


def compute_counts(config: dict[str, Any], spec: LoraSpec | None) -> ParamCounts:
    """Build the model on the meta device (and the PEFT model for `spec`) and count; slow (imports torch)."""
    shape = ModelShape.from_config(config)
    model = build_meta_model(config)
    base = _base_counts(model, shape)
    if spec is None:
        trainable, trainable_experts = base["total"], base["buckets"].get("routed_experts", 0)
        by_component = {"all": trainable}
    elif spec.layout == "megatron":
        trainable, trainable_experts, by_component = _megatron_lora_trainable(model, shape, spec)
    else:
        trainable, trainable_experts, by_component = _peft_trainable(model, spec)
    return ParamCounts(
        **base,
        trainable=trainable,
        trainable_routed_experts=trainable_experts,
        trainable_by_component=by_component,
        versions=library_versions(),
    )


KNOWN_COUNTS = Path(__file__).with_name("known_counts.json")


def known_counts() -> dict[str, dict[str, Any]]:
    """Counts shipped for the recipes in this repository (keyed like the cache, so only valid for the pinned
    library versions): a first `plan` or `launch` needs no torch import. `known_counts.refresh_known_counts`
    rewrites them."""
    return json.loads(KNOWN_COUNTS.read_text()) if KNOWN_COUNTS.is_file() else {}


def count_params(config: dict[str, Any], spec: LoraSpec | None = None, *, use_cache: bool = True) -> ParamCounts:
    """Counts for `config` (a config.json dict) and an optional LoRA; cached, so only the first call is slow."""
    versions = library_versions()
    key = cache_key(config, spec, versions)
    path = cache_dir() / "plan" / f"params-{key}.json"
    if use_cache and key in known_counts():
        return ParamCounts(**known_counts()[key])
    if use_cache and path.is_file():
        try:
            return ParamCounts(**json.loads(path.read_text()))
        except (TypeError, ValueError):
            pass  # a stale or broken entry is recomputed
    counts = compute_counts(config, spec)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # the nodes of a job count at the same moment
        tmp.write_text(json.dumps(asdict(counts), indent=1, sort_keys=True))
        tmp.replace(path)
    return counts
