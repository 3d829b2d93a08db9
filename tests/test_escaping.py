"""User text is data in every output: terminal (no markup, no control codes), Markdown (no links, no
broken rows), HTML and CSV; one escaper per format, used by every writer."""

import csv
import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.escaping import escape_csv, escape_html, escape_markdown, escape_terminal, visible_controls

LINK_TAG = "[click](javascript:alert(1))"
MARKUP_TAG = "[bold]loud[/bold] [/x]"
CONTROL_TAG = "\x1b]0;pwned\x07\x1b[2J"
NEWLINE_TAG = "x\n| 99.9% | forged |"
TAGS = (LINK_TAG, MARKUP_TAG, CONTROL_TAG, NEWLINE_TAG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9b", "c1\\x9b"),
        ("del\x7f", "del\\x7f"),
        ("abc\u202edef", "abc\\u202edef"),  # a right-to-left override would show "fedcba"
        ("tab\tand\nnewline", "tab\\x09and\\x0anewline"),
        ("plain text, ümlaut ✓", "plain text, ümlaut ✓"),
    ],
)
def test_visible_controls(text, expected):
    assert visible_controls(text) == expected


def test_visible_controls_can_keep_line_breaks_of_messages():
    assert visible_controls("line one\nline\x1btwo", keep_newlines=True) == "line one\nline\\x1btwo"


def render(renderable) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=200)
    console.print(renderable)
    return console.file.getvalue()


@pytest.mark.parametrize("text", ["[bold]x[/bold]", "[/x]", "clips/[speaker1]/a.wav", "a\\[b]", "[link=javascript:alert(1)]x[/link]"])
def test_terminal_text_is_never_markup(text):
    plain = escape_terminal(text)
    assert plain.plain == text
    out = render(plain)
    assert text in re.sub(r"\x1b\[[0-9;]*m", "", out)  # printed as written, whatever the console's markup setting
    assert "\x1b[1m" not in out  # and not bold


def test_terminal_text_shows_escape_sequences_instead_of_running_them():
    out = render(escape_terminal(CONTROL_TAG))
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in out
    assert "\x07" not in out and "\x1b]0" not in out and "\x1b[2J" not in out


def test_markdown_escaper():
    assert escape_markdown(LINK_TAG) == "\\[click\\](javascript:alert(1))"
    assert escape_markdown("a|b <i>x</i> *em* _u_ `c`\nnext") == "a\\|b &lt;i&gt;x&lt;/i&gt; \\*em\\* \\_u\\_ \\`c\\` next"
    assert escape_markdown(NEWLINE_TAG) == "x \\| 99.9% \\| forged \\|"
    assert "\x1b" not in escape_markdown(CONTROL_TAG)


def test_html_and_csv_escapers():
    assert escape_html('"><img src=x onerror=alert(1)>') == "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert escape_html("a\x1bb\nc") == "a\\x1bb\nc"
    assert [escape_csv(v) for v in ("=SUM(A1)", "+1", "-1", "@x", "plain", 3.5)] == ["'=SUM(A1)", "'+1", "'-1", "'@x", "plain", 3.5]


def test_no_module_keeps_a_private_escaper():
    """One escaper per format: the report modules import harness.escaping instead of defining their own."""
    from pathlib import Path

    import harness

    for path in Path(harness.__file__).parent.rglob("*.py"):
        if path.name == "escaping.py":
            continue
        source = path.read_text()
        assert not re.search(r"def _?(md_escape|markdown_escape|csv_safe|escape_md)\b", source), path
        assert 'replace("|", "\\\\|")' not in source, path


@pytest.fixture
def evil_run(tmp_path):
    """A replay run whose accent tags are a Markdown link, rich markup, terminal control codes and a
    newline that would forge a table row; 12 speakers each so every slice is large enough to compare."""
    records, lines = [], ["id\thypothesis"]
    for t, tag in enumerate(("plain", *TAGS)):
        for i in range(12):
            uid = f"t{t}u{i}"
            records.append({"id": uid, "text": "one two three four five six seven eight nine ten", "speaker": f"t{t}s{i}", "tags": {"accent": tag}})
            lines.append(f"{uid}\tone two three four five six seven eight nine {'ten' if t % 2 else 'tin'}")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "h.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={tmp_path / 'h.tsv'}", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_terminal_report_prints_tags_as_text(evil_run):
    result = CliRunner().invoke(app, ["report", str(evil_run), "--by", "accent", "--min-speakers", "5", "--min-words", "10", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "accent=[bold]loud[/bold] [/x]" in out and "accent=[click](javascript:alert(1))" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "accent=\\x1b]0;pwned\\x07\\x1b[2J" in out and "accent=x\\x0a| 99.9% | forged |" in out


def _table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|") and not line.startswith("|---")]


def test_markdown_outputs_have_no_links_and_no_forged_rows(evil_run, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["report", str(evil_run), "--by", "accent", "--min-speakers", "5", "--min-words", "10", "--resamples", "100"]).exit_code == 0
    assert runner.invoke(app, ["slices", str(evil_run), "--min-speakers", "5", "--min-words", "10", "--resamples", "100", "--depth", "1"]).exit_code == 0
    result = runner.invoke(app, ["compare", str(evil_run), str(evil_run), "--by", "accent", "--min-speakers", "5", "--min-words", "10", "--resamples", "100", "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["card", str(evil_run), "--by", "accent", "--min-speakers", "5", "--min-words", "10", "--resamples", "100"]).exit_code == 0
    for path, n_rows in ((evil_run / "report.md", 1 + 1 + 5), (tmp_path / "cmp" / "comparison.md", 1 + 1 + 5), (evil_run / "card.md", None), (evil_run / "slices.md", None)):
        text = path.read_text(encoding="utf-8")
        assert "](javascript:" not in text.replace("\\](javascript:", ""), path  # every "[" and "]" escaped: no link
        assert "\x1b" not in text and "\x07" not in text, path
        assert "| 99.9% | forged |" not in text, path
        if n_rows is not None:
            assert len(_table_rows(text)) == n_rows, path  # header + overall + one row per tag value
        assert "\\[click\\](javascript:alert(1))" in text or path.name == "slices.md", path


def test_csv_defuses_formulas_and_json_keeps_the_text(tmp_path):
    tag = '=HYPERLINK("http://x")'
    records = [{"id": f"u{i}", "text": "a b", "speaker": f"s{i}", "tags": {tag: "yes"}} for i in range(3)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "h.tsv").write_text("id\thypothesis\n" + "".join(f"u{i}\ta b\n" for i in range(3)))
    result = CliRunner().invoke(app, ["run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={tmp_path / 'h.tsv'}", "--out", str(tmp_path / "run"), "--by", tag])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "run" / "report.csv").open(encoding="utf-8")))
    assert rows[1]["slice"] == "'" + tag + "=yes" and rows[1]["dimension"] == "'" + tag
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    assert data["slices"][0]["by"] == {tag: "yes"}
