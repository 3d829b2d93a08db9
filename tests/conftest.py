"""Shared fixtures: paths to ../shared data (skipped when absent), speech-like audio generated with numpy
(every runner and CLI test), the committed demo speech (tests that need words a recogniser can hear), and
speech synthesised with flite (skipped without it, or with ASRFAIR_TEST_NO_FLITE=1 to check that nothing
else depends on it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEMO_MANIFEST = PROJECT_ROOT / "manifests" / "demo" / "manifest.jsonl"

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
    if os.environ.get("ASRFAIR_TEST_NO_FLITE") == "1":
        pytest.skip("ASRFAIR_TEST_NO_FLITE=1: tests run as on a machine without flite")
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


# ------------------------------------------------------------------------------ generated speech-like audio

# (F1, F2, F3) in Hz of a few vowels; each syllable glides from one to the next.
VOWEL_FORMANTS_HZ = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (660, 1720, 2410), (440, 1020, 2240))
# (file suffix, soundfile subtype, sample rate, channels): the decoding paths a manifest meets in practice.
GENERATED_FORMATS = (
    ("wav", "PCM_16", 16000, 1),
    ("flac", "PCM_24", 22050, 1),
    ("wav", "FLOAT", 44100, 2),
    ("ogg", "VORBIS", 48000, 1),
    ("wav", "PCM_16", 8000, 1),
    ("flac", "PCM_16", 32000, 2),
)
LOSSLESS = ("PCM_16", "PCM_24", "FLOAT")


def speechlike(rng: np.random.Generator, *, duration_s: float, rate_hz: int, f0_hz: float, n_syllables: int) -> np.ndarray:
    """A voiced, speech-like signal: harmonics of a gliding f0 shaped by vowel formants, in syllables with
    pauses, plus a little breath noise. Additive synthesis (each harmonic's amplitude from its distance to
    the formants), so it is quick, and its spectrum and envelope vary the way a voice's do."""
    n = int(round(duration_s * rate_hz))
    t = np.arange(n) / rate_hz
    out = np.zeros(n)
    edges = np.linspace(0.12 * duration_s, 0.92 * duration_s, n_syllables + 1)
    for start_s, stop_s in zip(edges[:-1], edges[1:]):
        stop_s = start_s + (stop_s - start_s) * rng.uniform(0.6, 0.9)  # a pause after each syllable
        inside = (t >= start_s) & (t < stop_s)
        ts = t[inside] - start_s
        length_s = stop_s - start_s
        # f0 falls over the syllable, with a slight vibrato; phase is the integral of frequency.
        f0 = f0_hz * rng.uniform(0.9, 1.1) * (1 - 0.15 * ts / length_s) * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * ts))
        phase = 2 * np.pi * np.cumsum(f0) / rate_hz
        first, last = (np.asarray(VOWEL_FORMANTS_HZ[i], dtype=float) for i in rng.choice(len(VOWEL_FORMANTS_HZ), 2, replace=False))
        glide = (ts / length_s)[:, None]
        formants = first * (1 - glide) + last * glide
        syllable = np.zeros(len(ts))
        for k in range(1, int(min(4000, 0.45 * rate_hz) / f0_hz) + 1):
            distance = (k * f0[:, None] - formants) / np.array([80.0, 100.0, 120.0])
            gain = (1.0 / (1.0 + distance**2)).sum(axis=1) / k**0.5
            syllable += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        syllable *= np.sin(np.pi * ts / length_s) ** 0.6  # attack and decay
        out[inside] = syllable
    out += 0.01 * rng.standard_normal(n)  # breath and room
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class GeneratedAudio:
    """What the generated manifest holds, for tests that check values: ids in manifest order, each file's
    duration, format and accent."""

    manifest: Path
    ids: tuple[str, ...]
    durations_s: dict[str, float]
    formats: dict[str, tuple[str, str, int, int]]
    accents: dict[str, str]


def write_generated_audio(root: Path, *, n_per_accent: int = 6, seed: int = 0) -> GeneratedAudio:
    """Speech-like audio for every sentence in two accents (two groups of voices: lower and higher f0,
    three speakers each), cycling through WAV, FLAC, OGG at 8-48 kHz, mono and stereo; a JSONL manifest."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines, durations, formats, accents = [], {}, {}, {}
    for accent, base_f0_hz in (("us", 120.0), ("scottish", 210.0)):
        for index, text in enumerate(SENTENCES[:n_per_accent]):
            uid = f"{accent}_{index}"
            suffix, subtype, rate_hz, channels = GENERATED_FORMATS[(index + (accent == "scottish")) % len(GENERATED_FORMATS)]
            speaker = f"{accent}{index % 3}"
            duration_s = round(0.9 + 0.12 * len(text.split()) + rng.uniform(0, 0.3), 2)
            mono = speechlike(rng, duration_s=duration_s, rate_hz=rate_hz, f0_hz=base_f0_hz * (1 + 0.08 * (index % 3)), n_syllables=max(2, len(text.split())))
            samples = mono if channels == 1 else np.stack([mono, 0.8 * mono], axis=1)
            soundfile.write(root / "audio" / f"{uid}.{suffix}", samples, rate_hz, subtype=subtype)
            durations[uid] = len(mono) / rate_hz
            formats[uid] = (suffix, subtype, rate_hz, channels)
            accents[uid] = accent
            lines.append({"id": uid, "audio": f"audio/{uid}.{suffix}", "text": text, "speaker": speaker, "tags": {"accent": accent}})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return GeneratedAudio(manifest=manifest, ids=tuple(line["id"] for line in lines), durations_s=durations, formats=formats, accents=accents)


@pytest.fixture(scope="session")
def generated_audio(tmp_path_factory) -> GeneratedAudio:
    """Twelve speech-like utterances generated with numpy (no Debian tool needed), tagged by accent."""
    return write_generated_audio(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="session")
def generated_manifest(generated_audio) -> Path:
    return generated_audio.manifest


def demo_subset(path: Path, accents: tuple[str, ...] = ("us", "scottish"), per_accent: int = 4) -> Path:
    """A manifest of the first utterances of some accents of the committed demo (synthetic speech that
    pocketsphinx recognises), pointing at the demo's audio: for tests that need words to be heard."""
    chosen = []
    for line in DEMO_MANIFEST.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["tags"]["accent"] in accents and sum(r["tags"]["accent"] == record["tags"]["accent"] for r in chosen) < per_accent:
            record["audio"] = str(DEMO_MANIFEST.parent / record["audio"])
            chosen.append(record)
    path.write_text("".join(json.dumps(record) + "\n" for record in chosen), encoding="utf-8")
    return path
