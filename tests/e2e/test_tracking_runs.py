"""Tracked runs for real, through `finetune launch` on the replica, wandb offline: read back what wandb wrote.

A LLaMA-Factory run, another stopped by SIGTERM and resumed, a SWIFT LoRA run, a SWIFT GRPO run and a two-process
ZeRO-3 run, each with secret sentinels in its environment that its workers print; then nothing under any run
directory may hold one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from finetune.frameworks import get_framework
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from finetune.tracking.offline_reader import OfflineRun, offline_run_dirs, read_offline_run
from tests.conftest import REPO_ROOT, run_cli
from tests.helpers.nodes import Node, free_port, one_node
from tests.helpers.precheck import precheck

pytestmark = pytest.mark.train
STEPS = 4
STOPPED_STEPS = 40
LF = "llamafactory/glm45-air_lora_4xh100"
SWIFT_LORA = "swift/glm45-air_lora_4xh100"
SWIFT_GRPO = "swift/glm45-air_grpo_4xh100"
SENTINELS = {
    "WANDB_API_KEY": "SENTINELwandbapikey0123456789abcdefghijklmnop",  # offline wandb still wants 40+ characters
    "HF_TOKEN": "hf_SENTINEL_hftoken_0123456789",
    "MY_SECRET": "SENTINEL-my-secret-0123456789",
    "DB_PASSWORD": "SENTINEL-db-password-0123456789",
}
MANIFEST_KEYS = set(
    "recipe framework model method dataset overrides config config_sha256 repository packages cluster run wandb".split()
)


def _env(tmp: Path) -> dict[str, str]:
    no_wandb_settings = {"WANDB_PROJECT": "", "WANDB_MODE": ""}
    leaky = {"FINETUNE_CALLBACKS": "tests.helpers.trainer_faults:PrintsSecrets"}  # the workers print them
    return {"OMP_NUM_THREADS": "1", "XDG_CONFIG_HOME": str(tmp / "xdg"), **no_wandb_settings, **SENTINELS, **leaky}


def _launch_args(recipe_id: str, run_dir: Path, replica: Path, nproc: int, *extra: str) -> list[str]:
    recipe = resolve_recipe(recipe_id)
    where = ["--model", str(replica), "--run-dir", str(run_dir)]
    cluster = one_node(nproc)
    wandb = ["--wandb-project", "glm45-tests", "--wandb-mode", "offline", "--wandb-tags", "ci,replica"]
    args = [recipe_id, *where, *cluster, *wandb]
    for key, value in get_framework(recipe.framework).cpu_smoke_overrides(STEPS, recipe.meta).items():
        args += ["--set", format_override(key, value)]
    return [*args, *extra]


def _launch(recipe_id: str, run_dir: Path, replica: Path, nproc: int, *extra: str):
    out = run_cli(
        "launch", *_launch_args(recipe_id, run_dir, replica, nproc, *extra), env=_env(run_dir.parent), timeout=900
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    return out


def _only_run(run_dir: Path) -> OfflineRun:
    (folder,) = offline_run_dirs(run_dir)
    return read_offline_run(folder)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("tracked")


NO_VLLM = ("--set", "use_vllm=false", "--set", "vllm_mode=null", "--set", "vllm_tensor_parallel_size=null")
NO_VLLM += ("--set", "vllm_gpu_memory_utilization=null", "--set", "vllm_max_model_len=null")
LAUNCHES = {  # run name -> (recipe, processes, extra arguments)
    "lf-lora": (LF, 1, ("--set", "deepspeed=null")),
    "swift-lora": (SWIFT_LORA, 1, ("--set", "deepspeed=null", "--run-name", "swift-lora-ci")),
    # what is tracked, not how completions are made: the trainer's own generate (tests/e2e/test_swift.py runs vLLM)
    "swift-grpo": (SWIFT_GRPO, 1, ("--set", "deepspeed=null", "--set", "beta=0.04", *NO_VLLM)),
    "lf-zero3": (LF, 2, ()),
    # stopped by SIGTERM after its first steps, then resumed (a finished run is not resumed)
    "lf-stopped": (LF, 1, ("--set", "deepspeed=null", "--set", f"max_steps={STOPPED_STEPS}")),
}


@pytest.fixture(scope="module", autouse=True)
def _checked_together(runs, air_replica):
    """The launches below through each framework's parser at once (tests/helpers/precheck.py)."""
    launches = [_launch_args(r, runs / name, air_replica, n, *extra) for name, (r, n, extra) in LAUNCHES.items()]
    precheck(launches, env=_env(runs))


