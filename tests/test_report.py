"""The slice report on a run built through the real pipeline: pooled WER, sizes, flags, CSV safety."""

import csv
import json

import pandas as pd
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


def _interrupt(run_dir, keep_ids):
    """Make the run look like one stopped part-way: rows of keep_ids only, status interrupted."""
    import sqlite3

    record = json.loads((run_dir / "run.json").read_text())
    record["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(record))
    with sqlite3.connect(run_dir / "results.sqlite") as connection:
        connection.execute(f"DELETE FROM results WHERE utterance_id NOT IN ({','.join('?' for _ in keep_ids)})", keep_ids)
    (run_dir / "utterances.parquet").unlink()


def test_every_output_of_an_incomplete_run_says_so_with_counts(replay_run, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    _interrupt(replay_run, ["u1", "u3", "u4"])
    notice = "Incomplete run (status interrupted): 3 of 4 utterance-conditions transcribed, 1 not transcribed yet"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(replay_run), "--by", "accent", "--format", "md,csv,json,html"])
    assert result.exit_code == 0 and notice in result.output
    assert notice in (replay_run / "report.md").read_text().replace("\\", "")
    html = (replay_run / "report.html").read_text()
    assert notice in html and 'class="warn"' in html and "3 of 4 utterance-conditions transcribed" in html
    data = json.loads((replay_run / "report.json").read_text())
    assert data["complete"] is False and data["incomplete_notice"].startswith(notice)
    assert data["run"]["completeness"] == {"complete": False, "status": "interrupted", "expected": 4, "transcribed": 3, "missing": 1, "failed": 0}
    assert runner.invoke(app, ["card", str(replay_run), "--by", "accent"]).exit_code == 0
    for name in ("card.md", "card.html"):
        assert notice in (replay_run / name).read_text().replace("\\", "")
    result = runner.invoke(app, ["slices", str(replay_run), "--min-speakers", "2", "--min-words", "2", "--resamples", "100"])
    assert result.exit_code == 0 and notice in result.output and notice in (replay_run / "slices.md").read_text().replace("\\", "")
    assert json.loads((replay_run / "slices.json").read_text())["run"]["completeness"]["missing"] == 1
    result = runner.invoke(app, ["compare", str(replay_run), str(replay_run), "--resamples", "100", "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0 and f"A: {notice}" in result.output and f"B: {notice}" in result.output
    assert f"A: {notice}" in (tmp_path / "cmp" / "comparison.md").read_text().replace("\\", "")


def test_a_complete_run_carries_no_notice(replay_run):
    report = build_report(replay_run, ReportOptions(by=("accent",)))
    data = report.to_json()
    assert data["complete"] is True and data["incomplete_notice"] is None
    assert data["run"]["completeness"]["transcribed"] == data["run"]["completeness"]["expected"] == 4


def test_a_run_killed_while_running_is_incomplete_even_with_every_row(replay_run):
    record = json.loads((replay_run / "run.json").read_text())
    record["status"] = "running"
    (replay_run / "run.json").write_text(json.dumps(record))
    data = build_report(replay_run, ReportOptions()).to_json()
    assert data["complete"] is False and "status running" in data["incomplete_notice"]


def test_report_files_are_replaced_as_a_set_and_record_their_slicing(replay_run):
    write_report(build_report(replay_run, ReportOptions(by=("accent",))), replay_run, formats=["md", "csv", "json"])
    removed = []
    written = write_report(build_report(replay_run, ReportOptions(by=(), cross=False)), replay_run, formats=["md", "html"], on_removed=removed.append)
    assert [p.name for p in written] == ["report.md", "report.html"]
    assert sorted(p.name for p in removed) == ["report.csv", "report.json"]
    assert not (replay_run / "report.json").exists() and not (replay_run / "report.csv").exists()
    assert "- Slicing: overall only; metric wer; 95% confidence; small below" in (replay_run / "report.md").read_text()
    assert "<dt>Slicing</dt><dd>overall only;" in (replay_run / "report.html").read_text()
    write_report(build_report(replay_run, ReportOptions(by=("accent",))), replay_run, formats=["json"])
    assert json.loads((replay_run / "report.json").read_text())["options"]["by"] == ["accent"]
    assert not (replay_run / "report.md").exists()


def test_html_embeds_a_bounded_amount_of_text_per_utterance(tmp_path):
    from harness.report.html import ALIGNMENT_LIMIT_WORDS, TEXT_LIMIT_CHARS, render_html

    reference = " ".join(f"w{i}" for i in range(6000))  # about 35 kB of reference text
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "long", "text": reference, "speaker": "s", "tags": {"accent": "a"}}) + "\n"
                        + json.dumps({"id": "short", "text": "a b", "speaker": "t", "tags": {"accent": "a"}}) + "\n")
    hypotheses = tmp_path / "h.jsonl"
    hypotheses.write_text(json.dumps({"id": "long", "hypothesis": reference.replace("w1 ", "x1 ")}) + "\n" + json.dumps({"id": "short", "hypothesis": "a"}) + "\n")
    options = {"hypotheses": str(hypotheses)}
    run_evaluation(load_manifest(manifest, require_audio=False), load_backend("replay", options), out_dir=tmp_path / "run", backend_options=options)
    page = render_html(build_report(tmp_path / "run", ReportOptions(by=("accent",))))
    assert len(page) < 120_000  # the two texts alone are 70 kB; the page holds at most a capped part of each
    assert f"{len(reference) - TEXT_LIMIT_CHARS:,} more characters not shown" in page
    assert f"{6000 - ALIGNMENT_LIMIT_WORDS:,} more aligned words not shown" in page
    assert "x1" in page  # the error itself is still shown


