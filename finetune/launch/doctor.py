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


def checkpoint_bytes(recipe: Recipe) -> int:
    """A checkpoint of the recipe: bf16 weights of what it trains plus fp32 Adam states (LoRA: the adapter)."""
    from finetune.planner import plan_recipe

    plan = plan_recipe(recipe)
    trained = plan.trainable_params
    return trained * 16 if trained < plan.total_params else plan.total_params * 16


def check_disk(runs_root: Path, recipe: Recipe | None) -> Finding:
    free = shutil.disk_usage(runs_root if runs_root.exists() else runs_root.parent).free
    if recipe is None:
        return Finding("disk", "ok", f"{free / GIB:,.0f} GiB free under {runs_root}")
    need = checkpoint_bytes(recipe) * int(recipe.config.get("save_total_limit", 1) or 1)
    detail = f"{free / GIB:,.0f} GiB free; checkpoints need about {need / GIB:,.1f} GiB"
    if free < need:
        return Finding("disk", "fail", detail, "free space, or point --runs-root at a larger volume")
    return Finding("disk", "ok", detail)


def run_checks(recipe: Recipe | None, runs_root: Path, nnodes: int) -> list[Finding]:
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
    return findings
