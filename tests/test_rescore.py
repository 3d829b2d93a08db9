"""Re-scoring stored hypotheses with another normaliser: the same counts a fresh run with that normaliser gives."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness.backends import Backend
from harness.cli import app
from harness.errors import ConfigError
from harness.manifest import load_manifest
from harness.report.data import load_run
from harness.rescore import rescore_run
from harness.runner import run_evaluation
from tests.servers import demo_manifest

COUNTS = ["ref_words", "hyp_words", "hits", "substitutions", "deletions", "insertions", "errors", "ref_chars", "char_errors", "hypothesis_normalized"]


class Echo(Backend):
    """Returns the reference with digits and a stray capital, so 'none' and 'whisper-english' score it differently."""

    name = "echo"
    sample_rate_hz = 16000

    def __init__(self, references):
        self.references = references
        self.calls = 0

    def transcribe(self, batch):
        self.calls += len(batch)
        return [self.references[r.utterance_id].replace("seven", "7").upper() if r.utterance_id != "fail" else 1 for r in batch]

    def describe(self):
        return {}


def test_rescore_equals_a_fresh_run_with_that_normaliser(tmp_path):
    manifest = load_manifest(demo_manifest(tmp_path, 6))
    references = {u.id: u.text for u in manifest}
    run_evaluation(manifest, Echo(references), out_dir=tmp_path / "none", normalizer="none")
    fresh = Echo(references)
    run_evaluation(manifest, fresh, out_dir=tmp_path / "fresh", normalizer="whisper-english")

    counter = Echo(references)
    summary = rescore_run(tmp_path / "none", normalizer="whisper-english", out_dir=tmp_path / "rescored")

    assert counter.calls == 0 and summary.n_rescored == 6
    rescored = load_run(tmp_path / "rescored").frame.set_index("utterance_id")[COUNTS]
    expected = load_run(tmp_path / "fresh").frame.set_index("utterance_id")[COUNTS]
    assert rescored.sort_index().equals(expected.sort_index())
    assert summary.wer_before > summary.wer_after
    record = json.loads((tmp_path / "rescored" / "run.json").read_text())
    assert record["normalizer"]["name"] == "whisper-english" and record["rescored_from"]["normalizer"]["name"] == "none"
    assert (tmp_path / "rescored" / "utterances.parquet").exists()


def test_rescore_refuses_to_overwrite_and_incomplete_runs(tmp_path):
    manifest = load_manifest(demo_manifest(tmp_path, 2))
    run_evaluation(manifest, Echo({u.id: u.text for u in manifest}), out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="is the run being re-scored"):
        rescore_run(tmp_path / "run", normalizer="basic", out_dir=tmp_path / "run")
    rescore_run(tmp_path / "run", normalizer="basic", out_dir=tmp_path / "new")
    with pytest.raises(ConfigError, match="already holds a run"):
        rescore_run(tmp_path / "run", normalizer="basic", out_dir=tmp_path / "new")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with pytest.raises(ConfigError, match="not complete"):
        rescore_run(tmp_path / "run", normalizer="basic", out_dir=tmp_path / "other")


def test_cli_rescore(tmp_path):
    manifest = load_manifest(demo_manifest(tmp_path, 3))
    run_evaluation(manifest, Echo({u.id: u.text for u in manifest}), out_dir=tmp_path / "run", normalizer="none")
    result = CliRunner().invoke(app, ["rescore", str(tmp_path / "run"), "--normalizer", "whisper-english", "--out", str(tmp_path / "new"), "--by", "accent"])
    assert result.exit_code == 0, result.output
    assert "re-scored 3 of 3 rows with normaliser whisper-english" in result.output and (tmp_path / "new" / "report.json").exists()
    bad = CliRunner().invoke(app, ["rescore", str(tmp_path / "run"), "--normalizer", "whisper", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
