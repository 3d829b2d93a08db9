"""Bad inputs, by class, as a new user would give them to the command line.

Every case exits 2 without a traceback, with a message that names the file (or option), the line, the
field and the value, and says what to do; and nothing that existed before the command is changed or
lost (files byte for byte, results row for row), nor is a run started by a command that failed.
"""

from __future__ import annotations

import codecs
import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from typer.testing import CliRunner

from harness.cli import app

cli = CliRunner()

SENTENCE = "one two three four five six"


@dataclass(frozen=True)
class Invocation:
    args: list[str]
    expect: tuple[str, ...]  # fragments the output must hold: file, line, field, value, what to do


@dataclass(frozen=True)
class Case:
    id: str
    cls: str  # which class of the issue it belongs to
    build: Callable[[Path, Path], Invocation]  # (folder for this case, a finished run to copy) -> invocation


CASES: list[Case] = []


def case(cls: str, id: str):
    def register(build):
        CASES.append(Case(id=id, cls=cls, build=build))
        return build

    return register


# ------------------------------------------------------------------------------------------- helpers


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def records(n: int = 4) -> list[dict]:
    return [{"id": f"u{i}", "text": SENTENCE, "speaker": f"s{i % 2}", "tags": {"accent": "a" if i % 2 else "b"}} for i in range(n)]


def hypotheses(path: Path, n: int = 4) -> Path:
    path.write_text("id\thypothesis\n" + "".join(f"u{i}\t{SENTENCE}\n" for i in range(n)), encoding="utf-8")
    return path


def tone(path: Path, seconds: float = 2.0, rate: int = 16000, amplitude: float = 0.2) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


def audio_manifest(folder: Path) -> Path:
    (folder / "audio").mkdir(exist_ok=True)
    for i in range(2):
        tone(folder / "audio" / f"u{i}.wav")
    return write_jsonl(folder / "m.jsonl", [{"id": f"u{i}", "audio": f"audio/u{i}.wav", "text": SENTENCE, "speaker": f"s{i}"} for i in range(2)])


def replay_args(folder: Path, manifest: Path | None = None, out: Path | None = None) -> list[str]:
    manifest = manifest or write_jsonl(folder / "m.jsonl", records())
    return ["run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hypotheses(folder / 'h.tsv')}", "--out", str(out or folder / "run")]


def same_run_args(run: Path, out: Path) -> list[str]:
    """The exact command that wrote the finished run (its manifest and hypotheses), aimed at `out`."""
    shared = run.parent
    return ["run", str(shared / "m.jsonl"), "--backend", "replay", "--backend-arg", f"hypotheses={shared / 'h.tsv'}", "--out", str(out)]


def copy_run(run: Path, folder: Path) -> Path:
    target = folder / "run"
    shutil.copytree(run, target)
    return target


