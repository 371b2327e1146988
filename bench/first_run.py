"""A new user's first ten minutes, timed: set-up from a fresh clone, the demo, and the first and a repeated run of
`launch --dry-run`, `plan` and `validate`.

"First" runs in a new, empty cache folder (`FINETUNE_CACHE`), as on a machine that has just run `./setup.sh`
(DeepSpeed's CPU communication op, which the set-up builds, is linked in); "repeated" runs the same command again
in that folder. The user's own cache is never touched. Writes a markdown table.

    .venv/bin/python bench/first_run.py                  # demo, dry run, plan, validate (a few minutes)
    .venv/bin/python bench/first_run.py --setup          # also `git clone` + `./setup.sh` (10+ minutes)
    .venv/bin/python bench/first_run.py --quick          # dry run and plan only: what CI runs
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = "llamafactory/glm45-air_lora_4xh100"
DRY_RUN = ["launch", RECIPE, "--run-dir", "/tmp/finetune-first-run-never-written", "--dry-run"]
COMMANDS = {  # name -> (finetune arguments, in --quick)
    "launch --dry-run": (DRY_RUN, True),
    "plan": (["plan", RECIPE], True),
    "validate": (["validate", "swift/glm45-air_lora_4xh100"], False),
    "demo": (["demo", "--steps", "20"], False),
}


def timed(argv: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed ({proc.returncode}):\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return seconds


def fresh_cache(root: Path) -> Path:
    """An empty cache folder with the set-up's DeepSpeed build in it, as `./setup.sh` leaves a machine."""
    cache = root / "cache"
    cache.mkdir()
    built = Path(os.environ.get("FINETUNE_CACHE", REPO_ROOT / ".cache")) / "torch_extensions"
    if built.is_dir():
        (cache / "torch_extensions").symlink_to(built.resolve())
    return cache


def time_setup() -> float:
    with tempfile.TemporaryDirectory(prefix="finetune-first-run-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        return timed(["./setup.sh"], {"FINETUNE_CACHE": str(Path(tmp) / "cache")}, cwd=clone)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="also time `./setup.sh` in a fresh clone")
    parser.add_argument("--quick", action="store_true", help="only the commands that take seconds (for CI)")
    args = parser.parse_args()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.\n")
    print("| step | first s | repeated s |")
    print("|---|---|---|")
    if args.setup:
        print(f"| `./setup.sh` in a fresh clone | {time_setup():.0f} | |", flush=True)
    with tempfile.TemporaryDirectory(prefix="finetune-first-run-") as tmp:
        env = {"FINETUNE_CACHE": str(fresh_cache(Path(tmp))), "OMP_NUM_THREADS": "1"}
        for name, (command, quick) in COMMANDS.items():
            if args.quick and not quick:
                continue
            argv = [sys.executable, "-m", "finetune", *command]
            if name == "demo":
                argv += ["--runs-root", str(Path(tmp) / "runs")]
            first, repeated = timed(argv, env), timed(argv, env)
            print(f"| `finetune {name}` | {first:.1f} | {repeated:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
