"""The command line: exit codes, messages without tracebacks, and a --help that imports no torch."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def test_help_imports_no_heavy_backend():
    code = "import sys; from harness.cli import app; from harness import backends; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_validate_clean_and_broken(tmp_path, speech_manifest):
    ok = runner.invoke(app, ["validate", str(speech_manifest)])
    assert ok.exit_code == 0 and "12 utterances, 6 speakers" in ok.output and "No problems found" in ok.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "a", "audio": "nope.wav", "text": "hi"}) + "\n" + json.dumps({"id": "a", "text": ""}) + "\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output and f"{broken}:1: field 'audio'" in result.output and f"{broken}:2: field 'id'" in result.output
    assert "Traceback" not in result.output


def test_unknown_backend_and_bad_backend_arg_exit_2(tmp_path, speech_manifest):
    result = runner.invoke(app, ["run", str(speech_manifest), "--backend", "pocketsphix", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "Did you mean 'pocketsphinx'?" in result.output
    result = runner.invoke(app, ["run", str(speech_manifest), "--backend-arg", "beam", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.output


def test_report_unknown_tag_exit_2(tmp_path, speech_manifest):
    hypotheses = tmp_path / "h.tsv"
    hypotheses.write_text("id\thypothesis\nslt_0\tthe cat sat on the mat\n")
    run = runner.invoke(app, ["run", str(speech_manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hypotheses}", "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    assert "replay: 11 of 12 manifest utterances have no hypothesis" in run.output and "['slt_1'" in run.output
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--by", "dialect"])
    assert result.exit_code == 2 and "--by 'dialect': no such tag" in result.output and "accent" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--by", "accent", "--min-speakers", "2", "--min-words", "10"])
    assert result.exit_code == 0 and "accent=us" in result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    us = next(s for s in report["slices"] if s["by"] == {"accent": "us"})
    # One of six US utterances has a hypothesis; the other five count as all deletions, never dropped.
    assert us["n_utterances"] == 6 and us["errors"] == us["ref_words"] - 6
