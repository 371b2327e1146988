"""Several nodes on loopback: separate launcher processes, each told its NODE_RANK, as on a real cluster.

A node that never arrives is named, nodes with different configs refuse to start, a node killed mid-run ends the
job promptly, `--resume` continues from the newest complete checkpoint (a truncated one is skipped), and SIGTERM
leaves a complete checkpoint behind and a run that says it stopped, not finished. That two nodes train as one
process does: test_entry_points_run.py (LLaMA-Factory, through the hostfile launcher) and test_swift.py (ms-swift).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.frameworks import get_framework
from finetune.launch.checkpoints import latest_complete
from finetune.launch.run_state import STOPPED_EXIT, State, read_state
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import REPO_ROOT
from tests.helpers.nodes import Node, free_port, process_tree, start_node, two_nodes
from tests.helpers.precheck import precheck

pytestmark = pytest.mark.train
LF = "llamafactory/glm45-air_lora_4xh100"
PREEMPTED_STEPS = 30


def _args(recipe_id: str, replica: Path, steps: int, **extra) -> list[str]:
    """The recipe shrunk to the replica; plain data parallel unless `deepspeed` is given."""
    recipe = resolve_recipe(recipe_id)
    overrides = get_framework(recipe.framework).cpu_smoke_overrides(steps, recipe.meta) | {"deepspeed": None} | extra
    overrides = {k: v for k, v in overrides.items() if v != "recipe"}
    return [a for k, v in overrides.items() for a in ("--set", format_override(k, v))]


def _launch_args(run_dir: Path, replica: Path, *extra: str) -> list[str]:
    """`launch LF` on the replica into `run_dir`; the cluster comes from the environment or `extra`."""
    return [LF, "--model", str(replica), "--run-dir", str(run_dir), *extra]


def _one_node(run_dir: Path, replica: Path, *extra: str) -> list[str]:
    """The command line of a one-process launch on this machine."""
    cluster = ["--nnodes", "1", "--nproc-per-node", "1", "--master-port", str(free_port())]
    return [sys.executable, "-m", "finetune", "launch", *_launch_args(run_dir, replica, *cluster, *extra)]


@pytest.fixture(scope="module", autouse=True)
def _checked_together(air_replica, tmp_path_factory):
    """The launches below through each framework's parser at once (tests/helpers/precheck.py)."""
    run = tmp_path_factory.mktemp("precheck") / "run"
    lf = [
        _args(LF, air_replica, 2),
        _args(LF, air_replica, 2, learning_rate=0.5),
        _args(LF, air_replica, 30, save_steps=5, deepspeed="recipe"),
        _args(LF, air_replica, 500, save_steps=1000, gradient_accumulation_steps=4),
        _args(LF, air_replica, PREEMPTED_STEPS, save_steps=1000, deepspeed="recipe"),
    ]
    precheck([_launch_args(run, air_replica, *overrides) for overrides in lf])


def test_a_node_that_never_arrives_is_named(tmp_path, air_replica):
    start = time.monotonic()
    args = _launch_args(tmp_path / "lonely", air_replica, "--join-timeout", "8", *_args(LF, air_replica, 2))
    proc = start_node(0, 2, free_port(), *args)
    code = proc.wait(timeout=120)
    out = proc.output()
    assert code == 2 and time.monotonic() - start < 60
    assert "Node(s) 1 of 2 did not join within 8 s" in out
    assert f"Nothing was written: {tmp_path / 'lonely'} was not created" in out
    assert not (tmp_path / "lonely").exists()


def test_nodes_with_different_configs_refuse_tostart_node(tmp_path, air_replica):
    port = free_port()
    wait = ("--join-timeout", "60")
    node0 = start_node(0, 2, port, *_launch_args(tmp_path / "a", air_replica, *wait, *_args(LF, air_replica, 2)))
    different = _args(LF, air_replica, 2, learning_rate=0.5)
    node1 = start_node(1, 2, port, *_launch_args(tmp_path / "b", air_replica, *wait, *different))
    outs = [(p.wait(timeout=180), p.output()) for p in (node0, node1)]
    assert all(code == 2 for code, _ in outs)
    assert any("Nodes rendered different configs" in out and "Node(s) 1" in out for _, out in outs)


