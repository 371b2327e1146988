"""The fused expert LoRA of either PEFT orientation, converted to the layouts engines load, checked against PEFT's
own formula for the delta it applies (the einsums of `peft/tuners/lora/layer.py`, ParamWrapper.get_delta_weight:
"o r e, e r i -> e i o" before 0.19.1, "-> e o i" from 0.19.1 on). Shapes are non-square (2I != H, I != H) so that
a transposed or mis-split factor cannot pass; tests/e2e/test_expert_serving.py does it with the real PEFT releases.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from finetune.errors import FinetuneError
from finetune.recipes.models import get_model
from finetune.replica.build import build_fingerprint, replica_config
from finetune.serving.expert_adapter import convert_adapter, read_fused_adapter
from finetune.serving.export import export_adapter
from finetune.serving.serve import find_weights
from tests.conftest import run_cli

E, I, H, R, ALPHA = 4, 48, 64, 3, 6  # noqa: E741
PREFIX = "base_model.model.model.layers.{}.mlp.experts"
OLD, NEW = "0.18.1", "0.20.0"
GATE_UP_SHAPE, DOWN_SHAPE = (2 * I, H), (H, I)  # one expert's parameter, [axis 1, axis 2]


def _base(tmp_path, intermediate=I, model_type="glm4_moe"):
    base = tmp_path / "base"
    base.mkdir(exist_ok=True)
    config = {"model_type": model_type, "n_routed_experts": E, "moe_intermediate_size": intermediate, "hidden_size": H}
    (base / "config.json").write_text(json.dumps(config))
    return base


def _factors(version, param_shape, rank, generator):
    """Random fused factors as `version` stores them for a parameter [E, d1, d2]: A [E*r, in], B [out, r*E] with
    (in, out) = (d1, d2) before 0.19.1 and (d2, d1) after."""
    d1, d2 = param_shape
    inp, out = (d1, d2) if version == OLD else (d2, d1)
    return torch.randn(E * rank, inp, generator=generator), torch.randn(out, rank * E, generator=generator)


def peft_delta(version, a, b, scale):
    """PEFT's ParamWrapper.get_delta_weight: the [E, d1, d2] delta added to the fused parameter."""
    a = a.reshape(E, -1, a.shape[-1])
    b = b.reshape(b.shape[0], -1, E)
    return torch.einsum("o r e, e r i -> e i o" if version == OLD else "o r e, e r i -> e o i", b, a) * scale


def _adapter(tmp_path, version, *, params=("gate_up_proj", "down_proj"), ranks=None, config=None, intermediate=I):
    """An adapter folder as PEFT `version` saves it: attention and fused-expert LoRA on layers 1 and 2."""
    base = _base(tmp_path, intermediate)
    generator = torch.Generator().manual_seed(0)
    ranks = ranks or {}
    shapes = {"gate_up_proj": (2 * intermediate, H), "down_proj": (H, intermediate)}
    tensors = {  # attention, the dense MLP, a shared expert: carried over as they are
        f"base_model.model.model.layers.{name}.lora_{ab}.weight": torch.randn(shape, generator=generator)
        for name, a_shape, b_shape in (
            ("0.self_attn.q_proj", (R, H), (128, R)),
            ("0.mlp.gate_proj", (R, H), (128, R)),
            ("1.mlp.shared_experts.down_proj", (R, intermediate), (H, R)),
        )
        for ab, shape in (("A", a_shape), ("B", b_shape))
    }
    for layer in (1, 2):
        for param in params:
            inner = param == "gate_up_proj" and len(params) == 2
            prefix = PREFIX.format(layer) + (".base_layer" if inner else "")
            a, b = _factors(version, shapes[param], ranks.get(param, R), generator)
            tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"] = a, b
    adapter = tmp_path / f"adapter-{version}"
    adapter.mkdir()
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    written = {
        "peft_type": "LORA",
        "peft_version": version,
        "r": R,
        "lora_alpha": ALPHA,
        "target_modules": ["q_proj"],
        "target_parameters": [f"mlp.experts.{p}" for p in params],
        "rank_pattern": {},
        "alpha_pattern": {},
        "base_model_name_or_path": str(base),
        **(config or {}),
    }
    (adapter / "adapter_config.json").write_text(json.dumps(written))
    return adapter, tensors


def _fused_key(tensors, layer, param):
    wrapper = PREFIX.format(layer) + (".base_layer" if param == "gate_up_proj" else "")
    return tensors[f"{wrapper}.lora_A.weight"], tensors[f"{wrapper}.lora_B.weight"]


