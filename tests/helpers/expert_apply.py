"""Inside a framework environment: an exported adapter against the merged model, two ways.

Usage: python tests/helpers/expert_apply.py BASE ADAPTER MERGED [--apply OUT] [--peft]
--apply OUT (a per-expert adapter): for every `M.lora_A.weight` / `M.lora_B.weight` in the adapter, the base
checkpoint's `M.weight` (per expert: `mlp.experts.N.{gate,up,down}_proj.weight`) becomes W + scale * B @ A, scale =
alpha / r with PEFT's rank_pattern / alpha_pattern rule, as a 2-D LoRA engine computes it; OUT is that model folder,
loaded back with transformers. --peft: this environment's PEFT loads ADAPTER on BASE.
Prints one JSON line: each model's max |logits - logits(MERGED)|, and the applied model's distance from BASE.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from expert_prompt import TEXT_IDS  # beside this script
from peft.utils.other import get_pattern_key
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM


def _logits(path, adapter=None):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    with torch.no_grad():
        return model(input_ids=torch.tensor([TEXT_IDS])).logits[0]


def _scale(config: dict, module: str, rank: int) -> float:
    r = config.get("rank_pattern", {}).get(get_pattern_key((config.get("rank_pattern") or {}).keys(), module))
    alpha = config.get("alpha_pattern", {}).get(get_pattern_key((config.get("alpha_pattern") or {}).keys(), module))
    r, alpha = r or config["r"], alpha or config["lora_alpha"]
    assert r == rank, f"{module}: the config gives rank {r}, the tensors hold {rank}"
    return alpha / r


def _apply(base: Path, adapter: Path, out: Path) -> int:
    config = json.loads((adapter / "adapter_config.json").read_text())
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    weights = load_file(str(base / "model.safetensors"))
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in lora), "only LoRA factors are applied here"
    applied = 0
    for key_a in [k for k in lora if k.endswith(".lora_A.weight")]:
        module = key_a.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        a, b = lora[key_a], lora[key_a.replace(".lora_A.", ".lora_B.")]
        target = f"{module}.weight"
        assert target in weights, f"{key_a}: the checkpoint has no {target}"
        weights[target] = weights[target] + _scale(config, module, a.shape[0]) * (b @ a)
        applied += 1
    out.mkdir(parents=True)
    for item in base.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy2(item, out / item.name)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return applied


def main() -> None:
    base, adapter, merged = (Path(a) for a in sys.argv[1:4])
    merged_logits = _logits(merged)
    result = {}
    if "--apply" in sys.argv:
        out = Path(sys.argv[sys.argv.index("--apply") + 1])
        result["modules_applied"] = _apply(base, adapter, out)
        applied_logits = _logits(out)
        result["applied_vs_merged"] = (applied_logits - merged_logits).abs().max().item()
        result["applied_vs_base"] = (applied_logits - _logits(base)).abs().max().item()
    if "--peft" in sys.argv:
        result["peft_vs_merged"] = (_logits(base, adapter) - merged_logits).abs().max().item()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
