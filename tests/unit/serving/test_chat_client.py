"""The chat client's own parts that need no server: the event-stream reader, tool files, history messages."""

from __future__ import annotations

import io
import json

import pytest

from finetune.errors import FinetuneError
from finetune.glm.format import parse_assistant
from finetune.serving.chat import _read_stream, assistant_message, load_tools


def _events(*deltas: dict) -> io.BytesIO:
    lines = [f"data: {json.dumps({'choices': [{'delta': d}]})}\n\n" for d in deltas] + ["data: [DONE]\n\n"]
    return io.BytesIO("".join(lines).encode())


def test_stream_pieces_join_into_one_message_and_reach_the_callback():
    seen = []
    message = _read_stream(
        _events(
            {"role": "assistant"},
            {"reasoning": "Wea"},
            {"reasoning": "ther."},
            {"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": '{"ci'}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]},
            {"tool_calls": [{"index": 1, "function": {"name": "convert", "arguments": "{}"}}]},
            {"content": ""},
        ),
        lambda kind, text: seen.append((kind, text)),
    )
    assert message["reasoning"] == "Weather." and message["content"] == ""
    assert [c["function"] for c in message["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"name": "convert", "arguments": "{}"},
    ]
    assert seen == [("reasoning", "Wea"), ("reasoning", "ther.")]


def test_history_message_carries_arguments_as_a_json_string():
    message = assistant_message(
        {"content": "", "reasoning": "r", "tool_calls": [{"name": "f", "arguments": {"city": "Zürich"}}]}
    )
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Zürich"}'
    assert message["tool_calls"][0]["id"] == "call_0"  # what the tool's result message refers to
    assert message["reasoning_content"] == "r"


def test_tool_files_in_either_shape_and_a_clear_error_otherwise(tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"tools": [{"name": "f", "parameters": {"type": "object"}}]}))
    assert load_tools(bare) == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"type": "function", "function": {"description": "no name"}}]))
    with pytest.raises(FinetuneError, match=r"bad.json: item 0 has no function name"):
        load_tools(bad)


def test_with_thinking_off_nothing_generated_is_reasoning():
    """The prompt closed the think block; a stray `</think>` in the reply is content, as vLLM's glm45 parser reads
    it for a request with enable_thinking false (an under-trained model does write one)."""
    text = "Mot\n<arg_key>at.</think>It is sunny.<|user|>"
    assert parse_assistant(text, thinking=False) == {
        "reasoning": "",
        "content": "Mot\n<arg_key>at.</think>It is sunny.",
        "tool_calls": [],
    }
    assert parse_assistant(text)["reasoning"] == "Mot\n<arg_key>at."  # thinking on: the prompt opened the block
