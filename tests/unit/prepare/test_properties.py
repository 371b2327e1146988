"""Property-based tests of conversion: no message, tool call or reasoning text is lost or altered.

Hypothesis generates conversations with system prompts, several exchanges, parallel tool calls with nested
JSON arguments, tool results and reasoning, over text full of JSON and tag-like characters. Each is written in
the layouts users bring (OpenAI with every common encoding, ShareGPT with LLaMA-Factory's function_call /
observation turns) and converted: the canonical row must equal the conversation exactly. The framework files
written from the canonical row must read back to the same conversation, up to the whitespace around assistant
text that GLM-4.5's template strips.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.prepare.layouts.base import ConvertOptions
from finetune.prepare.layouts.convert import RowConverter
from finetune.prepare.layouts.messages import LF_RESULT_SEPARATOR
from finetune.prepare.validate import validate_row
from finetune.prepare.writers import llamafactory_row, swift_row

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORBIDDEN = ("<think>", "</think>", "<tool_call>", "</tool_call>", "</tool_response>")

chars = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    st.sampled_from(list('<>/{}[]":,\\\n\t ') + ["think", "tool_call", "é", "世界", "🤖"]),
)
text = st.lists(chars, max_size=30).map("".join).filter(lambda s: not any(f in s for f in FORBIDDEN))
words = text.filter(lambda s: s.strip() != "")
names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def conversations(draw):
    tool_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in tool_names]
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(words)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(words)})
        for _ in range(draw(st.integers(0, 2))):
            calls = [
                {
                    "type": "function",
                    "function": {
                        "name": draw(st.sampled_from(tool_names)),
                        "arguments": draw(st.dictionaries(text, json_values, max_size=3)),
                    },
                }
                for _ in range(draw(st.integers(1, 3)))
            ]
            msg = {"role": "assistant", "content": draw(text)}
            if draw(st.booleans()):
                msg["reasoning_content"] = draw(words)
            msg["tool_calls"] = calls
            messages.append(msg)
            messages.extend({"role": "tool", "content": draw(text)} for _ in calls)
        final = {"role": "assistant", "content": draw(words)}
        if draw(st.booleans()):
            final["reasoning_content"] = draw(text)
        messages.append(final)
    return {"messages": messages, "tools": tools}


def convert(row: dict, **options) -> dict:
    converted = RowConverter(ConvertOptions(**options)).convert(row, "sft")
    validate_row(converted.row, "sft")
    return converted.row


def inline(msg: dict) -> str:
    if "reasoning_content" in msg:
        return f"<think>{msg['reasoning_content']}</think>{msg['content']}"
    return msg["content"]


def served(row: dict) -> dict:
    """The conversation as GLM-4.5's template reads it: assistant text and reasoning without outer whitespace."""
    messages = []
    for m in row["messages"]:
        m = dict(m)
        if m["role"] == "assistant":
            m["content"] = m["content"].strip()
            reasoning = (m.pop("reasoning_content", None) or "").strip()
            if reasoning:
                m["reasoning_content"] = reasoning
        messages.append(m)
    return {"messages": messages, "tools": row["tools"]}


@SETTINGS
@given(conversations())
def test_openai_rows_convert_exactly(conv):
    assert convert(conv) == conv


@SETTINGS
@given(conversations(), st.booleans(), st.booleans(), st.booleans())
def test_openai_encodings_lose_nothing(conv, string_arguments, inline_think, bare_calls):
    """JSON-text arguments, inline <think> blocks, calls without the `function` wrapper, tools as JSON text."""
    messages = []
    for m in conv["messages"]:
        m = json.loads(json.dumps(m))
        if m["role"] == "assistant" and inline_think:
            m["content"] = inline(m)
            m.pop("reasoning_content", None)
        for call in m.get("tool_calls", []):
            if string_arguments:
                call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
        if bare_calls and m.get("tool_calls"):
            m["tool_calls"] = [c["function"] for c in m["tool_calls"]]
        messages.append(m)
    row = {"messages": messages, "tools": json.dumps(conv["tools"]) if string_arguments else conv["tools"]}
    assert convert(row) == conv


@SETTINGS
@given(conversations())
def test_sharegpt_rows_convert_exactly(conv):
    tags = {"system": "system", "user": "human", "assistant": "gpt"}
    turns, results = [], []
    for m in conv["messages"]:
        if m["role"] == "tool":
            results.append(m["content"])
            continue
        if results:
            turns.append({"from": "observation", "value": LF_RESULT_SEPARATOR.join(results)})
            results = []
        if m.get("tool_calls"):
            calls = json.dumps(
                [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
            )
            prefix = inline(m)
            turns.append(
                {"from": "function_call", "value": f"{prefix}<tool_call>{calls}</tool_call>" if prefix else calls}
            )
        else:
            turns.append({"from": tags[m["role"]], "value": inline(m) if m["role"] == "assistant" else m["content"]})
    row = {"conversations": turns, "tools": json.dumps(conv["tools"])}
    assert convert(row) == conv


@SETTINGS
@given(conversations())
def test_llamafactory_files_read_back_to_the_conversation(conv):
    lf = llamafactory_row(conv, "sft")
    roles = [m["role"] for m in lf["messages"]]
    turns = roles[1:] if roles[0] == "system" else roles
    # LLaMA-Factory's converter drops a row unless user/observation and assistant/function_call alternate
    assert len(turns) % 2 == 0
    assert all(r in ("user", "observation") for r in turns[::2])
    assert all(r in ("assistant", "function_call") for r in turns[1::2])
    assert served(convert(lf)) == served(conv)


@SETTINGS
@given(conversations())
def test_swift_files_read_back_to_the_conversation(conv):
    swift = swift_row(conv, "sft")
    assert isinstance(swift["tools"], str)
    assert served(convert(swift)) == served(conv)


@SETTINGS
@given(st.lists(st.tuples(words, words), max_size=3), words, text, words, st.one_of(st.none(), words))
def test_alpaca_rows_convert_exactly(history, instruction, extra, output, system):
    row = {"instruction": instruction, "input": extra, "output": output, "history": [list(p) for p in history]}
    if system is not None:
        row["system"] = system
    messages = [{"role": "system", "content": system}] if system is not None else []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages += [
        {"role": "user", "content": instruction + (f"\n{extra}" if extra else "")},
        {"role": "assistant", "content": output},
    ]
    assert convert(row) == {"messages": messages, "tools": []}
