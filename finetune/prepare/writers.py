"""The per-framework files, derived from the canonical rows.

Both frameworks get the conversation as GLM-4.5 renders it at serving time: assistant reasoning inline as
`<think>REASONING</think>` before the answer, and assistant text and reasoning without surrounding whitespace
(the official chat template strips both), so that a template that writes the text as given trains exactly the
tokens the model produces when served.

LLaMA-Factory (sharegpt formatting with role/content tags, one `dataset_info.json` entry per split):
  roles system / user / assistant / function_call / observation, strictly alternating as its converter demands;
  an assistant turn that calls tools is one `function_call` message whose content is the JSON list
  `[{"name": ..., "arguments": {...}}]`, after the reasoning and text when there are any, in which case the list
  sits in `<tool_call>...</tool_call>` (LLaMA-Factory's tool_call_words, which every template has);
  the results of parallel calls are one `observation`, joined the way LLaMA-Factory joins them;
  `tools` is JSON text ("" when the row has none); its sharegpt format trains every assistant turn, so a turn
  marked `"trained": false` is trained there (`check-format RECIPE --dataset NAME` shows it); preference rows
  keep the prompt in `messages` and one message each in `chosen` / `rejected` (its ranking format). RL prompts
  have no LLaMA-Factory form.
SWIFT (`messages` with roles system / user / assistant / tool_call / tool_response):
  an assistant turn that calls tools is the assistant message (its reasoning and text; `<think></think>` when
  it has neither, so ms-swift renders the empty think block GLM-4.5 writes) followed by one `tool_call` message
  per call, JSON `{"name": ..., "arguments": {...}}`; a turn marked `"trained": false` (context only) carries
  ms-swift's `"loss": false` on each of those messages; `tools` is always JSON text ("[]" when none); preference rows
  carry `rejected_messages` (prompt + rejected answer); RL rows keep their reference fields as columns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from finetune.prepare.jsonio import dumps, dumps_str
from finetune.prepare.layouts.messages import LF_RESULT_SEPARATOR
from finetune.prepare.manifest import OutputFile

LF_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def served_text(msg: dict[str, Any]) -> str:
    """An assistant message's reasoning and text as GLM-4.5 writes them: `<think>R</think>\\nTEXT`."""
    content = msg["content"].strip()
    reasoning = (msg.get("reasoning_content") or "").strip()
    if reasoning:
        return f"<think>{reasoning}</think>" + (f"\n{content}" if content else "")
    return content


def _call_list(msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in msg["tool_calls"]]


# -- LLaMA-Factory -----------------------------------------------------------------------------------------------


def _lf_assistant(msg: dict[str, Any]) -> dict[str, str]:
    text = served_text(msg)
    if not msg.get("tool_calls"):
        return {"role": "assistant", "content": text}
    calls = dumps_str(_call_list(msg))
    return {"role": "function_call", "content": f"{text}<tool_call>{calls}</tool_call>" if text else calls}


def lf_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    results: list[str] = []
    for msg in messages:
        role = msg["role"]
        if role == "tool":
            results.append(msg["content"])
            continue
        if results:
            out.append({"role": "observation", "content": LF_RESULT_SEPARATOR.join(results)})
            results = []
        out.append(_lf_assistant(msg) if role == "assistant" else {"role": role, "content": msg["content"]})
    if results:
        out.append({"role": "observation", "content": LF_RESULT_SEPARATOR.join(results)})
    return out


def llamafactory_row(row: dict[str, Any], kind: str) -> dict[str, Any] | None:
    if kind == "rl":
        return None
    out: dict[str, Any] = {"messages": lf_messages(row["messages"])}
    if kind == "preference":
        out["chosen"] = _lf_assistant(row["chosen"])
        out["rejected"] = _lf_assistant(row["rejected"])
    out["tools"] = dumps_str(row["tools"]) if row["tools"] else ""
    return out


def dataset_info_entry(file_name: str, kind: str) -> dict[str, Any]:
    """LLaMA-Factory's registry entry for one prepared split."""
    columns = {"messages": "messages", "tools": "tools"}
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if kind == "preference":
        entry["ranking"] = True
        columns.update(chosen="chosen", rejected="rejected")
    entry["columns"] = columns
    entry["tags"] = dict(LF_TAGS)
    return entry


# -- SWIFT --------------------------------------------------------------------------------------------------------


def swift_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for msg in messages:
        role = msg["role"]
        if role == "assistant":
            text = served_text(msg)
            calls = msg.get("tool_calls")
            untrained = {"loss": False} if msg.get("trained") is False else {}
            if calls:
                out.append({"role": "assistant", "content": text or "<think></think>", **untrained})
                out.extend({"role": "tool_call", "content": dumps_str(c), **untrained} for c in _call_list(msg))
            else:
                out.append({"role": "assistant", "content": text, **untrained})
        elif role == "tool":
            out.append({"role": "tool_response", "content": msg["content"]})
        else:
            out.append({"role": role, "content": msg["content"]})
    return out


def swift_row(row: dict[str, Any], kind: str) -> dict[str, Any]:
    prompt = swift_messages(row["messages"])
    if kind == "preference":
        out = {
            "messages": prompt + swift_messages([row["chosen"]]),
            "rejected_messages": prompt + swift_messages([row["rejected"]]),
        }
    else:
        out = {"messages": prompt}
    out["tools"] = dumps_str(row["tools"])
    if kind == "preference" and row["tools"]:
        # ms-swift reads the rejected side only from `rejected_*` keys once `rejected_messages` is given: without
        # this its rejected sequence is rendered without the tool declarations the chosen one has
        out["rejected_tools"] = out["tools"]
    if kind == "rl":
        for key, value in row.items():
            if key not in ("messages", "tools"):
                out[key] = value
    return out


# -- files ----------------------------------------------------------------------------------------------------------


class JsonlOut:
    """One output JSONL file: counts its rows and hashes its bytes as they are written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - written row by row until close()
        self.rows = 0
        self.bytes = 0
        self.sha = hashlib.sha256()

    def write(self, line: bytes) -> None:
        line += b"\n"
        self.file.write(line)
        self.sha.update(line)
        self.rows += 1
        self.bytes += len(line)

    def close(self) -> OutputFile:
        self.file.close()
        return OutputFile(self.rows, self.bytes, self.sha.hexdigest())


class DatasetFiles:
    """The canonical and per-framework files of one prepared dataset, written row by row."""

    def __init__(self, folder: Path, kind: str) -> None:
        self.folder = folder
        self.kind = kind
        self.files: dict[tuple[str, str], JsonlOut] = {}

    def _out(self, framework: str, split: str) -> JsonlOut:
        key = (framework, split)
        if key not in self.files:
            self.files[key] = JsonlOut(self.folder / framework / f"{split}.jsonl")
        return self.files[key]

    def write(self, split: str, canonical_line: bytes, row: dict[str, Any]) -> None:
        self._out("canonical", split).write(canonical_line)
        lf = llamafactory_row(row, self.kind)
        if lf is not None:
            self._out("llamafactory", split).write(dumps(lf))
        self._out("swift", split).write(dumps(swift_row(row, self.kind)))

    def close(self) -> dict[str, OutputFile]:
        """{"canonical/train.jsonl": OutputFile(rows, bytes, sha256), ...}"""
        return {f"{fw}/{split}.jsonl": f.close() for (fw, split), f in sorted(self.files.items())}
