"""ms-swift: `swift sft|rlhf` and `megatron sft|rlhf` configs, run by `finetune.frameworks.trainer.swift.entry`.

The entry turns the rendered YAML into command-line flags with ms-swift's own config reader and then runs
ms-swift's own command module, so a run behaves exactly like `swift sft config.yaml` while torchrun, the run
directory and the checks stay the launcher's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.frameworks.base import Framework
from finetune.frameworks.setup import TrainingSetup
from finetune.frameworks.swift.setup import DEEPSPEED_NAMES, swift_setup
from finetune.paths import REPO_ROOT

if TYPE_CHECKING:
    from finetune.prepare.datasets import PreparedDataset
    from finetune.prepare.lengths import LengthPolicy
    from finetune.recipes.recipe import RecipeMeta

TRUNCATION_ACTIONS = {"delete": "delete", "left": "truncate_left", "right": "truncate_right", "split": "split"}
GLM45_TEMPLATE = "glm4_5"  # ms-swift cannot tell glm4_5 from glm4_7 for a local folder: always name it


class Swift(Framework):
    name = "swift"
    display_name = "ms-swift"
    env_dir = ".venvs/swift"
    check_module = "finetune.frameworks.trainer.swift.check"

    def command(self, meta: RecipeMeta) -> list[str]:
        """The ms-swift command a recipe runs: sft or rlhf, under `megatron` for the Megatron engine."""
        verb = "rlhf" if meta.method in ("dpo", "grpo") else "sft"
        return ["megatron", verb] if meta.engine == "megatron" else [verb]

    def check_command(self, meta: RecipeMeta) -> str:
        return "-".join(self.command(meta))

    def _training_setup(
        self, config: dict[str, Any], meta: RecipeMeta, model_config: dict[str, Any], ds: dict[str, Any] | None
    ) -> TrainingSetup:
        max_positions = int(model_config["max_position_embeddings"])
        return swift_setup(config, ds, max_positions=max_positions, megatron=meta.engine == "megatron")

    def length_policy(self, config: dict[str, Any], meta: RecipeMeta) -> LengthPolicy:
        """ms-swift 4.6: `truncation_strategy` defaults to `delete` (`left` for GRPO, whose max_length bounds the
        prompt); a preference pair goes when either side is over (its lengths are filtered by their maximum)."""
        from finetune.prepare.lengths import LengthPolicy

        limit = config.get("max_length")
        strategy = config.get("truncation_strategy")
        default = "left" if meta.method == "grpo" else "delete"
        setting = f"max_length: {limit}, truncation_strategy: {strategy or default}"
        if not strategy:
            setting += " (ms-swift's default)"
        unit = {"dpo": "pair", "grpo": "prompt"}.get(meta.method, "row")
        action = TRUNCATION_ACTIONS[strategy or default] if limit else "none"
        return LengthPolicy(self.display_name, int(limit) if limit else None, action, setting, unit)

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
        rendered["model"] = model
        rendered.setdefault("template", GLM45_TEMPLATE)
        if dataset is not None:
            rendered["dataset"] = [str(dataset.swift_train)]
            if dataset.swift_val is not None:
                rendered["val_dataset"] = [str(dataset.swift_val)]
        rendered["dataset"] = [_absolute(d) for d in _as_list(rendered.get("dataset"))]
        if rendered.get("val_dataset"):
            rendered["val_dataset"] = [_absolute(d) for d in _as_list(rendered["val_dataset"])]
        rendered["output_dir"] = str(output_dir)
        rendered["add_version"] = False  # the run directory is already unique; keep output where we said
        if Path(model).is_dir():
            rendered.setdefault("check_model", False)  # a local folder needs no hub look-up
        return rendered

    def deepspeed_file(self, value: str) -> str | None:
        """ms-swift also accepts its built-in preset names; only paths are copied into the run directory."""
        return None if value in DEEPSPEED_NAMES else value

    def cpu_smoke_overrides(self, steps: int, meta: RecipeMeta) -> dict[str, Any]:
        overrides = {
            "torch_dtype": "float32",
            "fp16": False,  # ms-swift turns fp16 mixed precision on for float32 weights; CPUs have none
            "bf16": False,
            "max_length": 512,
            "max_steps": steps,
            "gradient_accumulation_steps": 1,
            "logging_steps": 1,
            "save_steps": steps,
            "warmup_ratio": 0.0,
            "learning_rate": 1.0e-3,
            "dataset_num_proc": 1,
            "dataloader_num_workers": 0,
        }
        if meta.method == "grpo":  # vLLM's CPU build rolls out in the trainer's process, one "GPU", nothing asleep
            overrides |= {
                "vllm_tensor_parallel_size": 1,
                "vllm_max_model_len": 1024,
                "sleep_level": 0,
                "offload_model": False,
                "offload_optimizer": False,
                "num_generations": 4,
                "per_device_train_batch_size": 4,
                "max_completion_length": 16,
            }
        return overrides

    def trained_weights(self, output_dir: Path, config: dict[str, Any]) -> Path:
        """ms-swift saves into checkpoint-<step> folders; the newest complete one holds the final weights."""
        checkpoints = sorted(
            (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
        )
        return checkpoints[-1] if checkpoints else output_dir

    def merge_command(self, weights: Path, config: dict[str, Any], out: Path) -> list[str]:
        return [
            str(self.bin("swift")),
            "export",
            "--adapters",
            str(weights),
            "--merge_lora",
            "true",
            "--output_dir",
            str(out),
        ]

    def entry_args(self, config_path: Path, meta: RecipeMeta) -> list[str]:
        return ["-m", "finetune.frameworks.trainer.swift.entry", *self.command(meta), str(config_path)]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _absolute(dataset: str) -> str:
    """Dataset files named relative to the repository become absolute; hub ids and absolute paths stay."""
    candidate = REPO_ROOT / dataset
    return str(candidate) if not Path(dataset).is_absolute() and candidate.exists() else dataset
