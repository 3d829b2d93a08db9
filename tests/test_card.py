"""The service card: small cells suppressed and listed, labels described, conditions and limitations stated."""

import re

import pytest

from harness.report import build_report
from harness.escaping import escape_markdown as md_escape
from harness.report.card import card_blocks, missing_label_counts, render_card_markdown, write_card
from harness.report.data import load_run
from harness.report.format import pct as _pct
from tests.test_html import EVIL_TAG, OPTIONS, noisy_run, replay_run


@pytest.fixture
def replayed(tmp_path):
    return build_report(replay_run(tmp_path, missing=("b3",)), OPTIONS)


def test_write_card_writes_markdown_and_html(replayed, tmp_path):
    written = write_card(replayed, tmp_path / "card", labels_source="self-reported")
    assert [p.name for p in written] == ["card.md", "card.html"]
    markdown = (tmp_path / "card" / "card.md").read_text(encoding="utf-8")
    assert "Where the labels came from: self-reported." in markdown and "never infers them from audio" in markdown
    html = (tmp_path / "card" / "card.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "self-reported" in html


def test_trusted_slices_show_wer_and_small_ones_are_suppressed_and_listed(replayed):
    markdown = render_card_markdown(card_blocks(replayed))
    rows = {row["by"]["accent"]: row for row in replayed.table.slices}
    a = rows["a"]
    assert f"| a | {_pct(a['wer'])} | {100 * a['wer_ci_low']:.1f}–{100 * a['wer_ci_high']:.1f} | 12 | {a['n_effective_speakers']:.1f} | 12 | 120 |" in markdown
    small = rows[EVIL_TAG]
    assert small["small"] and small["n_speakers"] == 2
    evil_cell = md_escape(EVIL_TAG)
    assert f"| {evil_cell} | suppressed (fewer than 8 effective speakers and 100 reference words) | – | 2 | 2.0 | 2 |" in markdown
    assert _pct(small["wer"]) not in markdown  # the value is not published anywhere, not even in the plot
    limitations = markdown.split("## Limitations", 1)[1]
    assert f"accent={evil_cell} (2 speakers, 2.0 effective" in limitations and "accent=(not given) (1 speaker, 1.0 effective, 10 words)" in limitations


def test_missing_labels_failures_and_replay_gaps_are_counted(replayed):
    frame = load_run(replayed.run_dir).frame
    assert missing_label_counts(frame, ("accent",)) == {"accent": 1}  # "nolabel" has no tags
    markdown = render_card_markdown(card_blocks(replayed))
    assert "Missing labels, accent: 1 of 28 utterances have no accent label" in markdown
    assert "Failed utterances: none." in markdown
    assert "1 utterance had no transcript in the replayed file" in markdown
    assert "Clean audio only" in markdown and "synthetic" not in markdown.lower()


def test_card_escapes_untrusted_text(replayed, tmp_path):
    write_card(replayed, tmp_path / "card")
    markdown = (tmp_path / "card" / "card.md").read_text(encoding="utf-8")
    html = (tmp_path / "card" / "card.html").read_text(encoding="utf-8")
    for text in (markdown, html):
        assert EVIL_TAG not in text and "<img" not in text and "<script" not in text.lower()
    # No untrusted "|" can add a column: every table row of the accent table has six cells.
    table = markdown.split("### By accent", 1)[1].split("\n\n", 2)[1]
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 8 for line in table.splitlines())
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_md_escape():
    assert md_escape("a|b <i>x</i> [link](javascript:1) *em* _u_ `c`\nnext") == "a\\|b &lt;i&gt;x&lt;/i&gt; \\[link\\](javascript:1) \\*em\\* \\_u\\_ \\`c\\` next"


def test_card_lists_each_condition_with_its_wer_and_notes_synthetic_data(tmp_path):
    report = build_report(noisy_run(tmp_path), OPTIONS)
    markdown = render_card_markdown(card_blocks(report))
    conditions = markdown.split("## Recording conditions", 1)[1]
    # 24 clips heard perfectly clean (no error: the interval is the Poisson bound for zero events,
    # -ln(0.025) / 240 words = 1.5%); the fake backend drops two words of ten under noise.
    assert re.search(r"\| clean \| clean \| – \| 0\.0% \| 0\.0–1\.5 \| 24 \| 1 \|", conditions)
    assert re.search(r"\| white@10dB \| white \| 10 dB \| 20\.0% \| 20\.0–20\.0 \| 24 \| 1 \|", conditions)
    assert "| accent=a | white@10dB | 0.0% | 20.0% | +20.0 pts |" in conditions
    assert "Failed utterances: 2 (utterance, condition) pairs" in markdown
    assert "Synthetic data: 25 of 25 utterances are tagged source=synthetic" in markdown
