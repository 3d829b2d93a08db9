"""faster-whisper (CTranslate2) Whisper models, with utterances batched through one encoder/decoder call.

faster-whisper's own batched pipeline batches the chunks of one long recording; an evaluation has
many short utterances instead, so this backend pads each (up to 30 s) to Whisper's window, encodes
the batch at once and decodes every prompt together with CTranslate2. Longer audio goes through
faster-whisper's sequential long-form `transcribe`. faster_whisper and ctranslate2 are imported
when the backend is constructed.
"""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import Backend, BackendOption, TranscriptionRequest
from harness.errors import BackendError

COMPUTE_TYPES = ("default", "auto", "float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16")
TOKENS_PER_S = 25.0  # the same duration bound as the transformers backend: a looping decoder stops
TOKEN_ALLOWANCE = 10


class FasterWhisperBackend(Backend):
    """A CTranslate2 Whisper model directory (converted with `ct2-transformers-converter ... --copy_files tokenizer.json preprocessor_config.json`).

    Options: model (the directory; nothing is downloaded), device (auto, cpu, cuda), compute_type
    (default keeps the model's; int8, float16, ...), beam_size (default 1: greedy), language (e.g.
    en; detected per utterance when unset on a multilingual model), task, batch_size, cpu_threads.
    """

    name = "faster-whisper"
    extra = "faster-whisper"
    requires = ("faster_whisper", "ctranslate2")
    sample_rate_hz = 16000
    summary = "A CTranslate2-converted Whisper model directory through faster-whisper, utterances batched in one encode/generate call."
    options = (
        BackendOption(name="model", help="directory of a CTranslate2 Whisper model (with tokenizer.json, preprocessor_config.json)"),
        BackendOption(name="device", default="auto", help="auto, cpu or cuda"),
        BackendOption(name="compute_type", default="default", help="default (as the model was converted), " + ", ".join(COMPUTE_TYPES[1:])),
        BackendOption(name="beam_size", default=1, help="beam width; 1 is greedy"),
        BackendOption(name="language", help="language code, e.g. en (default: detected per utterance on multilingual models)"),
        BackendOption(name="task", default="transcribe", help="transcribe or translate"),
        BackendOption(name="batch_size", default=16, help="utterances per encode/generate call"),
        BackendOption(name="cpu_threads", default=0, help="CTranslate2 threads on CPU (0: its default)"),
        BackendOption(name="max_new_tokens", help="fixed cap on generated tokens (default: 25 per second of audio, plus 10)"),
    )

    def __init__(self, model: str, device: str = "auto", compute_type: str = "default", beam_size: str | int = 1, language: str | None = None,
                 task: str = "transcribe", batch_size: str | int = 16, cpu_threads: str | int = 0, max_new_tokens: str | int | None = None, **unknown: str):
        if unknown:
            raise BackendError(f"faster-whisper backend: unknown option(s) {', '.join(sorted(map(repr, unknown)))}. Known options: {', '.join(o.name for o in self.options)}.")
        try:
            import ctranslate2
            import faster_whisper
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise BackendError(f"backend 'faster-whisper' needs faster-whisper and ctranslate2 ({exc.name or exc} is missing). Install them with `pip install 'asrfair[faster-whisper]'`.") from exc
        path = Path(model).expanduser()
        if not path.is_dir():
            raise BackendError(
                f"faster-whisper backend: model={model!r} is not a directory ({path.resolve()}). Give a CTranslate2 model directory, e.g. one made with "
                "`ct2-transformers-converter --model openai/whisper-small --output_dir whisper-small-ct2 --copy_files tokenizer.json preprocessor_config.json`."
            )
        if not (path / "model.bin").is_file():
            raise BackendError(f"faster-whisper backend: {path} has no model.bin, so it is not a CTranslate2 model. Convert the model with ct2-transformers-converter first.")
        if not (path / "tokenizer.json").is_file():
            raise BackendError(f"faster-whisper backend: {path} has no tokenizer.json (faster-whisper would download one). Convert with --copy_files tokenizer.json.")
        if compute_type not in COMPUTE_TYPES:
            raise BackendError(f"faster-whisper backend: compute_type={compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}.")
        if device not in ("auto", "cpu", "cuda"):
            raise BackendError(f"faster-whisper backend: device={device!r} is not one of auto, cpu, cuda.")
        if task not in ("transcribe", "translate"):
            raise BackendError(f"faster-whisper backend: task={task!r} is not transcribe or translate.")
        self.model_path = str(path.resolve())
        self.device, self.compute_type, self.task = device, compute_type, task
        self.language = language or None
        self.beam_size = _whole("beam_size", beam_size, 1)
        self.batch_size = _whole("batch_size", batch_size, 1)
        self.cpu_threads = _whole("cpu_threads", cpu_threads, 0)
        self.max_new_tokens = None if max_new_tokens in (None, "") else _whole("max_new_tokens", max_new_tokens, 1)
        try:
            self._model = faster_whisper.WhisperModel(self.model_path, device=device, compute_type=compute_type, cpu_threads=self.cpu_threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"faster-whisper backend: could not load {self.model_path} with device={device}, compute_type={compute_type}: {exc}.") from exc
        self._ctranslate2 = ctranslate2
        self._multilingual = bool(self._model.model.is_multilingual)
        if self.language is not None and self._multilingual and self.language not in self._model.supported_languages:
            raise BackendError(f"faster-whisper backend: language={self.language!r} is not one this model knows. Use an ISO code such as en, de, hi.")
        self._tokenizer_class = Tokenizer
        self._window_samples = int(self._model.feature_extractor.n_samples)
        self._versions = {"faster_whisper_version": _version("faster-whisper"), "ctranslate2_version": _version("ctranslate2")}

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[str]:
        samples = [self._samples(request) for request in batch]
        texts: list[str | None] = [None] * len(batch)
        short = [i for i, s in enumerate(samples) if len(s) <= self._window_samples]
        finished = 0
        for start in range(0, len(short), self.batch_size):
            chunk = short[start : start + self.batch_size]
            for i, text in zip(chunk, self._decode_window([samples[i] for i in chunk]), strict=True):
                texts[i] = text
            finished += len(chunk)
            self.advance(finished)
        for i in (i for i in range(len(batch)) if texts[i] is None):
            texts[i] = self._long_form(samples[i])
            finished += 1
            self.advance(finished)
        return [text or "" for text in texts]

    def describe(self) -> dict[str, Any]:
        model = self._model.model
        return {
            "model": self.model_path, "device": model.device, "compute_type": self.compute_type, "compute_type_in_use": model.compute_type,
            "beam_size": self.beam_size, "language": self.language, "task": self.task, "batch_size": self.batch_size, "cpu_threads": self.cpu_threads,
            "multilingual": self._multilingual, "n_mels": model.n_mels, "sample_rate_hz": self.sample_rate_hz,
            "max_new_tokens_rule": f"fixed at {self.max_new_tokens}" if self.max_new_tokens else f"{TOKENS_PER_S:g} x seconds of the utterance + {TOKEN_ALLOWANCE}, rounded up to a power of two (at least 32)",
            "suppress_tokens": "faster-whisper's default ([-1]: non-speech symbols) and blanks at the start",
            **self._versions,
        }

    def identity(self) -> dict[str, Any]:
        record = self.describe()
        for volatile in ("batch_size", "cpu_threads"):
            record.pop(volatile)
        return {"name": self.name, **record}

    def _samples(self, request: TranscriptionRequest) -> np.ndarray:
        if request.samples is None:
            raise BackendError(f"faster-whisper backend: utterance {request.utterance_id!r} came without audio.")
        if request.sample_rate_hz != self.sample_rate_hz:
            raise BackendError(f"faster-whisper backend: utterance {request.utterance_id!r} is at {request.sample_rate_hz} Hz, expected {self.sample_rate_hz} Hz.")
        return np.ascontiguousarray(request.samples, dtype=np.float32).reshape(-1)

    def _decode_window(self, batch: list[np.ndarray]) -> list[str]:
        """Utterances of up to 30 s, grouped by their token bound: one encode and one generate call per group.

        The bound is a power of two, so most batches hold two or three groups, and an utterance's
        transcript does not depend on which others share its batch.
        """
        bounds = [self.max_new_tokens_for(len(samples) / self.sample_rate_hz) for samples in batch]
        texts: list[str] = [""] * len(batch)
        for bound in sorted(set(bounds)):
            members = [i for i, b in enumerate(bounds) if b == bound]
            for i, text in zip(members, self._decode_group([batch[i] for i in members], bound), strict=True):
                texts[i] = text
        return texts

    def _decode_group(self, batch: list[np.ndarray], bound: int) -> list[str]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        extractor = self._model.feature_extractor
        frames = extractor.nb_max_frames
        features = np.stack([pad_or_trim(extractor(samples), frames) for samples in batch]).astype(np.float32)
        encoded = self._model.encode(features)
        languages = [self.language or "en"] * len(batch)
        if self._multilingual and self.language is None:
            languages = [result[0][0].strip("<|>") for result in self._model.model.detect_language(encoded)]
        tokenizers = {language: self._tokenizer_class(self._model.hf_tokenizer, self._multilingual, task=self.task, language=language) for language in set(languages)}
        prompts = [self._model.get_prompt(tokenizers[language], previous_tokens=[], without_timestamps=True) for language in languages]
        any_tokenizer = next(iter(tokenizers.values()))
        results = self._model.model.generate(
            encoded, prompts, beam_size=self.beam_size, max_length=min(self._model.max_length, max(len(p) for p in prompts) + bound),
            suppress_blank=True, suppress_tokens=list(get_suppressed_tokens(any_tokenizer, [-1])), return_scores=False,
        )
        return [tokenizers[language].decode([t for t in result.sequences_ids[0] if t < tokenizers[language].eot]).strip() for language, result in zip(languages, results, strict=True)]

    def max_new_tokens_for(self, duration_s: float) -> int:
        """The fixed max_new_tokens, or the duration rule rounded up to a power of two."""
        if self.max_new_tokens:
            return self.max_new_tokens
        return min(self._model.max_length, 1 << max(5, math.ceil(math.log2(TOKENS_PER_S * duration_s + TOKEN_ALLOWANCE))))

    def _long_form(self, samples: np.ndarray) -> str:
        segments, _info = self._model.transcribe(samples, language=self.language, task=self.task, beam_size=self.beam_size, temperature=0.0,
                                                 without_timestamps=False, condition_on_previous_text=False, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments)


def _whole(name: str, value: Any, minimum: int) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < minimum:
        raise BackendError(f"faster-whisper backend: {name}={value!r} is not a whole number of at least {minimum}.")
    return int(text)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
