"""Throughput of noise conditions in times real time per CPU core, on 16 kHz audio.

Runs single-threaded (BLAS/FFT thread pools pinned to 1) and times with process CPU time, so the
figure is per core. Paths: additive recorded noise (the runner's per-utterance work after
prepare(): seeding, segment draw, mix at SNR, measured SNR) and the built-in telephone profile
(8 kHz round trip, 300-3400 Hz band-pass, mu-law). Baselines from the same run: a plain numpy
copy of each utterance and decoding it from an in-memory 16-bit WAV (the clean load path without
disk). Prints a table; writes nothing.

    .venv/bin/python benchmarks/noise.py [--utterances 100] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from harness.noise import add_recordings, apply_profile, condition_key, load_profile, prepare  # noqa: E402
from harness.seeding import rng_for  # noqa: E402

RATE_HZ = 16000
TARGET_X_REAL_TIME = 1000.0
SHARED_RECORDING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "noise" / "recordings" / "doing_the_dishes.wav"


def utterances(count: int) -> dict[str, np.ndarray]:
    """Speech-like audio of 2-12 s each (harmonic voice, syllable envelope, a little noise)."""
    rng = np.random.default_rng(0)
    out = {}
    for k in range(count):
        n = int(rng.uniform(2.0, 12.0) * RATE_HZ)
        t = np.arange(n) / RATE_HZ
        phase = 2 * np.pi * np.cumsum(110 + 30 * np.sin(2 * np.pi * 0.5 * t)) / RATE_HZ
        voice = sum(np.sin(h * phase) / h for h in range(1, 10))
        out[f"utt{k:04d}"] = (0.1 * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * voice + 0.001 * rng.standard_normal(n)).astype(np.float32)
    return out


def cpu_seconds(work, repeats: int) -> float:
    """Best (least) process CPU time of `repeats` runs of work()."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    audio = utterances(args.utterances)
    audio_s = sum(x.size for x in audio.values()) / RATE_HZ
    wavs = {}
    for uid, x in audio.items():
        buffer = io.BytesIO()
        soundfile.write(buffer, x, RATE_HZ, format="WAV", subtype="PCM_16")
        wavs[uid] = buffer.getvalue()

    with tempfile.TemporaryDirectory() as scratch:
        if SHARED_RECORDING.is_file():
            recording, recording_note = SHARED_RECORDING, SHARED_RECORDING.name
        else:  # no shared data: a synthetic 60 s recording, deleted on exit
            recording = Path(scratch) / "synthetic_noise.wav"
            soundfile.write(recording, 0.05 * np.random.default_rng(1).standard_normal(60 * RATE_HZ), RATE_HZ)
            recording_note = "synthetic 60 s noise (shared recording absent)"
        recorded = prepare(load_profile(add_recordings([recording], name="bench-recorded", directory=scratch)), RATE_HZ)
        telephone = prepare(load_profile("telephone"), RATE_HZ)

        def numpy_copy():
            for x in audio.values():
                x.copy()

        def wav_decode():
            for data in wavs.values():
                soundfile.read(io.BytesIO(data), dtype="float32")

        def run(profile, snr_db):
            key = condition_key(profile.name, snr_db)

            def work():
                for uid, x in audio.items():
                    apply_profile(profile, x, RATE_HZ, snr_db=snr_db, rng=rng_for(1, uid, key))

            return work

        paths = [
            ("numpy copy (baseline)", numpy_copy),
            ("WAV decode (baseline)", wav_decode),
            ("additive recorded noise @5 dB", run(recorded, 5.0)),
            ("telephone (8 kHz, band-pass, mu-law)", run(telephone, None)),
        ]
        timings = {name: cpu_seconds(work, args.repeats) for name, work in paths}

    copy_s, decode_s = timings["numpy copy (baseline)"], timings["WAV decode (baseline)"]
    print(f"noise benchmark: {len(audio)} utterances, {audio_s:.1f} s of {RATE_HZ // 1000} kHz audio, 1 thread, CPU time, best of {args.repeats}")
    print(f"recording: {recording_note}")
    print(f"{'path':40s} {'x real time/core':>17s} {'cost vs copy':>13s} {'cost vs decode':>15s}")
    for name, seconds in timings.items():
        print(f"{name:40s} {audio_s / seconds:17,.0f} {seconds / copy_s:12.1f}x {seconds / decode_s:14.2f}x")
    for name in ("additive recorded noise @5 dB", "telephone (8 kHz, band-pass, mu-law)"):
        speed = audio_s / timings[name]
        print(f"target >= {TARGET_X_REAL_TIME:,.0f}x real time per core, {name}: {'met' if speed >= TARGET_X_REAL_TIME else 'NOT met'} ({speed:,.0f}x)")


if __name__ == "__main__":
    main()
