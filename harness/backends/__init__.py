"""ASR backends: batch in, batch out, found by name through a registry of lazy import paths.

The registry holds "module:attr" strings, not classes, and backend modules import their engine
(torch, CTranslate2) only when constructed, so `asrfair --help` and `asrfair backends` import
neither. Third-party backends register under the entry-point group `asrfair.backends`, or are
named directly as `--backend package.module:Class`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from harness.backends.base import (
    Backend,
    BackendOption,
    FatalBackendError,
    PermanentError,
    RetryableError,
    Transcript,
    TranscriptionError,
    TranscriptionRequest,
)
from harness.errors import BackendError

ENTRY_POINT_GROUP = "asrfair.backends"

BACKENDS: dict[str, str] = {
    "pocketsphinx": "harness.backends.pocketsphinx:PocketsphinxBackend",
    "transformers": "harness.backends.transformers:TransformersBackend",
    "faster-whisper": "harness.backends.faster_whisper:FasterWhisperBackend",
    "openai": "harness.backends.openai:OpenAIBackend",
    "command": "harness.backends.command:CommandBackend",
    "replay": "harness.backends.replay:ReplayBackend",
}

__all__ = [
    "BACKENDS", "ENTRY_POINT_GROUP", "Backend", "BackendInfo", "BackendOption", "FatalBackendError", "PermanentError",
    "RetryableError", "Transcript", "TranscriptionError", "TranscriptionRequest", "backend_class", "describe_backend",
    "list_backends", "load_backend", "parse_backend_args", "BackendFactory",
]


@dataclass(frozen=True, kw_only=True)
class BackendInfo:
    """What `asrfair backends` shows for one backend, found without importing its engine."""

    name: str
    target: str
    source: str  # "built-in", or the distribution that registered the entry point
    summary: str = ""
    extra: str | None = None
    missing: tuple[str, ...] = ()  # required modules that are not installed
    options: tuple[BackendOption, ...] = ()
    error: str | None = None  # the module could not be imported at all

    @property
    def installed(self) -> bool:
        return not self.missing and self.error is None


def _plugins() -> dict[str, tuple[str, str]]:
    """Entry points of the `asrfair.backends` group: name -> (target, distribution)."""
    found: dict[str, tuple[str, str]] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry.dist.name if entry.dist is not None else "unknown distribution"
        found.setdefault(entry.name, (entry.value, distribution))
    return found


def _targets() -> dict[str, str]:
    """Every registered name: built-ins win over a plugin of the same name."""
    return {**{name: target for name, (target, _) in _plugins().items()}, **BACKENDS}


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name`, or named by `package.module:Class`."""
    if ":" in name:
        target = name
    else:
        targets = _targets()
        target = targets.get(name)
        if target is None:
            close = difflib.get_close_matches(name, targets, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise BackendError(
                f"unknown backend {name!r}.{hint} Known backends: {', '.join(sorted(targets))}. "
                "A backend of your own can be named as package.module:Class."
            )
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise BackendError(f"--backend {name!r}: write a backend class as package.module:Class.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        extra = BACKENDS.get(name) and name
        install = f"pip install 'asrfair[{extra}]'" if extra else f"install the package that provides {module_name!r}"
        raise BackendError(f"backend {name!r} needs a package that is not installed ({missing}). Install it, e.g. `{install}`.") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise BackendError(f"backend {name!r}: module {module_name!r} has no attribute {attr!r}. Check the spelling of package.module:Class.")
    if not (isinstance(factory, type) and issubclass(factory, Backend)):
        raise BackendError(
            f"backend {name!r}: {target} is not a subclass of harness.backends.Backend. "
            "Subclass it and implement transcribe() and describe() (see harness/backends/base.py)."
        )
    return factory


def load_backend(name: str, options: dict[str, str] | None = None) -> Backend:
    """Import and construct the backend registered as `name`, passing `options` as keyword arguments."""
    factory = backend_class(name)
    try:
        return factory(**(options or {}))
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad --backend-arg ({exc}). Run `asrfair backends` to list its options.") from exc


def list_backends() -> list[BackendInfo]:
    """Every built-in and plugin backend with its options and whether what it needs is installed.

    Backend modules are imported (they are light); the engines they need are only looked up.
    """
    plugins = _plugins()
    entries = [(name, target, "built-in") for name, target in BACKENDS.items()]
    entries += [(name, target, distribution) for name, (target, distribution) in sorted(plugins.items()) if name not in BACKENDS]
    infos = []
    for name, target, source in entries:
        try:
            cls = backend_class(target)
        except BackendError as error:
            infos.append(BackendInfo(name=name, target=target, source=source, error=str(error)))
            continue
        missing = tuple(module for module in cls.requires if not _is_installed(module))
        infos.append(BackendInfo(name=name, target=target, source=source, summary=cls.summary or _first_line(cls.__doc__), extra=cls.extra, missing=missing, options=cls.option_specs()))
    return infos


def _is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


@dataclass(frozen=True, kw_only=True)
class BackendFactory:
    """A backend by registry name and `--backend-arg` options, built where it runs.

    Picklable, so a worker on another machine builds its own backend rather than receiving one.
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)

    def build(self) -> Backend:
        return load_backend(self.name, dict(self.options))


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
