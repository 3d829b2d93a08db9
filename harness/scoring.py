"""Word and character error counts per utterance, from jiwer's alignments.

Counts are stored, rates derived: a slice's WER is sum(errors) / sum(reference words).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import jiwer
import numpy as np
from rapidfuzz.distance import Levenshtein

from harness.normalize import Normalizer, normalize_ascii, normalize_basic, normalize_none

COUNT_FIELDS = ("ref_words", "hyp_words", "hits", "substitutions", "deletions", "insertions", "errors", "ref_chars", "char_errors")


@dataclass(frozen=True, kw_only=True)
class UtteranceScore:
    """Alignment counts for one reference/hypothesis pair, plus the texts they were computed on."""

    ref_words: int
    hyp_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    errors: int
    ref_chars: int
    char_errors: int
    reference_normalized: str
    hypothesis_normalized: str

    @property
    def wer(self) -> float:
        """This utterance's own WER; jiwer 4's convention for an empty reference (insertions count)."""
        return self.errors / self.ref_words if self.ref_words else float(self.insertions)

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def score(reference: str, hypothesis: str, normalizer: Normalizer = normalize_none) -> UtteranceScore:
    """Score one pair after applying the same normaliser to both sides."""
    return score_many([reference], [hypothesis], normalizer)[0]


def score_many(references: Sequence[str], hypotheses: Sequence[str], normalizer: Normalizer = normalize_none) -> list[UtteranceScore]:
    """Score pairs in one jiwer call; much faster than one call per pair.

    A missing hypothesis (None) is scored as an empty transcript: every reference word is a deletion.
    """
    scored = score_columns(references, hypotheses, normalizer)
    columns = [scored.counts[name].tolist() for name in COUNT_FIELDS]
    return [
        UtteranceScore(**dict(zip(COUNT_FIELDS, values)), reference_normalized=r, hypothesis_normalized=h)
        for *values, r, h in zip(*columns, scored.reference_normalized, scored.hypothesis_normalized, strict=True)
    ]


@dataclass(frozen=True, kw_only=True)
class ScoreColumns:
    """`score_many` as columns: one int64 array per count in COUNT_FIELDS, plus the normalised texts.

    The runner stores these straight into a result table; no per-utterance object is built.
    """

    counts: dict[str, np.ndarray]
    reference_normalized: list[str]
    hypothesis_normalized: list[str]


def score_columns(references: Sequence[str] | Any, hypotheses: Sequence[str | None], normalizer: Normalizer = normalize_none) -> ScoreColumns:
    """Score pairs into columns; the same counts as `score_many`, pair by pair.

    `references` may be an Arrow string array (a manifest column), which is normalised without
    becoming Python strings first.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"references and hypotheses must pair up; got {len(references)} references and {len(hypotheses)} hypotheses")
    refs = normalize_many(references, normalizer)
    hyps = normalize_many([h or "" for h in hypotheses], normalizer)
    words = word_counts(refs, hyps)
    ref_chars, char_errors = char_counts(refs, hyps)
    counts = {
        "ref_words": words[:, 0], "hyp_words": words[:, 1], "hits": words[:, 2], "substitutions": words[:, 3],
        "deletions": words[:, 4], "insertions": words[:, 5], "errors": words[:, 3:6].sum(axis=1), "ref_chars": ref_chars, "char_errors": char_errors,
    }
    return ScoreColumns(counts=counts, reference_normalized=refs, hypothesis_normalized=hyps)


# On ASCII text the normalisers reduce to byte translations and splits: Python's `re` treats these
# characters as whitespace (str.isspace()); `ascii` keeps [a-z0-9'] and `basic` words of [a-z0-9]
# joined by apostrophes inside them (NFKC and case-folding change no ASCII text but its case).
_ASCII_WHITESPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_KEEP_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789'")
_WORD_TABLE = bytes(c if c in _KEEP_WORD else 32 for c in range(256))
_NONE_TABLE = bytes(32 if c in _ASCII_WHITESPACE else c for c in range(256))


def _none_ascii(data: bytes) -> bytes:
    return b" ".join(data.translate(_NONE_TABLE).split())


def _ascii_ascii(data: bytes) -> bytes:
    return b" ".join(data.lower().translate(_WORD_TABLE).split())


