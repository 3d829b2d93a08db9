"""Scoring and normaliser details a mutation run showed untested: every alignment kind, the error for an
unknown normaliser with and without a suggestion, and the provenance string of each normaliser."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from harness.errors import ConfigError
from harness.normalize import NORMALIZERS, get_normalizer, normalizer_version
from harness.scoring import alignment, char_counts, word_counts


def test_alignment_lists_deletions_substitutions_and_insertions_in_order():
    assert alignment("the cat sat on the mat", "cat sat on a mat today") == [
        ("delete", "the", None), ("equal", "cat", "cat"), ("equal", "sat", "sat"), ("equal", "on", "on"),
        ("substitute", "the", "a"), ("equal", "mat", "mat"), ("insert", None, "today"),
    ]
    assert alignment("one two three", "") == [("delete", "one", None), ("delete", "two", None), ("delete", "three", None)]


def test_unknown_normaliser_message_lists_every_choice():
    choices = "none, basic, basic-fold-diacritics, ascii, whisper-english"
    assert ", ".join(NORMALIZERS) == choices
    with pytest.raises(ConfigError) as raised:
        get_normalizer("zzzz")
    assert str(raised.value) == f"unknown normaliser 'zzzz'. Choose one of: {choices}."
    with pytest.raises(ConfigError) as raised:
        get_normalizer("asci")
    assert str(raised.value) == f"unknown normaliser 'asci'. Did you mean 'ascii'? Choose one of: {choices}."


def test_normalizer_version_names_what_produced_the_text():
    assert normalizer_version("whisper-english") == f"whisper-normalizer {version('whisper-normalizer')}"
    assert normalizer_version("basic") == normalizer_version("basic-unicode") == "asrfair basic 2 (NFKC, casefold, every script)"
    assert normalizer_version("ascii") == "asrfair ascii" and normalizer_version("none") == "asrfair none"


def test_counts_are_integer_arrays_of_paired_texts():
    counts = word_counts(["the cat sat", "a b"], ["the bat", "a b c"])
    assert counts.dtype == "int64" and counts.tolist() == [[3, 2, 1, 1, 1, 0], [2, 3, 2, 0, 0, 1]]
    ref_chars, errors = char_counts(["abc", "hello"], ["abd", "hallo!"])
    assert ref_chars.dtype == "int64" and errors.dtype == "int64" and (ref_chars.tolist(), errors.tolist()) == ([3, 5], [1, 2])
    with pytest.raises(ValueError):
        word_counts(["one", "two"], ["one", "two", "three"])
    for function in (word_counts, char_counts):
        with pytest.raises(ValueError):
            function(["one", "two"], ["one"])


def test_the_ascii_route_splits_words_at_doubled_apostrophes_like_the_normaliser():
    from harness.normalize import get_normalizer
    from harness.scoring import normalize_many

    basic = get_normalizer("basic")
    texts = ["o'neil''s", "It's'", "''a'b''c'd", "rock'n'roll"]
    assert normalize_many(texts, basic) == ["o'neil s", "it's", "a'b c'd", "rock'n'roll"] == [basic(t) for t in texts]


def test_normalize_many_takes_any_iterable_and_any_normaliser():
    import numpy as np

    from harness.normalize import get_normalizer
    from harness.scoring import normalize_many

    basic, fold = get_normalizer("basic"), get_normalizer("basic-fold-diacritics")
    assert normalize_many(np.array(["Hello, World", "Ça va"]), basic) == ["hello world", "ça va"]
    assert normalize_many((t for t in ["Hello, World", "Ça va"]), fold) == ["hello world", "ca va"]
    assert normalize_many(["Hello, World"], fold) == [fold("Hello, World")] == ["hello world"]
