"""Format parity: every recipe trains GLM-4.5 on exactly the text it is served with (finetune check-format).

What is trained (docs/format.md): each assistant turn as GLM-4.5 generates it (the think block, empty when there is
no reasoning; the answer; the tool calls) and the stop token that ends it (`<|observation|>` after tool calls,
`<|user|>` after an answer); never the prompt, the role headers or the tool results.
"""

from __future__ import annotations

import json

import pytest

from finetune.glm import format as fmt
from finetune.glm.format_check import CASES, check_format
from finetune.recipes.recipe import all_recipes, resolve_recipe
from tests.conftest import REFERENCE_DIR

CHECKED = [r.id for r in all_recipes() if r.meta.engine != "megatron" and r.meta.method != "grpo"]


@pytest.fixture(scope="module")
def tok(air_replica):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(air_replica)


@pytest.mark.parametrize("recipe_id", ["llamafactory/glm45-air_lora_4xh100", "swift/glm45-air_lora_4xh100"])
def test_recipe_trains_exactly_the_official_assistant_turns(recipe_id, air_replica):
    report = check_format(resolve_recipe(recipe_id), tokenizer_dir=air_replica, use_cache=False)
    assert report.rows == len(CASES)
    assert report.differences == [], report.summary()


def test_every_llamafactory_recipe_uses_the_corrected_template():
    for recipe in all_recipes():
        if recipe.framework == "llamafactory":
            assert recipe.config["template"] == "glm45", recipe.id


def test_megatron_recipes_are_skipped_with_a_note():
    recipe = next(r for r in all_recipes() if r.meta.engine == "megatron")
    report = check_format(recipe)
    assert report.skipped and "glm4_5" in report.skipped and not report.trained_mismatch


def test_a_wrong_template_is_caught_with_a_readable_diff(air_replica):
    recipe = resolve_recipe("llamafactory/glm45-air_lora_4xh100")
    report = check_format(recipe, {**recipe.config, "template": "glm4_moe"}, tokenizer_dir=air_replica, use_cache=False)
    assert report.trained_mismatch
    summary = report.summary()
    assert "--- GLM-4.5 trained spans" in summary and "+++ training trained spans" in summary
    assert "-<|observation|>" in summary or "</tool_call>" in summary  # the missing closing tag / stop token shows


def test_the_format_check_is_cached(air_replica, monkeypatch):
    recipe = resolve_recipe("swift/glm45-air_lora_4xh100")
    check_format(recipe, tokenizer_dir=air_replica)
    monkeypatch.setattr("finetune.glm.format_check.render", lambda *a, **k: pytest.fail("rendered again"))
    assert check_format(recipe, tokenizer_dir=air_replica).differences == []


# -- the decisions, on the golden vectors ------------------------------------------------------------------------


def _golden() -> list[dict]:
    path = REFERENCE_DIR / "glm45-chat-template-vectors.jsonl"
    if not path.is_file():
        pytest.fail(f"golden chat-template vectors not found at {path} (expected ../shared beside the repository)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lf_messages(messages: list[dict]) -> tuple[str, list[dict]]:
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    out = []
    for m in messages[1:] if system else messages:
        if m["role"] == "assistant":
            reasoning, content = fmt.split_reasoning(m["content"])
            calls = [c["function"] for c in m.get("tool_calls", [])]
            out.append(
                {
                    "role": "function" if calls else "assistant",
                    "calls": calls,
                    "content": content,
                    "reasoning": m.get("reasoning_content") or reasoning,
                }
            )
        else:
            out.append({"role": "observation" if m["role"] == "tool" else m["role"], "content": m["content"]})
    return system, out


@pytest.mark.parametrize(
    "vector", [v for v in _golden() if not v.get("add_generation_prompt")], ids=lambda v: v["name"]
)
def test_segments_reproduce_the_golden_text_and_train_turn_plus_stop(vector):
    system, messages = _lf_messages(vector["messages"])
    segments = fmt.training_segments(messages, system, vector.get("tools"))
    responses = segments[1::2]
    last_stop = fmt.OBSERVATION if messages[-1].get("calls") else fmt.USER
    assert "".join(segments) == vector["expected"] + last_stop
    for prompt in segments[::2]:
        assert prompt.endswith(fmt.ASSISTANT)  # the generation prompt, as the official template ends it
    for response, message in zip(responses, messages[1::2], strict=True):
        # what a served model generates after the prompt's `<|assistant|>`: the newline, then the think block
        assert response.startswith("\n<think>")
        assert response.endswith(fmt.OBSERVATION if message["role"] == "function" else fmt.USER)
        assert "<tool_response>" not in response and fmt.ASSISTANT not in response


def test_thinking_off_moves_the_empty_think_block_into_the_prompt():
    segments = fmt.training_segments(
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}], thinking=False
    )
    generation = next(v for v in _golden() if v["name"] == "generation_prompt_no_thinking")
    assert segments[0] == generation["expected"]
    assert segments[1] == "\nHi" + fmt.USER


def test_tool_calls_parse_back_as_the_glm45_parser_reads_them():
    text = (
        "<think>Need weather.</think>\nLet me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
        "<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
        "<|observation|>"
    )
    assert fmt.parse_assistant(text) == {
        "reasoning": "Need weather.",
        "content": "Let me check.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}],
    }


def test_swift_locks_the_same_decisions(tok, air_replica):
    """ms-swift's glm4_5 trains the empty think block, `<|observation|>` after calls and `<|user|>` at the end."""
    report = check_format(resolve_recipe("swift/glm45-air_lora_4xh100"), tokenizer_dir=air_replica)
    assert report.differences == []
