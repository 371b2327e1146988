"""The prompt every expert-LoRA check computes on (helpers and tests alike): 32 fixed token ids of the replica."""

TEXT_IDS = list(range(20, 52))
