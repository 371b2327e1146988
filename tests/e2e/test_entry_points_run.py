"""The cluster entry points in launch/ run for real: the real launcher and torchrun train the replica beneath them.

Slurm is played by a fake `srun` that starts each node's task on this machine at once (as Slurm starts them on
their nodes) and a fake `scontrol` that names the nodes and records `requeue`; ssh by a fake that runs the remote
command here. Everything below them is the project's own: job.sh, hostfile.sh, node.sh, `finetune launch`,
torchrun and LLaMA-Factory. USR1 to the batch script (what `--signal=B:USR1@...` sends before the time limit)
must leave a complete checkpoint and a requeue; the requeued job resumes and finishes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from finetune.frameworks import get_framework
from finetune.launch.checkpoints import latest_complete
from finetune.launch.run_state import State, read_state
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import REPO_ROOT, run_cli
from tests.helpers.nodes import Node, free_port
from tests.helpers.precheck import precheck

pytestmark = pytest.mark.train
RECIPE = "llamafactory/glm45-air_lora_4xh100"
K8S_MANIFEST = REPO_ROOT / "launch/k8s/glm45_lora_16xh100.pytorchjob.yaml"
K8S_STEPS = 12
SLURM_STEPS = 12
HOSTFILE_STEPS = 6


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _shrunk(replica: Path, steps: int, recipe_id: str = RECIPE, **extra) -> list[str]:
    """The recipe on the replica for `steps` steps; plain data parallel unless `deepspeed="recipe"`."""
    recipe = resolve_recipe(recipe_id)
    overrides = get_framework("llamafactory").cpu_smoke_overrides(steps, recipe.meta) | {"deepspeed": None} | extra
    overrides = {k: v for k, v in overrides.items() if v != "recipe"}
    return ["--model", str(replica), *(a for k, v in overrides.items() for a in ("--set", format_override(k, v)))]


# The recipe's own ZeRO-3, as on the cluster; only the stop request saves mid-run
SLURM_EXTRA = {"save_steps": 1000, "deepspeed": "recipe"}


@pytest.fixture(scope="module", autouse=True)
def _checked_together(air_replica, tmp_path_factory):
    """The launches below through LLaMA-Factory's parser at once (tests/helpers/precheck.py)."""
    run = tmp_path_factory.mktemp("precheck") / "run"
    precheck(
        [
            [RECIPE, "--run-dir", str(run), *_shrunk(air_replica, SLURM_STEPS, **SLURM_EXTRA)],
            [RECIPE, "--run-dir", str(run), *_shrunk(air_replica, HOSTFILE_STEPS)],
            [RECIPE, "--run-dir", str(run), *_shrunk(air_replica, HOSTFILE_STEPS, per_device_train_batch_size=2)],
            [_k8s_recipe(), "--run-dir", str(run), *_shrunk(air_replica, K8S_STEPS, _k8s_recipe(), **SLURM_EXTRA)],
        ]
    )


