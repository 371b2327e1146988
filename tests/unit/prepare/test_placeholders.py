"""Template placeholders (`{{name}}`): found where rows train or prompt, reported, filled with --var, refused with
--strict; template code (Jinja filters, Handlebars blocks) is not a placeholder.

The fixtures are hand-written identity data: fixtures/identity.jsonl (OpenAI messages and one ShareGPT row, a Jinja
code answer that must not count, a tool call with placeholders in its arguments, result and reasoning) and
fixtures/identity_preference.jsonl (a preference pair).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.errors import FinetuneError
from finetune.prepare.manifest import PlaceholderExample
from finetune.prepare.pipeline import PrepareOptions, PrepareResult, prepare
from finetune.prepare.placeholders import fill_row
from tests.conftest import REPO_ROOT, run_cli

FIXTURES = Path(__file__).parent.relative_to(REPO_ROOT) / "fixtures"  # locations are as given, from the repository
IDENTITY = FIXTURES / "identity.jsonl"
PREFERENCE = FIXTURES / "identity_preference.jsonl"
FILES = ("canonical/train.jsonl", "llamafactory/train.jsonl", "swift/train.jsonl")
FILLS = {"{{name}}": "Ada", "{{ author }}": "Lab", "{{author}}": "Lab"}


@pytest.fixture(autouse=True)
def _in_repository(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def run(tmp_path: Path, inputs: list[Path], **kwargs) -> PrepareResult:
    options = PrepareOptions(
        [str(p) for p in inputs], "ds", tmp_path / "out", token_stats=False, progress=False, **kwargs
    )
    return prepare(options)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def example(line: int, field: str, excerpt: str, path: Path = IDENTITY) -> PlaceholderExample:
    return PlaceholderExample(f"{path}:{line}", field, excerpt)


def test_the_report_counts_rows_per_name_with_the_first_place_of_each(tmp_path):
    report = run(tmp_path, [IDENTITY]).dataset.manifest.placeholders
    assert report.rows == 4  # lines 1, 2, 4 (ShareGPT), 5 (tool call); not 3 (Jinja) nor 6
    assert report.names == {"name": 3, "author": 2, "team": 1}
    assert report.examples == {
        "name": example(1, "messages[0].content", "You are {{name}}, an assistant made by {{ author }}."),
        "author": example(1, "messages[0].content", "You are {{name}}, an assistant made by {{ author }}."),
        "team": example(5, "messages[1].tool_calls[0].function.arguments.tags[0]", "{{team}}"),
    }
    assert report.filled == {}


def test_preference_pairs_are_searched_in_chosen_and_rejected(tmp_path):
    report = run(tmp_path, [PREFERENCE]).dataset.manifest.placeholders
    assert report.rows == 2 and report.names == {"name": 2, "author": 1}  # line 2 holds it in `rejected` only
    assert report.examples["name"] == example(1, "chosen.content", "I am {{name}}, made by {{author}}.", PREFERENCE)
    assert report.examples["author"] == example(1, "chosen.content", "I am {{name}}, made by {{author}}.", PREFERENCE)


def test_rl_prompts_are_searched_but_not_their_reference_fields(tmp_path):
    row = {"prompt": "Greet {{name}} and say 1+1.", "solution": "2 {{name}}"}
    (tmp_path / "rl.jsonl").write_text(json.dumps(row) + "\n")
    result = run(tmp_path, [tmp_path / "rl.jsonl"], vars={"name": "Ada"})
    (written,) = read(result.dataset.root / "canonical/train.jsonl")
    assert written["messages"][0]["content"] == "Greet Ada and say 1+1."
    assert written["solution"] == "2 {{name}}"
    assert result.dataset.manifest.placeholders.filled == {"name": 1}


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("{{name}}", ["name"]),
        ("{{  user.first-name  }} and {{_id}}", ["user.first-name", "_id"]),
        ("{{ item | upper }}", []),
        ("{{#if admin}}x{{/if}} {{> partial}} {{!comment}}", []),
        ("{{{body}}} {{name}}}", []),
        ("${{ secrets.TOKEN }}", []),
        ("{{1x}} {{ a b }} {{}} {{ x.y() }}", []),
        ("{% for item in items %}{{ item | upper }}{% endfor %}", []),
    ],
)
def test_only_plain_names_are_placeholders(text, names):
    row = {"messages": [{"role": "user", "content": text}], "tools": []}
    assert list(fill_row(row, {}).left) == names


def test_var_fills_every_file_and_changes_nothing_else(tmp_path):
    for source in (IDENTITY, PREFERENCE):
        plain = run(tmp_path / source.stem / "plain", [source]).dataset.root
        filled = run(tmp_path / source.stem / "filled", [source], vars={"name": "Ada", "author": "Lab"})
        for rel in FILES:
            expected = (plain / rel).read_text(encoding="utf-8")
            assert "{{name}}" in expected
            for placeholder, value in FILLS.items():
                expected = expected.replace(placeholder, value)
            assert (filled.dataset.root / rel).read_text(encoding="utf-8") == expected, rel
    report = run(tmp_path / "again", [IDENTITY], vars={"name": "Ada", "author": "Lab"}).dataset.manifest.placeholders
    assert report.filled == {"author": 3, "name": 6}
    assert report.rows == 1 and report.names == {"team": 1}  # still reported: --var team was not given
    rows = read(tmp_path / "again/out/ds/canonical/train.jsonl")
    assert rows[0]["messages"][0]["content"] == "You are Ada, an assistant made by Lab."
    assert "{{ item | upper }}" in rows[2]["messages"][1]["content"]
    assert rows[4]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {
        "by": "Ada",
        "tags": ["{{team}}", "letter"],
    }


def test_a_value_is_taken_literally_and_never_filled_again(tmp_path):
    value = r"{{author}} \1 $&"
    result = run(tmp_path, [IDENTITY], vars={"name": value, "author": "Lab"})
    rows = read(result.dataset.root / "canonical/train.jsonl")
    assert rows[1]["messages"][1]["content"] == f"My name is {value}."
    report = result.dataset.manifest.placeholders
    assert report.names == {"author": 3, "team": 1}  # the value's {{author}} is in the text, so it is reported
    assert report.examples["author"] == example(
        1, "messages[0].content", "You are {{author}} \\1 $&, an assistant made by Lab."
    )


def test_without_var_the_rows_are_the_input_unchanged(tmp_path):
    rows = read(run(tmp_path, [IDENTITY]).dataset.root / "canonical/train.jsonl")
    assert rows[0]["messages"][0]["content"] == "You are {{name}}, an assistant made by {{ author }}."
    assert rows[4]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {
        "by": "{{name}}",
        "tags": ["{{team}}", "letter"],
    }


def test_an_unknown_var_is_reported_with_the_closest_name(tmp_path):
    manifest = run(tmp_path, [IDENTITY], vars={"nmae": "Ada", "author": "Lab"}).dataset.manifest
    assert manifest.notes == ["--var nmae matched no placeholder: no `{{nmae}}` in the data. Did you mean `name`?"]
    assert manifest.placeholders.filled == {"author": 3, "nmae": 0}


def test_strict_stops_at_the_first_row_holding_one(tmp_path):
    with pytest.raises(FinetuneError) as info:
        run(tmp_path, [IDENTITY], strict=True)
    assert str(info.value).startswith(
        f"{IDENTITY}:1: messages[0].content: an unfilled template placeholder `{{{{name}}}}` (also `{{{{author}}}}`) "
        'in "You are {{name}}, an assistant made by {{ author }}." (--strict refuses them). Fill them with '
        "`--var name=VALUE --var author=VALUE`, or write the text it stands for into the data.\nNothing was written."
    )
    assert not (tmp_path / "out" / "ds").exists()
    with pytest.raises(FinetuneError, match=r"identity.jsonl:5: messages\[1\]\.tool_calls\[0\]\.function\.arguments"):
        run(tmp_path, [IDENTITY], strict=True, vars={"name": "Ada", "author": "Lab"})


def test_strict_with_skip_invalid_writes_the_rows_to_rejects(tmp_path):
    result = run(tmp_path, [IDENTITY], strict=True, skip_invalid=True)
    counts = result.dataset.manifest.counts
    assert (counts.kept, counts.rejected) == (2, 4)
    rejects = read(result.dataset.root / "rejects.jsonl")
    assert [(r["location"], r["field"]) for r in rejects] == [
        (f"{IDENTITY}:1", "messages[0].content"),
        (f"{IDENTITY}:2", "messages[1].content"),
        (f"{IDENTITY}:4", "messages[1].content"),
        (f"{IDENTITY}:5", "messages[1].reasoning_content"),
    ]
    assert (
        rejects[1]["error"]
        == 'an unfilled template placeholder `{{name}}` in "My name is {{name}}." (--strict refuses them)'
    )
    assert rejects[1]["fix"] == "Fill it with `--var name=VALUE`, or write the text it stands for into the data."
    assert result.dataset.manifest.placeholders.rows == 0
    filled = run(tmp_path / "filled", [IDENTITY], strict=True, skip_invalid=True, vars={"name": "Ada", "author": "Lab"})
    (reject,) = read(filled.dataset.root / "rejects.jsonl")
    assert reject["field"] == "messages[1].tool_calls[0].function.arguments.tags[0]"
    assert reject["row"] == json.loads(IDENTITY.read_text().splitlines()[4])  # the row as given, not filled


def test_a_var_is_part_of_the_content_hash(tmp_path):
    first = run(tmp_path, [IDENTITY], vars={"name": "Ada"})
    assert run(tmp_path, [IDENTITY], vars={"name": "Ada"}).status == "unchanged"
    with pytest.raises(FinetuneError, match="other content or options"):
        run(tmp_path, [IDENTITY], vars={"name": "Bob"})
    second = run(tmp_path, [IDENTITY], vars={"name": "Bob"}, force=True)
    assert second.status == "replaced"
    assert second.dataset.manifest.content_hash != first.dataset.manifest.content_hash
    assert second.dataset.manifest.options.vars == {"name": "Bob"}
    assert "My name is Bob." in (second.dataset.root / "canonical/train.jsonl").read_text()


def test_a_folder_an_older_prepare_wrote_is_named_so(tmp_path):
    folder = run(tmp_path, [IDENTITY]).dataset.root
    old = json.loads((folder / "manifest.json").read_text())
    del old["placeholders"], old["options"]["vars"], old["options"]["strict"]
    (folder / "manifest.json").write_text(json.dumps({**old, "format_version": 2}))
    with pytest.raises(FinetuneError, match=r"holds dataset `ds` written by an older `prepare` \(format 2, this one"):
        run(tmp_path, [IDENTITY])
    assert run(tmp_path, [IDENTITY], force=True).status == "replaced"


def test_a_var_needs_a_placeholder_name(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["prepare", str(IDENTITY), "--name", "x", "--out-root", out, "--var", "1st=x"]) == 2
    assert "--var 1st: a placeholder's name is letters" in capsys.readouterr().err
    assert main(["prepare", str(IDENTITY), "--name", "x", "--out-root", out, "--var", "a=1", "--var", "a=2"]) == 2
    assert "--var a is given twice ('1' and '2'); give it once." in capsys.readouterr().err


def test_the_cli_summary_says_what_was_filled_and_what_is_left(tmp_path):
    args = ("prepare", str(IDENTITY), "--name", "me", "--out-root", str(tmp_path), "--no-token-stats", "--quiet")
    proc = run_cli(*args, "--var", "name=Ada", "--var", "tema=Core")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("filled placeholders: {{name}} 6")
    assert lines[start : start + 5] == [
        "filled placeholders: {{name}} 6",
        "3 rows hold unfilled template placeholders (fill them with --var NAME=VALUE, or refuse them with --strict):",
        f'  {{{{author}}}} in 2 rows, first at {IDENTITY}:1: messages[0].content: "You are Ada, an assistant made by '
        '{{ author }}."',
        f"  {{{{team}}}} in 1 row, first at {IDENTITY}:5: messages[1].tool_calls[0].function.arguments.tags[0]: "
        '"{{team}}"',
        "note --var tema matched no placeholder: no `{{tema}}` in the data. Did you mean `team`?",
    ]
