"""One error hierarchy: every message names the file, line, field and value, and says what to do."""

from __future__ import annotations

from dataclasses import dataclass


class HarnessError(Exception):
    """Base of every error the harness raises on purpose; the CLI prints it and exits 2."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with an input, located precisely enough to fix by hand."""

    file: str
    line: int | None
    field: str | None
    value: object
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" field {self.field!r}" if self.field else ""
        value = "" if self.value is None else f" (value: {_short(self.value)})"
        located = f"{where}:{field}{value}" if field or value else where
        return f"{located}: {self.message}. {self.fix}"


def _short(value: object, limit: int = 300) -> str:
    # Long enough for any real path (a user must be able to find the file), short enough that a
    # 50 MB transcript does not become a 50 MB message.
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ManifestError(HarnessError):
    """A manifest failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = "" if len(self.problems) <= 50 else f"\n  ... and {len(self.problems) - 50} more"
        super().__init__(f"{len(self.problems)} problem(s) in manifest:\n{shown}{more}")


class AudioError(HarnessError):
    """An audio file could not be read or decoded. Fails one utterance, never the run."""


class BackendError(HarnessError):
    """A backend could not be found, configured or loaded."""


class ConfigError(HarnessError):
    """A command-line or configuration value is unusable (unknown name, bad number, missing file)."""


class OutputError(HarnessError):
    """A run's files could not be written (full disk, permissions, read-only disk); finished batches are kept."""
