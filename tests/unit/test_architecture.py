"""The package's shape: no import cycles (module-level or inside functions), a small top level, cheap start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "finetune"
TOP_LEVEL_ALLOWED = {"__init__.py", "__main__.py", "catalog.py", "errors.py", "paths.py"}
HEAVY = ("torch", "transformers", "peft", "datasets", "deepspeed")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every finetune module `path` imports, at module level or inside a function (a hidden import counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if not name.startswith("finetune"):
                continue
            while name and name not in modules:  # `from pkg import name` names a module or an attribute
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _importing_a_module_runs_its_packages(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        running = _importing_a_module_runs_its_packages(name)  # already being imported when `name` runs
        targets = set()
        for target in _imports(path, modules):  # named explicitly: an edge even to one's own package
            targets |= {target} | (_importing_a_module_runs_its_packages(target) - running)
        graph[name] = targets - {name, "finetune"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_inside_functions():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_detection_sees_an_import_inside_a_function():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(graph) == [["a", "b"]]


def test_top_level_holds_only_the_small_shared_modules():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL_ALLOWED, f"move into a package: {sorted(top - TOP_LEVEL_ALLOWED)}"


def _imported_by(*argv: str) -> set[str]:
    code = (
        "import sys, runpy; sys.argv = ['finetune', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('finetune', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('\\nMODULES', ' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    line = [line for line in out.stdout.splitlines() if line.startswith("MODULES ")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return {name.split(".")[0] for name in line[-1].split()[1:]}


def test_help_and_plan_import_no_heavy_library():
    for argv in (["--help"], ["plan", "swift/glm45_lora_16xh100"], ["plan", "llamafactory/glm45-air_lora_4xh100"]):
        heavy = _imported_by(*argv) & set(HEAVY)
        assert not heavy, f"`finetune {' '.join(argv)}` imported {sorted(heavy)}"


def test_ruff_owns_the_layout_and_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    assert ruff.is_file(), f"{ruff} is missing: ./setup.sh installs ruff (requirements.txt)"
    for argv in (["check", "."], ["format", "--check", "."]):
        out = subprocess.run([str(ruff), *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"ruff {' '.join(argv)}:\n{out.stdout[-3000:]}{out.stderr[-1000:]}"
    markers = [str(p.relative_to(REPO_ROOT)) for p in PACKAGE.rglob("*.py") if "# fmt: skip" in p.read_text()]
    assert not markers, f"`ruff format` owns the layout; remove the `# fmt: skip` markers in {markers}"
