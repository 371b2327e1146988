"""The stand-in tokenizer must render chats exactly as each model's official template does and round-trip text.

Golden vectors (rendered by GLM-4.5's, GLM-4.6's and GLM-4.7's official templates) live in the shared reference
folder beside the repository; a missing file is a failure, not a skip, so a broken checkout cannot pass silently.
Each model's vectors are rendered by that model's replica, so a model pointed at the wrong template fails here.
"""

import json

import pytest
from transformers import AutoTokenizer

from finetune.catalog import MODELS
from finetune.recipes.models import get_model
from finetune.replica.tokenizer import EOS_TOKENS, SPECIAL_TOKENS, build_tokenizer, vocab_size_padded
from tests.conftest import REFERENCE_DIR

VECTOR_FILES = {  # model -> its official template's golden renderings (Air's template is GLM-4.5's)
    "glm-4.5": "glm45-chat-template-vectors.jsonl",
    "glm-4.5-air": "glm45-chat-template-vectors.jsonl",
    "glm-4.6": "glm46-chat-template-vectors.jsonl",
    "glm-4.7": "glm47-chat-template-vectors.jsonl",
}
REPLICA_FIXTURES = {
    "glm-4.5": "glm45_replica",
    "glm-4.5-air": "air_replica",
    "glm-4.6": "glm46_replica",
    "glm-4.7": "glm47_replica",
}
TEMPLATE_KWARGS = ("enable_thinking", "clear_thinking")  # forwarded when a vector line carries them


def load_vectors(model: str) -> list[dict]:
    path = REFERENCE_DIR / VECTOR_FILES[model]
    if not path.is_file():
        pytest.fail(f"golden chat-template vectors not found at {path} (expected ../shared beside the repo)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def replica_tokenizer(request, model: str):
    return AutoTokenizer.from_pretrained(request.getfixturevalue(REPLICA_FIXTURES[model]))


@pytest.fixture(scope="module")
def vectors():
    return load_vectors("glm-4.5")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("glm45_tokenizer")
    build_tokenizer(out, "glm-4.5")
    return AutoTokenizer.from_pretrained(out)


def render(tok, messages, tools=None, add_generation_prompt=False, **kwargs):
    return tok.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs
    )


def test_every_catalog_model_has_golden_vectors_and_a_replica():
    assert set(VECTOR_FILES) == set(REPLICA_FIXTURES) == set(MODELS)


@pytest.mark.parametrize("model", sorted(VECTOR_FILES))
def test_golden_vectors(request, model):
    """Every line of the model's vectors, byte for byte, through the replica of that model."""
    tok, lines = replica_tokenizer(request, model), load_vectors(model)
    assert len(lines) >= 8
    wrong = []
    for v in lines:
        kwargs = {key: v[key] for key in TEMPLATE_KWARGS if key in v}
        assert set(kwargs) <= set(get_model(model).chat.template_kwargs), v["name"]  # the template reads them
        got = render(tok, v["messages"], v.get("tools"), v.get("add_generation_prompt", False), **kwargs)
        if got != v["expected"]:
            wrong.append(f"{v['name']}:\n  got      {got!r}\n  expected {v['expected']!r}")
    assert not wrong, "\n".join(wrong)


def test_glm46_and_glm45_share_one_template(glm45_replica, glm46_replica, glm47_replica):
    template = (glm45_replica / "chat_template.jinja").read_text()
    assert (glm46_replica / "chat_template.jinja").read_text() == template
    assert (glm47_replica / "chat_template.jinja").read_text() != template


def test_parallel_calls_earlier_reasoning_and_system_with_tools(tok, vectors):
    """Cases beyond the vectors, checked against the format's rules."""
    tool_vector = next(v for v in vectors if v.get("tools"))
    tools, tools_block = tool_vector["tools"], tool_vector["expected"].split("<|user|>")[0]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "reasoning_content": "old thought", "content": "Hello."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "<think>\nplan\n</think>\n",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
                {"name": "get_weather", "arguments": {"location": "Rome", "days": 2, "units": ["C", "é"]}},
            ],
        },
        {"role": "tool", "content": "sunny"},
        {"role": "tool", "content": "rain"},
    ]
    got = render(tok, messages, tools, add_generation_prompt=True, enable_thinking=False)
    assert tools_block.startswith("[gMASK]<sop><|system|>\n# Tools") and tools_block.endswith("</tool_call>")
    assert got == (
        tools_block
        + "<|system|>\nBe brief.<|user|>\nHi/nothink<|assistant|>\n<think></think>\nHello."
        + "<|user|>\nWeather?/nothink<|assistant|>\n<think>plan</think>"
        + "\n<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"
        + "\n<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Rome</arg_value>"
        + "\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>"
        + '\n<arg_key>units</arg_key>\n<arg_value>["C", "é"]</arg_value>'
        + "\n</tool_call><|observation|>\n<tool_response>\nsunny\n</tool_response>"
        + "\n<tool_response>\nrain\n</tool_response><|assistant|>\n<think></think>"
    )