def _tracked(runs: Path, replica: Path, name: str):
    recipe_id, nproc, extra = LAUNCHES[name]
    return _launch(recipe_id, runs / name, replica, nproc, *extra)


@pytest.fixture(scope="module")
def lf_run(runs, air_replica):
    out = _tracked(runs, air_replica, "lf-lora")
    return runs / "lf-lora", out, _only_run(runs / "lf-lora")


@pytest.fixture(scope="module")
def lf_stopped(runs, air_replica):
    """A LLaMA-Factory run stopped by SIGTERM once it is training: exit code 75, resumable."""
    run_dir = runs / "lf-stopped"
    recipe_id, nproc, extra = LAUNCHES["lf-stopped"]
    argv = [sys.executable, "-m", "finetune", "launch", *_launch_args(recipe_id, run_dir, air_replica, nproc, *extra)]
    proc = Node(argv, cwd=REPO_ROOT, env={**os.environ, **_env(runs)})
    log, deadline = run_dir / "logs" / "node0.log", time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.output()[-3000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == 75, proc.output()[-3000:]
    return run_dir, proc.output(), _only_run(run_dir)


@pytest.fixture(scope="module")
def lf_resumed(runs, lf_stopped):
    run_dir, _, _ = lf_stopped
    out = run_cli("launch", "--resume", str(run_dir), "--master-port", str(free_port()), env=_env(runs), timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    return run_dir, out


@pytest.fixture(scope="module")
def swift_run(runs, air_replica):
    out = _tracked(runs, air_replica, "swift-lora")
    return runs / "swift-lora", out, _only_run(runs / "swift-lora")


@pytest.fixture(scope="module")
def grpo_run(runs, air_replica):
    out = _tracked(runs, air_replica, "swift-grpo")
    return runs / "swift-grpo", out, _only_run(runs / "swift-grpo")


@pytest.fixture(scope="module")
def zero3_run(runs, air_replica):
    out = _tracked(runs, air_replica, "lf-zero3")
    return runs / "lf-zero3", out


def _assert_tracked(run: OfflineRun, run_dir: Path, recipe_id: str) -> dict:
    identity = json.loads((run_dir / "wandb-run.json").read_text())
    assert (run.project, run.group, run.tags) == ("glm45-tests", run_dir.name, ["ci", "replica"])
    assert (run.id, run.name) == (identity["id"], identity["name"])
    launch = run.config["launch"]
    assert MANIFEST_KEYS <= set(launch)
    assert launch == json.loads((run_dir / "manifest.json").read_text())  # the same manifest beside the run
    assert launch["recipe"]["id"] == recipe_id and len(launch["recipe"]["sha256"]) == 64
    assert launch["dataset"]["content_hash"].startswith("sha256:") and launch["dataset"]["rows"]["train"] > 0
    assert launch["repository"]["commit"] and isinstance(launch["repository"]["dirty"], bool)
    assert {"torch", "transformers", "peft", "wandb"} <= set(launch["packages"])
    assert launch["cluster"]["gpu_model"] and launch["cluster"]["nodes"] == 1
    assert launch["wandb"] == {
        "project": "glm45-tests",
        "entity": None,
        "group": run_dir.name,
        "name": run.name,
        "id": run.id,
        "tags": ["ci", "replica"],
        "mode": "offline",
    }
    assert launch["config"]["report_to"] == ["wandb"]
    loss_rows = [row for row in run.history if "train/loss" in row]
    assert [row["train/global_step"] for row in loss_rows] == list(range(1, STEPS + 1))  # one per logging step
    for row in loss_rows:  # memory, tokens, learning rate and grad norm land in the loss row of their step
        logged = {"train/learning_rate", "train/grad_norm", "train/tokens_seen", "train/tokens_per_second"}
        assert logged | {"memory/peak_gib_max", "memory/peak_gib_rank0"} <= set(row)
    seen = [row["train/tokens_seen"] for row in loss_rows]
    assert seen == sorted(seen) and seen[0] > 0
    assert run.exit_code == 0
    return launch


def test_llamafactory_run_is_tracked_offline(lf_run):
    run_dir, _, run = lf_run
    launch = _assert_tracked(run, run_dir, LF)
    assert run.name.startswith("glm-4.5-air-lora-sample_chat-")
    assert launch["packages"]["llamafactory"] and launch["framework"] == "llamafactory"
    trainer_losses = [row["loss"] for row in _jsonl(run_dir / "output" / "trainer_log.jsonl") if "loss" in row]
    assert run.series("train/loss") == pytest.approx(trainer_losses, rel=1e-4)
    assert run.summary["model/path"] == str(run_dir / "output")
    console = offline_run_dirs(run_dir)[0] / "files" / "logs" / "node0.log"  # the console record wandb uploads
    assert console.resolve() == (run_dir / "logs" / "node0.log").resolve()  # the launcher's masked log


def test_swift_run_is_tracked_offline(swift_run):
    run_dir, _, run = swift_run
    launch = _assert_tracked(run, run_dir, SWIFT_LORA)
    assert run.name == "swift-lora-ci" and launch["packages"]["ms-swift"]
    logged = [
        row["loss"]
        for row in _jsonl(run_dir / "output" / "logging.jsonl")
        if "train_runtime" not in row and "loss" in row
    ]
    assert run.series("train/loss") == pytest.approx(logged, rel=1e-3)
    assert run.summary["model/path"] == str(run_dir / "output" / f"checkpoint-{STEPS}")


def test_grpo_run_logs_rewards_and_kl(grpo_run):
    _, _, run = grpo_run
    rows = [row for row in run.history if "train/loss" in row]
    assert len(rows) == STEPS
    assert all(
        {"train/reward", "train/kl", "train/rewards/Glm45Answer/mean", "memory/peak_gib_max"} <= set(r) for r in rows
    )


def test_two_processes_make_exactly_one_wandb_run(zero3_run):
    run_dir, out = zero3_run
    assert "world size: 2" in (run_dir / "logs" / "node0.log").read_text()  # LLaMA-Factory's own line
    # the run ends with the command that uploads it, not wandb's `wandb sync` of one attempt's folder
    assert out.stdout.rstrip().splitlines()[-1] == f"wandb: logged offline; upload it with `finetune sync {run_dir}`"
    run = _only_run(run_dir)  # exactly one offline run for the job
    loss_rows = [row for row in run.history if "train/loss" in row]
    assert len(loss_rows) == STEPS
    for row in loss_rows:  # both ranks' memory, gathered to rank 0
        assert row["memory/peak_gib_max"] == max(row["memory/peak_gib_rank0"], row["memory/peak_gib_rank1"])
    assert run.config["launch"]["cluster"]["world_size"] == 2


def test_resume_continues_the_same_wandb_run(lf_stopped, lf_resumed):
    run_dir, _, first = lf_stopped
    folders = offline_run_dirs(run_dir)
    assert len(folders) == 2
    second = read_offline_run(folders[1])
    assert (second.id, second.name, second.group, second.project) == (first.id, first.name, first.group, first.project)
    assert second.config["launch"]["run"]["attempt"] == 1
    assert (run_dir / "manifest.attempt1.json").is_file()
    steps = [row["train/global_step"] for run in (first, second) for row in run.history if "train/loss" in row]
    assert steps == list(range(1, STOPPED_STEPS + 1))  # the second attempt picks up where the first stopped


def test_sync_dry_run_lists_the_offline_runs(lf_stopped, lf_resumed):
    run_dir, _, first = lf_stopped
    out = run_cli("sync", str(run_dir), "--dry-run")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(f"glm45-tests/{first.id}") == 2 and "not synced" in out.stdout
    assert "sync --dry-run" in out.stdout and "Would sync 2 run(s)" in out.stdout + out.stderr


def test_secrets_appear_nowhere(lf_run, lf_stopped, lf_resumed, swift_run, grpo_run, zero3_run):
    outputs = [lf_run[1], lf_resumed[1], swift_run[1], grpo_run[1], zero3_run[1]]
    leaks = [f"launcher output: {name}" for name, value in SENTINELS.items() if value in lf_stopped[1]]
    for run_dir in (lf_run[0], lf_stopped[0], swift_run[0], grpo_run[0], zero3_run[0]):
        files = [p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(p.suffix == ".wandb" for p in files) and any(p.name == "node0.log" for p in files)
        for path in files:
            data = path.read_bytes()
            leaks += [f"{path}: {name}" for name, value in SENTINELS.items() if value.encode() in data]
    for out in outputs:
        leaks += [f"launcher output: {name}" for name, value in SENTINELS.items() if value in out.stdout + out.stderr]
    assert not leaks, leaks