def _basic_ascii(data: bytes) -> bytes:
    tokens = data.lower().translate(_WORD_TABLE).split()
    if b"'" not in data:
        return b" ".join(tokens)
    words: list[bytes] = []
    for token in tokens:
        if b"'" not in token:
            words.append(token)
            continue
        # An apostrophe joins two runs of letters or digits; any other apostrophe breaks the word.
        run: list[bytes] = []
        for piece in token.split(b"'"):
            if piece:
                run.append(piece)
            elif run:
                words.append(b"'".join(run))
                run = []
        if run:
            words.append(b"'".join(run))
    return b" ".join(words)


# Normalisers whose effect on ASCII text is exactly one of these: about three times faster than
# their regexes. tests/test_scoring.py checks each against its normaliser on generated text.
_ASCII_FORMS: dict[Any, Callable[[bytes], bytes]] = {normalize_none: _none_ascii, normalize_ascii: _ascii_ascii, normalize_basic: _basic_ascii}


def normalize_many(texts: Sequence[str] | Any, normalizer: Normalizer) -> list[str]:
    """`[normalizer(t) for t in texts]`, by a faster route where it gives the same strings.

    `texts` may be a list of strings or an Arrow string array (which must hold no nulls).
    """
    if not isinstance(texts, (list, tuple)):
        texts = texts.to_pylist() if hasattr(texts, "to_pylist") else list(texts)
    form = _ASCII_FORMS.get(normalizer)
    if form is None:
        return [normalizer(text) for text in texts]
    out: list[str] = []
    append = out.append
    for text in texts:
        append(form(text.encode("ascii")).decode("ascii") if text.isascii() else normalizer(text))
    return out


def word_counts(refs: Sequence[str], hyps: Sequence[str]) -> np.ndarray:
    """Per pair: [ref_words, hyp_words, hits, substitutions, deletions, insertions] as an (n, 6) int array.

    Texts must already be normalised (whitespace-separated words). This is jiwer's alignment:
    jiwer.process_words runs rapidfuzz's Levenshtein alignment over word sequences, and so do we,
    without building the AlignmentChunk objects a score does not need (10x faster; a property
    test pins every count to jiwer's, utterance by utterance).
    """
    editops = Levenshtein.editops
    rows: list[tuple[int, ...]] = []
    append = rows.append
    for ref, hyp in zip(refs, hyps, strict=True):
        if ref == hyp:  # common for a good recogniser, and no alignment needed
            n = len(ref.split())
            append((n, n, n, 0, 0, 0))
            continue
        ref_words, hyp_words = ref.split(), hyp.split()
        tags = [tag for tag, _, _ in editops(ref_words, hyp_words).as_list()]
        subs, dels = tags.count("replace"), tags.count("delete")
        append((len(ref_words), len(hyp_words), len(ref_words) - subs - dels, subs, dels, len(tags) - subs - dels))
    return np.array(rows, dtype=np.int64).reshape(len(rows), 6)


def char_counts(refs: Sequence[str], hyps: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (reference characters, character edits), spaces included, as jiwer's CER counts them.

    A unit-cost Levenshtein distance equals S + D + I of the optimal alignment, so the distance alone
    gives the CER numerator.
    """
    ref_chars = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    distance = Levenshtein.distance
    errors = np.fromiter((distance(r, h) for r, h in zip(refs, hyps, strict=True)), dtype=np.int64, count=len(refs))
    return ref_chars, errors


def alignment(reference_normalized: str, hypothesis_normalized: str) -> list[tuple[str, str | None, str | None]]:
    """Word-by-word alignment for display: (kind, reference word, hypothesis word) with kind in
    equal / substitute / delete / insert, from jiwer."""
    output = jiwer.process_words(reference_normalized, hypothesis_normalized)
    ref_words, hyp_words = output.references[0], output.hypotheses[0]
    pairs: list[tuple[str, str | None, str | None]] = []
    for chunk in output.alignments[0]:
        refs = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type in ("equal", "substitute"):
            pairs.extend((chunk.type, r, h) for r, h in zip(refs, hyps, strict=True))
        elif chunk.type == "delete":
            pairs.extend(("delete", r, None) for r in refs)
        else:
            pairs.extend(("insert", None, h) for h in hyps)
    return pairs