def profile_with_recording(folder: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    soundfile.write(str(folder / "noise.wav"), samples.astype(np.float32), rate)
    profile = {"name": "mine", "transforms": [{"type": "additive", "snr_db": "grid", "source": {"type": "recorded", "files": [str(folder / "noise.wav")]}}]}
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


# ----------------------------------------------------------------- 1. user text is never markup or control


@case("markup", "manifest-path-with-closing-tag")
def _(tmp, run):
    path = tmp / "[/x]" / "m.jsonl"
    return Invocation(["validate", str(path)], (str(path), "manifest file not found", "Check the path"))


@case("markup", "backend-name-with-markup")
def _(tmp, run):
    return Invocation([*replay_args(tmp)[:2], "--backend", "[bold]x[/bold]"], ("unknown backend '[bold]x[/bold]'", "Known backends"))


@case("markup", "by-tag-with-closing-tag")
def _(tmp, run):
    run = copy_run(run, tmp)
    return Invocation(["report", str(run), "--by", "a[/b]"], ("--by 'a[/b]'", "no such tag", "Available: accent"))


@case("markup", "audio-path-with-brackets")
def _(tmp, run):
    manifest = write_jsonl(tmp / "m.jsonl", [{"id": "u0", "audio": "clips/[speaker1]/a.wav", "text": SENTENCE}])
    return Invocation(["validate", str(manifest)], (f"{manifest}:1", "field 'audio'", "clips/[speaker1]/a.wav", "Check the path"))


@case("markup", "escape-sequence-in-id")
def _(tmp, run):
    manifest = write_jsonl(tmp / "m.jsonl", [{"id": "u0\x1b]0;pwned\x07", "text": SENTENCE, "tags": {"accent": 3}}])
    return Invocation(["validate", str(manifest), "--no-audio"], (f"{manifest}:1", "field 'tags.accent'", "(value: 3)", "Quote the value"))


@case("markup", "escape-sequence-in-out-path")
def _(tmp, run):
    out = tmp / "x\x1b[2Jy"
    return Invocation([*replay_args(tmp, out=out), "--resume"], ("--resume", "x\\x1b[2Jy", "holds no run", "drop --resume"))


# ------------------------------------------------------------------------------------------ 2. encodings


@case("encoding", "cp1252-byte-in-jsonl")
def _(tmp, run):
    path = tmp / "m.jsonl"
    path.write_bytes(b'{"id": "u0", "text": "hello"}\n{"id": "u1", "text": "caf\xe9"}\n')
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:2", "0xe9", "byte at offset 55 (column 26 of the line)", "not valid utf-8", "--encoding cp1252"))


@case("encoding", "cp1252-byte-in-csv")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_bytes(b"id,text,accent\nu0,hello,us\nu1,na\xefve,fr\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:3", "0xef", "column 6 of the line", "--encoding"))


@case("encoding", "utf16-manifest")
def _(tmp, run):
    path = tmp / "m.tsv"
    path.write_bytes(codecs.BOM_UTF16_LE + "id\ttext\nu0\thello\n".encode("utf-16-le"))
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "0xff", "UTF-16", "--encoding utf-16"))


@case("encoding", "unknown-encoding-name")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", records())
    return Invocation(["validate", str(path), "--no-audio", "--encoding", "klingon"], ("--encoding", "'klingon'", "unknown text encoding", "cp1252"))


@case("encoding", "latin1-byte-in-replay-tsv")
def _(tmp, run):
    hyp = tmp / "h.tsv"
    hyp.write_bytes(b"id\thypothesis\nu0\tone\nu1\tcaf\xe9\n")
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:3", "0xe9", "--backend-arg encoding=cp1252"))


@case("encoding", "latin1-byte-in-replay-jsonl")
def _(tmp, run):
    hyp = tmp / "h.jsonl"
    hyp.write_bytes(b'{"id": "u0", "hypothesis": "one"}\n{"id": "u1", "hypothesis": "\xe0 la"}\n')
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:2", "0xe0", "encoding="))


# ---------------------------------------------------------------------------------- 3. files and disks


@case("files", "out-is-a-file")
def _(tmp, run):
    out = tmp / "taken"
    out.write_text("not a folder")
    return Invocation(replay_args(tmp, out=out), (f"--out {out}", "is a file, not a folder", "Give a folder"))


@case("files", "out-inside-a-file")
def _(tmp, run):
    blocker = tmp / "blocker"
    blocker.write_text("a file")
    return Invocation(replay_args(tmp, out=blocker / "run"), (str(blocker / "run"), "cannot write the run", "choose another --out folder"))


@case("files", "card-out-is-a-file")
def _(tmp, run):
    run = copy_run(run, tmp)
    out = tmp / "card-here"
    out.write_text("a file")
    return Invocation(["card", str(run), "--out", str(out)], (str(out), "is a file where a folder is needed", "Choose another --out"))


@case("files", "slices-out-is-a-file")
def _(tmp, run):
    run = copy_run(run, tmp)
    out = tmp / "slices-here"
    out.write_text("a file")
    return Invocation(["slices", str(run), "--out", str(out), "--min-speakers", "2", "--min-words", "1", "--resamples", "100"], (str(out), "is a file where a folder is needed", "--out"))


