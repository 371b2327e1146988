"""Fast JSON for the hot loop (orjson), with the standard library as the fallback.

Preparing a million conversations parses and writes JSON four times per row; orjson makes that several times
faster. Both produce compact UTF-8 JSON with keys in their original order, so the outputs mean the same
whichever is installed.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is pinned in requirements.txt
    orjson = None


if orjson is not None:

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON; raises ValueError on values JSON cannot hold (NaN, lone surrogates)."""
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            # orjson refuses integers beyond 64 bits; the standard library writes them exactly
            try:
                return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError, UnicodeEncodeError):
                raise ValueError(str(exc)) from exc

else:  # pragma: no cover

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(value: Any) -> bytes:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, UnicodeEncodeError) as exc:
            raise ValueError(str(exc)) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def loads_standard(text: str) -> Any:
    """The standard library's parser without its NaN/Infinity extension (orjson and Arrow reject those)."""
    return json.loads(text, parse_constant=_reject_constant)


STANDARD_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def dumps_str(value: Any) -> str:
    """JSON text for a value stored inside a string field (tool lists, tool calls); both frameworks parse it."""
    return dumps(value).decode()