def test_load_run_with_columns_keeps_keys_tags_and_only_what_was_asked(replay_run):
    from harness.report.data import KEY_COLUMNS, condition_keys, load_run

    full = load_run(replay_run).frame
    narrow = load_run(replay_run, texts=False, columns=["errors", "not-a-column"]).frame
    assert set(narrow.columns) == {*KEY_COLUMNS, "errors", "accent", "cluster"}
    for name in narrow.columns:
        assert narrow[name].astype(str).tolist() == full[name].astype(str).tolist(), name
    assert "hypothesis" in full and "hypothesis" not in load_run(replay_run, texts=False).frame
    untagged = load_run(replay_run, texts=False, columns=["errors"], tags=False)
    assert set(untagged.frame.columns) == {*KEY_COLUMNS, "errors", "cluster"} and untagged.tag_columns == ()
    assert condition_keys(pd.DataFrame({"condition_key": ["white@10", "clean", "white@10", "babble@0"]})) == ["white@10", "clean", "babble@0"]


def test_latency_percentiles_per_slice_and_overall_from_ok_rows_only():
    import numpy as np

    from harness.report.slices import COUNT_COLUMNS, SliceOptions, build_slice_table

    rng = np.random.default_rng(5)
    n = 60
    frame = pd.DataFrame({
        "status": ["ok"] * 50 + ["failed"] * 10, "cluster": [f"s{i % 12}" for i in range(n)],
        "accent": pd.array(["a", "b", "c"] * 20, dtype="string"), "latency_s": rng.uniform(0.1, 2.0, n),
    })
    frame.loc[[3, 7], "latency_s"] = np.nan  # a backend that measured nothing for these
    for name in COUNT_COLUMNS:
        frame[name] = rng.integers(1, 9, n)
    table = build_slice_table(frame, SliceOptions(by=("accent",), min_speakers=1, min_words=1))
    ok = frame[frame["status"] == "ok"].dropna(subset=["latency_s"])
    assert table.overall["n_latency"] == len(ok) == 48
    assert table.overall["latency_p50_s"] == pytest.approx(ok["latency_s"].median())
    assert table.overall["latency_p90_s"] == pytest.approx(ok["latency_s"].quantile(0.9))
    for row in table.slices:
        members = ok[ok["accent"] == row["by"]["accent"]]
        assert row["n_latency"] == len(members)
        assert (row["latency_p50_s"], row["latency_p90_s"]) == pytest.approx((members["latency_s"].median(), members["latency_s"].quantile(0.9)))
        assert row["n_speakers"] == frame.loc[(frame["status"] == "ok") & (frame["accent"] == row["by"]["accent"]), "cluster"].nunique()