@pytest.fixture
def fakes(tmp_path):
    """srun, scontrol and ssh that act on this machine; `calls.txt` records what scontrol was asked to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    _executable(
        bin_dir / "scontrol",
        '#!/usr/bin/env bash\nif [ "$1" = show ]; then printf "127.0.0.1\\n127.0.0.1\\n"; '
        f'else echo "scontrol $*" >> {calls}; fi\n',
    )
    # srun: every node's task at once, each with its SLURM_NODEID and its --output file (%j job id, %n node)
    _executable(
        bin_dir / "srun",
        "#!/usr/bin/env bash\n"
        'output=/dev/null\nwhile [[ "$1" == --* ]]; do case "$1" in --output=*) output=${1#--output=} ;; esac; '
        "shift; done\n"
        "pids=()\n"
        "for ((n = 0; n < SLURM_NNODES; n++)); do\n"
        "  file=${output//%j/$SLURM_JOB_ID}; file=${file//%n/$n}\n"
        '  SLURM_NODEID=$n "$@" > "$file" 2>&1 &\n'
        "  pids+=($!)\n"
        "done\n"
        "status=0\n"
        'for pid in "${pids[@]}"; do wait "$pid" || status=$?; done\n'
        'exit "$status"\n',
    )
    _executable(bin_dir / "ssh", '#!/usr/bin/env bash\nwhile [[ "$1" == -o ]]; do shift 2; done\nshift\nbash -c "$*"\n')
    return bin_dir, calls


def _slurm_env(bin_dir: Path, run_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node-[0-1]",
        "SLURM_JOB_NAME": "glm45",
        "SLURM_SUBMIT_DIR": str(REPO_ROOT),
        "SLURM_GPUS_ON_NODE": "1",
        "FINETUNE_RUN_DIR": str(run_dir),
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def _trained_steps(run_dir: Path) -> int:
    return json.loads((run_dir / "output" / "trainer_state.json").read_text())["global_step"]


def test_slurm_job_trains_on_every_node_and_usr1_checkpoints_then_requeues(fakes, tmp_path, air_replica):
    bin_dir, calls = fakes
    run_dir = tmp_path / "run"
    sbatch = [str(REPO_ROOT / "launch/slurm/2node.sbatch")]
    job = subprocess.Popen(
        ["bash", *sbatch, RECIPE, *_shrunk(air_replica, SLURM_STEPS, **SLURM_EXTRA)],
        env=_slurm_env(bin_dir, run_dir, free_port()),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = run_dir / "logs" / "node0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):  # the nodes are training (rank 0 logs)
        assert time.monotonic() < deadline and job.poll() is None, job.communicate()[0][-3000:]
        time.sleep(0.5)
    job.send_signal(signal.SIGUSR1)  # Slurm's pre-timeout signal, to the batch shell only (B:)
    out = job.communicate(timeout=240)[0]
    assert job.returncode == 0, out[-3000:]  # the job was requeued: it goes on
    assert "USR1 from Slurm" in out and "requeueing job 4242 to resume it" in out
    assert calls.read_text().splitlines() == ["scontrol requeue 4242"]
    assert read_state(run_dir).state is State.STOPPED
    for rank in (0, 1):  # each node's launcher ran for real, under its own rank
        node_log = (run_dir / "logs" / f"node{rank}.log").read_text()
        assert f"Process rank: {rank}, world size: 2" in node_log  # LLaMA-Factory's own line
    assert "stop requested: saving checkpoint-" in (run_dir / "logs" / "node0.log").read_text()
    checkpoint, skipped = latest_complete(run_dir / "output")
    assert checkpoint is not None and not skipped
    stopped_at = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 0 < stopped_at < SLURM_STEPS

    requeued = subprocess.run(  # the requeued job: same job id, same run directory
        ["bash", *sbatch, RECIPE],
        env=_slurm_env(bin_dir, run_dir, free_port()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert requeued.returncode == 0, requeued.stdout[-3000:] + requeued.stderr[-3000:]
    assert f"resuming from {checkpoint}" in (run_dir / "logs" / "slurm-4242-node0.out").read_text()
    assert _trained_steps(run_dir) == SLURM_STEPS
    assert calls.read_text().splitlines() == ["scontrol requeue 4242"]  # a finished job is not requeued
    state = read_state(run_dir)
    assert (state.state, state.step, state.attempt) == (State.FINISHED, SLURM_STEPS, 1)
    again = run_cli("launch", "--resume", str(run_dir), "--dry-run")  # a finished run is not trained past its end
    assert again.returncode == 2 and f"the run finished at step {SLURM_STEPS}" in again.stderr


def _losses(run_dir: Path) -> list[float]:
    rows = map(json.loads, (run_dir / "output" / "trainer_log.jsonl").read_text().splitlines())
    return [r["loss"] for r in rows if "loss" in r]


def test_hostfile_launch_trains_on_every_host_like_one_process(fakes, tmp_path, air_replica):
    """Two hosts of one process each see the same global batch as one process with twice the batch: the same
    losses, step by step."""
    bin_dir, _ = fakes
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes, one process each\n127.0.0.1 slots=1\n\nlocalhost slots=1\n")
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "launch/hostfile.sh"), str(hostfile), RECIPE, "--run-dir", str(run_dir)]
        + _shrunk(air_replica, HOSTFILE_STEPS),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    host_logs = {h: (tmp_path / "logs" / f"{h}.out").read_text() for h in ("127.0.0.1", "localhost")}
    assert out.returncode == 0, out.stderr + "".join(text[-2000:] for text in host_logs.values())
    for rank in (0, 1):  # LLaMA-Factory's own line, in each node's log
        assert f"Process rank: {rank}, world size: 2" in (run_dir / "logs" / f"node{rank}.log").read_text()
    assert "all 2 nodes joined with the same config" in host_logs["localhost"]
    assert {p.name for p in run_dir.glob("launch-node*.json")} == {"launch-node0.json", "launch-node1.json"}

    single = tmp_path / "single"
    one = ["--nnodes", "1", "--nproc-per-node", "1", "--master-port", str(free_port())]
    out = run_cli(
        "launch",
        RECIPE,
        "--run-dir",
        str(single),
        *one,
        *_shrunk(air_replica, HOSTFILE_STEPS, per_device_train_batch_size=2),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert len(_losses(run_dir)) == HOSTFILE_STEPS
    assert _losses(run_dir) == pytest.approx(_losses(single), abs=1e-3)


def _pod() -> tuple[str, dict[str, str]]:
    """The pod command of the Kubernetes manifest, and the environment the manifest gives it."""
    container = yaml.safe_load(K8S_MANIFEST.read_text())["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    container = container["spec"]["containers"][0]
    return container["args"][0], {e["name"]: e["value"] for e in container["env"]}


def _k8s_recipe() -> str:
    return _pod()[1]["RECIPE"]


def _start_pods(run_dir: Path, port: int, replica: Path) -> list[Node]:
    """Both pods of the job as the training operator starts them: the manifest's command, its env, PET_* set."""
    script, env = _pod()
    extra = ["--model", str(replica), *_shrunk(replica, K8S_STEPS, _k8s_recipe(), **SLURM_EXTRA)]
    assert not any(" " in a for a in extra)  # FINETUNE_ARGS is split on spaces, as in the pod
    pods = []
    for rank in (0, 1):
        pod_env = {
            **os.environ,
            **env,
            "PET_NNODES": "2",
            "PET_NODE_RANK": str(rank),
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(port),
            "NPROC_PER_NODE": "1",
            "RUN_DIR": str(run_dir),
            "FINETUNE_ARGS": " ".join(extra),
            "OMP_NUM_THREADS": "1",
        }
        pods.append(Node(["bash", "-c", script], cwd=REPO_ROOT, env=pod_env, start_new_session=True))
    return pods