@case("files", "compare-out-is-a-file")
def _(tmp, run):
    run = copy_run(run, tmp)
    out = tmp / "compare-here"
    out.write_text("a file")
    return Invocation(["compare", str(run), str(run), "--out", str(out), "--resamples", "100"], (str(out), "is a file where a folder is needed", "--out"))


@case("files", "preview-output-inside-a-file")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    blocker = tmp / "blocker"
    blocker.write_text("a file")
    out = blocker / "p.wav"
    return Invocation(["noise", "preview", "pink", "--manifest", str(manifest), "--utterance", "u0", "--snr", "5", "-o", str(out)], (str(out), "cannot write", "Give another -o"))


@case("files", "preview-output-unknown-suffix")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    return Invocation(["noise", "preview", "pink", "--manifest", str(manifest), "--utterance", "u0", "--snr", "5", "-o", str(tmp / "p.mp3")], ("-o", "p.mp3", ".wav or .flac"))


@case("files", "report-unknown-format")
def _(tmp, run):
    run = copy_run(run, tmp)
    return Invocation(["report", str(run), "--format", "md,xlsx"], ("--format xlsx", "Choose from md, csv, json, html"))


# ------------------------------------------------------------------ 4. damaged or foreign run folders


def damage(run: Path, tmp: Path, name: str, data: bytes | None = None, truncate: int | None = None) -> Path:
    run = copy_run(run, tmp)
    path = run / name
    if truncate is not None:
        path.write_bytes(path.read_bytes()[:truncate])
    elif data is not None:
        path.write_bytes(data)
    for extra in run.glob("results.sqlite-*"):
        extra.unlink()
    return run


@case("damaged", "report-truncated-run-json")
def _(tmp, run):
    run = damage(run, tmp, "run.json", truncate=120)
    return Invocation(["report", str(run)], (f"{run / 'run.json'}:", "not valid JSON", "damaged", "start the run again in a new --out"))


@case("damaged", "report-run-json-not-a-record")
def _(tmp, run):
    run = damage(run, tmp, "run.json", data=b"[1, 2, 3]")
    return Invocation(["report", str(run)], (str(run / "run.json"), "not a run record", "'manifest'", "Point at a folder"))


@case("damaged", "report-run-json-binary")
def _(tmp, run):
    run = damage(run, tmp, "run.json", data=b"\x89PNG\r\n\x1a\n\x00\x00")
    return Invocation(["report", str(run)], (str(run / "run.json"), "not UTF-8", "Point at a run folder"))


@case("damaged", "report-corrupt-results")
def _(tmp, run):
    run = damage(run, tmp, "results.sqlite", data=bytes(range(256)) * 16)
    (run / "utterances.parquet").unlink()
    return Invocation(["report", str(run)], (str(run / "results.sqlite"), "not a readable results store", "file is not a database", "new --out folder"))


@case("damaged", "report-folder-without-run")
def _(tmp, run):
    folder = tmp / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    return Invocation(["report", str(folder)], (str(folder), "no run.json here", "holds no run", "asrfair run"))


@case("damaged", "report-missing-folder")
def _(tmp, run):
    return Invocation(["report", str(tmp / "nope")], (str(tmp / "nope"), "no such folder", "Point at a folder"))


@case("damaged", "report-run-without-results")
def _(tmp, run):
    run = copy_run(run, tmp)
    for name in ("results.sqlite", "utterances.parquet"):
        (run / name).unlink()
    return Invocation(["report", str(run)], (str(run), "no results", "--resume"))


@case("damaged", "slices-folder-without-run")
def _(tmp, run):
    (tmp / "empty").mkdir()
    return Invocation(["slices", str(tmp / "empty")], (str(tmp / "empty"), "no run.json here"))


