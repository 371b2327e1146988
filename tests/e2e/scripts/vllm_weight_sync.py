"""Runs in the ms-swift environment: does vLLM's CPU build generate from weights loaded after start-up, as GRPO's
colocated weight sync (ms-swift's `_load_state_dict_to_vllm`) loads them after each optimizer step?

`python tests/e2e/scripts/vllm_weight_sync.py REPLICA hook|nohook` prints one JSON line: the greedy tokens vLLM
generates before and after `load_weights` of changed attention weights, and transformers' greedy tokens on the
changed model; or {"error": ...} when the load fails.
"""

from __future__ import annotations

import json
import os
import sys

PROMPT = "[gMASK]<sop><|user|>\nSolve for x: 4x - 9 = 2x + 13.<|assistant|>"
TOKENS = 12


def main() -> None:
    replica, mode = sys.argv[1], sys.argv[2]
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, as colocated GRPO runs it
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from finetune.frameworks.trainer.swift.vllm_cpu import VLLM_OWN_PLUGINS, prepare_vllm_on_cpu

    if mode == "hook":
        prepare_vllm_on_cpu()
    os.environ.setdefault("VLLM_PLUGINS", VLLM_OWN_PLUGINS)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    llm = LLM(model=replica, dtype="float32", enforce_eager=True, max_model_len=256, seed=0)
    greedy = SamplingParams(temperature=0.0, max_tokens=TOKENS, ignore_eos=True)
    before = list(llm.generate([PROMPT], greedy, use_tqdm=False)[0].outputs[0].token_ids)

    model = AutoModelForCausalLM.from_pretrained(replica, dtype=torch.float32)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for name, param in model.named_parameters():
            if "self_attn" in name and name.endswith("weight") and "norm" not in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    try:
        inner = llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
        inner.load_weights(model.state_dict().items())
    except Exception as error:  # what GRPO's sync hits without the hook
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return
    after = list(llm.generate([PROMPT], greedy, use_tqdm=False)[0].outputs[0].token_ids)

    tokenizer = AutoTokenizer.from_pretrained(replica)
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
    print(json.dumps({"before": before, "after": after, "expected": out[0, ids.shape[1] :].tolist()}))


if __name__ == "__main__":
    main()
