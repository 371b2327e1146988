"""Inside a framework environment: transformers' prompt logprobs of model folders, float32, for comparison with
what a server returns for the same token ids.

Usage: python tests/helpers/expert_logprobs.py MODEL [MODEL ...] -> one JSON line: {MODEL: [logprob of token i given
tokens < i, for i = 1 ..]} on the prompt of tests/helpers/expert_prompt.py.
"""

import json
import sys

import torch
from expert_prompt import TEXT_IDS  # beside this script
from transformers import AutoModelForCausalLM


def prompt_logprobs(path: str) -> list[float]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([TEXT_IDS])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[i - 1, TEXT_IDS[i]].item() for i in range(1, len(TEXT_IDS))]


if __name__ == "__main__":
    print(json.dumps({path: prompt_logprobs(path) for path in sys.argv[1:]}))