@case("damaged", "card-truncated-run-json")
def _(tmp, run):
    run = damage(run, tmp, "run.json", truncate=50)
    return Invocation(["card", str(run)], (str(run / "run.json"), "not valid JSON", "Restore it"))


@case("damaged", "compare-with-a-folder-without-run")
def _(tmp, run):
    run = copy_run(run, tmp)
    (tmp / "other").mkdir()
    return Invocation(["compare", str(run), str(tmp / "other")], (str(tmp / "other"), "no run.json here"))


@case("damaged", "resume-without-run")
def _(tmp, run):
    return Invocation([*replay_args(tmp, out=tmp / "typo"), "--resume"], ("--resume", str(tmp / "typo"), "holds no run", "drop --resume"))


@case("damaged", "resume-results-without-run-json")
def _(tmp, run):
    run = copy_run(run, tmp)
    (run / "run.json").unlink()
    return Invocation([*replay_args(tmp, out=run), "--resume"], (str(run), "results.sqlite is there without it", "Point --out"))


@case("damaged", "new-run-over-results-without-run-json")
def _(tmp, run):
    run = copy_run(run, tmp)
    (run / "run.json").unlink()
    return Invocation(replay_args(tmp, out=run), (str(run), "results.sqlite but no run.json", "new --out folder"))


@case("damaged", "resume-truncated-run-json")
def _(tmp, run):
    run = damage(run, tmp, "run.json", truncate=200)
    return Invocation([*replay_args(tmp, out=run), "--resume"], (f"{run / 'run.json'}:", "not valid JSON", "new --out folder"))


@case("damaged", "resume-corrupt-results")
def _(tmp, run):
    copied = damage(run, tmp, "results.sqlite", data=b"SQLite format 3\x00" + b"\xff" * 4000)
    # the command that wrote the run, so only the damaged store can stop it
    return Invocation([*same_run_args(run, copied), "--resume"], (str(copied / "results.sqlite"), "not a readable results store", "Restore it"))


@case("damaged", "run-over-existing-run")
def _(tmp, run):
    run = copy_run(run, tmp)
    return Invocation(replay_args(tmp, out=run), (str(run), "already holds a run", "Add --resume"))


@case("damaged", "resume-with-other-normaliser")
def _(tmp, run):
    copied = copy_run(run, tmp)
    args = [*same_run_args(run, copied), "--resume", "--normalizer", "none"]
    return Invocation(args, (str(copied / "run.json"), "field 'normalizer'", '"none"', "Resume only with the same"))


# -------------------------------------------------------------------------- 5. formats a person has


@case("formats", "broken-json-array")
def _(tmp, run):
    path = tmp / "m.json"
    path.write_text('[\n  {"id": "u0", "text": "hello"},\n  {"id": "u1" "text": "world"}\n]\n')
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:3", "not valid JSON", "Expecting ','", "write one object per line"))


@case("formats", "pretty-printed-object-with-error")
def _(tmp, run):
    path = tmp / "m.jsonl"
    path.write_text('{\n  "id": "u0",\n  "text": "hello",\n}\n')
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "unparsable line", "one whole JSON object"))


@case("formats", "json-line-not-an-object")
def _(tmp, run):
    path = tmp / "m.jsonl"
    path.write_text('{"id": "u0", "text": "hello"}\n["u1", "world"]\n')
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:2", "expected a JSON object, got list", "as an object"))


@case("formats", "unquoted-comma-shifts-columns")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id,text,accent\nu0,hello there,us\nu1,well, hello,uk\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:3", "u1,well, hello,uk", "row has 4 columns but the header has 3", 'Quote values that contain a comma'))


@case("formats", "row-with-too-few-columns")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id,text,accent\nu0,hello there,us\nu1,hi\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:3", "'u1,hi'", "row has 2 columns but the header has 3", "Give every column a value"))


@case("formats", "semicolon-csv-with-shifted-row")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id;text;accent\nu0;hello;us\nu1;hi;there;uk\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:3", "row has 4 columns but the header has 3", "semicolon"))


