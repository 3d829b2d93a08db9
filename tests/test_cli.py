"""The command line: exit codes, messages without tracebacks, and a --help that imports no torch."""

import json
import re
import subprocess
import sys

from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def test_help_imports_no_heavy_backend():
    code = "import sys; from harness.cli import app; from harness import backends; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_validate_clean_and_broken(tmp_path, generated_manifest):
    ok = runner.invoke(app, ["validate", str(generated_manifest)])
    assert ok.exit_code == 0 and "12 utterances, 6 speakers" in ok.output and "No problems found" in ok.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "a", "audio": "nope.wav", "text": "hi"}) + "\n" + json.dumps({"id": "a", "text": ""}) + "\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output and f"{broken}:1: field 'audio'" in result.output and f"{broken}:2: field 'id'" in result.output
    assert "Traceback" not in result.output


def test_unknown_backend_and_bad_backend_arg_exit_2(tmp_path, generated_manifest):
    result = runner.invoke(app, ["run", str(generated_manifest), "--backend", "pocketsphix", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "Did you mean 'pocketsphinx'?" in result.output
    result = runner.invoke(app, ["run", str(generated_manifest), "--backend-arg", "beam", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.output


def test_report_unknown_tag_exit_2(tmp_path, generated_manifest):
    hypotheses = tmp_path / "h.tsv"
    hypotheses.write_text("id\thypothesis\nus_0\tthe cat sat on the mat\n")
    run = runner.invoke(app, ["run", str(generated_manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hypotheses}", "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    assert "replay: 11 of 12 manifest utterances have no hypothesis" in run.output and "['us_1'" in run.output
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--by", "dialect"])
    assert result.exit_code == 2 and "--by 'dialect': no such tag" in result.output and "accent" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--by", "accent", "--min-speakers", "2", "--min-words", "10"])
    assert result.exit_code == 0 and "accent=us" in result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    us = next(s for s in report["slices"] if s["by"] == {"accent": "us"})
    # One of six US utterances has a hypothesis; the other five count as all deletions, never dropped.
    assert us["n_utterances"] == 6 and us["errors"] == us["ref_words"] - 6


def test_report_process_imports_only_what_a_report_needs(tmp_path, generated_manifest):
    """Start-up is most of a small report's time (#10: within 2x of `import pandas`). scipy.stats alone
    would add 0.6 s, pyarrow.parquet 0.08 s (a stored run is read from its Arrow parts), the runner and
    the audio stack more; a report's process must load none of them."""
    hypotheses = tmp_path / "h.tsv"
    hypotheses.write_text("id\thypothesis\nus_0\tthe cat sat on the mat\n")
    run = runner.invoke(app, ["run", str(generated_manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hypotheses}", "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    heavy = ("scipy.stats", "pyarrow.parquet", "pyarrow.dataset", "harness.runner", "harness.audio", "soundfile", "soxr", "jiwer", "torch", "ray")
    code = (
        "import sys\nfrom harness.cli import app\n"
        f"try:\n    app(['report', {str(tmp_path / 'run')!r}, '--by', 'accent', '--min-speakers', '2', '--min-words', '10'])\n"
        "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\nprint('scipy.special' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, special = result.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    assert special == "True"  # the slices' t intervals: the check above sees a real report's imports


def test_help_shows_no_type_after_flags_that_take_no_value():
    for command in (["run", "--help"], ["report", "--help"], ["noise", "add", "--help"], ["--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0
        assert "<bool>" not in result.output, command
    run_help = runner.invoke(app, ["run", "--help"]).output
    assert re.search(r"--resume\s+Continue an interrupted", run_help) and re.search(r"--batch-size\s+<int", run_help)


def test_noise_preview_writes_under_reports_previews_by_default(tmp_path, monkeypatch):
    import numpy as np
    import soundfile

    soundfile.write(tmp_path / "a.wav", (0.2 * np.sin(np.arange(16000) / 5)).astype("float32"), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "spk/u 1", "audio": "a.wav", "text": "hi"}) + "\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["noise", "preview", "pink", "--manifest", "m.jsonl", "--utterance", "spk/u 1", "--snr", "5"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "reports" / "previews" / "pink-spk_u_1-5dB.wav"
    assert written.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "m.jsonl", "reports"]
    (tmp_path / "listen").mkdir()
    assert runner.invoke(app, ["noise", "preview", "pink", "--manifest", "m.jsonl", "--utterance", "spk/u 1", "-o", "listen", "--snr", "0"]).exit_code == 0
    assert (tmp_path / "listen" / "pink-spk_u_1-0dB.wav").is_file()


def test_readme_commands_work_pasted_into_a_fresh_shell():
    """A fresh shell has no virtual environment active: every command the README shows runs the installed
    tools by their path in .venv (or is a make target), never a bare `asrfair` or `python`."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks, block, inside = [], [], False
    for line in readme.splitlines():
        if line.strip().startswith("```"):
            if inside:
                blocks.append("\n".join(block))
            block, inside = [], not inside
        elif inside:
            block.append(line)
    commands = []
    for text in blocks:
        joined = re.sub(r"\\\n\s*", " ", text)  # backslash-continued lines are one command
        commands += [line.strip().removeprefix("$ ") for line in joined.splitlines() if line.strip().startswith(("$ ", "asrfair", "python", ".venv", "make", "pytest"))]
    assert len(commands) >= 10
    for command in commands:
        assert command.split()[0] not in ("asrfair", "python", "python3", "pytest"), f"needs an activated venv: {command}"
