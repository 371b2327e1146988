"""The wheels a GPU measurement run carries to a machine that reaches no package index (`bench/wheels.txt`).

`build` fills a folder with them: downloaded for the target interpreter's Python and platform, DeepSpeed built
here as a pure-Python wheel whose ops compile on first use (`DS_BUILD_OPS=0`). Everything that travels has a
size limit, the working tree included, so the folder is checked against it and the largest wheels are named
when it does not fit. `bench/build_wheels.sh` is the command; `finetune.bench.envs` installs from the folder.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT

LIST = REPO_ROOT / "bench" / "wheels.txt"
GROUPS = ("launcher", "deepspeed", "llamafactory", "swift")
LIMIT_MIB = 64  # what may travel to the GPU machine, the working tree included
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
BUILT_HERE = {"deepspeed"}  # no wheel on the index: built from its source distribution


@dataclass(frozen=True)
class Wheel:
    group: str
    name: str
    version: str
    size: int | None  # bytes on the index, where known

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def matches(self, filename: str) -> bool:
        """Whether a wheel file is this one (wheel names spell `-` and `.` as `_`)."""
        stem = re.sub(r"[-_.]+", "_", self.name).lower()
        return filename.lower().startswith(f"{stem}-{self.version}-") and filename.endswith(".whl")


def read_list(path: Path = LIST) -> list[Wheel]:
    """The wheel list: `group name==version bytes why`, one a line; `#` starts a comment."""
    wheels = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 3 or "==" not in fields[1]:
            raise FinetuneError(f"{path}:{n}: expected `group name==version bytes [why]`, got `{line.strip()}`.")
        group, requirement, size = fields[0], fields[1], fields[2]
        if group not in GROUPS:
            raise FinetuneError(f"{path}:{n}: group `{group}`: one of {', '.join(GROUPS)}.")
        if size != "-" and not size.isdigit():
            raise FinetuneError(f"{path}:{n}: size `{size}`: bytes, or `-` when unknown.")
        name, version = requirement.split("==", 1)
        wheels.append(Wheel(group, name, version, None if size == "-" else int(size)))
    return wheels


def requirements(wheels: list[Wheel], groups: tuple[str, ...]) -> list[str]:
    """The requirements of `groups`, each once, in list order."""
    return list(dict.fromkeys(w.requirement for w in wheels if w.group in groups))


def unique(wheels: list[Wheel]) -> list[Wheel]:
    seen: dict[str, Wheel] = {}
    for w in wheels:
        seen.setdefault(w.requirement, w)
    return list(seen.values())


def tree_bytes(root: Path = REPO_ROOT) -> int:
    """Bytes of the working tree that travels: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum((root / f).stat().st_size for f in set(out.split("\0")) if f and (root / f).is_file())


def _fetch(wheel: Wheel, dest: Path, python_version: str) -> None:
    pip = [sys.executable, "-m", "pip"]
    if wheel.name in BUILT_HERE:
        env = os.environ | {"DS_BUILD_OPS": "0"}
        command = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), wheel.requirement]
    else:
        env = None
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        command = [
            *(*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(dest)),
            *("--python-version", python_version, "--implementation", "cp", *platforms, wheel.requirement),
        ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise FinetuneError(f"{wheel.requirement}: {' '.join(command[2:4])} failed:\n{proc.stderr[-2000:]}")


def find(wheel: Wheel, folder: Path) -> Path | None:
    found = sorted(p for p in Path(folder).glob("*.whl") if wheel.matches(p.name))
    return found[0] if found else None


def build(wheels: list[Wheel], dest: Path, *, python_version: str = "3.12", log=print) -> dict[str, int]:
    """Every listed wheel in `dest` (those already there are kept); their sizes in bytes by requirement."""
    dest.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for wheel in unique(wheels):
        path = find(wheel, dest)
        if path is None:
            log(f"fetching {wheel.requirement}")
            _fetch(wheel, dest, python_version)
            path = find(wheel, dest)
            if path is None:
                raise FinetuneError(f"{wheel.requirement}: pip finished but left no matching wheel in {dest}.")
        sizes[wheel.requirement] = path.stat().st_size
    return sizes


def check_fits(sizes: dict[str, int], tree: int, limit_mib: float = LIMIT_MIB) -> str:
    """A one-line verdict; raises when wheels and working tree together exceed the limit."""
    total = sum(sizes.values())
    limit = int(limit_mib * 2**20)
    line = (
        f"{len(sizes)} wheels, {total / 2**20:.1f} MiB; with the working tree ({tree / 2**20:.1f} MiB) "
        f"{(total + tree) / 2**20:.1f} MiB of the {limit_mib:g} MiB that may travel"
    )
    if total + tree > limit:
        largest = ", ".join(f"{r} {b / 2**20:.1f} MiB" for r, b in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        raise FinetuneError(f"{line}: too much. Largest: {largest}; drop a group from bench/wheels.txt.")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/build_wheels.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "wheels", help="default: bench/wheels")
    parser.add_argument("--list", type=Path, default=LIST, help="default: bench/wheels.txt")
    parser.add_argument("--python-version", default="3.12", help="the target interpreter's (default 3.12)")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help=f"default {LIMIT_MIB}")
    args = parser.parse_args(argv)
    try:
        sizes = build(read_list(args.list), args.out, python_version=args.python_version)
        for requirement, size in sizes.items():
            print(f"{size:>10}  {requirement}")
        print(check_fits(sizes, tree_bytes(), args.limit_mib))
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
