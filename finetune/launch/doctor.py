"""`finetune doctor`: check a node before a long job, and say what is wrong and how to fix it.

Each check is a small function returning a Finding; nothing here changes the machine except a probe file in
the runs folder (to prove it is writable and see which hosts share it). Run it on every node of a job.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.recipes.recipe import Recipe

if TYPE_CHECKING:
    from finetune.serving.engine import EngineInstall

IMPORTS = {"llamafactory": "llamafactory, deepspeed, torch", "swift": "swift, deepspeed, torch"}
GIB = 1024**3


@dataclass
class Finding:
    check: str
    status: str  # ok / warn / fail
    detail: str
    fix: str = ""


def check_environment(framework_name: str) -> Finding:
    framework = get_framework(framework_name)
    python = framework.python(must_exist=False)
    name = f"{framework.display_name} environment"
    if not python.exists():
        return Finding(name, "fail", f"{python} is missing", "run ./setup.sh (or set the FINETUNE_*_PYTHON variable)")
    code = f"import {IMPORTS[framework_name]}, json; print(json.dumps([torch.__version__, torch.cuda.is_available()]))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return Finding(name, "fail", f"imports fail: {last}", "run ./setup.sh again; check the error above")
    torch_version, cuda = json.loads(proc.stdout.strip().splitlines()[-1])
    if not cuda:
        return Finding(
            name,
            "warn",
            f"imports work (torch {torch_version}) but torch sees no CUDA device",
            "on GPU nodes install a CUDA build of torch (./setup.sh does where nvidia-smi works)",
        )
    return Finding(name, "ok", f"imports work, torch {torch_version} with CUDA")


def check_vllm(install: EngineInstall) -> Finding:
    """vLLM in the ms-swift environment: GRPO recipes roll out with it, `finetune serve` starts it."""
    if not install.installed:
        return Finding("vLLM", "fail", "not installed in the ms-swift environment", "run ./setup.sh swift")
    build = "the CPU build (no GPU here; serving only merged models)" if install.cpu_build else "the CUDA wheel"
    return Finding("vLLM", "ok", f"{build} in {install.python.parent.parent}")


def gpus() -> list[tuple[str, float]]:
    """(name, memory GiB) of each NVIDIA GPU nvidia-smi reports; empty without one."""
    if not shutil.which("nvidia-smi"):
        return []
    proc = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        return []
    rows = [line.rsplit(",", 1) for line in proc.stdout.strip().splitlines() if "," in line]
    return [(name.strip(), float(mib) / 1024) for name, mib in rows]


def check_gpus(recipe: Recipe | None) -> Finding:
    found = gpus()
    want = recipe.meta.gpus_per_node if recipe else 8
    if not found:
        return Finding(
            "GPUs",
            "fail",
            "no NVIDIA GPU visible (nvidia-smi missing or failing)",
            "run on a GPU node; check the driver with `nvidia-smi`",
        )
    detail = f"{len(found)} x {found[0][0]} ({found[0][1]:.0f} GiB)"
    if len(found) < want:
        return Finding(
            "GPUs",
            "fail",
            f"{detail}; the recipe wants {want} per node",
            f"use a node with {want} GPUs or pass --nproc-per-node with a recipe sized for it",
        )
    if recipe is not None:
        from finetune.planner import plan_recipe

        plan = plan_recipe(recipe)
        if found[0][1] < plan.required_gib:
            return Finding(
                "GPUs",
                "fail",
                f"{detail}; the planner needs {plan.required_gib:.1f} GiB per GPU",
                f"see `python -m finetune plan {recipe.id}` for what fits",
            )
    return Finding("GPUs", "ok", detail)


def check_network() -> Finding:
    interfaces = sorted(p.name for p in Path("/sys/class/net").iterdir()) if Path("/sys/class/net").is_dir() else []
    chosen = os.environ.get("NCCL_SOCKET_IFNAME")
    infiniband = (
        sorted(p.name for p in Path("/sys/class/infiniband").glob("*"))
        if Path("/sys/class/infiniband").is_dir()
        else []
    )
    ib = f"; InfiniBand: {', '.join(infiniband)}" if infiniband else "; no InfiniBand devices"
    if chosen:
        names = [n.strip().lstrip("^=") for n in chosen.split(",")]
        missing = [n for n in names if not any(i.startswith(n) for i in interfaces)]
        if missing and not chosen.startswith("^"):
            return Finding(
                "network",
                "fail",
                f"NCCL_SOCKET_IFNAME={chosen} but no interface {', '.join(missing)} (have: {', '.join(interfaces)})",
                "set NCCL_SOCKET_IFNAME to the inter-node interface",
            )
        return Finding("network", "ok", f"NCCL_SOCKET_IFNAME={chosen}{ib}")
    return Finding(
        "network",
        "warn",
        f"NCCL_SOCKET_IFNAME not set (interfaces: {', '.join(interfaces)}){ib}",
        "on multi-node jobs set NCCL_SOCKET_IFNAME to the interface the nodes reach each other on",
    )


def check_shared_storage(runs_root: Path, nnodes: int) -> Finding:
    probe_dir = runs_root / ".doctor"
    try:
        probe_dir.mkdir(parents=True, exist_ok=True)
        probe = probe_dir / socket.gethostname()
        probe.write_text(str(time.time()))
    except OSError as exc:
        return Finding(
            "run storage",
            "fail",
            f"{runs_root} is not writable ({exc})",
            "choose --runs-root on storage every node can write",
        )
    recent = [p.name for p in probe_dir.iterdir() if time.time() - p.stat().st_mtime < 3600]
    detail = f"{runs_root} writable; hosts seen there in the last hour: {', '.join(sorted(recent))}"
    if nnodes > 1 and len(recent) < nnodes:
        return Finding(
            "run storage",
            "warn",
            detail,
            f"run doctor on all {nnodes} nodes: if they do not all appear here, this storage is not shared",
        )
    return Finding("run storage", "ok", detail)


def checkpoint_bytes(recipe: Recipe) -> float:
    """A checkpoint of the recipe, as the planner sizes it (planner/checkpoint.py)."""
    from finetune.planner import plan_recipe

    return plan_recipe(recipe).stop.checkpoint_bytes


def model_cache(recipe: Recipe) -> Path:
    """Where the recipe's framework downloads a hub model: ms-swift from ModelScope (unless USE_HF=1),
    LLaMA-Factory from the Hugging Face hub (unless USE_MODELSCOPE_HUB=1)."""
    if recipe.framework == "swift":
        modelscope = os.environ.get("USE_HF", "0").lower() not in ("1", "true")
    else:
        modelscope = os.environ.get("USE_MODELSCOPE_HUB", "0").lower() in ("1", "true")
    if modelscope:
        return Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope" / "hub")
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _downloaded(cache: Path, hub_id: str) -> bool:
    """A complete snapshot of `hub_id` in `cache` (HF's models--org--name layout or ModelScope's org/name)."""
    org, name = hub_id.split("/")
    folders = [
        *cache.glob(f"models--{org}--{name}/snapshots/*"),
        cache / org / name,
        cache / org / name.replace(".", "___"),
    ]
    for folder in folders:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = set(json.loads(index.read_text())["weight_map"].values())
            if all((folder / shard).is_file() for shard in shards):
                return True
    return False


def check_download(recipe: Recipe, model: str | None = None) -> Finding:
    """The model download the recipe starts with (about 2 bytes per stored parameter), where it will land."""
    from finetune.recipes.models import get_model

    if model is not None and Path(model).is_dir():
        return Finding("model download", "ok", f"none: --model {model} is a local folder")
    spec = get_model(recipe.meta.model)
    hub_id = model or spec.hf_id
    cache = model_cache(recipe)
    if _downloaded(cache, hub_id):
        return Finding("model download", "ok", f"none: {hub_id} is in {cache}")
    need = 2 * spec.checkpoint_params
    probe = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    detail = (
        f"{hub_id} is not in {cache}: the first launch downloads about {need / 1e9:,.0f} GB there "
        f"({free / GIB:,.0f} GiB free)"
    )
    if free < need:
        return Finding(
            "model download",
            "fail",
            detail,
            "free space there, point the cache elsewhere (HF_HOME / MODELSCOPE_CACHE), or download the model to a "
            "larger volume and pass --model PATH",
        )
    return Finding("model download", "ok", detail)


PINNED_SHARE = 0.5  # of the node's RAM that page-locked offload may take; the rest runs data loaders and the OS


def check_host_ram(
    recipe: Recipe, ram_bytes: float | None = None, overrides: list[str] | None = None
) -> Finding | None:
    """The host RAM the planner says offloading needs per node, against this node's; pinned offload at most
    PINNED_SHARE of it (page-locked memory cannot be swapped or reclaimed). None when nothing is offloaded."""
    from finetune.planner import plan_recipe

    plan = plan_recipe(recipe, overrides)
    need = plan.memory.host_ram_per_node
    if need < GIB:
        return None
    ram = ram_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    pinned = plan.setup.deepspeed.pinned_offload
    detail = (
        f"{need / GIB:,.0f} GiB per node for offloaded states{' (pinned)' if pinned else ''}; {ram / GIB:,.0f} GiB here"
    )
    if need > 0.9 * ram:
        return Finding("host RAM", "fail", detail, "a node with more RAM, more nodes, or NVMe offload")
    if pinned and need > PINNED_SHARE * ram:
        return Finding(
            "host RAM",
            "fail",
            f"{detail}: pinning more than {PINNED_SHARE:.0%} of RAM starves the rest of the node",
            "a copy of the DeepSpeed JSON with pin_memory false (--set deepspeed=PATH)",
        )
    return Finding("host RAM", "ok", detail)


def check_disk(runs_root: Path, recipe: Recipe | None) -> Finding:
    free = shutil.disk_usage(runs_root if runs_root.exists() else runs_root.parent).free
    if recipe is None:
        return Finding("disk", "ok", f"{free / GIB:,.0f} GiB free under {runs_root}")
    need = checkpoint_bytes(recipe) * int(recipe.config.get("save_total_limit", 1) or 1)
    detail = f"{free / GIB:,.0f} GiB free; checkpoints need about {need / GIB:,.1f} GiB"
    if free < need:
        return Finding("disk", "fail", detail, "free space, or point --runs-root at a larger volume")
    return Finding("disk", "ok", detail)


def check_nvme_space(recipe: Recipe, nvme_path: Path | None) -> Finding | None:
    """For a recipe that swaps to NVMe: the folder exists here, is writable, and has the planner's NVMe figure."""
    from finetune.launch.nvme import check_nvme, nvme_paths, with_nvme_path
    from finetune.launch.resolve import resolve_deepspeed
    from finetune.planner import plan_recipe

    framework = get_framework(recipe.framework)
    named = recipe.config.get(framework.deepspeed_key())
    source = framework.deepspeed_file(str(named)) if named else None
    if source is None:
        return None
    text = resolve_deepspeed(source).read_text()
    if not nvme_paths(json.loads(text)):
        return None
    text = with_nvme_path(text, nvme_path, source)
    (path,) = dict.fromkeys(nvme_paths(json.loads(text)))
    try:
        check_nvme(text, source)
    except FinetuneError as error:
        return Finding("NVMe swap", "fail", str(error), "mount the NVMe drives there, or pass --nvme-path DIR")
    need = plan_recipe(recipe).memory.nvme_per_node
    free = shutil.disk_usage(path).free
    detail = f"{path}: {free / GIB:,.0f} GiB free; DeepSpeed swaps about {need / GIB:,.0f} GiB per node there"
    if free < need:
        return Finding("NVMe swap", "fail", detail, "free space there or pass --nvme-path to a larger NVMe folder")
    return Finding("NVMe swap", "ok", detail)


def run_checks(recipe: Recipe | None, runs_root: Path, nnodes: int, *, nvme_path: Path | None = None) -> list[Finding]:
    frameworks = [recipe.framework] if recipe else ["llamafactory", "swift"]
    findings = [check_environment(name) for name in frameworks]
    if recipe is None or recipe.config.get("use_vllm"):
        from finetune.serving.engine import find_engine

        findings.append(check_vllm(find_engine("vllm")))
    findings += [
        check_gpus(recipe),
        check_network(),
        check_shared_storage(runs_root, nnodes),
        check_disk(runs_root, recipe),
    ]
    if recipe is not None:
        findings.append(check_download(recipe))
        ram = check_host_ram(recipe)
        if ram is not None:
            findings.append(ram)
        nvme = check_nvme_space(recipe, nvme_path)
        if nvme is not None:
            findings.append(nvme)
    return findings
