"""The transcript cache: a second run over overlapping data transcribes only what is new, and never
reuses a transcript for different audio, condition, noise seed or backend settings."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from harness.backends import Backend
from harness.cache import TranscriptCache
from harness.cli import app
from harness.manifest import load_manifest
from harness.noise import load_profile
from harness.report.data import load_run
from harness.runner import Condition, build_conditions, run_evaluation
from tests.servers import demo_manifest


class AudioHash(Backend):
    """Transcribes each utterance as a word made from its audio, and counts what it was sent."""

    name = "audio-hash"
    sample_rate_hz = 16000

    def __init__(self, variant="a"):
        self.variant = variant
        self.sent: list[tuple[str, str]] = []

    def transcribe(self, batch):
        self.sent += [(r.utterance_id, r.condition) for r in batch]
        return [f"{self.variant}{hashlib.sha256(r.samples.tobytes()).hexdigest()[:8]}" for r in batch]

    def describe(self):
        return {"variant": self.variant}


@pytest.fixture()
def manifests(tmp_path):
    return load_manifest(demo_manifest(tmp_path, 4, name="a.jsonl")), load_manifest(demo_manifest(tmp_path, 4, start=2, name="b.jsonl"))


def _run(manifest, backend, out_dir, cache, conditions=(Condition(),), seed=0):
    summary = run_evaluation(manifest, backend, out_dir=out_dir, cache=cache, conditions=conditions, seed=seed)
    return summary, load_run(out_dir).frame.set_index(["utterance_id", "condition_key"])


def test_second_run_transcribes_only_what_is_new(manifests, tmp_path):
    a, b = manifests
    cache = TranscriptCache(tmp_path / "cache.sqlite")
    first_backend = AudioHash()
    _, first = _run(a, first_backend, tmp_path / "1", cache)
    assert len(first_backend.sent) == 4 and len(cache) == 4

    second_backend = AudioHash()
    summary, second = _run(b, second_backend, tmp_path / "2", cache)
    overlap = [u.id for u in b.utterances[:2]]
    assert [i for i, _ in second_backend.sent] == [u.id for u in b.utterances[2:]]
    assert summary.n_cached == 2 and len(cache) == 6
    for utterance_id in overlap:
        assert second.loc[(utterance_id, "clean"), "hypothesis"] == first.loc[(utterance_id, "clean"), "hypothesis"]
        assert second.loc[(utterance_id, "clean"), "attempts"] == 0
    record = (tmp_path / "2" / "run.json").read_text()
    assert '"hits": 2' in record


def test_condition_noise_seed_and_backend_settings_are_part_of_the_key(manifests, tmp_path):
    _, b = manifests
    cache = TranscriptCache(tmp_path / "cache.sqlite")
    conditions = build_conditions([load_profile("white")], [10.0])
    _run(b, AudioHash(), tmp_path / "1", cache, conditions)

    same = AudioHash()
    _run(b, same, tmp_path / "2", cache, conditions)
    assert same.sent == []

    other_seed = AudioHash()
    _, rows = _run(b, other_seed, tmp_path / "3", cache, conditions, seed=1)
    # The clean audio is the same under any seed; the noisy audio is not.
    assert sorted(other_seed.sent) == sorted((u.id, "white@10dB") for u in b)
    hypotheses = rows["hypothesis"].to_dict()
    assert all(hypotheses[(u.id, "white@10dB")] == f"a{_noisy_hash(u, 1)}" for u in b)

    other_settings = AudioHash(variant="b")
    _run(b, other_settings, tmp_path / "4", cache, conditions)
    assert len(other_settings.sent) == 8


def _noisy_hash(utterance, seed):
    """What AudioHash says for an utterance under white@10dB at a run seed, computed without the cache."""
    backend = AudioHash()
    import tempfile
    from pathlib import Path

    from harness.manifest import Manifest

    one = Manifest.from_utterances((utterance,), source="x", sha256="x", format="jsonl")
    with tempfile.TemporaryDirectory() as directory:
        run_evaluation(one, backend, out_dir=Path(directory) / "run", conditions=build_conditions([load_profile("white")], [10.0]), seed=seed)
        frame = load_run(Path(directory) / "run").frame.set_index("condition_key")
    return frame.loc["white@10dB", "hypothesis"][1:]


def test_cli_cache_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("ASRFAIR_HOME", str(tmp_path / "home"))
    manifest = demo_manifest(tmp_path, 2)
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(manifest), "--backend-arg", "processes=1", "--cache", "--out", str(tmp_path / "1")])
    second = runner.invoke(app, ["run", str(manifest), "--backend-arg", "processes=1", "--cache", "--out", str(tmp_path / "2")])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "2 from the cache" in second.output and (tmp_path / "home" / "transcripts.sqlite").exists()
    assert load_run(tmp_path / "1").frame["hypothesis"].tolist() == load_run(tmp_path / "2").frame["hypothesis"].tolist()
