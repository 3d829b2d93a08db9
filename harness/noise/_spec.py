"""Reading one YAML mapping into typed parameters, with errors that name the file, field and value."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.errors import ConfigError, Problem

_MISSING = object()


def child_seed(rng: np.random.Generator) -> int:
    """One 63-bit seed drawn from rng: a step's own generator, recorded so the step can be replayed."""
    return int(rng.integers(0, 2**63 - 1))


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """' Did you mean "x"?' when a close match exists, else ''."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


class Fields:
    """Typed access to one mapping from a profile; every getter validates and names the field on failure.

    Call finish() last: keys nobody asked for are reported as unknown (a typo in a parameter
    name must not silently fall back to the default).
    """

    def __init__(self, mapping: object, *, file: str, field: str, base_dir: Path | None = None):
        self.file = file
        self.field = field
        self.base_dir = base_dir
        if not isinstance(mapping, Mapping):
            self.fail(field or "(whole document)", mapping, "must be a mapping of parameter names to values", "Write it as `key: value` lines in the YAML")
        self.mapping = dict(mapping)
        self._seen: set[str] = set()

    def path_of(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key

    def fail(self, field: str, value: object, message: str, fix: str) -> None:
        raise ConfigError(str(Problem(file=self.file, line=None, field=field, value=value, message=message, fix=fix)))

    def has(self, key: str) -> bool:
        return key in self.mapping

    def raw(self, key: str, default: object = _MISSING) -> object:
        self._seen.add(key)
        if key in self.mapping:
            return self.mapping[key]
        if default is _MISSING:
            self.fail(self.path_of(key), None, "is required but missing", f"Add `{key}:` to this step")
        return default

    def number(self, key: str, default: object = _MISSING, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, unit: str = "") -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(self.path_of(key), value, "must be a finite number" + (f" in {unit}" if unit else ""), f"Write a plain number, e.g. `{key}: 10`")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
            self.fail(self.path_of(key), value, f"must be {bound}", "Use a value inside the allowed range (see noise_profiles/README.md)")
        if high is not None and value > high:
            self.fail(self.path_of(key), value, f"must be at most {high:g}", "Use a value inside the allowed range (see noise_profiles/README.md)")
        return value

    def integer(self, key: str, default: object = _MISSING, *, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self.path_of(key), value, "must be a whole number", f"Write an integer, e.g. `{key}: 4`")
        if (low is not None and value < low) or (high is not None and value > high):
            lo = "" if low is None else f"{low}"
            hi = "" if high is None else f"{high}"
            self.fail(self.path_of(key), value, f"must be in the range [{lo}, {hi}]", "Use a value inside the allowed range")
        return int(value)

    def string(self, key: str, default: object = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(self.path_of(key), value, "must be a non-empty text value", f"Write e.g. `{key}: some text`")
        return value

    def path(self, key: str, default: object = _MISSING) -> Path:
        """A file path; relative paths are resolved against the profile's folder."""
        value = Path(self.string(key, default)).expanduser()
        if not value.is_absolute() and self.base_dir is not None:
            value = self.base_dir / value
        return value

    def finish(self, *, exclusive: tuple[tuple[str, ...], ...] = ()) -> None:
        unknown = sorted(set(self.mapping) - self._seen)
        if unknown:
            key = unknown[0]
            allowed = sorted(self._seen)
            self.fail(self.path_of(str(key)), self.mapping[key], "is not a parameter of this step",
                      f"Allowed parameters: {', '.join(allowed)}.{did_you_mean(str(key), allowed)}")
        for group in exclusive:
            given = [k for k in group if k in self.mapping]
            if len(given) > 1:
                self.fail(self.path_of(given[1]), self.mapping[given[1]], f"cannot be combined with {given[0]!r}",
                          f"Give exactly one of: {', '.join(group)}")


def power(samples: np.ndarray) -> float:
    """Mean square in float64 (float32 accumulation loses ~1e-4 dB on long utterances).

    numpy's own summation, not np.dot: BLAS splits a dot product across its threads, so its last
    bit depends on how many cores the machine (or a Ray task) has, and so would the noise gain.
    """
    if samples.size == 0:
        return 0.0
    flat = samples.astype(np.float64, copy=False)
    return float(np.square(flat).sum() / flat.size)


def db(value: float) -> float | None:
    """10*log10(value) for a power ratio; None for zero (JSON has no -inf)."""
    return None if value <= 0.0 else 10.0 * math.log10(value)