def _pattern(patterns, name):
    for key, value in patterns.items():  # PEFT's get_pattern_key, as vLLM's PEFTHelper copies it
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


@pytest.mark.parametrize("version", [OLD, NEW])
def test_per_expert_factors_apply_the_delta_peft_applied(tmp_path, version):
    adapter, fused = _adapter(tmp_path, version)
    out = convert_adapter(adapter, tmp_path / "per-expert", "per-expert").out
    converted = load_file(str(out / "adapter_model.safetensors"))
    scale = ALPHA / R
    for layer in (1, 2):
        gate_up = peft_delta(version, *_fused_key(fused, layer, "gate_up_proj"), scale)
        down = peft_delta(version, *_fused_key(fused, layer, "down_proj"), scale)
        assert gate_up.shape == (E, *GATE_UP_SHAPE) and down.shape == (E, *DOWN_SHAPE)
        for e in range(E):
            name = f"{PREFIX.format(layer)}.{e}"

            def delta(proj, name=name):
                a, b = converted[f"{name}.{proj}.lora_A.weight"], converted[f"{name}.{proj}.lora_B.weight"]
                return scale * b @ a

            torch.testing.assert_close(delta("gate_proj"), gate_up[e, :I], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(delta("up_proj"), gate_up[e, I:], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(delta("down_proj"), down[e], rtol=1e-5, atol=1e-5)
    other = [k for k in fused if ".mlp.experts." not in k]
    assert len(other) == 6 and all(torch.equal(converted[k], fused[k]) for k in other)  # carried over as they were
    assert not [k for k in converted if re.search(r"experts\.(base_layer\.)?lora_", k)]  # no fused key left
    assert len(converted) == len(other) + 2 * E * 3 * 2
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == ["q_proj", "gate_proj", "up_proj", "down_proj"]
    assert config["target_parameters"] is None and (config["r"], config["lora_alpha"]) == (R, ALPHA)
    provenance = json.loads((out / "conversion.json").read_text())
    assert provenance["source_peft_version"] == version and provenance["shapes"] == {
        "experts": E,
        "intermediate": I,
        "hidden": H,
    }


@pytest.mark.parametrize("version", [OLD, NEW])
def test_fused_export_is_what_peft_from_0_19_1_reads(tmp_path, version):
    adapter, fused = _adapter(tmp_path, version)
    out = convert_adapter(adapter, tmp_path / "fused", "fused").out
    converted = load_file(str(out / "adapter_model.safetensors"))
    assert set(converted) == set(fused)
    for layer in (1, 2):
        for param in ("gate_up_proj", "down_proj"):
            expected = peft_delta(version, *_fused_key(fused, layer, param), 1.0)
            torch.testing.assert_close(peft_delta(NEW, *_fused_key(converted, layer, param), 1.0), expected)
    assert json.loads((out / "adapter_config.json").read_text())["peft_version"] == (
        "0.19.1" if version == OLD else NEW
    )


def test_rank_and_alpha_patterns_of_the_expert_parameters_are_kept_per_expert(tmp_path):
    patterns = {"rank_pattern": {"mlp.experts.down_proj": 2}, "alpha_pattern": {"mlp.experts.gate_up_proj": 16}}
    adapter, fused = _adapter(tmp_path, OLD, ranks={"down_proj": 2}, config=patterns)
    out = convert_adapter(adapter, tmp_path / "per-expert", "per-expert").out
    config = json.loads((out / "adapter_config.json").read_text())
    converted = load_file(str(out / "adapter_model.safetensors"))

    def rank_scale(module):  # as PEFT and vLLM resolve a module's rank and scale
        rank = _pattern(config["rank_pattern"], module) or config["r"]
        return rank, (_pattern(config["alpha_pattern"], module) or config["lora_alpha"]) / rank

    assert rank_scale("model.layers.2.mlp.experts.7.gate_proj") == (R, 16 / R)
    assert rank_scale("model.layers.2.mlp.experts.7.up_proj") == (R, 16 / R)
    assert rank_scale("model.layers.1.mlp.experts.0.down_proj") == (2, ALPHA / 2)
    assert rank_scale("model.layers.0.self_attn.q_proj") == (R, ALPHA / R)  # untouched
    assert converted["base_model.model.model.layers.1.mlp.experts.3.down_proj.lora_A.weight"].shape == (2, I)
    down = peft_delta(OLD, *_fused_key(fused, 1, "down_proj"), ALPHA / 2)
    name = "base_model.model.model.layers.1.mlp.experts.3.down_proj"
    applied = ALPHA / 2 * converted[f"{name}.lora_B.weight"] @ converted[f"{name}.lora_A.weight"]
    torch.testing.assert_close(applied, down[3], rtol=1e-5, atol=1e-5)


def test_an_adapter_of_peft_0_20s_name_remap_converts(tmp_path):
    """PEFT 0.20 turns target_modules gate_proj/up_proj/down_proj (ms-swift's all-linear) into the fused experts,
    gate_up at twice the rank and alpha by pattern, and records bare parameter names (checked by hand with PEFT 0.20
    on the non-square replica: the converted adapter applied to the per-expert weights is its merge, 0.0 apart)."""
    remap = {
        "target_parameters": ["down_proj", "gate_up_proj"],
        "rank_pattern": {r".*\.gate_up_proj": 2 * R},
        "alpha_pattern": {r".*\.gate_up_proj": 2 * ALPHA},
    }
    adapter, fused = _adapter(tmp_path, NEW, ranks={"gate_up_proj": 2 * R}, config=remap)
    out = convert_adapter(adapter, tmp_path / "per-expert", "per-expert").out
    converted = load_file(str(out / "adapter_model.safetensors"))
    config = json.loads((out / "adapter_config.json").read_text())
    name = "model.layers.2.mlp.experts.1.up_proj"
    assert _pattern(config["rank_pattern"], name) == 2 * R and _pattern(config["alpha_pattern"], name) == 2 * ALPHA
    gate_up = peft_delta(NEW, *_fused_key(fused, 2, "gate_up_proj"), ALPHA / R)
    up = converted[f"base_model.model.{name}.lora_B.weight"] @ converted[f"base_model.model.{name}.lora_A.weight"]
    torch.testing.assert_close(ALPHA / R * up, gate_up[1, I:], rtol=1e-5, atol=1e-5)


def test_a_config_whose_rank_is_not_the_tensors_is_refused(tmp_path):
    adapter, _ = _adapter(tmp_path, NEW, ranks={"down_proj": 2})  # no rank_pattern says so
    with pytest.raises(FinetuneError, match=r"layers\.1\.mlp\.experts \(down_proj\) holds rank 2 .* says 3"):
        read_fused_adapter(adapter)


@pytest.mark.parametrize("written, claimed", [(OLD, NEW), (NEW, OLD)])
def test_a_mislabelled_orientation_is_refused_on_non_square_shapes(tmp_path, written, claimed):
    adapter, _ = _adapter(tmp_path, written, config={"peft_version": claimed})
    with pytest.raises(FinetuneError, match=r"experts(\.base_layer)?\.lora_A\.weight: lora_A .* fit no expert"):
        convert_adapter(adapter, tmp_path / "out", "per-expert")
    assert not (tmp_path / "out").exists()


def test_square_shapes_hide_a_mislabelled_orientation(tmp_path):
    """Why the proofs use a replica with 2I != H: on the standard replica's gate_up_proj (2I == H) a wrong version
    converts without a word and applies the transposed delta."""
    adapter, fused = _adapter(
        tmp_path, OLD, params=("gate_up_proj",), intermediate=H // 2, config={"peft_version": NEW}
    )
    out = convert_adapter(adapter, tmp_path / "out", "per-expert").out
    converted = load_file(str(out / "adapter_model.safetensors"))
    a, b = fused[f"{PREFIX.format(1)}.lora_A.weight"], fused[f"{PREFIX.format(1)}.lora_B.weight"]
    trained = peft_delta(OLD, a, b, 1.0)[0]
    name = f"{PREFIX.format(1)}.0"
    factors = [
        (converted[f"{name}.{p}.lora_B.weight"], converted[f"{name}.{p}.lora_A.weight"])
        for p in ("gate_proj", "up_proj")
    ]
    served = torch.cat([b @ a for b, a in factors])
    assert served.shape == trained.shape and not torch.allclose(served, trained, atol=1e-3)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"peft_version": None}, r"peft_version is None; .*only a release number"),
        ({"peft_version": "0.19.1.dev0"}, r"peft_version is '0.19.1.dev0'"),
        ({"base_model_name_or_path": "/no/such/base"}, r"config.json is needed .*/no/such/base/config.json"),
        ({"target_parameters": ["mlp.experts.gate_up_proj"]}, r"holds down_proj's LoRA but .*does not name it"),
        ({"use_dora": True}, r"DoRA"),
    ],
)
def test_what_cannot_be_converted_is_refused_with_file_and_reason(tmp_path, change, message):
    adapter, _ = _adapter(tmp_path, NEW, config=change)
    with pytest.raises(FinetuneError, match=message):
        convert_adapter(adapter, tmp_path / "out", "per-expert")


