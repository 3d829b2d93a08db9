"""The slice report on a run built through the real pipeline: pooled WER, sizes, flags, CSV safety."""

import csv
import json

import pytest

from harness.backends import load_backend
from harness.manifest import load_manifest
from harness.report import ReportOptions, build_report, write_report
from harness.runner import run_evaluation


@pytest.fixture
def replay_run(tmp_path):
    """Two accents; speaker a1 has a long perfect utterance and a short wrong one, so pooled != mean."""
    rows = [
        ("u1", "a1", "us", "one two three four five six seven eight nine ten", "one two three four five six seven eight nine ten"),
        ("u2", "a1", "us", "hello", "goodbye"),
        ("u3", "b1", "=cmd|' /C calc'!A0", "the cat sat", "the bat sat"),
        ("u4", "b2", "=cmd|' /C calc'!A0", "the dog ran", ""),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "text": ref, "speaker": s, "tags": {"accent": a}}) + "\n" for i, s, a, ref, _ in rows))
    hypotheses = tmp_path / "h.jsonl"
    hypotheses.write_text("".join(json.dumps({"id": i, "hypothesis": hyp}) + "\n" for i, _, _, _, hyp in rows))
    options = {"hypotheses": str(hypotheses)}
    run_evaluation(load_manifest(manifest, require_audio=False), load_backend("replay", options), out_dir=tmp_path / "run", backend_options=options)
    return tmp_path / "run"


def test_pooled_and_mean_are_named_apart(replay_run):
    report = build_report(replay_run, ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    us = next(r for r in report.table.slices if r["by"] == {"accent": "us"})
    assert (us["errors"], us["ref_words"]) == (1, 11)
    assert us["wer"] == pytest.approx(1 / 11)
    assert us["mean_utterance_wer"] == pytest.approx((0 / 10 + 1 / 1) / 2)
    overall = report.table.overall
    assert (overall["errors"], overall["ref_words"], overall["n_speakers"]) == (5, 17, 3)
    assert (overall["substitutions"], overall["deletions"]) == (2, 3)


def test_small_slices_flagged_without_interval(replay_run):
    report = build_report(replay_run, ReportOptions(by=("accent",)))
    assert all(row["small"] and row["wer_ci_low"] is None and row["gap_to_best"] is None for row in report.table.slices)
    assert not any(d.worst for d in report.table.disparities)


def test_csv_defuses_formulas_and_json_has_required_fields(replay_run):
    report = build_report(replay_run, ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    write_report(report, replay_run, formats=["csv", "json"])
    with open(replay_run / "report.csv", newline="") as handle:
        slices = {row["slice"]: row for row in csv.DictReader(handle)}
    assert "'accent==cmd|' /C calc'!A0" not in slices  # the label starts "accent=", not "="
    formula_tag = next(label for label in slices if "calc" in label)
    assert not formula_tag.startswith(("=", "+", "-", "@"))
    from harness.escaping import escape_csv as csv_safe

    assert csv_safe("=SUM(A1)") == "'=SUM(A1)" and csv_safe("-1") == "'-1" and csv_safe("plain") == "plain"
    data = json.loads((replay_run / "report.json").read_text())
    assert data["overall"]["wer"] == pytest.approx(5 / 17)
    assert {"by", "small", "n_failed", "wer_ci_low", "wer_ci_high"} <= set(data["slices"][0])


def _run(tmp_path, rows, normalizer="basic"):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "text": ref, "speaker": s, "tags": {"accent": a}}) + "\n" for i, s, a, ref, _ in rows), encoding="utf-8")
    hypotheses = tmp_path / "h.jsonl"
    hypotheses.write_text("".join(json.dumps({"id": i, "hypothesis": hyp}) + "\n" for i, _, _, _, hyp in rows), encoding="utf-8")
    options = {"hypotheses": str(hypotheses)}
    run_evaluation(load_manifest(manifest, require_audio=False), load_backend("replay", options), out_dir=tmp_path / "run", normalizer=normalizer, backend_options=options)
    return tmp_path / "run"


def test_metric_cer_ranks_by_characters(tmp_path):
    """Accent x misspells one letter of every word (WER 100%, CER low); accent y drops half its words (WER 50%, CER high)."""
    rows = []
    for s in range(4):
        rows.append((f"x{s}", f"x{s}", "x", "alpha bravo charlie delta", "alphx bravx charlix deltx"))
        rows.append((f"y{s}", f"y{s}", "y", "alpha bravo charlie delta", "alpha bravo"))
    run = _run(tmp_path, rows)
    by_wer = build_report(run, ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    by_cer = build_report(run, ReportOptions(by=("accent",), min_speakers=1, min_words=1, metric="cer"))
    [wer_dim], [cer_dim] = by_wer.table.disparities, by_cer.table.disparities
    assert (wer_dim.worst, wer_dim.best) == ({"accent": "x"}, {"accent": "y"})
    assert (cer_dim.worst, cer_dim.best) == ({"accent": "y"}, {"accent": "x"})
    x = next(r for r in by_cer.table.slices if r["by"] == {"accent": "x"})
    assert x["cer"] == pytest.approx(4 / 25)  # 25 characters, spaces included, as jiwer counts and x["cer_ci_low"] is not None and "wer_ci_low" not in x
    data = by_cer.to_json()
    assert data["metric"] == "cer" and "characters" in data["small"]
    write_report(by_cer, run, formats=["md"])
    assert "| CER | 95% CI |" in (run / "report.md").read_text(encoding="utf-8")


def test_references_that_normalise_to_nothing_are_counted_and_warned(tmp_path, capsys):
    rows = [("u1", "s1", "zh", "我爱北京", "我爱北京"), ("u2", "s2", "en", "hello there", "hello there")]
    run = _run(tmp_path, rows, normalizer="ascii")
    report = build_report(run, ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    zh = next(r for r in report.table.slices if r["by"] == {"accent": "zh"})
    assert zh["n_empty_reference"] == 1 and zh["ref_words"] == 0 and zh["wer"] is None
    assert report.table.overall["n_empty_reference"] == 1
    from harness.report.render import warning_lines

    [warning] = warning_lines(report)
    assert "1 scored utterance(s) have a reference that normalised to no words under normaliser ascii" in warning
    # With basic the script survives: one word, scored.
    (tmp_path / "b").mkdir()
    basic = build_report(_run(tmp_path / "b", rows, normalizer="basic"), ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    assert basic.table.overall["n_empty_reference"] == 0 and not warning_lines(basic)


def test_confidence_sets_every_label_and_interval(replay_run):
    narrow = build_report(replay_run, ReportOptions(by=("accent",), min_speakers=1, min_words=1, confidence=0.8))
    wide = build_report(replay_run, ReportOptions(by=("accent",), min_speakers=1, min_words=1, confidence=0.99))
    assert narrow.table.overall["wer_ci_high"] < wide.table.overall["wer_ci_high"]
    write_report(narrow, replay_run, formats=["md"])
    text = (replay_run / "report.md").read_text(encoding="utf-8")
    assert "| 80% CI |" in text and "95%" not in text
