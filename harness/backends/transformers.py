"""Hugging Face transformers ASR models (Whisper, Wav2Vec2/HuBERT CTC, ...) through the ASR pipeline.

torch and transformers are imported when the backend is constructed, not when this module is.
"""

from __future__ import annotations

import difflib
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import Backend, BackendOption, TranscriptionRequest
from harness.errors import BackendError

DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("auto", "float32", "float16", "bfloat16")
OPTIONS = (
    "model",
    "device",
    "dtype",
    "batch_size",
    "language",
    "task",
    "chunk_length_s",
    "max_new_tokens",
    "num_beams",
    "max_tokens_per_s",
)
WARMUP_S = 1.0
# Decoding cannot run away: with no max_new_tokens given, each clip may generate at most
# TOKENS_PER_S tokens per second of its own audio plus TOKEN_ALLOWANCE. Fast English speech is
# about 7 Whisper tokens a second and languages written in multi-byte scripts about three times that,
# so the bound never cuts a real transcript, while a decoder stuck in a loop stops after a few dozen tokens.
TOKENS_PER_S = 25.0
TOKEN_ALLOWANCE = 10
WHISPER_PROMPT_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>


class TransformersBackend(Backend):
    """Any transformers speech-recognition checkpoint, by Hub id (already cached) or local directory.

    Options arrive as strings from `--backend-arg KEY=VALUE`:
    device (auto picks cuda when available), dtype (auto: bfloat16/float16 on cuda, float32 elsewhere),
    batch_size, language and task (generating models only, e.g. Whisper), chunk_length_s (chunked
    long-form), num_beams (default 1: greedy; the pipeline's own default is a 5-beam search costing
    about 3.5x as much on CPU), max_new_tokens (default: bounded by each clip's own duration at
    max_tokens_per_s, 25 unless given). describe() records the settings in effect.

    Whisper audio longer than 30 s is decoded with Whisper's sequential long-form algorithm, one
    utterance at a time, unless chunk_length_s is given. CTC outputs are cut to each utterance's own
    frames, and each generated transcript ends at its own clip's token bound (a batch generates up to
    its longest clip's, and `_RowTokenBounds` ends the others at theirs), so a transcript does not
    depend on which other utterances share its batch.
    """

    name = "transformers"
    extra = "transformers"
    requires = ("torch", "transformers")
    summary = "Any Hugging Face ASR checkpoint (Whisper, wav2vec2 CTC, ...) by local directory or cached Hub id; batched; cuda when present."
    options = (
        BackendOption(name="model", help="local model directory, or a Hub id already in the local cache"),
        BackendOption(name="device", default="auto", help="auto, cpu, cuda, cuda:N or mps"),
        BackendOption(name="dtype", default="auto", help="auto (bfloat16/float16 on cuda, float32 elsewhere), float32, float16, bfloat16"),
        BackendOption(name="batch_size", default=16, help="utterances per forward pass"),
        BackendOption(name="language", help="language code for models that generate text, e.g. en"),
        BackendOption(name="task", help="transcribe or translate (Whisper)"),
        BackendOption(name="chunk_length_s", help="chunked long-form decoding with this chunk length"),
        BackendOption(name="num_beams", default=1, help="beam width; 1 is greedy"),
        BackendOption(name="max_new_tokens", help="fixed cap on generated tokens (default: bounded by audio duration)"),
        BackendOption(name="max_tokens_per_s", default=TOKENS_PER_S, help=f"the duration bound: tokens per second of each clip's audio, plus {TOKEN_ALLOWANCE}"),
    )

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: str | int = 16,
        language: str | None = None,
        task: str | None = None,
        chunk_length_s: str | float | None = None,
        max_new_tokens: str | int | None = None,
        num_beams: str | int | None = None,
        max_tokens_per_s: str | float | None = None,
        **unknown: str,
    ):
        if unknown:
            raise BackendError(_unknown_options_message(unknown))
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendError(
                f"backend 'transformers' needs torch and transformers ({exc.name or exc} is missing). "
                "Install them, e.g. `pip install 'asrfair[transformers]'`."
            ) from exc

        self.model_name = str(model)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.language = language or None
        self.task = task or None
        self.chunk_length_s = None if chunk_length_s in (None, "") else _positive_float("chunk_length_s", chunk_length_s)
        self.max_new_tokens = None if max_new_tokens in (None, "") else _positive_int("max_new_tokens", max_new_tokens)
        self.num_beams = None if num_beams in (None, "") else _positive_int("num_beams", num_beams)
        self.max_tokens_per_s = TOKENS_PER_S if max_tokens_per_s in (None, "") else _positive_float("max_tokens_per_s", max_tokens_per_s)
        self.device = _resolve_device(torch, device)
        self.dtype_name = _resolve_dtype(self.device, dtype, torch)
        self._torch_version = torch.__version__
        self._transformers_version = transformers.__version__

        self._pipe = _load_pipeline(transformers, torch, self.model_name, self.device, getattr(torch, self.dtype_name))
        self.sample_rate_hz = int(self._pipe.feature_extractor.sampling_rate)
        self._kind = self._pipe.type  # "ctc", "seq2seq_whisper", "seq2seq", ...
        self._generates = self._kind not in ("ctc", "ctc_with_lm")

        generation = {"language": self.language, "task": self.task, "max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        generation = {key: value for key, value in generation.items() if value is not None}
        if generation and not self._generates:
            raise BackendError(
                f"transformers model {self.model_name!r} is a CTC model ({type(self._pipe.model).__name__}); "
                f"{', '.join(sorted(generation))} only apply to models that generate text (e.g. Whisper). Remove them."
            )
        if self._generates:
            generation.setdefault("num_beams", 1)
            # generate() must not inherit sampling or several return sequences from a checkpoint's generation config.
            generation.setdefault("do_sample", False)
        self.generate_kwargs = generation
        config = self._pipe.model.config
        positions = getattr(config, "max_target_positions", None) or getattr(getattr(self._pipe.model, "generation_config", None), "max_length", None) or 448
        self._max_new_tokens_cap = max(1, int(positions) - WHISPER_PROMPT_TOKENS)
        self._call_kwargs: dict[str, Any] = {"generate_kwargs": dict(generation)} if generation else {}
        if self.chunk_length_s is not None:
            self._call_kwargs["chunk_length_s"] = self.chunk_length_s
        self._whisper_long_form_samples = (
            int(self._pipe.feature_extractor.n_samples)
            if self._kind == "seq2seq_whisper" and self.chunk_length_s is None
            else None
        )
        self._ctc_output_lengths = _ctc_output_length_fn(self._pipe, torch) if self._kind == "ctc" and self.chunk_length_s is None else None
        if self._kind in ("ctc", "ctc_with_lm") and self.batch_size > 1 and getattr(self._pipe.model.config, "feat_extract_norm", None) == "group":
            warnings.warn(
                f"transformers model {self.model_name!r} normalises over the whole padded input (feat_extract_norm='group'), "
                "so its transcripts can change with the other utterances in a batch; use batch_size=1 for results that do not.",
                stacklevel=2,
            )
        self._warm_up()

    def transcribe(self, batch: list[TranscriptionRequest]) -> list[str]:
        inputs = [self._input(request) for request in batch]
        texts: list[str | None] = [None] * len(inputs)
        long_form = [i for i, item in enumerate(inputs) if self._is_long_form(item)]
        short = sorted(set(range(len(inputs))) - set(long_form))
        finished = 0
        # One pipeline call per forward-sized chunk, in order: the same groups the pipeline would form
        # from the whole list, each with its own duration bound, and progress after each.
        for start in range(0, len(short), self.batch_size):
            chunk = short[start : start + self.batch_size]
            outputs = self._pipe([inputs[i] for i in chunk], batch_size=self.batch_size, **self._kwargs_for([inputs[i] for i in chunk]))
            for i, output in zip(chunk, outputs, strict=True):
                texts[i] = output["text"].strip()
            finished += len(chunk)
            self.advance(finished)
        # Whisper's long-form features are longer than 30 s and of differing lengths, which the pipeline
        # cannot pad into one batch; its sequential decoding also needs timestamp tokens.
        for i in long_form:
            output = self._pipe(inputs[i], return_timestamps=True, **self._kwargs_for([inputs[i]], long_form=True))
            texts[i] = output["text"].strip()
            finished += 1
            self.advance(finished)
        return [text or "" for text in texts]

    def max_new_tokens_for(self, duration_s: float) -> int:
        """The generation bound for audio this long: the fixed max_new_tokens, or the duration rule."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return min(self._max_new_tokens_cap, math.ceil(self.max_tokens_per_s * duration_s) + TOKEN_ALLOWANCE)

    def _kwargs_for(self, items: list[dict[str, Any]], *, long_form: bool = False) -> dict[str, Any]:
        if not self._generates or self.max_new_tokens is not None:
            return self._call_kwargs
        if long_form or self.chunk_length_s is not None:
            # Long-form and chunked decoding generate per 30 s window: bound each window as 30 s of audio.
            window_s = self.chunk_length_s or self._pipe.feature_extractor.chunk_length
            longest_s = min(float(window_s), max(item["raw"].shape[0] for item in items) / self.sample_rate_hz)
        else:
            longest_s = max(item["raw"].shape[0] for item in items) / self.sample_rate_hz
        kwargs = dict(self._call_kwargs)
        kwargs["generate_kwargs"] = {**self.generate_kwargs, "max_new_tokens": self.max_new_tokens_for(longest_s)}
        if len(items) > 1 and not long_form and self.chunk_length_s is None:
            bounds = [self.max_new_tokens_for(item["raw"].shape[0] / self.sample_rate_hz) for item in items]
            eos = getattr(self._pipe.model.generation_config, "eos_token_id", None)
            if min(bounds) < max(bounds) and eos is not None:  # with no end-of-text token, max_new_tokens alone bounds the batch
                processor = _RowTokenBounds(bounds, eos if isinstance(eos, list) else [eos], beams=self.generate_kwargs.get("num_beams", 1))
                kwargs["generate_kwargs"]["logits_processor"] = [processor]
        return kwargs

    def describe(self) -> dict[str, Any]:
        config = self._pipe.model.config
        defaults = getattr(self._pipe, "_generation_defaults", None)
        return {
            "model": self.model_name,
            "device": self.device,
            "dtype": self.dtype_name,
            "batch_size": self.batch_size,
            "language": self.language,
            "task": self.task,
            "chunk_length_s": self.chunk_length_s,
            "generate_kwargs": dict(self.generate_kwargs),
            "max_new_tokens_rule": (
                None if not self._generates
                else f"fixed at {self.max_new_tokens}" if self.max_new_tokens is not None
                else f"ceil({self.max_tokens_per_s:g} x each clip's own seconds) + {TOKEN_ALLOWANCE}, at most {self._max_new_tokens_cap}; "
                "a window of long-form or chunked audio counts as its length (30 s, or chunk_length_s)"
            ),
            "pipeline_generation_defaults": _jsonable(defaults) if self._generates and defaults else None,
            "pipeline_type": self._kind,
            "model_class": type(self._pipe.model).__name__,
            "config_class": type(config).__name__,
            "model_type": getattr(config, "model_type", None),
            "commit_hash": getattr(config, "_commit_hash", None),
            "sample_rate_hz": self.sample_rate_hz,
            "transformers_version": self._transformers_version,
            "torch_version": self._torch_version,
        }

    def _input(self, request: TranscriptionRequest) -> dict[str, Any]:
        if request.samples is None:
            raise BackendError(f"utterance {request.utterance_id!r}: the transformers backend needs audio, got none.")
        if request.sample_rate_hz != self.sample_rate_hz:
            raise BackendError(
                f"utterance {request.utterance_id!r}: audio is at {request.sample_rate_hz} Hz but model "
                f"{self.model_name!r} expects {self.sample_rate_hz} Hz. Resample before transcribing."
            )
        samples = np.ascontiguousarray(request.samples, dtype=np.float32).reshape(-1)
        item: dict[str, Any] = {"raw": samples, "sampling_rate": self.sample_rate_hz}
        if self._ctc_output_lengths is not None:
            item["stride"] = (0, self._ctc_right_stride(samples.shape[0]))
        return item

    def _is_long_form(self, item: dict[str, Any]) -> bool:
        return self._whisper_long_form_samples is not None and item["raw"].shape[0] > self._whisper_long_form_samples

    def _ctc_right_stride(self, n_samples: int) -> int:
        """Samples to drop on the right so the pipeline keeps exactly this utterance's CTC frames.

        In a padded batch the pipeline keeps round(n / frame_step) frames of each row, which can
        include a frame of padding that would not exist were the utterance alone; a right stride of
        that many frames, in the pipeline's own rounding, trims it.
        """
        ratio = 1 / self._pipe._align_to
        kept = int(round(n_samples * ratio))
        excess = kept - int(self._ctc_output_lengths(n_samples))
        if excess <= 0 or kept == 0:
            return 0
        right = int(round(excess * n_samples / kept))
        while right < n_samples and int(round(right / n_samples * kept)) < excess:
            right += 1
        while right > 0 and int(round(right / n_samples * kept)) > excess:
            right -= 1
        return right

    def _warm_up(self) -> None:
        """Transcribe a second of silence so a bad option fails now, once, rather than on every batch."""
        silence = TranscriptionRequest(
            utterance_id="<warm-up>", samples=np.zeros(int(WARMUP_S * self.sample_rate_hz), dtype=np.float32), sample_rate_hz=self.sample_rate_hz
        )
        try:
            self.transcribe([silence])
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"transformers model {self.model_name!r} loaded, but transcribing {WARMUP_S:g} s of silence with "
                f"{self._options_text()} failed: {type(exc).__name__}: {exc}. Check language, task and the other --backend-arg values."
            ) from exc

    def _options_text(self) -> str:
        options = {"device": self.device, "dtype": self.dtype_name, "batch_size": self.batch_size, **self.generate_kwargs}
        if self.chunk_length_s is not None:
            options["chunk_length_s"] = self.chunk_length_s
        return ", ".join(f"{key}={value}" for key, value in options.items())


class _RowTokenBounds:
    """A logits processor that ends row i of a batch with end-of-text once it has generated bounds[i] tokens.

    generate() has one max_new_tokens per call, which a batch sets to its longest clip's bound; without
    this, a decoder that loops on a short clip would run on to the long clip's bound, and the clip's
    transcript would depend on its batch. Forcing end-of-text at the row's own bound gives the tokens that
    greedy decoding (the default) of the clip alone gives with max_new_tokens = its bound: decoding is
    causal, and end-of-text is not part of the text. (A beam search keeps the bound, but may rank its
    finished beams differently.) Rows are batch items in order, each repeated `beams` times.
    Whisper may call generate() again for later segments of a row with fewer rows; the counts restart
    with each call, and a call with a different number of rows is left to max_new_tokens.
    """

    def __init__(self, bounds: list[int], eos_token_ids: list[int], *, beams: int = 1) -> None:
        self.bounds = bounds
        self.eos_token_ids = eos_token_ids
        self.beams = beams
        self._prompt_length: int | None = None
        self._last_length: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        length = int(input_ids.shape[1])
        if self._last_length is None or length <= self._last_length:
            self._prompt_length = length  # the first step of a generate() call
        self._last_length = length
        if input_ids.shape[0] != len(self.bounds) * self.beams:
            return scores
        generated = length - self._prompt_length
        done = [row for row in range(input_ids.shape[0]) if generated >= self.bounds[row // self.beams]]
        if not done:
            return scores
        scores = scores.clone()
        forced = scores[done].fill_(float("-inf"))
        forced[:, self.eos_token_ids] = 0.0
        scores[done] = forced
        return scores


def _load_pipeline(transformers: Any, torch: Any, model: str, device: str, dtype: Any) -> Any:
    path = Path(model).expanduser()
    if not path.exists() and _looks_like_path(model):
        raise BackendError(
            f"transformers model {model!r}: no such directory ({path.resolve()}). Check the path, or give a Hub id "
            "such as openai/whisper-small that is already in the local Hugging Face cache."
        )
    source = str(path) if path.exists() else model
    try:
        pipe = transformers.pipeline("automatic-speech-recognition", model=source, device=device, dtype=dtype)
    except Exception as exc:  # a model can fail to load in many ways: missing files, offline hub, unknown architecture
        fix = (
            f"The directory {source!r} must hold a saved model with its config, tokenizer and feature extractor "
            "(save_pretrained of both the model and its processor)"
            if path.exists()
            else "A Hub id must already be in the local Hugging Face cache (download it once with network access, then set "
            "HF_HUB_OFFLINE=1 to skip network look-ups); a local model must be an existing directory"
        )
        detail = str(exc).strip().rstrip(".")
        raise BackendError(f"could not load transformers model {model!r}: {type(exc).__name__}: {detail}. {fix}.") from exc
    if pipe.feature_extractor is None or pipe.tokenizer is None:
        raise BackendError(
            f"transformers model {model!r} has no {'feature extractor' if pipe.feature_extractor is None else 'tokenizer'}. "
            "Save its processor next to the model (processor.save_pretrained(directory))."
        )
    if pipe.tokenizer.pad_token_id is None and pipe.tokenizer.eos_token_id is not None:
        # The pipeline refuses to batch without a pad token; padding positions are masked, so any id will do.
        pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
    return pipe


def _looks_like_path(model: str) -> bool:
    """True for strings that cannot be Hub ids (which are 'name' or 'owner/name'), so a typo fails fast and offline."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1 or Path(model).is_absolute()


def _ctc_output_length_fn(pipe: Any, torch: Any) -> Any:
    lengths = getattr(pipe.model, "_get_feat_extract_output_lengths", None)
    if lengths is None:
        return None
    return lambda n_samples: int(lengths(torch.tensor(n_samples)))


def _resolve_device(torch: Any, device: str) -> str:
    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(f"transformers backend: device={device!r} but torch sees no CUDA GPU (torch {torch.__version__}). Use device=cpu or device=auto.")
        return "cuda:0" if device == "cuda" else device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise BackendError("transformers backend: device='mps' but MPS is not available. Use device=cpu or device=auto.")
        return device
    if device == "cpu":
        return device
    raise BackendError(f"transformers backend: device={device!r} is not one of {DEVICES_HELP}.")


def _resolve_dtype(device: str, dtype: str, torch: Any) -> str:
    dtype = (dtype or "auto").strip().lower()
    if dtype not in DTYPES:
        raise BackendError(f"transformers backend: dtype={dtype!r} is not one of {', '.join(DTYPES)}.")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _positive_int(name: str, value: str | int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise BackendError(f"transformers backend: {name}={value!r} is not a whole number of at least 1.")
    return int(text)


def _positive_float(name: str, value: str | float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise BackendError(f"transformers backend: {name}={value!r} is not a positive number of seconds.")
    return number


def _unknown_options_message(unknown: dict[str, Any]) -> str:
    parts = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key, OPTIONS, n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"transformers backend: unknown option(s) {', '.join(parts)}. Known options: {', '.join(OPTIONS)}."


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
