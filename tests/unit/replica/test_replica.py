"""The replica is the real glm4_moe architecture with the real model's structure, tiny and deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune import catalog
from finetune.errors import FinetuneError
from finetune.recipes.models import get_model
from finetune.replica import build, tokenizer
from finetune.replica.build import build_replica
from finetune.replica.tokenizer import EOS_TOKENS

FIXTURES = {
    "glm-4.5": "glm45_replica",
    "glm-4.5-air": "air_replica",
    "glm-4.6": "glm46_replica",
    "glm-4.7": "glm47_replica",
}


@pytest.fixture(params=catalog.MODELS)
def replica(request):
    return request.param, request.getfixturevalue(FIXTURES[request.param])


def test_every_catalog_model_has_a_replica_fixture():
    assert set(FIXTURES) == set(catalog.MODELS)


def test_structure_follows_the_real_model(replica):
    name, path = replica
    real = get_model(name).config
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["Glm4MoeForCausalLM"]
    for key in (
        "first_k_dense_replace",
        "n_shared_experts",
        "partial_rotary_factor",
        "attention_bias",
        "use_qk_norm",
        "norm_topk_prob",
        "routed_scaling_factor",
        "tie_word_embeddings",
        "n_group",
    ):
        assert config[key] == real[key], key
    assert config["num_hidden_layers"] > real["first_k_dense_replace"]  # at least one MoE layer
    assert config["num_attention_heads"] * config["head_dim"] != config["hidden_size"]  # like 96 x 128 vs 5120

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    layers = model.model.layers
    dense = real["first_k_dense_replace"]
    assert all(not hasattr(layer.mlp, "experts") for layer in layers[:dense])
    for layer in layers[dense:]:
        assert layer.mlp.experts.gate_up_proj.ndim == 3  # fused routed experts (transformers 5)
        assert layer.mlp.shared_experts is not None
        bias = layer.mlp.gate.e_score_correction_bias
        assert bias.dtype == torch.float32 and bias.abs().sum() > 0  # the router's correction bias survives a load
    attn = layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.k_proj.bias is not None and attn.v_proj.bias is not None
    assert attn.o_proj.bias is None
    assert hasattr(attn, "q_norm") == real["use_qk_norm"]

    tok = AutoTokenizer.from_pretrained(path)
    assert config["eos_token_id"] == [tok.convert_tokens_to_ids(t) for t in EOS_TOKENS]


def test_checkpoint_uses_per_expert_layout(replica):
    name, path = replica
    dense = get_model(name).n_dense_layers
    with safe_open(path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor(f"model.layers.{dense}.mlp.gate.e_score_correction_bias").dtype == torch.float32
    assert f"model.layers.{dense}.mlp.experts.0.gate_proj.weight" in keys
    assert f"model.layers.{dense}.mlp.experts.7.down_proj.weight" in keys
    assert not any(k.endswith("gate_up_proj") for k in keys)


def test_generates(air_replica):
    tok = AutoTokenizer.from_pretrained(air_replica)
    model = AutoModelForCausalLM.from_pretrained(air_replica, dtype=torch.float32)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert torch.isfinite(model(**prompt).logits).all()


def test_build_is_deterministic_and_never_overwrites(tmp_path, air_replica):
    first = build_replica("glm-4.5-air", tmp_path / "a")
    digest = lambda p: hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(first) == digest(air_replica)
    assert build_replica("glm-4.5-air", first) == first  # the same replica is reused, not rebuilt
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "weights.bin").write_text("user data")
    with pytest.raises(FinetuneError, match="never overwritten"):
        build_replica("glm-4.5-air", occupied)
    assert (occupied / "weights.bin").read_text() == "user data"


def test_the_chat_template_follows_the_model(replica):
    """The replica carries its model's format's template, and its fingerprint covers that very template."""
    name, path = replica
    spec = get_model(name)
    template = Path(tokenizer.__file__).with_name(spec.chat.replica_template).read_text(encoding="utf-8")
    assert (path / "chat_template.jinja").read_text(encoding="utf-8") == template
    assert json.loads((path / build.STAMP).read_text()) == {"model": name, "fingerprint": build.build_fingerprint(spec)}


def test_the_fingerprint_changes_with_the_template(tmp_path, monkeypatch):
    spec = get_model("glm-4.7")
    before = build.build_fingerprint(spec)
    edited = tmp_path / "edited.jinja"
    edited.write_text(build.chat_template_path(spec).read_text() + "{#- one more comment -#}")
    monkeypatch.setattr(build, "chat_template_path", lambda _spec: edited)
    assert build.build_fingerprint(spec) != before


@pytest.mark.parametrize("model", ["glm-4.6", "glm-4.7"])
def test_the_cli_builds_the_replica_of_the_model_it_names(request, model, capsys):
    from finetune.cli import main

    cached = request.getfixturevalue(FIXTURES[model])
    assert main(["replica", "--model", model, "--out", str(cached)]) == 0  # this replica: reused, not refused
    assert capsys.readouterr().out.strip() == str(cached)
    other = "glm-4.5" if model == "glm-4.7" else "glm-4.7"
    with pytest.raises(FinetuneError, match="never overwritten"):  # another model's replica is not this one
        build_replica(other, cached)
