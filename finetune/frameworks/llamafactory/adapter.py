"""LLaMA-Factory: flat YAML configs, trained by `llamafactory.launcher` under torchrun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError, suggest
from finetune.frameworks.base import Framework
from finetune.frameworks.llamafactory.setup import llamafactory_setup
from finetune.frameworks.setup import TrainingSetup
from finetune.frameworks.trainer.expert_lora import TARGET_PARAMETERS_ENV

if TYPE_CHECKING:
    from finetune.prepare.datasets import PreparedDataset
    from finetune.prepare.lengths import LengthPolicy
    from finetune.recipes.recipe import RecipeMeta


class LlamaFactory(Framework):
    name = "llamafactory"
    display_name = "LLaMA-Factory"
    env_dir = ".venv"
    check_module = "finetune.frameworks.trainer.llamafactory.check"

    def _training_setup(
        self, config: dict[str, Any], meta: RecipeMeta, model_config: dict[str, Any], ds: dict[str, Any] | None
    ) -> TrainingSetup:
        return llamafactory_setup(config, ds, target_parameters=tuple(meta.lora_target_parameters or ()))

    def recipe_env(self, meta: RecipeMeta) -> dict[str, str]:
        """LLaMA-Factory has no key for PEFT's `target_parameters`: the recipe's `finetune.lora_target_parameters`
        reach the trainer entry's hook (finetune/frameworks/trainer/expert_lora.py) through the environment."""
        if not meta.lora_target_parameters:
            return {}
        return {TARGET_PARAMETERS_ENV: ",".join(meta.lora_target_parameters)}

    def length_policy(self, config: dict[str, Any], meta: RecipeMeta) -> LengthPolicy:
        """LLaMA-Factory 0.9.5 never deletes a row for its length: it encodes turn by turn up to `cutoff_len`
        (default 2,048), shortening the turn that crosses it (prompt and answer in proportion) and dropping the
        turns after it."""
        from finetune.prepare.lengths import LengthPolicy

        limit = int(config.get("cutoff_len", 2048))
        unit = "pair" if meta.method == "dpo" else "row"
        setting = f"cutoff_len: {limit}" + ("" if "cutoff_len" in config else " (LLaMA-Factory's default)")
        return LengthPolicy(self.display_name, limit, "truncate_turns", setting, unit)

    def render(
        self,
        config: dict[str, Any],
        meta: RecipeMeta,
        *,
        model: str,
        dataset: PreparedDataset | None,
        output_dir: Path,
    ) -> dict[str, Any]:
        rendered = dict(config)
        rendered["model_name_or_path"] = model
        if dataset is not None:
            rendered["dataset"] = dataset.llamafactory_train
            rendered["dataset_dir"] = str(dataset.llamafactory_dir)
        rendered["output_dir"] = str(output_dir)
        return rendered

    def check_dataset(self, config: dict[str, Any]) -> None:
        registry = Path(config.get("dataset_dir", "data")).resolve() / "dataset_info.json"
        if not registry.is_file():
            raise FinetuneError(f"dataset_dir: {registry} is missing; LLaMA-Factory finds datasets through it.")
        known = json.loads(registry.read_text())
        for key in ("dataset", "eval_dataset"):
            for name in filter(None, (n.strip() for n in str(config.get(key) or "").split(","))):
                if name not in known:
                    raise FinetuneError(
                        f"{key}: `{name}` is not registered in {registry}.{suggest(name, known)} "
                        f"Registered: {', '.join(sorted(known))}."
                    )

    def cpu_smoke_overrides(self, steps: int, meta: RecipeMeta) -> dict[str, Any]:
        return {
            "bf16": False,  # CPUs train the replica in fp32; DeepSpeed then runs on its CPU accelerator
            "cutoff_len": 512,
            "max_steps": steps,
            "gradient_accumulation_steps": 1,
            "logging_steps": 1,
            "save_steps": steps,
            "warmup_ratio": 0.0,
            "learning_rate": 1.0e-3,
            "preprocessing_num_workers": 1,
            "dataloader_num_workers": 0,
        }

    def entry_args(self, config_path: Path, meta: RecipeMeta) -> list[str]:
        return ["-m", "finetune.frameworks.trainer.llamafactory.entry", str(config_path)]

    def merge_command(self, weights: Path, config: dict[str, Any], out: Path) -> list[str]:
        """LLaMA-Factory's export through the repository's entry, which registers the `glm45` template first."""
        export = {
            "model_name_or_path": config["model_name_or_path"],
            "adapter_name_or_path": str(weights),
            "template": config.get("template", "glm45"),
            "finetuning_type": "lora",
            "export_dir": str(out),
            "export_size": 5,
            "export_device": "cpu",
            "export_legacy_format": False,
        }
        return [
            str(self.python()),
            "-m",
            "finetune.frameworks.trainer.llamafactory.entry",
            "export",
            json.dumps(export),
        ]

    def env(self) -> dict[str, str]:
        # plus the settings LLaMA-Factory's own launcher applies before it calls torchrun
        return {
            **super().env(),
            "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
            "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
        }
