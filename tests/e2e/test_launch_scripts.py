"""The cluster entry points in launch/: syntax, shellcheck, and the per-node commands they produce.

Slurm is played by fake `srun`/`scontrol` programs and ssh by a fake `ssh`; the launcher they call is a fake
interpreter that records its arguments, so the test sees exactly what every node would run.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune.recipes.recipe import resolve_recipe
from tests.conftest import REPO_ROOT

SCRIPTS = sorted([*(REPO_ROOT / "launch").rglob("*.sh"), *(REPO_ROOT / "launch").rglob("*.sbatch")])


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fakes(tmp_path):
    """A bin folder with fake srun, scontrol, ssh and a fake python that appends its argv to calls.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    _executable(bin_dir / "python", f'#!/usr/bin/env bash\necho "NODE_RANK=${{NODE_RANK:-}} $*" >> {calls}\n')
    _executable(
        bin_dir / "scontrol",
        f'#!/usr/bin/env bash\nif [ "$1" = show ]; then printf "gpu-a\\ngpu-b\\n"; '
        f'else echo "scontrol $*" >> {calls}; fi\n',
    )
    # srun: run the task once per node, as Slurm would, with that node's SLURM_NODEID
    _executable(
        bin_dir / "srun",
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
        'for ((n = 0; n < SLURM_NNODES; n++)); do SLURM_NODEID=$n "$@"; done\n',
    )
    # ssh HOST COMMAND: run COMMAND here
    _executable(bin_dir / "ssh", '#!/usr/bin/env bash\nwhile [[ "$1" == -o ]]; do shift 2; done\nshift\nbash -c "$*"\n')
    return bin_dir, calls


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    out = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("sbatch", ["1node.sbatch", "2node.sbatch"])
def test_sbatch_headers_use_no_shell_variables(sbatch):
    lines = (REPO_ROOT / "launch/slurm" / sbatch).read_text().splitlines()
    headers = [line for line in lines if line.startswith("#SBATCH")]
    assert headers and not any("$" in line for line in headers)
    assert "#SBATCH --requeue" in headers and any(line.startswith("#SBATCH --signal=B:USR1@") for line in headers)


def test_slurm_job_starts_one_launcher_per_node(fakes, tmp_path):
    bin_dir, calls = fakes
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "gpu-[a-b]",
        "SLURM_JOB_NAME": "glm45",
        "SLURM_SUBMIT_DIR": str(REPO_ROOT),
        "SLURM_GPUS_ON_NODE": "8",
        "FINETUNE_PYTHON": str(bin_dir / "python"),
        "FINETUNE_RUN_DIR": str(tmp_path / "run"),
    }
    out = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "launch/slurm/2node.sbatch"),
            "llamafactory/glm45_lora_16xh100",
            "--dataset",
            "mydata",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 2
    port = 20000 + 4242 % 20000
    for rank, line in enumerate(lines):
        assert line == (
            f"NODE_RANK= -m finetune launch llamafactory/glm45_lora_16xh100 --run-dir {tmp_path / 'run'} "
            f"--dataset mydata --nnodes 2 --nproc-per-node 8 --master-addr gpu-a --master-port {port} "
            f"--node-rank {rank}"
        )


def test_requeued_slurm_job_resumes_its_run(fakes, tmp_path):
    bin_dir, calls = fakes
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("stage: sft\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "7",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "gpu-a",
        "SLURM_SUBMIT_DIR": str(REPO_ROOT),
        "FINETUNE_PYTHON": str(bin_dir / "python"),
        "FINETUNE_RUN_DIR": str(run_dir),
    }
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "launch/slurm/1node.sbatch"), "llamafactory/glm45-air_lora_4xh100"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert calls.read_text().split()[1:6] == ["-m", "finetune", "launch", "--resume", str(run_dir)]


def test_hostfile_route_starts_every_host_with_its_rank(fakes, tmp_path):
    bin_dir, calls = fakes
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode-a slots=8\n\nnode-b slots=8\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FINETUNE_PYTHON": str(bin_dir / "python"),
        "MASTER_PORT": "29611",
    }
    out = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "launch/hostfile.sh"),
            str(hostfile),
            "llamafactory/glm45_lora_16xh100",
            "--run-dir",
            "/shared/runs/a",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = sorted(calls.read_text().splitlines())
    assert lines == [
        f"NODE_RANK={r} -m finetune launch llamafactory/glm45_lora_16xh100 --run-dir /shared/runs/a" for r in (0, 1)
    ]


def test_kubernetes_manifest_runs_one_launcher_per_pod():
    path = REPO_ROOT / "launch/k8s/glm45_lora_16xh100.pytorchjob.yaml"
    job = yaml.safe_load(path.read_text())
    assert job["kind"] == "PyTorchJob"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (
        specs["Master"]["replicas"] + specs["Worker"]["replicas"]
        == resolve_recipe("llamafactory/glm45_lora_16xh100").meta.nodes
    )
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    resolve_recipe(env["RECIPE"])  # names a real recipe
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    script = container["args"][0]
    assert "launch/node.sh" in script and 'NODE_RANK="$PET_NODE_RANK"' in script
