"""`finetune launch --resume RUN_DIR`: the same run, continued from its newest complete checkpoint.

Everything is taken from the run's first launch record (recipe, model, dataset, overrides, cluster shape) and
rendered again; the result must equal the run's `config.yaml`, so a resume never silently trains something
else. The trainer restores the optimizer, scheduler, RNG and data position from the checkpoint.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import replace
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.launch.checkpoints import latest_complete
from finetune.launch.run_state import State, read_state
from finetune.launch.rundir import CONFIG_NAME, OUTPUT_NAME, launch_record_path
from finetune.recipes.overrides import format_override


def _first(flag: int | None, variable: str, recorded: int) -> int:
    """A flag, else the environment (a requeued job may get another port), else what the run recorded."""
    if flag is not None:
        return flag
    return int(os.environ[variable]) if os.environ.get(variable) else recorded


def _attempts(run_dir: Path, node_rank: int) -> int:
    return len(list(run_dir.glob(f"launch-node{node_rank}.attempt*.json")))


def existing_run(run_dir: Path, recipe: str) -> str:
    """What `--resume-existing` does with `run_dir` for `recipe`: "start" (no run there yet), "resume" (a run of
    this recipe that has not finished) or "finished"; refuses a directory that holds another recipe's run."""
    record_path = launch_record_path(run_dir, 0)
    if not record_path.is_file():
        return "start"
    recorded = json.loads(record_path.read_text())["recipe"]
    if recorded != recipe:
        raise FinetuneError(
            f"--resume-existing: {run_dir} holds a run of {recorded}, not {recipe}; choose another --run-dir."
        )
    state = read_state(run_dir)
    return "finished" if state is not None and state.state is State.FINISHED else "resume"


def refuse_finished(run_dir: Path) -> None:
    """A finished run has nothing to continue; resuming it would train past its last step and rewrite its output."""
    state = read_state(run_dir)
    if state is not None and state.state is State.FINISHED:
        raise FinetuneError(
            f"--resume {run_dir}: the run finished at step {state.step} (attempt {state.attempt}, {state.updated}); "
            f"there is nothing to continue and its output is kept as it is. To train further, start a new run "
            f"(another --run-dir) from it."
        )


def refuse_megatron(run_dir: Path, recipe_id: str) -> None:
    """Megatron-SWIFT checkpoints are Megatron's own (iter_* folders, saved without optimizer states) and no stop
    hook saves one on a signal: the launcher cannot continue such a run, and says so instead of half-resuming."""
    from finetune.recipes.recipe import resolve_recipe

    try:
        engine = resolve_recipe(recipe_id).meta.engine
    except FinetuneError:
        return
    if engine == "megatron":
        raise FinetuneError(
            f"--resume {run_dir}: {recipe_id} trains with Megatron-SWIFT, whose checkpoints the launcher cannot "
            "resume (Megatron's own layout, saved without optimizer states: no_save_optim); start a new run "
            "(docs/clusters.md, 'What resumes')."
        )


def resume_request(req):
    """The LaunchRequest that continues `req.resume`, its attempt number, checkpoint and skipped checkpoints."""
    run_dir = Path(req.resume).expanduser().resolve()
    node_rank = req.node_rank if req.node_rank is not None else int(os.environ.get("NODE_RANK", 0))
    record_path = launch_record_path(run_dir, node_rank)
    if not record_path.is_file():
        record_path = launch_record_path(run_dir, 0)
    if not record_path.is_file():
        raise FinetuneError(f"--resume {run_dir}: no launch record there; is it a run directory?")
    record = json.loads(record_path.read_text())
    refuse_finished(run_dir)
    refuse_megatron(run_dir, record["recipe"])
    checkpoint, skipped = latest_complete(run_dir / OUTPUT_NAME)
    if checkpoint is None:
        reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped) or "none was saved"
        raise FinetuneError(f"--resume {run_dir}: no complete checkpoint to continue from ({reasons}).")
    topology = record["topology"]
    resumed = replace(
        req,
        recipe=record["recipe"],
        model=record["model"],
        dataset=record["dataset"] if record.get("dataset_prepared") else None,
        overrides=[format_override(k, v) for k, v in record["overrides"].items()],
        nvme_path=req.nvme_path or (Path(record["nvme_path"]) if record.get("nvme_path") else None),
        run_dir=run_dir,
        nnodes=_first(req.nnodes, "NNODES", topology["nnodes"]),
        nproc_per_node=_first(req.nproc_per_node, "NPROC_PER_NODE", topology["nproc_per_node"]),
        master_port=_first(req.master_port, "MASTER_PORT", topology["master_port"]),
        resume=None,
    )
    return resumed, _attempts(run_dir, node_rank) + 1, checkpoint, tuple(skipped)


def check_same_config(run_dir: Path, rendered: str) -> None:
    """Refuse to resume when the config rendered now differs from the one the run started with."""
    original = (run_dir / CONFIG_NAME).read_text()
    if original != rendered:
        diff = "".join(
            difflib.unified_diff(
                original.splitlines(True), rendered.splitlines(True), f"{CONFIG_NAME} (the run)", "rendered now"
            )
        )
        raise FinetuneError(
            f"--resume {run_dir}: the config rendered now differs from the run's; the recipe, the repository or "
            f"the dataset changed since the run started:\n{diff}"
        )
