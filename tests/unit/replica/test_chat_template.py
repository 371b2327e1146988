"""The stand-in tokenizer must render chats exactly as GLM-4.5 does and round-trip text.

Golden vectors (rendered by GLM-4.5's official template) live in the shared reference
folder beside the repository; a missing file is a failure, not a skip, so a broken
checkout cannot pass silently.
"""

import json

import pytest
from transformers import AutoTokenizer

from finetune.replica.tokenizer import EOS_TOKENS, SPECIAL_TOKENS, build_tokenizer, vocab_size_padded
from tests.conftest import REFERENCE_DIR

VECTORS_PATH = REFERENCE_DIR / "glm45-chat-template-vectors.jsonl"


@pytest.fixture(scope="module")
def vectors():
    if not VECTORS_PATH.is_file():
        pytest.fail(f"golden chat-template vectors not found at {VECTORS_PATH} (expected ../shared beside the repo)")
    lines = VECTORS_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("glm45_tokenizer")
    build_tokenizer(out)
    return AutoTokenizer.from_pretrained(out)


def render(tok, messages, tools=None, add_generation_prompt=False, **kwargs):
    return tok.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs
    )


def test_golden_vectors(tok, vectors):
    assert len(vectors) >= 8
    for v in vectors:
        extra = {"enable_thinking": v["enable_thinking"]} if "enable_thinking" in v else {}
        got = render(tok, v["messages"], v.get("tools"), v.get("add_generation_prompt", False), **extra)
        assert got == v["expected"], v["name"]


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


def test_config(tok):
    assert tok.is_fast
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "right"
    assert tok.model_max_length == 131072
    assert len(tok) <= vocab_size_padded() and vocab_size_padded() % 64 == 0