@case("formats", "table-without-text-column")
def _(tmp, run):
    path = tmp / "m.tsv"
    path.write_text("id\tsentence\nu0\thello\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "field 'text'", "no 'text' column", "'sentence'", "--text-column"))


@case("formats", "table-with-duplicate-column")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id,text,accent,accent\nu0,hello,us,uk\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "column 'accent' appears twice", "Rename one"))


@case("formats", "folder-that-is-not-a-dataset")
def _(tmp, run):
    folder = tmp / "corpus"
    folder.mkdir()
    write_jsonl(folder / "manifest.jsonl", records())
    return Invocation(["validate", str(folder)], (str(folder), "not a Hugging Face dataset", "save_to_disk", str(folder / "manifest.jsonl")))


@case("formats", "mistyped-path-suggests-the-file")
def _(tmp, run):
    write_jsonl(tmp / "manifest.jsonl", records())
    return Invocation(["validate", str(tmp / "manifest.jsnol")], (str(tmp / "manifest.jsnol"), "manifest file not found", "Did you mean", str(tmp / "manifest.jsonl")))


@case("formats", "hub-like-name-is-not-looked-up")
def _(tmp, run):
    return Invocation(["validate", "someone/some-corpus"], ("someone/some-corpus", "manifest file not found", "hf://someone/some-corpus"))


@case("formats", "unknown-extension-txt")
def _(tmp, run):
    path = tmp / "m.txt"
    path.write_text("u0 hello\n")
    return Invocation(["validate", str(path)], (str(path), "(value: '.txt')", "unknown manifest format", ".jsonl", ".csv", ".parquet", "hf://owner/name"))


@case("formats", "unknown-extension-xlsx")
def _(tmp, run):
    path = tmp / "m.xlsx"
    path.write_bytes(b"PK\x03\x04")
    return Invocation(["validate", str(path)], (str(path), "'.xlsx'", "unknown manifest format", ".tsv"))


@case("formats", "replay-unknown-extension")
def _(tmp, run):
    hyp = tmp / "h.xml"
    hyp.write_text("<h/>")
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (str(hyp), "unknown format '.xml'", ".tsv", ".jsonl"))


@case("formats", "replay-table-without-hypothesis-column")
def _(tmp, run):
    hyp = tmp / "h2.tsv"
    hyp.write_text("id\tprediction\nu0\tone\n")
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:1", "no column 'hypothesis'", "'prediction'", "hypothesis_column="))


@case("formats", "replay-missing-file")
def _(tmp, run):
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={tmp / 'nope.tsv'}", "--out", str(tmp / "run")]
    return Invocation(args, (str(tmp / "nope.tsv"), "not found", "--backend-arg hypotheses=PATH"))


@case("formats", "replay-jsonl-duplicate-id")
def _(tmp, run):
    hyp = write_jsonl(tmp / "h.jsonl", [{"id": "u0", "hypothesis": "a"}, {"id": "u1", "hypothesis": "b"}, {"id": "u0", "hypothesis": "c"}])
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:3", "field 'id'", "'u0'", "repeats line 1", "one hypothesis per id"))


@case("formats", "replay-jsonl-not-an-object")
def _(tmp, run):
    hyp = tmp / "h.jsonl"
    hyp.write_text('{"id": "u0", "hypothesis": "a"}\n"u1 b"\n')
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:2", "expected a JSON object, got str"))


@case("formats", "id-column-not-in-table")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("clip,text\nu0,hello\n")
    return Invocation(["validate", str(path), "--no-audio", "--id-column", "utt"], (f"{path}:1", "field 'utt'", "no 'utt' column", "'clip'", "--id-column"))


# ------------------------------------------------------------- 6. silent wrong results become errors


@case("silent", "empty-manifest")
def _(tmp, run):
    path = tmp / "m.jsonl"
    path.write_text("")
    return Invocation(replay_args(tmp, manifest=path), (str(path), "holds no utterances", "one utterance per line"))


