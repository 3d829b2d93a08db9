"""Shared fixtures: paths to ../shared data (skipped when absent) and speech synthesised with flite."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

SENTENCES = [
    "the cat sat on the mat",
    "please call me back tomorrow morning",
    "the weather is nice today",
    "open the door and turn on the light",
    "we need more water for the garden",
    "my brother plays the guitar every evening",
]


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when the team's data is not beside the project."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def synthesize(text: str, path: Path, voice: str = "slt") -> Path:
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (Debian package flite)")
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def speech_manifest(tmp_path_factory) -> Path:
    """Twelve real synthetic utterances from two flite voices, tagged by accent, as a JSONL manifest."""
    root = tmp_path_factory.mktemp("speech")
    (root / "audio").mkdir()
    lines = []
    for voice, accent in (("slt", "us"), ("awb", "scottish")):
        for index, text in enumerate(SENTENCES):
            name = f"{voice}_{index}"
            synthesize(text, root / "audio" / f"{name}.wav", voice)
            lines.append({"id": name, "audio": f"audio/{name}.wav", "text": text, "speaker": f"{voice}{index % 3}", "tags": {"accent": accent}})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest
