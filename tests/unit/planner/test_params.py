"""Parameter counts come from the real architecture (meta device) and the installed PEFT, and match both the
project reference's figures and an independent count from the config values."""

from __future__ import annotations

import pytest

from finetune.frameworks.setup import ROUTED_EXPERT_PARAMETERS, LoraSpec
from finetune.planner.params import ModelShape, cache_key, compute_counts, count_params, library_versions
from finetune.recipes.models import get_model

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
NON_EXPERT = ATTENTION + ("gate_proj", "up_proj", "down_proj")

# The project reference's table (billions), for the model as loaded by transformers.
REFERENCE_BUCKETS = {
    "glm-4.5": {
        "attention": 12.542,
        "dense_mlp": 0.566,
        "routed_experts": 335.964,
        "shared_experts": 2.100,
        "router": 0.073,
        "embeddings": 0.776,
        "lm_head": 0.776,
    },
    "glm-4.5-air": {
        "attention": 5.017,
        "dense_mlp": 0.134,
        "routed_experts": 99.657,
        "shared_experts": 0.779,
        "router": 0.024,
        "embeddings": 0.621,
        "lm_head": 0.621,
    },
}
REFERENCE_TOTALS = {"glm-4.5": 352.798, "glm-4.5-air": 106.852}
REFERENCE_OTHER = {  # one MoE layer (ZeRO-3 leaf), MTP layer, active per token
    "glm-4.5": (3.799, 3.988, 32.856),
    "glm-4.5-air": (2.232, 2.375, 12.803),
}
# LoRA parameters added (millions): attention / all linear except routed experts / incl. every expert
REFERENCE_LORA = {
    8: {"glm-4.5": (34.7, 50.1, 2325), "glm-4.5-air": (15.8, 22.1, 783)},
    16: {"glm-4.5": (69.3, 100.3, 4650), "glm-4.5-air": (31.7, 44.3, 1566)},
    32: {"glm-4.5": (138.7, 200.6, 9300), "glm-4.5-air": (63.3, 88.5, 3132)},
    64: {"glm-4.5": (277.3, 401.1, 18599), "glm-4.5-air": (126.6, 177.1, 6264)},
}
MODELS = ("glm-4.5", "glm-4.5-air")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path_factory, monkeypatch):
    """Counts are computed here, never read from an earlier run's cache."""
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path_factory.getbasetemp() / "plan-cache"))


def _config(name: str) -> dict:
    return get_model(name).config


# -- an independent count: the config values and the layer layout, no model built -------------------------------


def _lora(r: int, n_in: int, n_out: int) -> int:
    return r * (n_in + n_out)


def independent_lora(name: str, r: int, targets: str) -> int:
    """LoRA parameters from the config alone. `targets`: attention, non_expert, experts_fused (transformers 5:
    one adapter on the fused gate_up tensor and one on down_proj per expert), experts_per_linear (one adapter
    on each of an expert's gate, up and down projections, as per-expert Linear layers had it)."""
    s = ModelShape.from_config(_config(name))
    h, q, kv = s.hidden, s.q_dim, s.kv_dim
    total = s.layers * (_lora(r, h, q) + 2 * _lora(r, h, kv) + _lora(r, q, h))
    if targets == "attention":
        return total

    def mlp(inter: int) -> int:  # gate and up: h -> inter; down: inter -> h
        return 2 * _lora(r, h, inter) + _lora(r, inter, h)

    total += s.dense_layers * mlp(s.intermediate) + s.moe_layers * mlp(s.moe_intermediate * s.shared_experts)
    if targets == "non_expert":
        return total
    if targets == "experts_fused":
        per_expert = _lora(r, h, 2 * s.moe_intermediate) + _lora(r, s.moe_intermediate, h)
    else:
        per_expert = mlp(s.moe_intermediate)
    return total + s.moe_layers * s.experts * per_expert


@pytest.mark.parametrize("name", MODELS)
def test_totals_and_buckets_match_transformers_and_the_reference(name):
    counts = count_params(_config(name))
    assert round(counts.total / 1e9, 3) == REFERENCE_TOTALS[name]
    assert counts.trainable == counts.total
    for bucket, billions in REFERENCE_BUCKETS[name].items():
        assert round(counts.buckets[bucket] / 1e9, 3) == billions, bucket
    moe_block, mtp, active = REFERENCE_OTHER[name]
    assert round(counts.moe_block / 1e9, 3) == moe_block
    assert round(counts.mtp_layer / 1e9, 3) == mtp
    assert round(counts.active_per_token / 1e9, 3) == active


def test_exact_totals():
    assert count_params(_config("glm-4.5")).total == 352_797_814_784
    assert count_params(_config("glm-4.5-air")).total == 106_852_245_504
    assert count_params(_config("glm-4.6")).total == count_params(_config("glm-4.7")).total == 352_797_814_784


