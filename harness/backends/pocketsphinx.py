"""CMU PocketSphinx 5 backend: a small, CPU-only, dependency-free baseline recogniser.

Defaults to the US English model shipped inside the `pocketsphinx` wheel; any decoder parameter can be overridden.
"""

from __future__ import annotations

import difflib
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import TranscriptionRequest
from harness.errors import BackendError

_MODEL_PATHS = ("hmm", "lm", "dict")


class PocketsphinxBackend:
    """Decode each request as one whole utterance with PocketSphinx.

    Keyword options arrive as strings from `--backend-arg KEY=VALUE`: `hmm`, `lm` and `dict` name model
    files replacing the bundled US English ones; any other PocketSphinx parameter (`beam`, `lw`, ...) is
    passed through and converted by PocketSphinx itself. An utterance with no hypothesis gives "".
    """

    name = "pocketsphinx"
    sample_rate_hz = 16000

    def __init__(self, **options: str):
        # Imported here so a missing package surfaces through load_backend as an install hint.
        import pocketsphinx

        self._pocketsphinx = pocketsphinx
        known = set(pocketsphinx.Config())
        for key, value in options.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise BackendError(
                    f"pocketsphinx: unknown option {key!r} (value {value!r}).{hint} "
                    "Use hmm=, lm=, dict= or another PocketSphinx decoder parameter."
                )
            if key == "samprate" and str(value) != str(self.sample_rate_hz):
                raise BackendError(
                    f"pocketsphinx: option 'samprate' is {value!r} but audio is always resampled to "
                    f"{self.sample_rate_hz} Hz. Drop --backend-arg samprate."
                )
            if key in _MODEL_PATHS and value and not Path(value).exists():
                raise BackendError(f"pocketsphinx: option {key!r} names {value!r}, which does not exist. Check the path.")
        model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        self._args: dict[str, str] = {
            "hmm": str(model_dir / "en-us"),
            "lm": str(model_dir / "en-us.lm.bin"),
            "dict": str(model_dir / "cmudict-en-us.dict"),
            **{key: str(value) for key, value in options.items()},
        }
        self._decoder = None

    def _get_decoder(self):
        # Building a decoder reads the model (about 0.3 s); do it on first use, once per instance.
        if self._decoder is None:
            try:
                self._decoder = self._pocketsphinx.Decoder(
                    **self._args, samprate=self.sample_rate_hz, loglevel="FATAL", logfn=os.devnull
                )
            except (ValueError, RuntimeError) as exc:
                raise BackendError(
                    f"pocketsphinx: cannot build a decoder from {self._args} ({exc}). Check the model paths and option values."
                ) from exc
        return self._decoder

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[str]:
        decoder = self._get_decoder()
        texts = []
        for request in batch:
            if request.samples is None:
                raise BackendError(f"pocketsphinx: utterance {request.utterance_id!r} came without audio. PocketSphinx needs samples.")
            if request.sample_rate_hz not in (None, self.sample_rate_hz):
                raise BackendError(
                    f"pocketsphinx: utterance {request.utterance_id!r} is at {request.sample_rate_hz} Hz, "
                    f"expected {self.sample_rate_hz} Hz. Load it with harness.audio.load_audio(path, 16000)."
                )
            pcm = (np.clip(np.asarray(request.samples, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
            # The front end carries its noise-floor and cepstral-mean estimates over from the previous
            # utterance; resetting it (0.1 ms) makes each result independent of batch order and size.
            decoder.reinit_feat()
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            texts.append(hypothesis.hypstr.strip() if hypothesis is not None else "")
        return texts

    def describe(self) -> dict[str, Any]:
        try:
            package_version = version("pocketsphinx")
        except PackageNotFoundError:
            package_version = "unknown"
        return {"args": dict(self._args), "sample_rate_hz": self.sample_rate_hz, "pocketsphinx_version": package_version}
