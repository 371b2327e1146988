"""The server command for a trained run: vLLM or SGLang with GLM-4.5's tool-call and reasoning parsers.

A merged model (`finetune export`, or a full fine-tune) is served as a model; a LoRA adapter is served on top of
its base model where the engine can, which it cannot when the adapter adapts the routed experts (fused 3-D
expert weights): that adapter must be merged first. Only flags the engines document are used (the lists below,
from `vllm serve --help` / vLLM's OpenAI-server docs and SGLang's server-arguments docs).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from finetune.errors import FinetuneError
from finetune.launch.rundir import CONFIG_NAME, OUTPUT_NAME, launch_record_path

VLLM_FLAGS = frozenset(
    {
        "--served-model-name",
        "--tensor-parallel-size",
        "--tool-call-parser",
        "--reasoning-parser",
        "--enable-auto-tool-choice",
        "--enable-lora",
        "--lora-modules",
        "--max-lora-rank",
        "--host",
        "--port",
        "--max-model-len",
        "--trust-remote-code",
    }
)
SGLANG_FLAGS = frozenset(
    {
        "--model-path",
        "--served-model-name",
        "--tp",
        "--tool-call-parser",
        "--reasoning-parser",
        "--enable-lora",
        "--lora-paths",
        "--max-lora-rank",
        "--host",
        "--port",
        "--context-length",
        "--trust-remote-code",
    }
)
GLM45_PARSER = "glm45"  # both engines name GLM-4.5's tool-call and reasoning parsers so
ROUTED_EXPERT_MARKERS = ("experts", "gate_up_proj")  # fused routed-expert weights in transformers 5 glm4_moe
DEFAULT_GPUS = 8


@dataclass
class ServePlan:
    engine: str
    argv: list[str]
    notes: list[str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def gpu_count() -> int:
    """GPUs on this machine (nvidia-smi), or the 8 of a typical GLM-4.5 node when it cannot tell."""
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        count = sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))
        if proc.returncode == 0 and count:
            return count
    return DEFAULT_GPUS


def adapter_targets_routed_experts(adapter: Path) -> bool:
    config = json.loads((adapter / "adapter_config.json").read_text())
    targets = list(config.get("target_parameters") or [])
    modules = config.get("target_modules") or []
    targets += [modules] if isinstance(modules, str) else list(modules)
    shared = ("shared_experts",)
    return any(m in t and not any(s in t for s in shared) for t in targets for m in ROUTED_EXPERT_MARKERS)


def _lora_rank(adapter: Path) -> int:
    return int(json.loads((adapter / "adapter_config.json").read_text()).get("r", 8))


def _read_run(run_dir: Path) -> tuple[dict, dict]:
    record_path = launch_record_path(run_dir, 0)
    if not record_path.is_file() or not (run_dir / CONFIG_NAME).is_file():
        raise FinetuneError(f"{run_dir} is not a run directory ({record_path.name} and {CONFIG_NAME} are missing).")
    return json.loads(record_path.read_text()), yaml.safe_load((run_dir / CONFIG_NAME).read_text())


def find_weights(run_dir: Path) -> tuple[Path, Path | None, str]:
    """(model to serve, adapter or None, base model) for a run: its merged export if there is one."""
    from finetune.frameworks import get_framework

    record, config = _read_run(run_dir)
    merged = next((p.parent for p in sorted(run_dir.glob("*/export.json"))), None)
    if merged is not None:
        return merged, None, record["model"]
    weights = get_framework(record["framework"]).trained_weights(run_dir / OUTPUT_NAME, config)
    if (weights / "adapter_config.json").is_file():
        return Path(record["model"]), weights, record["model"]
    return weights, None, record["model"]


def plan_serve(
    run_dir: Path,
    engine: str,
    *,
    gpus: int | None = None,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> ServePlan:
    run_dir = run_dir.resolve()
    model, adapter, _ = find_weights(run_dir)
    name = name or run_dir.name
    tp = gpus or gpu_count()
    notes = []
    if adapter is not None and adapter_targets_routed_experts(adapter):
        raise FinetuneError(
            f"The adapter in {adapter} adapts the routed experts (fused expert weights), which neither vLLM nor "
            f"SGLang can load as a LoRA adapter: merge it first with `python -m finetune export {run_dir}`, then "
            "serve the run again (the merged model is found automatically)."
        )
    if engine == "vllm":
        argv = [
            "vllm",
            "serve",
            str(model),
            "--served-model-name",
            name,
            "--tensor-parallel-size",
            str(tp),
            "--tool-call-parser",
            GLM45_PARSER,
            "--reasoning-parser",
            GLM45_PARSER,
            "--enable-auto-tool-choice",
        ]
        if adapter is not None:
            argv += [
                "--enable-lora",
                "--lora-modules",
                f"{name}={adapter}",
                "--max-lora-rank",
                str(_lora_rank(adapter)),
            ]
    elif engine == "sglang":
        argv = [
            "python",
            "-m",
            "sglang.launch_server",
            "--model-path",
            str(model),
            "--served-model-name",
            name,
            "--tp",
            str(tp),
            "--tool-call-parser",
            GLM45_PARSER,
            "--reasoning-parser",
            GLM45_PARSER,
        ]
        if adapter is not None:
            argv += ["--enable-lora", "--lora-paths", f"{name}={adapter}", "--max-lora-rank", str(_lora_rank(adapter))]
    else:
        raise FinetuneError(f"--engine {engine}: choose vllm or sglang.")
    if host:
        argv += ["--host", host]
    if port:
        argv += ["--port", str(port)]
    if adapter is not None:
        notes.append(
            f"serving the adapter {adapter} on its base model {model}; request model `{name}` for the "
            "fine-tuned behaviour (the base model answers under its own name)"
        )
    return ServePlan(engine, argv, notes)


def flags_of(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]