GLM47_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    {"role": "assistant", "reasoning_content": "old thought", "content": "Hello."},
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": "<think>\nplan\n</think>\nChecking.",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
            {"name": "get_weather", "arguments": {"location": "Rome", "days": 2, "units": ["C", "é"]}},
            {"type": "function", "function": {"name": "now", "arguments": {}}},
        ],
    },
    {"role": "tool", "content": "sunny"},
    {"role": "tool", "content": "rain"},
    {"role": "tool", "content": ""},
]
GLM47_LATER = (
    "<|user|>Weather?<|assistant|><think>plan</think>Checking."
    "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value></tool_call>"
    "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Rome</arg_value>"
    '<arg_key>days</arg_key><arg_value>2</arg_value><arg_key>units</arg_key><arg_value>["C", "é"]</arg_value>'
    "</tool_call><tool_call>now</tool_call>"
    "<|observation|><tool_response>sunny</tool_response><tool_response>rain</tool_response>"
    "<tool_response></tool_response><|assistant|>"
)


@pytest.mark.parametrize(
    ("kwargs", "earlier", "prompt_end"),
    [
        ({}, "</think>Hello.", "<think>"),  # reasoning before the last user message is dropped by default
        ({"clear_thinking": True}, "</think>Hello.", "<think>"),
        ({"clear_thinking": False}, "<think>old thought</think>Hello.", "<think>"),  # preserved thinking
        ({"enable_thinking": False}, "</think>Hello.", "</think>"),  # no /nothink: only the prompt changes
        ({"enable_thinking": True, "clear_thinking": False}, "<think>old thought</think>Hello.", "<think>"),
    ],
)
def test_glm47_parallel_calls_earlier_reasoning_and_system_with_tools(request, kwargs, earlier, prompt_end):
    """GLM-4.7's rules beyond its vectors: no newline after role tokens, a lone </think>, tool calls and results
    without newlines (a zero-argument call, JSON for non-strings), and clear_thinking."""
    tok = replica_tokenizer(request, "glm-4.7")
    tool_vector = next(v for v in load_vectors("glm-4.7") if v.get("tools"))
    tools, tools_block = tool_vector["tools"], tool_vector["expected"].split("<|user|>")[0]
    assert tools_block.startswith("[gMASK]<sop><|system|>\n# Tools") and tools_block.endswith("...</tool_call>")
    got = render(tok, GLM47_TURNS, tools, add_generation_prompt=True, **kwargs)
    assert got == (tools_block + "<|system|>Be brief.<|user|>Hi<|assistant|>" + earlier + GLM47_LATER + prompt_end)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ascii, with  double spaces and trailing space ",
        "héllo wörld — 世界 🤖🏳️‍🌈 \u0000\u00ff\ufeff",
        "\n\n\tleading and trailing whitespace\r\n",
        "[gMASK]<sop><|user|>\nhi/nothink<|assistant|>\n<think>x</think>\n<tool_call>f\n</tool_call><|endoftext|>",
        "".join(SPECIAL_TOKENS),
        "<|user|<|user|>>",
    ],
)
def test_round_trip(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


def test_encode_adds_nothing(tok):
    assert tok.encode("ab") == tok.encode("ab", add_special_tokens=False) == [ord("a"), ord("b")]


def test_special_tokens_are_single_ids(tok):
    ids = [tok.encode(t, add_special_tokens=False) for t in SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids), dict(zip(SPECIAL_TOKENS, ids, strict=True))
    assert [i[0] for i in ids] == list(range(256, 256 + len(SPECIAL_TOKENS)))
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in EOS_TOKENS)


@pytest.mark.parametrize(
    ("model", "fixture", "context"),
    [
        ("glm-4.5", "glm45_replica", 131072),
        ("glm-4.5-air", "air_replica", 131072),
        ("glm-4.6", "glm46_replica", 202752),
        ("glm-4.7", "glm47_replica", 202752),
    ],
)
def test_config(request, model, fixture, context):
    """The replica's tokenizer says the model's own context; its config keeps the tiny shapes' positions."""
    from finetune.replica.build import TINY_SHAPES

    path = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.is_fast
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "right"
    assert tok.model_max_length == get_model(model).context == context
    assert get_model(model).config["max_position_embeddings"] == context
    config = json.loads((path / "config.json").read_text())
    assert config["max_position_embeddings"] == TINY_SHAPES["max_position_embeddings"]  # shrunk, like every size
    assert len(tok) <= vocab_size_padded() and vocab_size_padded() % 64 == 0
