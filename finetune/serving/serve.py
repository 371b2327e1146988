"""The server command for a trained run: vLLM or SGLang with the tool-call and reasoning parsers of its model's chat
format (GLM-4.5 and 4.6: `glm45`, served by vLLM through the project's `glm45_trained` plugin; GLM-4.7: `glm47`).

A merged model (`finetune export`, or a full fine-tune) is served as a model; a LoRA adapter is served on top of
its base model where the engine can, which it cannot when the adapter adapts the routed experts (fused 3-D
expert weights), nor on vLLM's CPU build (its LoRA path runs glm4_moe's MoE layers through Triton kernels that
build lacks): that adapter must be merged first. The arguments are checked with the installed engine's own
argument parser (`check_engine_args`), not against a list kept here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from finetune.errors import FinetuneError, say
from finetune.frameworks.base import environment_stamp
from finetune.glm.chat_formats import CHAT_FORMATS, ChatFormat
from finetune.launch.run_state import unfinished_state
from finetune.launch.rundir import CONFIG_NAME, OUTPUT_NAME, launch_record_path
from finetune.paths import REPO_ROOT, cache_dir
from finetune.serving.engine import DEFAULT_PORTS, EngineInstall, find_engine

# vLLM 0.32's `glm45` forces GLM-4.7's tool-call layout on generation; this plugin parses the same and leaves the
# trained GLM-4.5 layout alone (finetune/serving/vllm_plugins/glm45_tool_parser.py, docs/serving.md)
GLM45_TRAINED_PLUGIN = REPO_ROOT / "finetune" / "serving" / "vllm_plugins" / "glm45_tool_parser.py"
GLM45_TRAINED_PARSER = "glm45_trained"
ROUTED_EXPERT_MARKERS = ("experts", "gate_up_proj")  # fused routed-expert weights in transformers 5 glm4_moe
DEFAULT_GPUS = 8


class ExpertAdapter(FinetuneError):
    """A run whose LoRA adapts the routed experts: it is served as its merged model (`finetune serve` merges it)."""


@dataclass(frozen=True)
class ServePlan:
    """One server for one run: the command, its environment, where it answers, and the arguments its engine's
    parser is asked about."""

    engine: EngineInstall
    argv: list[str]
    engine_args: list[str]  # the argv after the program, in the form the engine's parser reads (--model MODEL ...)
    url: str
    model_name: str
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        prefix = [f"{k}={v}" for k, v in self.env.items()]
        return shlex.join([*prefix, *self.argv]) if prefix else shlex.join(self.argv)


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


def find_weights(run_dir: Path, record: dict, config: dict) -> tuple[Path, Path | None, str]:
    """(model to serve, adapter or None, base model) for a run (its launch record and config): its merged export if
    there is one."""
    from finetune.frameworks import get_framework

    merged = next((p.parent for p in sorted(run_dir.glob("*/export.json"))), None)
    if merged is not None:
        return merged, None, record["model"]
    state = unfinished_state(run_dir)
    if state is not None:
        raise FinetuneError(
            f"{run_dir} has not finished ({state.state.value} at step {state.step}): resume it with `finetune launch "
            f"--resume {run_dir}`, or export its newest checkpoint with `finetune export {run_dir} --unfinished` "
            "and serve the run again (the merged model is found automatically)."
        )
    weights = get_framework(record["framework"]).trained_weights(run_dir / OUTPUT_NAME, config)
    if (weights / "adapter_config.json").is_file():
        return Path(record["model"]), weights, record["model"]
    return weights, None, record["model"]


def _stored_dtype(model: Path) -> str | None:
    config = model / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except json.JSONDecodeError as error:
        raise FinetuneError(f"{config} is not valid JSON ({error}); the model folder is damaged.") from error
    return data.get("dtype") or data.get("torch_dtype")


def run_chat_format(record: dict) -> ChatFormat:
    """The chat format of the model a run trained (its recipe's model), which picks the serving parsers; GLM-4.5's
    when the recipe is no longer here."""
    from finetune.recipes.models import get_model
    from finetune.recipes.recipe import resolve_recipe

    try:
        return get_model(resolve_recipe(record["recipe"]).meta.model).chat
    except (FinetuneError, KeyError):
        return CHAT_FORMATS["glm45"]


def _recipe_gpus(record: dict) -> int | None:
    """GPUs per node of the recipe the run trained (what it is sized for), when the recipe is still here."""
    from finetune.recipes.recipe import resolve_recipe

    try:
        return resolve_recipe(record["recipe"]).meta.gpus_per_node
    except (FinetuneError, KeyError):
        return None


def plan_serve(
    run_dir: Path,
    engine: str,
    *,
    gpus: int | None = None,
    name: str | None = None,
    host: str | None = None,
    port: int | None = None,
    max_model_len: int | None = None,
    install: EngineInstall | None = None,
) -> ServePlan:
    """The server for `run_dir`. Tensor parallelism: `gpus`, else the recipe's GPUs per node capped by this
    machine's, else this machine's; 1 on vLLM's CPU build."""
    if engine not in DEFAULT_PORTS:
        raise FinetuneError(f"--engine {engine}: choose vllm or sglang.")
    run_dir = run_dir.resolve()
    install = install or find_engine(engine)
    record, config = _read_run(run_dir)
    model, adapter, _ = find_weights(run_dir, record, config)
    name = name or run_dir.name
    notes = []
    if adapter is not None and adapter_targets_routed_experts(adapter):
        raise ExpertAdapter(
            f"The adapter in {adapter} adapts the routed experts (fused 3-D expert weights), which no engine "
            "loads as trained (vLLM refuses the fused layout, SGLang drops its expert deltas without a word; "
            "docs/experts.md)"
        )
    if adapter is not None and install.cpu_build:
        raise FinetuneError(
            f"{run_dir} holds a LoRA adapter ({adapter}) and this machine's vLLM is the CPU build, whose LoRA path "
            "runs glm4_moe's MoE layers through Triton kernels it does not have (every request fails): merge it "
            f"first with `finetune export {run_dir}`, then serve the run again (the merged model is found "
            "automatically). On a GPU machine the adapter is served on its base model."
        )
    if install.cpu_build:
        tp = 1
    else:
        machine = gpu_count()
        tp = gpus or min(_recipe_gpus(record) or machine, machine)
    chat = run_chat_format(record)
    kept_thinking = bool(config.get("preserve_thinking")) and "clear_thinking" in chat.template_kwargs
    lora = [f"{name}={adapter}", "--max-lora-rank", str(_lora_rank(adapter))] if adapter is not None else []
    args: list[str] = ["--served-model-name", name]
    if engine == "vllm":
        args += ["--tensor-parallel-size", str(tp)]
        if chat.vllm_tool_parser == GLM45_TRAINED_PARSER:
            args += ["--tool-parser-plugin", str(GLM45_TRAINED_PLUGIN)]
        args += ["--tool-call-parser", chat.vllm_tool_parser, "--reasoning-parser", chat.reasoning_parser]
        args += ["--enable-auto-tool-choice"]
        if kept_thinking:  # the run trained on contexts that keep earlier reasoning: serve them so by default
            args += ["--default-chat-template-kwargs", json.dumps({"clear_thinking": False})]
        if adapter is not None:
            args += ["--enable-lora", "--lora-modules", *lora]
        if max_model_len:
            args += ["--max-model-len", str(max_model_len)]
    else:
        args += ["--tp", str(tp), "--tool-call-parser", chat.sglang_tool_parser]
        args += ["--reasoning-parser", chat.reasoning_parser]
        if kept_thinking:
            notes.append(
                'trained with earlier reasoning kept in the context: send `"chat_template_kwargs": '
                '{"clear_thinking": false}` with each request (SGLang has no server-wide default)'
            )
        if adapter is not None:
            args += ["--enable-lora", "--lora-paths", *lora]
        if max_model_len:
            args += ["--context-length", str(max_model_len)]
    if install.cpu_build:
        args += ["--enforce-eager", "--distributed-executor-backend", "uni"]  # no graph capture; one process
        notes.append("vLLM's CPU build: tensor parallel 1, eager mode, one process")
        if _stored_dtype(Path(model)) == "float32":
            args += ["--dtype", "float32"]  # served as stored (the engine would otherwise downcast)
    if host:
        args += ["--host", host]
    port = port or DEFAULT_PORTS[engine]
    if port != DEFAULT_PORTS[engine]:
        args += ["--port", str(port)]
    if adapter is not None:
        notes.append(
            f"serving the adapter {adapter} on its base model {model}; request model `{name}` for the "
            "fine-tuned behaviour (the base model answers under its own name)"
        )
    program = install.program(str(model))
    model_flag = "--model" if engine == "vllm" else "--model-path"
    engine_args = [model_flag, str(model), *args]
    shown_host = "127.0.0.1" if host in (None, "", "0.0.0.0", "::") else host
    return ServePlan(
        engine=install,
        argv=[*program, *args],
        engine_args=engine_args,
        url=f"http://{shown_host}:{port}",
        model_name=name,
        env=install.env(),
        notes=notes,
    )


# Values that name this run, not the shape of the command: the parser's verdict does not depend on them (it checks
# neither that the folder exists nor that the port is free), so the cached verdict of one run serves the next.
_RUN_VALUES = {"--model", "--model-path", "--served-model-name", "--port", "--host"}


def _shape(command: list[str]) -> list[str]:
    """The command with its run-specific values replaced by their flag's name (the cache key)."""
    return [f"<{command[i - 1]}>" if i and command[i - 1] in _RUN_VALUES else arg for i, arg in enumerate(command)]


def engine_verdicts(install: EngineInstall, env: dict[str, str], commands: list[list[str]]) -> list[dict]:
    """The installed engine's own argument parser on each command (arguments after the program): one verdict each,
    {"ok": bool, "error": message}. One process for all of them; answers cached by the commands' shape (their
    run-specific values left out) and the environment."""
    digest = hashlib.sha256(json.dumps([install.engine, [_shape(c) for c in commands]]).encode())
    digest.update((REPO_ROOT / "finetune" / "serving" / "engine_args.py").read_bytes())
    digest.update(environment_stamp(install.python).encode())
    cache = cache_dir() / "checks" / f"serve-{digest.hexdigest()[:32]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    say(f"checking the arguments with {install.engine}'s own argument parser (once; about 10 s)...")
    proc = subprocess.run(
        [str(install.python), "-m", "finetune.serving.engine_args"],
        input=json.dumps({"engine": install.engine, "commands": commands}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise FinetuneError(
            f"Could not run {install.engine}'s argument parser ({install.python}):\n" + proc.stderr[-3000:]
        )
    verdicts = json.loads(lines[-1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(verdicts))
    return verdicts


def check_engine_args(plan: ServePlan) -> None:
    """Raise, with the engine's own message, when the installed engine rejects the plan's arguments."""
    if not plan.engine.installed:
        return
    (verdict,) = engine_verdicts(plan.engine, plan.env, [plan.engine_args])
    if not verdict["ok"]:
        raise FinetuneError(
            f"The installed {plan.engine.engine} rejects the serve command: {verdict['error']}\n  {plan.command}"
        )
