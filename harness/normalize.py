"""Named text normalisers, applied identically to reference and hypothesis and recorded with the run."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from functools import cache

import regex

from harness.errors import ConfigError

Normalizer = Callable[[str], str]

# Apostrophes people type: straight, curly (U+2019/U+2018), modifier letter (U+02BC), full-width.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
# A word: letters, combining marks and digits of any script (Devanagari vowel signs are marks, so
# \w alone would split Hindi words), joined by apostrophes inside it ("it's", "o'brien").
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:'[\p{L}\p{M}\p{N}]+)*")
_COMBINING = regex.compile(r"\p{Mn}+")
# `ascii` keeps only ASCII letters, digits and apostrophes, as byte-oriented scorers (NIST sclite)
# effectively do; this is what reproduces the published Artie totals (14,511 words).
_NOT_ASCII_WORD = re.compile(r"[^a-z0-9'\s]+")
_WHITESPACE = re.compile(r"\s+")


def normalize_none(text: str) -> str:
    """Only collapses whitespace, so that word boundaries are well defined."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_basic(text: str) -> str:
    """NFKC, case-folded; letters, marks and digits of every script kept; everything else a word break,
    except an apostrophe inside a word ("it’s" and "it's" are both the one word it's).

    "Alejandro Fernández" stays two words, "ﬁne" is "fine", a Chinese sentence written without spaces
    is one word (use --metric cer for such scripts) and never zero words. Hyphens split words.
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    return " ".join(_WORD.findall(text))


def normalize_basic_fold_diacritics(text: str) -> str:
    """`basic`, then accents removed (NFKD, non-spacing marks dropped): "Fernández" is "fernandez".

    For languages whose writers drop accents by convention (Whisper's English normaliser does this);
    not for scripts whose vowels are marks (Devanagari's spacing vowel signs stay, its nukta does not).
    """
    return normalize_basic(_COMBINING.sub("", unicodedata.normalize("NFKD", normalize_basic(text))))


def normalize_ascii(text: str) -> str:
    """Lower-case; everything but ASCII letters, digits and apostrophes to spaces; whitespace collapsed.

    Non-ASCII letters count as punctuation, so "Fernández" becomes "fern ndez" and a curly apostrophe
    splits "it’s": unfair to names and scripts, but it matches the totals of NIST sclite and the
    published Artie figures (14,511 words), which is what it is kept for.
    """
    return _WHITESPACE.sub(" ", _NOT_ASCII_WORD.sub(" ", text.lower())).strip()


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
    return _whisper_english()(text.translate(_APOSTROPHES))


NORMALIZERS: dict[str, Normalizer] = {
    "none": normalize_none,
    "basic": normalize_basic,
    "basic-fold-diacritics": normalize_basic_fold_diacritics,
    "ascii": normalize_ascii,
    "whisper-english": normalize_whisper_english,
}
# Older names, kept so that runs recorded with them still resume and rescore: basic-unicode was the
# script-aware normaliser before it became `basic`.
ALIASES = {"basic-unicode": "basic"}


def get_normalizer(name: str) -> Normalizer:
    try:
        return NORMALIZERS[ALIASES.get(name, name)]
    except KeyError:
        close = difflib.get_close_matches(name, NORMALIZERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown normaliser {name!r}.{hint} Choose one of: {', '.join(NORMALIZERS)}.") from None


def normalizer_version(name: str) -> str:
    """What produced the normalised text, for provenance."""
    if name == "whisper-english":
        from importlib.metadata import version

        return f"whisper-normalizer {version('whisper-normalizer')}"
    name = ALIASES.get(name, name)
    # `basic` changed meaning (ASCII-only before 2026-11-30, every script since): the version in the
    # record makes resuming an old `basic` run refuse instead of mixing two normalisations.
    return {"basic": "asrfair basic 2 (NFKC, casefold, every script)"}.get(name, f"asrfair {name}")
