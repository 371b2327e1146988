"""Format parity: every recipe trains GLM-4.5 on exactly the text it is served with (finetune check-format).

What is trained (docs/format.md): each assistant turn as GLM-4.5 generates it (the think block, empty when there is
no reasoning; the answer; the tool calls) and the stop token that ends it (`<|observation|>` after tool calls,
`<|user|>` after an answer); never the prompt, the role headers or the tool results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.glm import format as fmt
from finetune.glm.format_check import CASES, FormatRequest, check_format, check_formats
from finetune.prepare.datasets import resolve_dataset
from finetune.prepare.pipeline import PrepareOptions, prepare
from finetune.recipes.recipe import all_recipes, resolve_recipe
from tests.conftest import REFERENCE_DIR

RENDERED = [r.id for r in all_recipes() if r.meta.engine != "megatron"]  # every engine that renders on a CPU


CAUGHT = [  # (recipe, the setting dropped from its config, what the diff then shows)
    # ms-swift's hybrid-thinking default (`+ignore_empty_think`): the empty think block goes untrained
    ("swift/glm45-air_lora_4xh100", "disable_ignore_empty_think", "-\\n<think></think>\\n4\n"),
    # ms-swift's default generation prompt is non-thinking: rollouts would start after `<think></think>`
    ("swift/glm45-air_grpo_4xh100", "enable_thinking", "+<|assistant|>\\n<think></think>"),
]
WRONG_TEMPLATE = {"template": "glm4_moe"}


def _without(recipe_id: str, key: str) -> dict:
    return {k: v for k, v in resolve_recipe(recipe_id).config.items() if k != key}


AGENT_FIXTURE = Path(__file__).parent / "fixtures" / "agent_trajectories.jsonl"
# ShareGPT with function_call / observation turns and OpenAI rows with JSON-text arguments, their tool schemas as
# published ones are written: `"required": null`, `"default": null`, a `["number", "null"]` type
PUBLIC_TOOLS_FIXTURE = Path(__file__).parent / "fixtures" / "public_tools.jsonl"
LORA = {"swift": "swift/glm45-air_lora_4xh100", "llamafactory": "llamafactory/glm45-air_lora_4xh100"}
CONTEXT_TURN = {  # the first answer is context only (LLaMA-Factory's loss_weight 0)
    "messages": [
        {"role": "user", "content": [{"type": "text", "value": "Draft a title."}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "Untitled"}], "loss_weight": 0.0},
        {"role": "user", "content": [{"type": "text", "value": "A better one?"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "On Routing"}], "loss_weight": 1.0},
    ]
}


@pytest.fixture(scope="module")
def user_datasets(tmp_path_factory):
    """Agent trajectories (typed content, parallel results as one JSON list, rows ending in a tool call) and a
    row with a context-only turn, prepared as `finetune prepare` prepares a user's file."""
    root = tmp_path_factory.mktemp("user-data")
    context = root / "context_turn.jsonl"
    context.write_text(json.dumps(CONTEXT_TURN) + "\n")
    out = {}
    for name, path in (("agent", AGENT_FIXTURE), ("context_turn", context), ("public_tools", PUBLIC_TOOLS_FIXTURE)):
        options = PrepareOptions([str(path)], name, out_root=root / "data", token_stats=False, progress=False)
        out[name] = prepare(options).dataset
    return out


@pytest.fixture(scope="module", autouse=True)
def _rendered_together(air_replica, user_datasets):
    """Every check below, rendered in one process per framework (finetune/glm/format_check.py: check_formats);
    the tests then read the cached reports."""
    recipes = [resolve_recipe(r) for r in RENDERED]
    lf = resolve_recipe("llamafactory/glm45-air_lora_4xh100")
    check_formats(
        [
            *(
                FormatRequest(resolve_recipe(r), dataset=ds, tokenizer_dir=air_replica)
                for r in LORA.values()
                for ds in user_datasets.values()
            ),
            *(FormatRequest(r, tokenizer_dir=air_replica) for r in recipes),
            *(FormatRequest(r, dataset=resolve_dataset(r.meta.dataset), tokenizer_dir=air_replica) for r in recipes),
            *(FormatRequest(resolve_recipe(r), _without(r, key), tokenizer_dir=air_replica) for r, key, _ in CAUGHT),
            FormatRequest(lf, {**lf.config, **WRONG_TEMPLATE}, tokenizer_dir=air_replica),
        ]
    )


@pytest.fixture(scope="module")
def tok(air_replica):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(air_replica)