def test_kubernetes_pods_restarted_after_sigterm_resume_and_a_finished_run_stays_finished(tmp_path, air_replica):
    """The manifest's pod command, twice and a third time against the same run directory, as restartPolicy
    OnFailure reruns it: SIGTERM to each pod (eviction) stops the run with a checkpoint (75, a failure, so the pods
    restart), the restarted pods resume it to its last step, and pods restarted after that do nothing."""
    run_dir = tmp_path / "k8s-run"
    pods = _start_pods(run_dir, free_port(), air_replica)
    log = run_dir / "logs" / "node0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert time.monotonic() < deadline and all(p.poll() is None for p in pods), pods[0].output()[-3000:]
        time.sleep(0.5)
    for pod in pods:
        pod.send_signal(signal.SIGTERM)  # the kubelet signals the container's first process
    ended = [(pod.wait(timeout=240), pod.output()) for pod in pods]
    assert [code for code, _ in ended] == [75, 75], ended[0][1][-3000:] + ended[1][1][-3000:]
    checkpoint, _ = latest_complete(run_dir / "output")
    assert checkpoint is not None and read_state(run_dir).state is State.STOPPED

    restarted = _start_pods(run_dir, free_port(), air_replica)
    outs = [(pod.wait(timeout=600), pod.output()) for pod in restarted]
    assert [code for code, _ in outs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert all("resuming it" in out for _, out in outs) and f"resuming from {checkpoint}" in outs[0][1]
    assert _trained_steps(run_dir) == K8S_STEPS and read_state(run_dir).state is State.FINISHED

    again = _start_pods(run_dir, free_port(), air_replica)
    outs = [(pod.wait(timeout=120), pod.output()) for pod in again]
    assert [code for code, _ in outs] == [0, 0] and all("holds a finished run" in out for _, out in outs)
    assert not (run_dir / "launch-node0.attempt2.json").exists()  # nothing launched a third time
