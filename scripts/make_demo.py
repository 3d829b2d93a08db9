"""Regenerate manifests/demo/: 120 synthetic English utterances, 6 accents x 10 synthetic speakers, 16 kHz FLAC.

Run `.venv/bin/python scripts/make_demo.py` (needs flite, espeak-ng and sox); add `--measure` to print
pocketsphinx WER per accent. Output is deterministic: the same tools give byte-identical files.
"""

# Why these voices: espeak-ng's default formant voices get WER 0.80-0.97 from pocketsphinx, which makes a table
# of nothing but failures, so the espeak-ng speakers use its Klatt variants, and the native accents use flite's
# more natural diphone/cluster voices. espeak-ng's de, es, it, nl and pt voices reading English scored WER
# 1.08-1.17 (more insertions than words), so the two non-native accents are French and Hindi.
#
# Measured pocketsphinx 5.1.1 WER on this demo (`asrfair run manifests/demo/manifest.jsonl --by accent`,
# basic normaliser, 95% speaker-bootstrap interval), 2026-11-22:
#     us            25.0%  [ 9.4, 42.1]  (flite slt, rms, kal16 with pitch/tempo variants)
#     scottish      16.7%  [ 7.0, 28.5]  (flite awb with pitch/tempo variants)
#     us-espeak     39.5%  [23.6, 56.5]  (espeak-ng en-us, Klatt variants)
#     british-rp    62.2%  [43.6, 78.8]  (espeak-ng en-gb-x-rp, Klatt variants)
#     hindi         43.5%  [35.1, 51.9]  (espeak-ng hi voice reading English: non-native)
#     french        82.2%  [73.5, 91.7]  (espeak-ng fr voice reading English: non-native)
# These are synthetic voices: the gaps say how pocketsphinx copes with each synthesiser and letter-to-sound
# rules, not how it treats real speakers of these accents.

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so the script runs from a checkout without the package installed

from harness.audio import load_audio, write_audio  # noqa: E402

OUT_DIR = ROOT / "manifests" / "demo"
RATE_HZ = 16000

# Written for this demo; everyday vocabulary so the language model is not the bottleneck.
SENTENCES: tuple[str, ...] = (
    "The bus to the city leaves every morning at seven.",
    "Please close the kitchen window before it starts to rain.",
    "My sister bought a new bicycle last week.",
    "We need more milk and bread for breakfast tomorrow.",
    "The children played football in the park after school.",
    "Can you call me back when you get home tonight?",
    "The meeting has been moved to Thursday afternoon.",
    "He left his keys on the table next to the door.",
    "It was very cold outside so we stayed in the house.",
    "The doctor said I should drink more water every day.",
    "Our train was late because of the snow.",
    "She reads the newspaper while she drinks her coffee.",
    "Turn left at the next corner and walk two blocks.",
    "I would like to book a table for four people.",
    "The store closes early on Sunday evening.",
    "They are planning a trip to the mountains this summer.",
    "Please send me the report by the end of the day.",
    "The music was so loud that nobody could hear me.",
    "My phone battery is almost empty again.",
    "We watched an old movie and went to bed late.",
    "The price of gas went up again this month.",
    "He works at the hospital near the river.",
    "Do you know what time the bank opens?",
    "I forgot to water the plants while you were away.",
)

# Each accent reads a window of 20 of the 24 sentences, starting 4 further on than the previous accent's,
# so every sentence is read by exactly five accents and no accent gets an easier part of the text.
SENTENCES_PER_ACCENT = 20
WINDOW_STEP = 4


@dataclass(frozen=True, kw_only=True)
class Voice:
    """One synthetic speaker: the synthesiser command plus sox effects that make it a distinct voice."""

    speaker: str
    accent: str
    native: bool
    engine: str
    engine_args: tuple[str, ...]
    sox_effects: tuple[str, ...] = ()


def _flite(speaker: str, accent: str, voice: str, *effects: str) -> Voice:
    return Voice(speaker=speaker, accent=accent, native=True, engine="flite", engine_args=("-voice", voice), sox_effects=effects)


def _espeak(speaker: str, accent: str, native: bool, voice: str, rate_wpm: int, pitch: int) -> Voice:
    return Voice(
        speaker=speaker, accent=accent, native=native, engine="espeak-ng",
        engine_args=("-v", voice, "-s", str(rate_wpm), "-p", str(pitch)),
    )


# Ten synthetic speakers per accent, so that every accent clears the report's default minimum of eight
# effective speakers and gets an interval rather than a "small" flag. Variants differ in pitch
# (sox cents / espeak-ng pitch) and speaking rate (sox tempo / espeak-ng words per minute).
SPEAKERS_PER_ACCENT = 10
FLITE_VARIANTS = ((0, 1.0), (200, 0.96), (-200, 1.05), (350, 1.0), (-300, 0.95), (120, 1.08), (-120, 0.92), (260, 1.04), (-250, 1.0), (60, 0.98))
ESPEAK_VARIANTS = tuple((klatt, rate, pitch) for klatt, rate, pitch in (
    (6, 150, 50), (2, 140, 35), (4, 135, 65), (6, 130, 30), (2, 155, 55), (4, 145, 45), (6, 140, 70), (2, 130, 60), (4, 155, 30), (6, 160, 40)))