@pytest.mark.parametrize("recipe_id", RENDERED)
def test_recipe_trains_exactly_the_official_assistant_turns(recipe_id, air_replica):
    """The format cases in the shape the recipe trains on (conversations, preference pairs, RL prompts), rendered
    by its framework as its trainer renders them. Recipes with the same template settings share one rendering
    (the cache key holds the settings, the data and the rendering code)."""
    report = check_format(resolve_recipe(recipe_id), tokenizer_dir=air_replica)
    assert report.rows == len(CASES) and not report.skipped
    assert report.differences == [], report.summary()


@pytest.mark.parametrize("framework", list(LORA))
def test_agent_trajectories_train_as_glm45_renders_them(framework, user_datasets, air_replica):
    """Typed-content rows with reasoning and parallel results, and trajectories that end in a tool call: the final
    call is trained with the `<|observation|>` that hands the turn to the tools, in both frameworks."""
    dataset = user_datasets["agent"]
    report = check_format(resolve_recipe(LORA[framework]), dataset=dataset, tokenizer_dir=air_replica)
    assert report.rows == 3 and report.differences == [], report.summary()


@pytest.mark.parametrize("framework", list(LORA))
def test_tool_schemas_reach_training_as_glm45_renders_them_nulls_included(framework, user_datasets, air_replica):
    """The whole text, not only the trained tokens: the tool block is what the served model is prompted with.
    ms-swift removes nulls from tool schemas (Arrow padding to it); the prepared files hold tools as JSON text,
    whose nulls are the user's, and the repository's loader fix keeps them (trainer/swift/tool_schemas.py)."""
    report = check_format(
        resolve_recipe(LORA[framework]), dataset=user_datasets["public_tools"], tokenizer_dir=air_replica
    )
    assert report.rows == 3 and report.differences == [], report.summary()


def test_a_context_only_turn_is_untrained_in_swift_and_shown_as_trained_by_llamafactory(user_datasets, air_replica):
    """ms-swift honours a turn's `loss: false`; LLaMA-Factory's sharegpt format trains every assistant turn, and the
    format check says so (trained tokens differ), so that data is not trained there unnoticed."""
    dataset = user_datasets["context_turn"]
    swift = check_format(resolve_recipe(LORA["swift"]), dataset=dataset, tokenizer_dir=air_replica)
    assert not swift.trained_mismatch, swift.summary()
    lf = check_format(resolve_recipe(LORA["llamafactory"]), dataset=dataset, tokenizer_dir=air_replica)
    added = [line for line in lf.differences[0].diff.splitlines() if line.startswith("+") and "Untitled" in line]
    assert lf.trained_mismatch and added, lf.summary()


@pytest.mark.parametrize("recipe_id", RENDERED)
def test_recipe_trains_its_own_sample_data_as_glm45_renders_it(recipe_id, air_replica):
    recipe = resolve_recipe(recipe_id)
    dataset = resolve_dataset(recipe.meta.dataset)
    report = check_format(recipe, dataset=dataset, tokenizer_dir=air_replica)
    assert report.rows == dataset.manifest.counts.kept and not report.skipped
    assert report.differences == [], report.summary()


@pytest.mark.parametrize(("recipe_id", "dropped", "shows"), CAUGHT)
def test_ms_swift_defaults_that_change_the_format_are_caught(recipe_id, dropped, shows, air_replica):
    """The check renders through ms-swift's own argument classes, so their defaults show: without the recipe's
    setting, the trained tokens (or the rollout prompt) differ from GLM-4.5's."""
    report = check_format(resolve_recipe(recipe_id), _without(recipe_id, dropped), tokenizer_dir=air_replica)
    assert report.trained_mismatch, report.summary()
    assert shows in report.summary(), report.summary()


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
    report = check_format(recipe, {**recipe.config, **WRONG_TEMPLATE}, tokenizer_dir=air_replica)
    assert report.trained_mismatch
    summary = report.summary()
    assert "--- GLM-4.5 trained spans" in summary and "+++ training trained spans" in summary
    assert "-<|observation|>" in summary or "</tool_call>" in summary  # the missing closing tag / stop token shows


def test_the_format_check_is_cached(air_replica, monkeypatch):
    recipe = resolve_recipe("swift/glm45-air_lora_4xh100")
    check_format(recipe, tokenizer_dir=air_replica)
    monkeypatch.setattr("finetune.glm.format_check.render_many", lambda *a, **k: pytest.fail("rendered again"))
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
