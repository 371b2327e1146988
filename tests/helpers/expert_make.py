"""Inside a framework environment: a PEFT adapter on attention and the fused routed experts, made with that
environment's PEFT directly (its own orientation), random non-zero factors; saved, merged, and checked.

Usage: python tests/helpers/expert_make.py BASE OUT SEED {mixed|experts-only}
  mixed: attention and expert LoRA at std 0.5, rank_pattern / alpha_pattern on the expert parameters;
  experts-only: the attention LoRA zero, a large expert delta (the no-silent-drop check).
Writes OUT/adapter (PEFT's save_pretrained) and OUT/merged (merge_and_unload, float32, with the base's tokenizer);
prints one JSON line: the PEFT version, |logits(merged) - logits(base + adapter reloaded)|, and the adapter's and
the expert LoRA's own effect on the logits.
"""

import json
import shutil
import sys
from pathlib import Path

import peft
import torch
from expert_prompt import TEXT_IDS  # beside this script
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERT_PARAMS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def _load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _logits(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor([TEXT_IDS])).logits[0]


def _randomize(model, seed: int, kind: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            continue
        expert = ".mlp.experts." in name
        std = (1.0 if expert else 0.0) if kind == "experts-only" else 0.5
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=generator) * std if std else torch.zeros_like(p))
    if kind == "experts-only":  # the attention LoRA is exactly zero: only the experts can move the output
        assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if "lora_B" in n and "self_attn" in n)


def main() -> None:
    base, out, seed, kind = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    patterns = (
        {
            "rank_pattern": {"mlp.experts.down_proj": 2},  # down r=2, gate_up r=4 (the global r)
            "alpha_pattern": {"mlp.experts.gate_up_proj": 16},  # gate_up scale 4, down 8/2 = 4, attention 8/4 = 2
        }
        if kind == "mixed"
        else {}
    )
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=ATTENTION,
        target_parameters=EXPERT_PARAMS,
        **patterns,
    )
    model = get_peft_model(_load(base), config)
    _randomize(model, seed, kind)
    model.save_pretrained(out / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(out / "merged")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (base / name).is_file():
            shutil.copy2(base / name, out / "merged" / name)

    base_logits = _logits(_load(base))
    adapted = PeftModel.from_pretrained(_load(base), out / "adapter")
    adapted_logits = _logits(adapted)
    with adapted.disable_adapter():
        assert torch.equal(_logits(adapted), base_logits)
    attention_only = PeftModel.from_pretrained(_load(base), out / "adapter")
    for name, p in attention_only.named_parameters():
        if "lora_B" in name and ".mlp.experts." in name:
            p.data.zero_()
    result = {
        "peft_version": peft.__version__,
        "merged_vs_adapted": (_logits(_load(out / "merged")) - adapted_logits).abs().max().item(),
        "adapter_effect": (adapted_logits - base_logits).abs().max().item(),
        "expert_effect": (adapted_logits - _logits(attention_only)).abs().max().item(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