@case("silent", "blank-lines-only")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id,text\n\n\n")
    return Invocation(["validate", str(path)], (str(path), "holds no utterances"))


@case("silent", "replay-jsonl-without-hypothesis-field")
def _(tmp, run):
    hyp = write_jsonl(tmp / "h.jsonl", [{"id": f"u{i}", "text": SENTENCE} for i in range(4)])
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:1", "field 'hypothesis' missing", "['id', 'text']", "hypothesis_column="))


@case("silent", "replay-jsonl-hypothesis-not-text")
def _(tmp, run):
    hyp = write_jsonl(tmp / "h.jsonl", [{"id": "u0", "hypothesis": ["one", "two"]}])
    args = ["run", str(write_jsonl(tmp / "m.jsonl", records())), "--backend", "replay", "--backend-arg", f"hypotheses={hyp}", "--out", str(tmp / "run")]
    return Invocation(args, (f"{hyp}:1", "field 'hypothesis'", "['one', 'two']", "Write the hypothesis as a string"))


@case("silent", "snr-without-profile")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--snr", "10,0"], ("--snr 10,0", "no --profile is", "ignored", "--profile pink"))


@case("silent", "snr-with-profile-that-takes-none")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    return Invocation(["run", str(manifest), "--profile", "telephone", "--snr", "5", "--out", str(tmp / "run")], ("--snr 5", "'telephone' do not", "drop --snr"))


@case("silent", "profile-with-silent-recording")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    profile = profile_with_recording(tmp, np.zeros(48000))
    return Invocation(["run", str(manifest), "--profile", str(profile), "--snr", "5", "--out", str(tmp / "run")],
                      (str(profile), "transforms[0].source.files[0]", str(tmp / "noise.wav"), "is silent (digital silence", "remove it from the profile"))


@case("silent", "profile-with-too-short-recording")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    profile = profile_with_recording(tmp, 0.1 * np.random.default_rng(0).standard_normal(4000))
    return Invocation(["run", str(manifest), "--profile", str(profile), "--snr", "5", "--out", str(tmp / "run")],
                      (str(profile), str(tmp / "noise.wav"), "too short to use as noise (0.250 s", "at least a few seconds"))


@case("silent", "preview-profile-with-quiet-recording")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    profile = profile_with_recording(tmp, 1e-5 * np.random.default_rng(0).standard_normal(48000))
    return Invocation(["noise", "preview", str(profile), "--manifest", str(manifest), "--utterance", "u0", "--snr", "5", "-o", str(tmp / "p.wav")],
                      (str(profile), "is silent (RMS -9", "the minimum is -60 dBFS", "Check the microphone"))


@case("silent", "nemo-negative-offset")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", [{"audio_filepath": "a.wav", "text": SENTENCE, "offset": -1.5, "duration": 2.0}])
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "field 'offset'", "-1.5", "must not be negative", "start of the utterance"))


@case("silent", "nemo-zero-duration")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", [{"audio_filepath": "a.wav", "text": SENTENCE, "offset": 1.0, "duration": 0}])
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "field 'duration'", "(value: 0)", "must be positive"))


@case("silent", "csv-offset-not-a-number")
def _(tmp, run):
    path = tmp / "m.csv"
    path.write_text("id,text,offset\nu0,hello,12s\n")
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:2", "field 'offset'", "'12s'", "must be a number of seconds"))


# ------------------------------------------------------------------------- 7. resource limit options


@case("limits", "negative-max-duration")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--max-duration-s", "-5"], ("--max-duration-s -5", "0 for no limit"))


@case("limits", "max-reference-words-not-a-number")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--max-reference-words", "-1"], ("--max-reference-words -1", "0 for no limit"))


# -------------------------------------------------------------------------- options and other values


@case("options", "batch-size-zero")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--batch-size", "0"], ("--batch-size", "greater than or equal to 1"))