def test_killed_node_ends_the_job_and_resume_finishes_it(tmp_path, air_replica):
    run_dir = tmp_path / "killed"
    steps = 30  # the recipe's own ZeRO-3 (DeepSpeed checkpoints); slow enough on the replica to kill node 1 mid-run
    args = _launch_args(run_dir, air_replica, *_args(LF, air_replica, steps, save_steps=5, deepspeed="recipe"))
    port = free_port()
    nodes = [start_node(rank, 2, port, *args) for rank in (0, 1)]
    deadline = time.monotonic() + 300
    while latest_complete(run_dir / "output")[0] is None:  # wait for a first complete checkpoint
        assert time.monotonic() < deadline and nodes[0].poll() is None, nodes[0].output()[-3000:]
        time.sleep(1)
    for pid in process_tree(nodes[1].pid):  # node 1 disappears: launcher, torchrun and workers
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    code = nodes[0].wait(timeout=120)
    out = nodes[0].output()
    assert code != 0 and time.monotonic() - killed_at < 90
    assert "Node 1 failed" in out

    # a deliberately truncated checkpoint, newer than the rest, must be skipped (copied from the newest complete
    # one: the kill may have landed while node 0 was writing the next)
    newest = latest_complete(run_dir / "output")[0]
    bad = newest.with_name("checkpoint-39")
    shutil.copytree(newest, bad)
    json_state = json.loads((bad / "trainer_state.json").read_text()) | {"global_step": 39}
    (bad / "trainer_state.json").write_text(json.dumps(json_state))
    adapter = bad / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])

    results = two_nodes("--resume", str(run_dir))
    for code, out in results:
        assert code == 0, out[-3000:]
    assert "skipping incomplete checkpoint-39: truncated or unreadable weights" in results[0][1]
    assert "resuming from" in results[0][1]
    state = json.loads((run_dir / "output" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    assert (run_dir / "launch-node0.attempt1.json").is_file() and (run_dir / "config.attempt1.yaml").is_file()


def _trainers(pid: int) -> list[int]:
    """The training processes (torchrun's workers) under the launcher `pid`."""
    found = []
    for child in process_tree(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"finetune.frameworks.trainer" in argv and b"--nproc-per-node" not in argv:  # not torchrun itself
                found.append(child)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("receiver", ["launcher", "trainer"])
def test_sigterm_leaves_a_complete_checkpoint(tmp_path, air_replica, receiver):
    """SIGTERM to the launcher (Slurm's batch step, Ctrl-C) or to the trainer alone (a pod or a tool that signals
    the worker): either way a complete checkpoint and a run that says it stopped."""
    run_dir = tmp_path / "term"
    args = _args(LF, air_replica, 500, save_steps=1000, gradient_accumulation_steps=4)
    proc = Node(_one_node(run_dir, air_replica, *args), cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = run_dir / "logs" / "node0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.5)
    if receiver == "launcher":
        proc.send_signal(signal.SIGTERM)
    else:
        (trainer,) = _trainers(proc.pid)
        os.kill(trainer, signal.SIGTERM)
    code = proc.wait(timeout=180)
    out = proc.output()
    assert code == STOPPED_EXIT, out[-3000:]  # a stop is not a finish
    assert ("asking the trainers to checkpoint and stop" in out) == (receiver == "launcher")
    checkpoint, skipped = latest_complete(run_dir / "output")
    assert checkpoint is not None and not skipped
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < 500
    assert f"stopped at step {step} (output/{checkpoint.name} holds it; exit code 75); resume with" in out
    final = [p.name for p in (run_dir / "output").iterdir() if not p.name.startswith("checkpoint-")]
    assert not [n for n in final if n.startswith(("adapter_", "train_results", "all_results"))], final
    state = read_state(run_dir)
    assert (state.state, state.step, state.checkpoint) == (State.STOPPED, step, f"output/{checkpoint.name}")
    status = subprocess.run(
        [sys.executable, "-m", "finetune", "status", str(run_dir)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert f"state: stopped at step {step} on request" in status.stdout, status.stdout + status.stderr
    dry = subprocess.run(
        [sys.executable, "-m", "finetune", "launch", "--resume", str(run_dir), "--dry-run"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert f"# resuming from {checkpoint} (attempt 1)" in dry.stdout
    assert f"resume_from_checkpoint: {checkpoint}" in dry.stdout


def test_sigterm_to_every_process_of_a_zero3_job_saves_however_long_the_step_and_resumes(tmp_path, air_replica):
    """Slurm's preemption: SIGTERM to the launcher, torchrun and both ZeRO-3 workers at once, during a step that
    takes longer than torchrun's own ~30 s grace. torchrun must not kill the workers: they finish the step, save
    a complete checkpoint, the run ends `stopped` (75), and `--resume` trains it to its last step."""
    run_dir = tmp_path / "preempted"
    cluster = ["--nnodes", "1", "--nproc-per-node", "2", "--master-port", str(free_port())]
    overrides = _args(LF, air_replica, PREEMPTED_STEPS, save_steps=1000, deepspeed="recipe")
    argv = [sys.executable, "-m", "finetune", "launch", *_launch_args(run_dir, air_replica, *cluster, *overrides)]
    slow = {"FINETUNE_CALLBACKS": "tests.helpers.trainer_faults:SlowStepAfterStopRequest", "SLOW_STEP_S": "40"}
    proc = Node(argv, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **slow})
    log = run_dir / "logs" / "node0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.output()[-3000:]
        time.sleep(0.5)
    job = process_tree(proc.pid)
    assert len(job) >= 4  # the launcher, torchrun and two workers
    for pid in job:
        os.kill(pid, signal.SIGTERM)
    signalled = time.monotonic()
    code = proc.wait(timeout=240)
    out, node_log = proc.output(), log.read_text()
    assert code == STOPPED_EXIT, out[-4000:]
    assert time.monotonic() - signalled > 40  # the step outlasted torchrun's grace...
    assert "slow step: 40 s" in node_log and "death signal" not in node_log  # ...and torchrun never acted on it
    checkpoint, skipped = latest_complete(run_dir / "output")
    assert checkpoint is not None and not skipped and (checkpoint / "latest").is_file()
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 0 < step < PREEMPTED_STEPS and read_state(run_dir).state is State.STOPPED

    resumed = subprocess.run(
        [sys.executable, "-m", "finetune", "launch", "--resume", str(run_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    history = json.loads((run_dir / "output" / "trainer_state.json").read_text())["log_history"]
    logged = [row["step"] for row in history if "loss" in row]
    assert logged == list(range(1, PREEMPTED_STEPS + 1))  # every step once: the resume continued at step + 1
    state = read_state(run_dir)
    assert (state.state, state.step, state.attempt) == (State.FINISHED, PREEMPTED_STEPS, 1)


def test_stop_grace_bounds_the_wait_for_a_checkpoint(tmp_path, air_replica):
    """`--stop-grace 5`: a step that would take 40 s more after SIGTERM is stopped at once after 5 s, and the run
    is recorded as failed, not stopped (no checkpoint of that step exists)."""
    run_dir = tmp_path / "graced"
    args = _args(LF, air_replica, 500, save_steps=1000, gradient_accumulation_steps=4)
    argv = [*_one_node(run_dir, air_replica, *args), "--stop-grace", "5"]
    slow = {"FINETUNE_CALLBACKS": "tests.helpers.trainer_faults:SlowStepAfterStopRequest", "SLOW_STEP_S": "40"}
    proc = Node(argv, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **slow})
    log = run_dir / "logs" / "node0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = proc.wait(timeout=120)
    out = proc.output()
    assert code not in (0, STOPPED_EXIT) and time.monotonic() - signalled < 30, out[-3000:]
    assert "the trainers did not checkpoint within --stop-grace 5 s: stopping them at once" in out
    assert latest_complete(run_dir / "output")[0] is None and read_state(run_dir).state is State.FAILED
