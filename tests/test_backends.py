"""The backend contract: registry, plugins (entry points and module:Class), what the runner asks of a
backend and always does for it (close), and layers that point down."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends import BACKENDS, Backend, PermanentError, RetryableError, Transcript, list_backends, load_backend
from harness.errors import BackendError, ConfigError
from harness.manifest import load_manifest
from harness.report.data import load_run
from harness.runner import run_evaluation
from tests.servers import demo_manifest

PROJECT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """A third-party backend: counts syllable-ish bursts of energy. Nothing real, but real audio in."""
    import numpy as np
    from harness.backends import Backend, BackendOption

    class EnergyBackend(Backend):
        name = "energy"
        sample_rate_hz = 8000
        summary = "Says how loud each utterance is."
        options = (BackendOption(name="threshold", default=0.01, help="RMS above which a frame counts"),)

        def __init__(self, threshold="0.01"):
            self.threshold = float(threshold)

        def transcribe(self, batch):
            return [" ".join(["loud"] * int(np.sqrt(np.mean(r.samples ** 2)) > self.threshold)) for r in batch]

        def describe(self):
            return {"threshold": self.threshold}

    class NotABackend:
        pass
''')


@pytest.fixture()
def plugin_dir(tmp_path):
    """A plugin installed the way pip would: a module and a dist-info with an entry point."""
    (tmp_path / "asrfair_energy.py").write_text(PLUGIN)
    info = tmp_path / "asrfair_energy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: asrfair-energy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[asrfair.backends]\nenergy = asrfair_energy:EnergyBackend\n")
    return tmp_path


def _cli(*args, plugin_dir=None):
    env = {**os.environ}
    if plugin_dir is not None:
        env["PYTHONPATH"] = f"{plugin_dir}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_backends_lists_every_backend_with_options_without_importing_engines(plugin_dir):
    code = textwrap.dedent('''
        import sys
        from harness.cli import app
        from typer.testing import CliRunner
        result = CliRunner().invoke(app, ["backends"])
        print(result.output)
        print("HEAVY:", sorted(m for m in ("torch", "transformers", "faster_whisper", "ctranslate2", "aiohttp") if m in sys.modules))
    ''')
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    output = result.stdout
    assert output.strip().endswith("HEAVY: []")
    for name in BACKENDS:
        assert f"\n{name}: installed" in "\n" + output or f"\n{name}: not installed" in "\n" + output
    assert "faster-whisper: installed" in output and "openai: installed" in output
    assert "    base_url: API root" in output and "    max_concurrency (default 8):" in output
    assert "    cmd: the command line" in output and "    num_beams (default 1): beam width" in output
    assert "energy [plugin from asrfair-energy: asrfair_energy:EnergyBackend]: installed" in output
    assert "    threshold (default 0.01): RMS above which a frame counts" in output


def test_missing_engine_is_reported_not_imported(monkeypatch):
    from harness.backends.faster_whisper import FasterWhisperBackend

    monkeypatch.setattr(FasterWhisperBackend, "requires", ("no_such_engine_module",))
    info = {i.name: i for i in list_backends()}["faster-whisper"]
    assert not info.installed and info.missing == ("no_such_engine_module",) and info.extra == "faster-whisper"


def test_plugin_runs_by_entry_point_name_and_by_module_path(plugin_dir, tmp_path):
    manifest = demo_manifest(tmp_path, 2)
    by_name = _cli("run", str(manifest), "--backend", "energy", "--out", str(tmp_path / "a"), plugin_dir=plugin_dir)
    assert by_name.returncode == 0, by_name.stderr
    by_path = _cli("run", str(manifest), "--backend", "asrfair_energy:EnergyBackend", "--backend-arg", "threshold=5", "--out", str(tmp_path / "b"), plugin_dir=plugin_dir)
    assert by_path.returncode == 0, by_path.stderr
    assert set(load_run(tmp_path / "a").frame["hypothesis"]) == {"loud"}
    assert set(load_run(tmp_path / "b").frame["hypothesis"]) == {""}
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    assert record["backend"] == {"name": "energy", "options": {"threshold": "5"}} and record["backend_details"] == {"name": "energy", "threshold": 5.0}


def test_module_path_errors_are_clear(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    with pytest.raises(BackendError, match="is not a subclass of harness.backends.Backend"):
        load_backend("asrfair_energy:NotABackend")
    with pytest.raises(BackendError, match="has no attribute 'Nope'"):
        load_backend("asrfair_energy:Nope")
    with pytest.raises(BackendError, match="not installed"):
        load_backend("no_such_package.module:Class")
    with pytest.raises(BackendError, match="Did you mean 'openai'"):
        load_backend("opneai")


class Recorder(Backend):
    """Records what the runner asked of it; its answers are scripted per utterance id."""

    name = "recorder"
    sample_rate_hz = 16000
    concurrency = 4

    def __init__(self, answers=None, fail_batch_with=None):
        self.answers = answers or {}
        self.fail_batch_with = fail_batch_with
        self.closed = 0
        self.prepared = None
        self.batches = []

    def prepare(self, utterance_ids):
        self.prepared = list(utterance_ids)

    def transcribe(self, batch):
        self.batches.append([r.utterance_id for r in batch])
        if self.fail_batch_with is not None:
            raise self.fail_batch_with
        return [self.answers.get(r.utterance_id, "hello") for r in batch]

    def describe(self):
        return {}

    def close(self):
        self.closed += 1


@pytest.fixture()
def manifest(tmp_path):
    return load_manifest(demo_manifest(tmp_path, 6))


def test_runner_prepares_batches_by_concurrency_and_closes(manifest, tmp_path):
    backend = Recorder(answers={manifest.utterances[0].id: Transcript(text="a b", latency_s=0.25, attempts=3)})
    summary = run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    assert backend.prepared == [u.id for u in manifest] and backend.closed == 1
    assert summary.batch_size == 16 and [len(b) for b in backend.batches] == [6]
    row = load_run(tmp_path / "run").frame.set_index("utterance_id").loc[manifest.utterances[0].id]
    assert (row["hypothesis"], row["latency_s"], row["attempts"]) == ("a b", 0.25, 3)
    small = run_evaluation(manifest, Recorder(), out_dir=tmp_path / "small", batch_size=2)
    assert any("below the 4 utterances" in note for note in small.notes)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), ConfigError("stop")])
def test_runner_closes_the_backend_on_error_and_interrupt(manifest, tmp_path, error):
    backend = Recorder()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")  # an existing run without --resume: refused before any work
    with pytest.raises(ConfigError):
        run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    assert backend.closed == 1
    interrupted = Recorder(fail_batch_with=error) if isinstance(error, KeyboardInterrupt) else Recorder()
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run_evaluation(manifest, interrupted, out_dir=tmp_path / "other")
        assert interrupted.closed == 1


def test_per_utterance_errors_are_stored_with_their_class(manifest, tmp_path):
    ids = [u.id for u in manifest]
    backend = Recorder(answers={ids[0]: RetryableError("busy", attempts=4), ids[1]: PermanentError("too long", attempts=1, latency_s=0.5)})
    summary = run_evaluation(manifest, backend, out_dir=tmp_path / "run")
    rows = load_run(tmp_path / "run").frame.set_index("utterance_id")
    assert summary.n_failed == 2
    assert (rows.loc[ids[0], "failure"], rows.loc[ids[0], "attempts"]) == ("retryable", 4) and "busy" in rows.loc[ids[0], "error"]
    assert (rows.loc[ids[1], "failure"], rows.loc[ids[1], "latency_s"]) == ("permanent", 0.5)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["failures"] == {"failed": 2, "permanent": 1, "retryable": 1}


def test_an_engine_crash_fails_alone_and_is_retryable(manifest, tmp_path):
    ids = [u.id for u in manifest]

    class Crashing(Recorder):
        def transcribe(self, batch):
            if any(r.utterance_id == ids[2] for r in batch):
                raise RuntimeError("engine crashed")
            return super().transcribe(batch)

    run_evaluation(manifest, Crashing(), out_dir=tmp_path / "run")
    rows = load_run(tmp_path / "run").frame.set_index("utterance_id")
    assert list(rows.index[rows["status"] == "failed"]) == [ids[2]] and rows.loc[ids[2], "failure"] == "retryable"


def test_a_wrong_answer_type_fails_the_utterances_clearly(manifest, tmp_path):
    run_evaluation(manifest, Recorder(answers={u.id: 42 for u in manifest}), out_dir=tmp_path / "run")
    rows = load_run(tmp_path / "run").frame
    assert (rows["status"] == "failed").all() and rows["error"].str.contains("returned int").all()


def test_a_run_from_before_the_new_columns_resumes(manifest, tmp_path):
    import sqlite3

    from harness.store import COLUMNS

    import json

    import pyarrow as pa

    out = tmp_path / "run"
    run_evaluation(manifest, Recorder(), out_dir=out)
    # Rewrite the store as an older asrfair left it: parts and recorded schema without the new columns.
    new = ("latency_s", "attempts", "failure")
    for part in (out / "results.parts").glob("*.arrow"):
        table = pa.ipc.open_file(pa.BufferReader(part.read_bytes())).read_all()  # a copy: the file is rewritten below
        table = table.drop_columns([name for name in new if name in table.column_names])
        with pa.ipc.new_file(part, table.schema) as writer:
            writer.write_table(table)
    with sqlite3.connect(out / "results.sqlite") as connection:
        schema = [[name, kind] for name, kind in json.loads(connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]) if name not in new]
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (json.dumps(schema),))
    assert {name for name, _ in COLUMNS} >= set(new)
    summary = run_evaluation(manifest, Recorder(), out_dir=out, resume=True)
    assert summary.n_written == 0 and "latency_s" in load_run(out).frame


def test_report_layer_never_imports_the_runner():
    for path in sorted((PROJECT / "harness" / "report").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "harness.runner" not in modules and "harness.cli" not in modules, path.name
    code = "import sys, harness.report, harness.report.html, harness.report.card, harness.report.compare, harness.report.discovery; print('harness.runner' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_contract_needs_transcribe_and_describe():
    class Incomplete(Backend):
        name = "incomplete"

        def describe(self):
            return {}

    with pytest.raises(TypeError, match="transcribe"):
        Incomplete()


def test_every_built_in_declares_its_options_as_init_keywords():
    import inspect

    from harness.backends import backend_class

    for name in BACKENDS:
        cls = backend_class(name)
        declared = {o.name for o in cls.option_specs()} - {"ANY"}
        parameters = inspect.signature(cls.__init__).parameters
        accepted = set(parameters) - {"self", "unknown", "options"}
        if "options" in parameters:  # passes any other keyword to the engine (pocketsphinx)
            assert accepted <= declared, name
        else:
            assert declared == accepted, name
