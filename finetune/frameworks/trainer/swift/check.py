"""Runs inside the ms-swift environment: checks configs with ms-swift's own argument classes.

Reads [{"command": "sft" | "rlhf" | "megatron-sft" | "megatron-rlhf", "config": {...}}, ...] on stdin (several
configs, one slow import) and prints one JSON line, a list with one verdict per config.

`sft` and `rlhf` configs go through the HfArgumentParser that `swift sft|rlhf` builds, fed by ms-swift's own
YAML-to-flags reader, so types and choices are checked as a real launch checks them (without running the
classes' set-up, which loads models and creates folders). Megatron-SWIFT's argument classes cannot be imported
without a GPU stack (megatron-core pulls in transformer_engine), so for `megatron-*` the names and simple types
are read from the installed ms-swift's source. Prints one JSON line.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import io
import json
import sys
import tempfile
from pathlib import Path

from finetune.frameworks.trainer.deepspeed_check import check_deepspeed_file

_SIMPLE_TYPES = {
    t: kind
    for kind in (int, float)
    for t in (kind.__name__, f"Optional[{kind.__name__}]", f"typing.Optional[{kind.__name__}]", str(kind))
}


def _flags(config: dict) -> list[str]:
    from swift.cli.main import parse_yaml_args

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(config, f)  # JSON is YAML
    argv = [f.name]
    parse_yaml_args(argv)
    Path(f.name).unlink()
    return argv


def _check_hf_arguments(cls, command: str, config: dict) -> tuple[list[str], list[str], list[str]]:
    from transformers import HfArgumentParser

    valid = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    unknown = [key for key in config if key not in valid]
    errors = []
    if not unknown:
        parser = HfArgumentParser([cls])
        parser.prog = f"ms-swift {command}"
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_known_args(_flags(config))
        except SystemExit:
            errors.append(err.getvalue().strip().splitlines()[-1])
    return valid, unknown, errors


def _megatron_fields(class_name: str) -> dict[str, str]:
    """Field name -> annotation of a Megatron-SWIFT argument class, read from the installed sources."""
    spec = importlib.util.find_spec("swift")
    root = Path(spec.submodule_search_locations[0]) / "megatron" / "arguments"
    classes: dict[str, tuple[list[str], dict[str, str]]] = {}
    for file in sorted(root.glob("*.py")):
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                fields = {
                    stmt.target.id: ast.unparse(stmt.annotation)
                    for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                }
                classes[node.name] = (bases, fields)

    def collect(name: str) -> dict[str, str]:
        if name in classes:
            bases, own = classes[name]
            merged: dict[str, str] = {}
            for base in reversed(bases):
                merged |= collect(base)
            return merged | own
        import swift.arguments

        cls = getattr(swift.arguments, name, None)
        if cls is not None and dataclasses.is_dataclass(cls):
            return {f.name: str(f.type) for f in dataclasses.fields(cls) if f.init}
        return {}

    if class_name not in classes:
        raise SystemExit(f"ms-swift has no {class_name} in {root}")
    return collect(class_name)


def _check_megatron(class_name: str, config: dict) -> tuple[list[str], list[str], list[str]]:
    fields = _megatron_fields(class_name)
    unknown = [key for key in config if key not in fields]
    errors = []
    for key, value in config.items():
        kind = _SIMPLE_TYPES.get(fields.get(key, ""))
        if kind is not None and value is not None and not isinstance(value, bool):
            try:
                kind(value)
            except (TypeError, ValueError):
                errors.append(f"argument --{key}: invalid {kind.__name__} value: {value!r}")
    return sorted(fields), unknown, errors


def check(command: str, config: dict) -> dict:
    if command in ("sft", "rlhf"):
        from swift.arguments import RLHFArguments, SftArguments

        cls = SftArguments if command == "sft" else RLHFArguments
        valid, unknown, errors = _check_hf_arguments(cls, command, config)
    elif command in ("megatron-sft", "megatron-rlhf"):
        name = "MegatronSftArguments" if command == "megatron-sft" else "MegatronRLHFArguments"
        valid, unknown, errors = _check_megatron(name, config)
    else:
        raise SystemExit(f"unknown ms-swift command {command!r}")
    micro = config.get("per_device_train_batch_size", config.get("micro_batch_size", 1))
    errors.extend(
        check_deepspeed_file(config.get("deepspeed"), int(micro), int(config.get("gradient_accumulation_steps", 1)))
    )
    return {"unknown_keys": unknown, "errors": errors, "valid_keys": valid, "warnings": []}


def main() -> None:
    request = json.loads(sys.stdin.read())
    with contextlib.redirect_stdout(sys.stderr):
        verdicts = [check(item["command"], item["config"]) for item in request]
    print(json.dumps(verdicts))


if __name__ == "__main__":
    main()
