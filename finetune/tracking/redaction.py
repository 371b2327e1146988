"""Keeping secrets out of everything a launch writes: configs, manifests, launch records, logs, wandb config.

Two rules, applied by the one function `redact` (and its text and stream forms):
  - a key whose name says it holds a secret keeps the key but loses its string value: the name's last part
    (split at `_`, `-`, `.` and camelCase) is, or ends with, TOKEN, KEY, SECRET, PASSWORD or PASSWD, so
    `hub_token`, `WANDB_API_KEY`, `MY_SECRET`, `DB_PASSWORD`, `apiKey` are secret-named while `max_new_tokens`,
    `TOKENIZERS_PARALLELISM` and `SSH_KEY_PATH` are not;
  - the value of every secret-named environment variable (8 characters or longer) is masked wherever it appears
    in any string, so a token that reached a command line, a URL or a log line is masked too.
The last part alone decides, because the words also name ordinary settings (`moe_token_dispatcher_type`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD")
MASK = "<redacted>"
MIN_SECRET_LEN = 8  # shorter values (`1`, `true`, `offline`) are settings, and masking them would garble text

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """Whether a key or environment variable named `name` holds a secret (see the module docstring)."""
    words = [w for w in _WORD_SPLIT.split(str(name)) if w]
    return bool(words) and words[-1].upper().endswith(SECRET_WORDS)


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret-named variables of the environment, longest first (so a longer one masks whole)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    for secret in environment_secrets() if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text


def redact(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of `value` (dicts, lists, strings, scalars) with secrets masked; the one gate every writer uses."""
    found = environment_secrets() if secrets is None else list(secrets)
    return _redact(value, found)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if is_secret_name(str(key)) and isinstance(item, str) and item:
                out[key] = MASK
            else:
                out[key] = _redact(item, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(item, secrets) for item in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def secrets_in(value: Any, secrets: Iterable[str] | None = None) -> list[str]:
    """Where `value` holds a secret, as `key.path` strings (empty: nothing to mask)."""
    found = environment_secrets() if secrets is None else list(secrets)
    places: list[str] = []

    def walk(item: Any, path: str) -> None:
        if isinstance(item, Mapping):
            for key, sub in item.items():
                where = f"{path}.{key}" if path else str(key)
                if is_secret_name(str(key)) and isinstance(sub, str) and sub:
                    places.append(where)
                else:
                    walk(sub, where)
        elif isinstance(item, (list, tuple)):
            for i, sub in enumerate(item):
                walk(sub, f"{path}[{i}]")
        elif isinstance(item, str) and any(s in item for s in found):
            places.append(path or "(value)")

    walk(value, "")
    return places


def mask_stream(chunks: Iterable[bytes], secrets: Iterable[str] | None = None) -> Iterator[bytes]:
    """Chunks of a byte stream with environment secrets masked, also across chunk boundaries.

    A chunk's tail that could be the start of a secret is held back until the next chunk decides it (a few
    bytes, only when the tail matches), and is let out at the end of the stream.
    """
    patterns = [s.encode() for s in (environment_secrets() if secrets is None else secrets)]
    if not patterns:
        yield from chunks
        return
    mask = MASK.encode()
    held = b""
    for chunk in chunks:
        data = held + chunk
        for pattern in patterns:
            data = data.replace(pattern, mask)
        keep = _partial_secret_tail(data, patterns)
        held = data[len(data) - keep :] if keep else b""
        out = data[: len(data) - keep]
        if out:
            yield out
    if held:
        yield held


def _partial_secret_tail(data: bytes, patterns: list[bytes]) -> int:
    """Length of the longest tail of `data` that is a proper prefix of a secret."""
    longest = 0
    for pattern in patterns:
        for n in range(min(len(pattern) - 1, len(data)), longest, -1):
            if data.endswith(pattern[:n]):
                longest = n
                break
    return longest
