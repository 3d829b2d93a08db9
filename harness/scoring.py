"""Word and character error counts per utterance, from jiwer's alignments.

Counts are stored, rates derived: a slice's WER is sum(errors) / sum(reference words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer
import numpy as np

from harness.normalize import Normalizer, normalize_none

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
    if len(references) != len(hypotheses):
        raise ValueError(f"references and hypotheses must pair up; got {len(references)} references and {len(hypotheses)} hypotheses")
    refs = [normalizer(r) for r in references]
    hyps = [normalizer(h or "") for h in hypotheses]
    counts = word_counts(refs, hyps)
    char_ref, char_err = char_counts(refs, hyps)
    return [
        UtteranceScore(
            ref_words=int(c[0]), hyp_words=int(c[1]), hits=int(c[2]), substitutions=int(c[3]), deletions=int(c[4]), insertions=int(c[5]),
            errors=int(c[3] + c[4] + c[5]), ref_chars=int(rc), char_errors=int(ce), reference_normalized=r, hypothesis_normalized=h,
        )
        for c, rc, ce, r, h in zip(counts, char_ref, char_err, refs, hyps, strict=True)
    ]


def word_counts(refs: Sequence[str], hyps: Sequence[str]) -> np.ndarray:
    """Per pair: [ref_words, hyp_words, hits, substitutions, deletions, insertions] as an (n, 6) int array.

    Texts must already be normalised (whitespace-separated words).
    """
    out = np.zeros((len(refs), 6), dtype=np.int64)
    if not refs:
        return out
    output = jiwer.process_words(list(refs), list(hyps))
    for row, (alignment, ref_words, hyp_words) in enumerate(zip(output.alignments, output.references, output.hypotheses, strict=True)):
        hits = subs = dels = ins = 0
        for chunk in alignment:
            kind = chunk.type
            if kind == "equal":
                hits += chunk.ref_end_idx - chunk.ref_start_idx
            elif kind == "substitute":
                subs += chunk.ref_end_idx - chunk.ref_start_idx
            elif kind == "delete":
                dels += chunk.ref_end_idx - chunk.ref_start_idx
            else:
                ins += chunk.hyp_end_idx - chunk.hyp_start_idx
        out[row] = (len(ref_words), len(hyp_words), hits, subs, dels, ins)
    return out


def char_counts(refs: Sequence[str], hyps: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (reference characters, character edit operations), spaces included as jiwer's CER does."""
    ref_chars = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    if not refs:
        return ref_chars, np.zeros(0, dtype=np.int64)
    output = jiwer.process_characters(list(refs), list(hyps))
    errors = np.zeros(len(refs), dtype=np.int64)
    for row, alignment in enumerate(output.alignments):
        total = 0
        for chunk in alignment:
            if chunk.type == "insert":
                total += chunk.hyp_end_idx - chunk.hyp_start_idx
            elif chunk.type != "equal":
                total += chunk.ref_end_idx - chunk.ref_start_idx
        errors[row] = total
    return ref_chars, errors
