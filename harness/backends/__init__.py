"""ASR backends: batch in, batch out, found by name through a registry of lazy import paths.

The registry holds "module:attr" strings, not classes, so `asrfair --help` imports no torch.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from harness.backends.base import Backend, TranscriptionRequest
from harness.errors import BackendError

BACKENDS: dict[str, str] = {
    "pocketsphinx": "harness.backends.pocketsphinx:PocketsphinxBackend",
    "transformers": "harness.backends.transformers:TransformersBackend",
    "replay": "harness.backends.replay:ReplayBackend",
}

__all__ = ["BACKENDS", "Backend", "TranscriptionRequest", "load_backend", "parse_backend_args"]


def load_backend(name: str, options: dict[str, str] | None = None) -> Backend:
    """Import and construct the backend registered as `name`, passing `options` as keyword arguments."""
    target = BACKENDS.get(name)
    if target is None:
        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BackendError(f"unknown backend {name!r}.{hint} Known backends: {', '.join(sorted(BACKENDS))}.")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs a package that is not installed ({exc.name or exc}). "
            f"Install it, e.g. `pip install 'asrfair[{name}]'`."
        ) from exc
    factory = getattr(module, attr)
    try:
        return factory(**(options or {}))
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad --backend-arg ({exc}). Run `asrfair backends` to list its options.") from exc


def parse_backend_args(pairs: list[str]) -> dict[str, str]:
    """Turn repeated KEY=VALUE strings into a dict, rejecting anything without an '='."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BackendError(f"--backend-arg {pair!r} is not KEY=VALUE. Write it as e.g. --backend-arg model=openai/whisper-small.")
        options[key.strip()] = value
    return options


def describe_backend(backend: Backend) -> dict[str, Any]:
    """The provenance record a run stores for its backend."""
    return {"name": backend.name, **backend.describe()}
