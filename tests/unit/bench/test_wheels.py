"""The wheels the GPU run carries: bench/wheels.txt pins what requirements/ pins and fits the transfer limit,
and a framework environment made from a wheels folder finds its packages first."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from finetune.bench import envs, wheels
from finetune.errors import FinetuneError
from tests.conftest import REPO_ROOT


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.lower()] = version
    return found


def test_the_list_pins_what_requirements_pin():
    listed = wheels.read_list()
    assert {w.group for w in listed} == set(wheels.GROUPS)
    for group, file in (("llamafactory", "llamafactory.txt"), ("swift", "swift.txt")):
        required = pins(REPO_ROOT / "requirements" / file)
        ours = {w.name.lower(): w.version for w in listed if w.group in (group, "deepspeed")}
        shared = set(required) & set(ours)
        assert {"transformers", "peft", "trl", "datasets", "accelerate", "deepspeed"} <= shared, group
        assert {n: ours[n] for n in shared} == {n: required[n] for n in shared}, group
    launcher = {w.name.lower(): w.version for w in listed if w.group == "launcher"}
    assert launcher["pydantic"] == pins(REPO_ROOT / "requirements.txt")["pydantic"]


def test_the_listed_sizes_fit_the_transfer_limit_with_the_working_tree():
    sizes = {w.requirement: w.size or 0 for w in wheels.unique(wheels.read_list())}
    assert all(sizes.values()), "every wheel's size is listed"
    assert "of the 64 MiB" in wheels.check_fits(sizes, wheels.tree_bytes())
    with pytest.raises(FinetuneError, match=r"too much\. Largest: transformers==5\.19\.0"):
        wheels.check_fits(sizes, 40 * 2**20)


def test_a_bad_line_is_refused_with_its_number(tmp_path):
    path = tmp_path / "wheels.txt"
    path.write_text("# comment\nlauncher pydantic==2.12.3 100\nlauncher pydantic 100\n")
    with pytest.raises(FinetuneError, match=r"wheels.txt:3: expected"):
        wheels.read_list(path)
    path.write_text("web gradio==5.0 100\n")
    with pytest.raises(FinetuneError, match="group `web`"):
        wheels.read_list(path)


def test_wheel_files_are_matched_whatever_the_spelling():
    w = wheels.Wheel("swift", "ms-swift", "4.6.0", None)
    assert w.matches("ms_swift-4.6.0-py3-none-any.whl") and not w.matches("ms_swift-4.6.1-py3-none-any.whl")
    assert not wheels.Wheel("swift", "peft", "0.2", None).matches("peft-0.20.0-py3-none-any.whl")


def make_wheel(folder: Path, name: str, version: str, source: str) -> Path:
    """A minimal pure-Python wheel holding one module."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},sha256={digest(t)},{len(t.encode())}\n" for p, t in files.items()) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, t in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(p, t)
    return path


def test_an_environment_from_a_wheels_folder_finds_its_packages_first(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "benchprobe", "1.0", "WHERE = 'from the wheels folder'\n")
    listed = [wheels.Wheel("llamafactory", "benchprobe", "1.0", None)]
    root = tmp_path / "env"
    site = envs.site_dir(root, envs.python_tag(Path(sys.executable)))
    assert envs.install(Path(sys.executable), folder, ("llamafactory",), site, listed) == ["benchprobe==1.0"]
    python = envs.framework_env(root, Path(sys.executable), site)
    out = subprocess.run(
        [str(python), "-c", "import benchprobe, sys; print(benchprobe.WHERE); print(sys.path.index(sys.argv[1]))",
         str(REPO_ROOT)],
        cwd=tmp_path,  # not the repository: the wrapper puts it on the path (the trainers' entry modules live there)
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "from the wheels folder"
    assert envs.absent(Path(sys.executable), ("benchprobe", "json")) == ["benchprobe"]
    assert envs.absent(Path(sys.executable), ("benchprobe",), pythonpath=str(site)) == []
    torchrun = (root / "bin" / "torchrun").read_text()
    assert "-m torch.distributed.run" in torchrun and str(site) in torchrun
    with pytest.raises(FinetuneError, match="no wheel for other==2.0"):
        envs.install(Path(sys.executable), folder, ("swift",), site, [wheels.Wheel("swift", "other", "2.0", None)])