@case("options", "backend-arg-without-equals")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--backend-arg", "beam"], ("--backend-arg 'beam'", "is not KEY=VALUE", "--backend-arg model="))


@case("options", "pocketsphinx-unknown-option")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    return Invocation(["run", str(manifest), "--backend-arg", "bem=1e-40", "--out", str(tmp / "run")], ("unknown option 'bem'", "'1e-40'", "Did you mean 'beam'?"))


@case("options", "unknown-profile")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    return Invocation(["run", str(manifest), "--profile", "pinc", "--snr", "5", "--out", str(tmp / "run")], ('"pinc"', 'Did you mean "pink"?', "asrfair noise add"))


@case("options", "snr-not-a-number")
def _(tmp, run):
    return Invocation([*replay_args(tmp), "--profile", "pink", "--snr", "10,loud"], ("--snr", "'loud' is not a number", "--snr 20,10,5,0"))


@case("options", "preview-unknown-utterance")
def _(tmp, run):
    manifest = audio_manifest(tmp)
    return Invocation(["noise", "preview", "pink", "--manifest", str(manifest), "--utterance", "u9", "--snr", "5"], ("--utterance 'u9'", str(manifest), "['u0', 'u1']"))


@case("options", "duplicate-id")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", [{"id": "u0", "text": "a"}, {"id": "u0", "text": "b"}])
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:2", "field 'id'", "'u0'", "first seen on line 1", "unique id"))


@case("options", "missing-audio-file")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", [{"id": "u0", "audio": "gone.wav", "text": "a"}])
    return Invocation(replay_args(tmp, manifest=path)[:2] + ["--out", str(tmp / "run")], (f"{path}:1", "field 'audio'", "'gone.wav'", "Check the path"))


@case("options", "empty-reference")
def _(tmp, run):
    path = write_jsonl(tmp / "m.jsonl", [{"id": "u0", "text": "  "}])
    return Invocation(["validate", str(path), "--no-audio"], (f"{path}:1", "field 'text'", "'  '", "empty reference transcript", "Fill in what was said"))


@case("options", "report-unknown-condition")
def _(tmp, run):
    run = copy_run(run, tmp)
    return Invocation(["report", str(run), "--condition", "pink@5dB"], ("--condition 'pink@5dB'", "Conditions: clean"))


# -------------------------------------------------------------------------------------------- runner


def snapshot(root: Path) -> dict[str, object]:
    """Every file under root: bytes, or for a results store the rows it holds (SQLite may rewrite its pages)."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")) or path.name == ".lock":
            continue
        key = str(path.relative_to(root))
        if path.suffix == ".sqlite":
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                    state[key] = sorted(connection.execute("SELECT * FROM results").fetchall(), key=repr)
                continue
            except sqlite3.DatabaseError:
                pass
        state[key] = path.read_bytes()
    return state


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A complete replay run of four utterances; cases copy it before damaging it."""
    shared = tmp_path_factory.mktemp("shared")
    result = cli.invoke(app, replay_args(shared))
    assert result.exit_code == 0, result.output
    return shared / "run"


def test_the_table_covers_every_class_with_at_least_60_cases():
    classes = {c.cls for c in CASES}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    assert {"markup", "encoding", "files", "damaged", "formats", "silent", "limits"} <= classes


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_a_located_message_and_loses_nothing(bad: Case, tmp_path, finished_run):
    folder = tmp_path / "case"
    folder.mkdir()
    invocation = bad.build(folder, finished_run)
    before = snapshot(tmp_path)
    result = cli.invoke(app, invocation.args)
    output = result.output
    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and "\x1b" not in output and "\x07" not in output
    for fragment in invocation.expect:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    after = snapshot(tmp_path)
    for name, content in before.items():
        assert after.get(name) == content, f"{name} was changed or lost"
    started = [name for name in after if name not in before and Path(name).name in ("run.json", "results.sqlite")]
    assert not started, f"a failed command started a run: {started}"
