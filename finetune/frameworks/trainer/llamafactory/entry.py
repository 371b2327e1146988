"""Runs inside the LLaMA-Factory environment: `python -m finetune.frameworks.trainer.llamafactory.entry CONFIG` under
torchrun to train, `python -m finetune.frameworks.trainer.llamafactory.entry export JSON` to merge an adapter.

LLaMA-Factory's own entries (`run_exp`, `export_model`) do the work exactly as `llamafactory-cli train|export`
would; this module first registers the repository's templates (`glm45`, `glm47`) with LLaMA-Factory, hands PEFT the
routed-expert parameters a recipe adapts (expert_lora.py) and the trainer the repository's callbacks (graceful stop
on SIGTERM, tracking).
"""

from __future__ import annotations

import json
import sys

from finetune.frameworks.trainer.known_warnings import filter_known_warnings


def main() -> None:
    filter_known_warnings()
    import finetune.frameworks.trainer.llamafactory.template  # noqa: F401 - registers the `glm45` template

    if len(sys.argv) == 3 and sys.argv[1] == "export":
        from llamafactory.train.tuner import export_model

        export_model(json.loads(sys.argv[2]))
        return
    if len(sys.argv) != 2:
        raise SystemExit("usage: llamafactory_entry CONFIG.yaml | llamafactory_entry export '{JSON arguments}'")
    from llamafactory.train.tuner import run_exp

    from finetune.frameworks.trainer.callbacks import trainer_callbacks
    from finetune.frameworks.trainer.expert_lora import add_target_parameters, gather_experts_while_wrapping

    add_target_parameters()  # a recipe's finetune.lora_target_parameters (the routed experts), if any
    gather_experts_while_wrapping()

    run_exp(callbacks=trainer_callbacks())  # reads sys.argv[1], the YAML, like llamafactory-cli train


if __name__ == "__main__":
    main()