def _flite_speakers(accent: str, voices: tuple[str, ...]) -> list[Voice]:
    speakers = []
    for index, (cents, tempo) in enumerate(FLITE_VARIANTS):
        voice = voices[index % len(voices)]
        # sox pitch is in cents; tempo -s keeps pitch while changing speed, so these read as other speakers.
        effects = () if (cents, tempo) == (0, 1.0) else ("pitch", str(cents), "tempo", "-s", f"{tempo:g}")
        speakers.append(_flite(f"syn-{accent}-{voice}-v{index}", accent, voice, *effects))
    return speakers


def _espeak_speakers(accent: str, native: bool, voice: str) -> list[Voice]:
    return [_espeak(f"syn-{accent}-k{klatt}-v{index}", accent, native, f"{voice}+klatt{klatt}", rate, pitch) for index, (klatt, rate, pitch) in enumerate(ESPEAK_VARIANTS)]


VOICES: tuple[Voice, ...] = (
    *_flite_speakers("us", ("slt", "rms", "kal16")),
    *_flite_speakers("scottish", ("awb",)),
    *_espeak_speakers("us-espeak", True, "en-us"),
    *_espeak_speakers("british-rp", True, "en-gb-x-rp"),
    *_espeak_speakers("hindi", False, "hi"),
    *_espeak_speakers("french", False, "fr"),
)


def assignments() -> list[tuple[Voice, int]]:
    """(voice, sentence index) pairs: the accent's window of sentences dealt round-robin to its speakers."""
    accents = list(dict.fromkeys(v.accent for v in VOICES))
    pairs = []
    for accent_index, accent in enumerate(accents):
        speakers = [v for v in VOICES if v.accent == accent]
        for k in range(SENTENCES_PER_ACCENT):
            sentence = (accent_index * WINDOW_STEP + k) % len(SENTENCES)
            pairs.append((speakers[k % len(speakers)], sentence))
    return pairs


def synthesise(voice: Voice, text: str, out_path: Path, work_dir: Path) -> None:
    """Run the synthesiser, then sox for effects, trimming and level, then write 16 kHz mono FLAC."""
    raw = work_dir / "raw.wav"
    processed = work_dir / "processed.wav"
    if voice.engine == "flite":
        command = ["flite", *voice.engine_args, "-t", text, "-o", str(raw)]
    else:
        command = ["espeak-ng", *voice.engine_args, "-w", str(raw), text]
    subprocess.run(command, check=True, capture_output=True)
    # -D: no dither and -R: repeatable, so reruns give identical bytes; float output avoids clipping
    # before the level is set. Silence trimmed at both ends then 0.2 s padded keeps files small.
    trim = ("silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse")
    subprocess.run(
        ["sox", "-D", "-R", str(raw), "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(RATE_HZ), str(processed),
         *voice.sox_effects, *trim, "pad", "0.2", "0.2", "gain", "-n", "-1"],
        check=True, capture_output=True,
    )
    write_audio(out_path, load_audio(processed, RATE_HZ), RATE_HZ)


def build(out_dir: Path) -> list[dict]:
    """Write every FLAC file and manifest.jsonl under out_dir, replacing earlier output."""
    for tool in ("flite", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"make_demo: `{tool}` is not on PATH. Install it (apt-get install {tool}) and rerun.")
    audio_dir = out_dir / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    records = []
    with tempfile.TemporaryDirectory() as work:
        for voice, sentence in assignments():
            utterance_id = f"{voice.speaker}-s{sentence:02d}"
            relative = f"audio/{utterance_id}.flac"
            synthesise(voice, SENTENCES[sentence], out_dir / relative, Path(work))
            records.append({
                "id": utterance_id,
                "audio": relative,
                "text": SENTENCES[sentence],
                "speaker": voice.speaker,
                "tags": {
                    "accent": voice.accent,
                    "native": "yes" if voice.native else "no",
                    "voice_engine": voice.engine,
                    "voice": " ".join((*voice.engine_args, *voice.sox_effects)),
                    "source": "synthetic",
                },
            })
    with open(out_dir / "manifest.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return records


def measure(out_dir: Path, records: list[dict]) -> dict[str, float]:
    """Pocketsphinx WER per accent as total errors / total reference words (not a mean of utterance WERs)."""
    import re

    import jiwer

    from harness.backends.base import TranscriptionRequest
    from harness.backends.pocketsphinx import PocketsphinxBackend

    def normalise(text: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())

    backend = PocketsphinxBackend()
    requests = [
        TranscriptionRequest(utterance_id=r["id"], samples=load_audio(out_dir / r["audio"], RATE_HZ), sample_rate_hz=RATE_HZ)
        for r in records
    ]
    hypotheses = backend.transcribe(requests)
    errors: dict[str, int] = {}
    words: dict[str, int] = {}
    for record, hypothesis in zip(records, hypotheses):
        counts = jiwer.process_words(normalise(record["text"]), normalise(hypothesis))
        accent = record["tags"]["accent"]
        errors[accent] = errors.get(accent, 0) + counts.substitutions + counts.deletions + counts.insertions
        words[accent] = words.get(accent, 0) + counts.substitutions + counts.deletions + counts.hits
    return {accent: errors[accent] / words[accent] for accent in errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: manifests/demo)")
    parser.add_argument("--measure", action="store_true", help="also print pocketsphinx WER per accent")
    args = parser.parse_args()
    records = build(args.out)
    size_bytes = sum(p.stat().st_size for p in (args.out / "audio").glob("*.flac"))
    print(f"wrote {len(records)} utterances, {size_bytes / 1e6:.2f} MB of FLAC, to {args.out}")
    if args.measure:
        for accent, wer in measure(args.out, records).items():
            print(f"{accent:12s} WER {wer:.3f}")


if __name__ == "__main__":
    main()