def test_broken_adapters_are_refused_with_the_key(tmp_path):
    adapter, tensors = _adapter(tmp_path, NEW)
    lone = {k: v for k, v in tensors.items() if not k.endswith("layers.2.mlp.experts.lora_B.weight")}
    save_file(lone, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(FinetuneError, match=r"layers\.2\.mlp\.experts has \['lora_A'\] only"):
        read_fused_adapter(adapter)
    attention = {k: v for k, v in tensors.items() if "self_attn" in k}
    save_file(attention, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(FinetuneError, match=r"no LoRA on the fused routed experts"):
        read_fused_adapter(adapter)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FinetuneError, match=r"model_type 'qwen3_moe'; .*glm4_moe's expert layout only"):
        read_fused_adapter(adapter, _base(other, model_type="qwen3_moe"))
    with pytest.raises(FinetuneError, match=r"is not a PEFT adapter folder"):
        read_fused_adapter(tmp_path)


def _run(tmp_path, version=NEW):
    """A finished LLaMA-Factory LoRA run whose adapter (output/) adapts the fused experts."""
    adapter, _ = _adapter(tmp_path, version)
    run = tmp_path / "run"
    run.mkdir()
    adapter.rename(run / "output")
    record = {
        "recipe": "llamafactory/glm45-air_lora_4xh100",
        "framework": "llamafactory",
        "model": str(tmp_path / "base"),
    }
    (run / "launch-node0.json").write_text(json.dumps(record))
    (run / "config.yaml").write_text("finetuning_type: lora\n")
    return run, record


def test_export_writes_the_adapter_beside_the_run_and_never_overwrites(tmp_path):
    run, record = _run(tmp_path, OLD)
    out = run_cli("export", str(run), "--adapter-format", "per-expert")
    assert out.returncode == 0, out.stderr
    assert f"wrote the per-expert adapter of {run / 'output'} to {run / 'adapter-per-expert'}" in out.stdout
    assert "loads in: vLLM --enable-lora" in out.stdout
    assert json.loads((run / "adapter-per-expert" / "conversion.json").read_text())["run_dir"] == str(run)
    again = run_cli("export", str(run), "--adapter-format", "per-expert")
    assert again.returncode != 0 and "exists; an export never overwrites" in again.stderr
    fused = export_adapter(run, "fused")
    assert fused.out == run / "adapter-fused" and (fused.out / "adapter_model.safetensors").is_file()
    # `serve` still finds the trained adapter: an exported adapter folder is not taken for a merged model
    assert find_weights(run, record, {"finetuning_type": "lora"})[1] == run / "output"


def test_export_of_a_run_that_did_not_finish_is_refused(tmp_path):
    from finetune.launch.run_state import RunState, State, write_state

    run, _ = _run(tmp_path)
    write_state(run, RunState(State.FAILED, 0, exit_code=1))
    with pytest.raises(FinetuneError, match=r"has not finished .*--unfinished"):
        export_adapter(run, "per-expert")
    assert not (run / "adapter-per-expert").exists()


def test_the_replica_with_other_shapes_leaves_the_standard_one_alone():
    """The proofs' non-square replica (tests/e2e/test_expert_serving.py) is another build; the standard one keeps
    its fingerprint, and a shape the replica does not have is refused rather than ignored."""
    spec = get_model("glm-4.5-air")
    assert build_fingerprint(spec) == build_fingerprint(spec, None) == build_fingerprint(spec, {})
    assert build_fingerprint(spec, {"moe_intermediate_size": 48}) != build_fingerprint(spec)
    ids = {"<|endoftext|>": 0, "<|user|>": 1, "<|observation|>": 2}
    assert replica_config(spec, ids, {"moe_intermediate_size": 48})["moe_intermediate_size"] == 48
    with pytest.raises(FinetuneError, match=r"\['moe_intermediate'\]: not replica shapes"):
        build_fingerprint(spec, {"moe_intermediate": 48})
