"""A command-line engine for the command backend's tests: PocketSphinx over WAV files.

    python sphinx_cli.py [--json] [--list FILE] [WAV ...]

Prints one transcript per file, one line each, plain or as {"text": ...}. Uses the same decoder
settings as asrfair's pocketsphinx backend, so its transcripts can be compared with a direct run.
"""

import argparse
import json
import sys

import soundfile

from harness.backends.base import TranscriptionRequest
from harness.backends.pocketsphinx import PocketsphinxBackend


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--list")
    parser.add_argument("wavs", nargs="*")
    args = parser.parse_args()
    paths = list(args.wavs)
    if args.list:
        with open(args.list, encoding="utf-8") as handle:
            paths += [line.strip() for line in handle if line.strip()]
    decoder = PocketsphinxBackend(processes=1)
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32")
        if rate != 16000:
            print(f"{path}: expected 16000 Hz, got {rate}", file=sys.stderr)
            return 4
        text = decoder.transcribe([TranscriptionRequest(utterance_id=path, samples=samples, sample_rate_hz=rate)])[0]
        print(json.dumps({"text": text}) if args.json else text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