def test_a_longer_context_counts_as_glm45_and_shares_its_key():
    """GLM-4.6 and GLM-4.7 are GLM-4.5 with 202,752 positions: rotary positions hold no parameter, so they are
    counted under GLM-4.5's key (the shipped counts serve them); a key that shapes a parameter still splits it."""
    spec, versions = LoraSpec(16, NON_EXPERT), library_versions()
    glm45, glm47 = _config("glm-4.5"), _config("glm-4.7")
    assert glm47 != glm45 and ModelShape.from_config(glm47).max_positions == 202752
    for name in ("glm-4.6", "glm-4.7"):
        assert cache_key(_config(name), spec, versions) == cache_key(glm45, spec, versions)
    assert compute_counts(glm47, spec) == compute_counts(glm45, spec)  # counted afresh: really the same
    deeper = {**glm47, "num_hidden_layers": 93}
    assert cache_key(deeper, spec, versions) != cache_key(glm45, spec, versions)


@pytest.mark.parametrize("rank", sorted(REFERENCE_LORA))
@pytest.mark.parametrize("name", MODELS)
def test_lora_counts_from_peft_match_the_reference_and_an_independent_count(name, rank):
    attention_ref, non_expert_ref, every_expert_ref = REFERENCE_LORA[rank][name]
    attention = count_params(_config(name), LoraSpec(rank, ATTENTION)).trainable
    non_expert = count_params(_config(name), LoraSpec(rank, NON_EXPERT)).trainable
    assert attention == independent_lora(name, rank, "attention")
    assert non_expert == independent_lora(name, rank, "non_expert")
    assert round(attention / 1e6, 1) == attention_ref
    assert round(non_expert / 1e6, 1) == non_expert_ref
    # The reference's "every expert" column counts an adapter per expert projection (gate, up, down), the
    # layout of per-expert Linear layers; it matches the independent count of that layout.
    assert round(independent_lora(name, rank, "experts_per_linear") / 1e6) == every_expert_ref


@pytest.mark.parametrize("name", MODELS)
def test_lora_on_every_expert_is_counted_from_peft_on_the_fused_experts(name):
    """transformers 5 fuses gate and up: PEFT's target_parameters puts one adapter on each fused tensor, so
    every-expert LoRA is a quarter smaller than with per-expert Linear layers."""
    spec = LoraSpec(8, NON_EXPERT, target_parameters=ROUTED_EXPERT_PARAMETERS)
    counts = count_params(_config(name), spec)
    assert counts.trainable == independent_lora(name, 8, "experts_fused")
    assert counts.trainable_routed_experts == (
        independent_lora(name, 8, "experts_fused") - independent_lora(name, 8, "non_expert")
    )
    assert counts.trainable < independent_lora(name, 8, "experts_per_linear")


def test_llamafactory_all_is_every_linear_except_the_head():
    """`lora_target: all` resolves as LLaMA-Factory's own find_all_linear_modules: no routed expert, no router."""
    from llamafactory.model.model_utils.misc import find_all_linear_modules

    from finetune.planner.params import all_linear_names, build_meta_model

    model = build_meta_model(_config("glm-4.5-air"))
    assert all_linear_names(model) == sorted(find_all_linear_modules(model, False)) == sorted(NON_EXPERT)
    counts = count_params(_config("glm-4.5-air"), LoraSpec(16, ("all",)))
    assert counts.trainable == independent_lora("glm-4.5-air", 16, "non_expert")
    assert counts.trainable_routed_experts == 0


@pytest.mark.parametrize("name", MODELS)
def test_megatron_layout_fuses_qkv_and_fc1(name):
    """Megatron adapts linear_qkv with one lora_A for q, k and v (and linear_fc1 for gate and up)."""
    s = ModelShape.from_config(_config(name))
    r = 16
    counts = count_params(_config(name), LoraSpec(r, ("linear_qkv", "linear_proj"), layout="megatron"))
    per_layer = _lora(r, s.hidden, s.q_dim + 2 * s.kv_dim) + _lora(r, s.q_dim, s.hidden)
    assert counts.trainable == s.layers * per_layer
    everything = count_params(_config(name), LoraSpec(8, ("all-linear",), layout="megatron"))
    fused_experts = (
        s.moe_layers * s.experts * (_lora(8, s.hidden, 2 * s.moe_intermediate) + _lora(8, s.moe_intermediate, s.hidden))
    )
    assert everything.trainable_routed_experts == fused_experts


def test_counts_are_cached_and_reused(monkeypatch):
    from finetune.planner import params

    spec = LoraSpec(4, ("q_proj",))
    first = count_params(_config("glm-4.5-air"), spec)
    monkeypatch.setattr(params, "compute_counts", lambda *a: pytest.fail("the cache was not used"))
    assert count_params(_config("glm-4.5-air"), spec) == first
    # another spec or other library versions are another key
    assert params.cache_key(_config("glm-4.5-air"), spec, {"peft": "0"}) != params.cache_key(
        _config("glm-4.5-air"), spec, params.library_versions()
    )


def test_counting_builds_on_the_meta_device_quickly():
    import time

    start = time.perf_counter()
    compute_counts(_config("glm-4.5"), LoraSpec(16, NON_EXPERT))
    assert time.perf_counter() - start < 15  # seconds, on a 2-core CPU; no weights are allocated
