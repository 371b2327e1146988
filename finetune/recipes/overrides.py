"""`--set key=value` overrides: numbers as Python reads them (`5e-5` too), anything else by YAML's rules
(`true`, `null`, `[a, b]`)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from finetune.errors import FinetuneError


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FinetuneError(f"--set {text!r}: expected KEY=VALUE, for example --set learning_rate=5e-5.")
    return key, _value(text, raw.strip())


def _value(text: str, raw: str) -> Any:
    for number in (int, float):
        try:
            return number(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise FinetuneError(f"--set {text!r}: the value is not valid YAML ({exc}).") from exc


def format_override(key: str, value: Any) -> str:
    """`key=value` as written after `--set`, so that it parses back to `value`."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"{key}={text}"


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Later `--set` of the same key wins, as on a command line."""
    return dict(parse_override(item) for item in items or [])


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with overrides applied; `null` removes a key (back to the framework default)."""
    merged = dict(config)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
