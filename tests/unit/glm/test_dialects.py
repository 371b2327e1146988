"""finetune.glm.format's two dialects against the official renderings: GLM-4.5's (and 4.6's) and GLM-4.7's golden
vectors, split into prompt and response segments the way LLaMA-Factory's `glm45` / `glm47` templates train them."""

from __future__ import annotations

import json

import pytest

from finetune.glm import format as fmt
from tests.conftest import REFERENCE_DIR

VECTORS = {fmt.GLM45: "glm45-chat-template-vectors.jsonl", fmt.GLM47: "glm47-chat-template-vectors.jsonl"}


def _golden(dialect: fmt.Dialect) -> list[dict]:
    path = REFERENCE_DIR / VECTORS[dialect]
    if not path.is_file():
        pytest.fail(f"golden chat-template vectors not found at {path} (expected ../shared beside the repository)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lf_messages(messages: list[dict]) -> tuple[str, list[dict]]:
    """OpenAI messages -> (system, LLaMA-Factory's parsed roles) as the templates receive them."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    out = []
    for m in messages[1:] if system else messages:
        if m["role"] == "assistant":
            reasoning, content = fmt.split_reasoning(m["content"])
            calls = [c["function"] for c in m.get("tool_calls", [])]
            role = "function" if calls else "assistant"
            out.append(
                {"role": role, "calls": calls, "content": content, "reasoning": m.get("reasoning_content") or reasoning}
            )
        else:
            out.append({"role": "observation" if m["role"] == "tool" else m["role"], "content": m["content"]})
    return system, out


CONVERSATIONS = [
    (dialect, vector) for dialect in VECTORS for vector in _golden(dialect) if not vector.get("add_generation_prompt")
]


@pytest.mark.parametrize(("dialect", "vector"), CONVERSATIONS, ids=lambda x: getattr(x, "name", None) or x["name"])
def test_segments_reproduce_the_golden_text_and_train_turn_plus_stop(dialect, vector):
    system, messages = _lf_messages(vector["messages"])
    keep = vector.get("clear_thinking") is False  # GLM-4.7's preserved thinking keeps earlier reasoning
    segments = fmt.training_segments(
        messages, system, vector.get("tools"), dialect=dialect, drop_history_reasoning=not keep
    )
    last_stop = fmt.OBSERVATION if messages[-1].get("calls") else fmt.USER
    assert "".join(segments) == vector["expected"] + last_stop
    for prompt in segments[::2]:
        assert prompt.endswith(fmt.ASSISTANT)  # where the official rendering of every turn starts
    opening = ("\n<think>",) if dialect is fmt.GLM45 else ("<think>", "</think>")
    for response, message in zip(segments[1::2], messages[1::2], strict=True):
        assert response.startswith(opening)  # GLM-4.5: the newline the model writes first; GLM-4.7: no newline
        assert response.endswith(fmt.OBSERVATION if message["role"] == "function" else fmt.USER)
        assert "<tool_response>" not in response and fmt.ASSISTANT not in response


@pytest.mark.parametrize("dialect", list(VECTORS), ids=lambda d: d.name)
def test_thinking_off_closes_the_think_block_in_the_prompt(dialect):
    segments = fmt.training_segments(
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}], thinking=False, dialect=dialect
    )
    generation = next(v for v in _golden(dialect) if v["name"] == "generation_prompt_no_thinking")
    assert segments[0] == generation["expected"]  # GLM-4.5: `/nothink` and `\n<think></think>`; 4.7: `</think>`
    assert segments[1] == dialect.role_break + "Hi" + fmt.USER


def test_glm47_thinking_prompt_holds_the_think_tag_the_trained_turn_starts_with():
    """GLM-4.7's thinking-on generation prompt ends in `<think>`; a trained turn starts at `<|assistant|>` as its
    official rendering does, so its first token, `<think>`, is the one the served prompt already holds."""
    segments = fmt.training_segments(
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi", "reasoning": "Greet."}],
        dialect=fmt.GLM47,
    )
    generation = next(v for v in _golden(fmt.GLM47) if v["name"] == "generation_prompt_thinking")
    assert segments[0] + fmt.THINK_OPEN == generation["expected"]
    assert segments[1] == "<think>Greet.</think>Hi" + fmt.USER


def test_parallel_results_joined_by_llamafactory_are_one_block_each():
    joined = fmt.RESULT_SEPARATOR.join(["rain", "sun"])
    assert (
        fmt.GLM45.tool_results(joined)
        == "\n<tool_response>\nrain\n</tool_response>\n<tool_response>\nsun\n</tool_response>"
    )
    assert fmt.GLM47.tool_results(joined) == "<tool_response>rain</tool_response><tool_response>sun</tool_response>"


@pytest.mark.parametrize(
    "text",
    [
        "<think>Need weather.</think>\nLet me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
        "<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
        "<|observation|>",
        # GLM-4.7, after its prompt's `<think>`: no opening tag, no newlines
        "Need weather.</think>Let me check.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
        "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call><|observation|>",
    ],
    ids=["glm45", "glm47"],
)
def test_tool_calls_parse_back_as_the_serving_parsers_read_them(text):
    assert fmt.parse_assistant(text) == {
        "reasoning": "Need weather.",
        "content": "Let me check.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}],
    }


def test_a_glm47_call_without_arguments_parses():
    parsed = fmt.parse_assistant("</think><tool_call>now</tool_call><|observation|>")
    assert parsed == {"reasoning": "", "content": "", "tool_calls": [{"name": "now", "arguments": {}}]}
    assert fmt.GLM47.tool_call_text("now", {}) == "<tool_call>now</tool_call>"
