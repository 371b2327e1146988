"""Inside a framework environment: max |logits(base + adapter) - logits(merged)| on one conversation.

Usage: python tests/helpers/merged_logits.py BASE ADAPTER MERGED  -> prints the difference as JSON.
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    base_dir, adapter_dir, merged_dir = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    chat = [{"role": "user", "content": "What is a token?"}, {"role": "assistant", "content": "A piece of text."}]
    inputs = tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
        )(**inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(**inputs).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)(**inputs).logits
    print(
        json.dumps(
            {
                "merged_vs_adapted": (adapted - merged).abs().max().item(),
                "adapter_effect": (adapted - base).abs().max().item(),
            }
        )
    )


if __name__ == "__main__":
    main()
