"""Interpreters for the measurement run's steps, made from one given interpreter and a folder of wheels.

The GPU machine has one Python with a CUDA torch and no package index. Every step runs with that interpreter;
what a step needs beyond it is installed from the wheels folder into a folder of its own (pip `--target`), put
first on PYTHONPATH, so the framework steps' pinned transformers / datasets / trl shadow the interpreter's without
touching it and without clashing with each other. A framework gets an environment folder the launcher can use
(`FINETUNE_<NAME>_PYTHON`): `bin/python` and `bin/torchrun` run the given interpreter with that PYTHONPATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from finetune.bench import wheels as wheel_list
from finetune.bench.wheels import Wheel
from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT

LAUNCHER_MODULES = ("pydantic",)  # what every `finetune bench` step imports beyond a CUDA PyTorch interpreter
FRAMEWORK_MODULES = {
    "llamafactory": ("llamafactory", "trl", "datasets", "deepspeed"),
    "swift": ("swift", "modelscope", "trl", "datasets", "deepspeed"),
}
FRAMEWORK_GROUPS = {name: ("launcher", "deepspeed", name) for name in FRAMEWORK_MODULES}
FRAMEWORK_ENV_DIRS = {"llamafactory": ".venv", "swift": ".venvs/swift"}  # ./setup.sh's environments


def interpreter(python: str) -> Path:
    """`python` as an absolute path, found on PATH if need be; not resolved through links (a virtual
    environment's interpreter is a link, and only its own path finds its packages)."""
    found = shutil.which(python)
    if found is None:
        raise FinetuneError(f"PY={python}: no such interpreter.")
    return Path(os.path.abspath(found))


def absent(python: Path, modules: tuple[str, ...], pythonpath: str | None = None) -> list[str]:
    """The modules `python` cannot find (with `pythonpath` put first)."""
    code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    env = os.environ.copy()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [str(python), "-c", code, *modules], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False
    )
    if proc.returncode != 0:
        raise FinetuneError(f"{python} could not be asked what it has:\n{proc.stderr[-1000:]}")
    return proc.stdout.split()


def python_tag(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def install(
    python: Path, wheels_dir: Path, groups: tuple[str, ...], site: Path, listed: list[Wheel] | None = None
) -> list[str]:
    """Install `groups` of the wheel list (default bench/wheels.txt) from `wheels_dir` into `site`, without the
    index and without dependencies: the list names every package itself. Returns the requirements installed."""
    listed = wheel_list.read_list() if listed is None else listed
    wanted = [w for w in wheel_list.unique(listed) if w.group in groups]
    missing = [w.requirement for w in wanted if wheel_list.find(w, wheels_dir) is None]
    if missing:
        raise FinetuneError(
            f"--wheels {wheels_dir}: no wheel for {', '.join(missing)}; build the folder with bench/build_wheels.sh."
        )
    site.mkdir(parents=True, exist_ok=True)
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    command += ["--disable-pip-version-check", "--find-links", str(wheels_dir), "--target", str(site)]
    proc = subprocess.run([*command, *(w.requirement for w in wanted)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FinetuneError(f"installing {', '.join(groups)} from {wheels_dir} failed:\n{proc.stderr[-2000:]}")
    return [w.requirement for w in wanted]


@dataclass(frozen=True)
class StepEnv:
    """What a step's child process gets: PYTHONPATH first entries, and framework interpreters to point at."""

    pythonpath: tuple[Path, ...] = ()
    framework_python: Path | None = None

    def environ(self, framework: str | None = None) -> dict[str, str]:
        env = os.environ.copy()
        if self.pythonpath:
            rest = env.get("PYTHONPATH")
            env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in self.pythonpath), *([rest] if rest else [])])
        if framework and self.framework_python:
            env[f"FINETUNE_{framework.upper()}_PYTHON"] = str(self.framework_python)
        return env


def framework_env(root: Path, python: Path, site: Path) -> Path:
    """An environment folder for the launcher: `root/bin/python` and `root/bin/torchrun` run `python` with `site`
    (and this repository) first on PYTHONPATH; `site` should be `root/lib/pythonX.Y/site-packages`."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = f"{shlex.quote(str(site))}:{shlex.quote(str(REPO_ROOT))}"
    for name, tail in (("python", ""), ("torchrun", " -m torch.distributed.run")):
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\nPYTHONPATH={path}${{PYTHONPATH:+:$PYTHONPATH}} exec {shlex.quote(str(python))}{tail} "$@"\n'
        )
        script.chmod(0o755)
    return bin_dir / "python"


def framework_python(framework: str, python: Path) -> Path:
    """The interpreter a framework step would use without a wheels folder: `FINETUNE_<NAME>_PYTHON`, else
    ./setup.sh's environment where it exists, else `python` itself."""
    override = os.environ.get(f"FINETUNE_{framework.upper()}_PYTHON")
    if override:
        return Path(override)
    own = REPO_ROOT / FRAMEWORK_ENV_DIRS[framework] / "bin" / "python"
    return own if own.exists() else python


def site_dir(root: Path, tag: str) -> Path:
    return root / "lib" / f"python{tag}" / "site-packages"
