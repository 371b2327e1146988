"""`finetune export RUN_DIR`: turn a finished LoRA run into a full model folder that serving engines load.

The merge runs through the framework that trained the adapter (`llamafactory-cli export`, `swift export
--merge_lora`), so the result is exactly what that framework would produce. Afterwards the folder gets the base
model's tokenizer files and chat template back when the base is a local folder (frameworks save a reduced
tokenizer config), and an `export.json` that says where it came from. Nothing existing is overwritten.

`--adapter-format per-expert|fused` writes the adapter instead, for an adapter on the routed experts: the layout
vLLM and SGLang load, or the fused one in the orientation of PEFT >= 0.19.1 (`serving/expert_adapter.py`). Its
folder holds a `conversion.json`, never an `export.json`: `serve` takes a folder with one for a merged model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.launch.checkpoints import latest_complete
from finetune.launch.run_state import RunState, unfinished_state
from finetune.launch.rundir import CONFIG_NAME, OUTPUT_NAME, launch_record_path

MERGED_NAME = "merged"
ADAPTER_NAME = "adapter-{layout}"  # beside MERGED_NAME: RUN_DIR/adapter-per-expert, RUN_DIR/adapter-fused
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
MODEL_FILES_NEEDED = ("config.json", "tokenizer_config.json")


@dataclass
class ExportResult:
    out: Path
    weights: Path
    command: list[str]


@dataclass
class AdapterExport:
    out: Path
    weights: Path
    layout: str
    base_model: str


def _read_run(run_dir: Path) -> tuple[dict, dict]:
    record_path = launch_record_path(run_dir, 0)
    if not record_path.is_file() or not (run_dir / CONFIG_NAME).is_file():
        raise FinetuneError(f"{run_dir} is not a run directory ({record_path.name} and {CONFIG_NAME} are missing).")
    return json.loads(record_path.read_text()), yaml.safe_load((run_dir / CONFIG_NAME).read_text())


def _is_lora(framework_name: str, config: dict) -> bool:
    if framework_name == "llamafactory":
        return config.get("finetuning_type") == "lora"
    return config.get("tuner_type", "lora") == "lora"


def _weights(run_dir: Path, final: Path, state: RunState | None, unfinished: bool) -> Path:
    """The finished run's weights; a run that did not finish (`state`) only with `unfinished`, from its newest
    complete checkpoint (an adapter found beside a stopped run's checkpoints would pass for its final one otherwise)."""
    if state is None:
        return final
    if not unfinished:
        raise FinetuneError(
            f"{run_dir} has not finished (`finetune status {run_dir}`: {state.state.value} at step {state.step}): "
            f"resume it with `finetune launch --resume {run_dir}`, or pass --unfinished to export its newest complete "
            "checkpoint."
        )
    checkpoint, _ = latest_complete(run_dir / OUTPUT_NAME)
    if checkpoint is None:
        raise FinetuneError(f"{run_dir} has not finished and holds no complete checkpoint to export.")
    print(f"exporting {checkpoint.relative_to(run_dir)} of an unfinished run ({state.state.value})")
    return checkpoint


def _trained_adapter(run_dir: Path, unfinished: bool, what: str):
    """(record, config, framework, state, adapter folder) of a LoRA run; refused for a full fine-tune, an unfinished
    run without `unfinished`, or a missing adapter."""
    record, config = _read_run(run_dir)
    framework = get_framework(record["framework"])
    state = unfinished_state(run_dir)
    weights = _weights(run_dir, framework.trained_weights(run_dir / OUTPUT_NAME, config), state, unfinished)
    if not _is_lora(framework.name, config):
        raise FinetuneError(
            f"{run_dir} trained every parameter: its weights at {weights} are already a full model; nothing to {what}."
        )
    if not (weights / "adapter_config.json").is_file():
        raise FinetuneError(f"No finished adapter in {weights} (adapter_config.json missing): did the run complete?")
    return record, config, framework, state, weights


def export_adapter(run_dir: Path, layout: str, out: Path | None = None, *, unfinished: bool = False) -> AdapterExport:
    """The run's adapter on the routed experts, written in `layout` (per-expert or fused) to a new folder."""
    from finetune.serving.expert_adapter import convert_adapter

    run_dir = run_dir.resolve()
    record, _, _, state, weights = _trained_adapter(run_dir, unfinished, "convert")
    out = (out or run_dir / ADAPTER_NAME.format(layout=layout)).resolve()
    if out.exists():
        raise FinetuneError(f"{out} exists; an export never overwrites: pass --out to write somewhere new.")
    note = {"run_dir": str(run_dir), "recipe": record["recipe"], "finished": state is None}
    convert_adapter(weights, out, layout, base_model=record["model"], note=note)
    return AdapterExport(out=out, weights=weights, layout=layout, base_model=record["model"])


def export_run(run_dir: Path, out: Path | None = None, *, unfinished: bool = False) -> ExportResult:
    run_dir = run_dir.resolve()
    record, config, framework, state, weights = _trained_adapter(run_dir, unfinished, "merge")
    out = (out or run_dir / MERGED_NAME).resolve()
    if out.exists():
        raise FinetuneError(f"{out} exists; an export never overwrites: pass --out to write somewhere new.")
    command = framework.merge_command(weights, config, out)
    proc = subprocess.run(command, env={**os.environ, **framework.env()})
    if proc.returncode != 0 or not (out / "config.json").is_file():
        raise FinetuneError(f"Merging failed (exit code {proc.returncode}): {' '.join(command)}")
    base = Path(record["model"])
    if base.is_dir():
        for name in TOKENIZER_FILES:
            if (base / name).is_file():
                shutil.copy2(base / name, out / name)
    missing = [name for name in MODEL_FILES_NEEDED if not (out / name).is_file()]
    if missing or not any(out.glob("*.safetensors")):
        raise FinetuneError(f"{out} is incomplete: missing {missing or 'safetensors weights'}.")
    (out / "export.json").write_text(
        json.dumps(
            {
                "run_dir": str(run_dir),
                "adapter": str(weights),
                "base_model": record["model"],
                "framework": framework.name,
                "recipe": record["recipe"],
                "finished": state is None,
                "command": command,
            },
            indent=2,
        )
        + "\n"
    )
    return ExportResult(out=out, weights=weights, command=command)
