"""Named text normalisers, applied identically to reference and hypothesis and recorded with the run."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from functools import cache

from harness.errors import ConfigError

Normalizer = Callable[[str], str]

# `basic` keeps only ASCII letters, digits and apostrophes, as byte-oriented scorers (NIST sclite)
# effectively do; this is what reproduces the published Artie totals (14,511 words).
_NOT_ASCII_WORD = re.compile(r"[^a-z0-9'\s]+")
# `basic-unicode` keeps letters of every script, so "Fernández" stays one word.
_NOT_UNICODE_WORD = re.compile(r"[^\w\s']+")
_WHITESPACE = re.compile(r"\s+")
_CURLY_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def normalize_none(text: str) -> str:
    """Only collapses whitespace, so that word boundaries are well defined."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_basic(text: str) -> str:
    """Lower-case; everything but ASCII letters, digits and apostrophes to spaces; whitespace collapsed.

    Hyphens split words ("two-wave" is two words). Non-ASCII letters count as punctuation, so
    "Fernández" becomes "fern ndez" and a curly apostrophe splits "it’s": this matches the totals
    of NIST sclite and the published Artie figures. Use `basic-unicode` for non-English scripts.
    """
    return _WHITESPACE.sub(" ", _NOT_ASCII_WORD.sub(" ", text.lower())).strip()


def normalize_basic_unicode(text: str) -> str:
    """Like `basic`, but letters of any script are kept and curly apostrophes count as apostrophes."""
    text = text.translate(_CURLY_APOSTROPHES).lower()
    return _WHITESPACE.sub(" ", _NOT_UNICODE_WORD.sub(" ", text)).strip()


@cache
def _whisper_english() -> Normalizer:
    # whisper-normalizer ships Whisper's English spelling map, so this works offline for any backend.
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_whisper_english(text: str) -> str:
    """Whisper's English normaliser: numbers, British/American spellings, contractions, fillers.

    Curly apostrophes are straightened first; Whisper's normaliser would otherwise split
    "aren’t" into "aren t" while leaving "aren't" whole.
    """
    return _whisper_english()(text.translate(_CURLY_APOSTROPHES))


NORMALIZERS: dict[str, Normalizer] = {
    "none": normalize_none,
    "basic": normalize_basic,
    "basic-unicode": normalize_basic_unicode,
    "whisper-english": normalize_whisper_english,
}


def get_normalizer(name: str) -> Normalizer:
    try:
        return NORMALIZERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, NORMALIZERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown normaliser {name!r}.{hint} Choose one of: {', '.join(NORMALIZERS)}.") from None


def normalizer_version(name: str) -> str:
    """What produced the normalised text, for provenance."""
    if name == "whisper-english":
        from importlib.metadata import version

        return f"whisper-normalizer {version('whisper-normalizer')}"
    return f"asrfair {name}"
