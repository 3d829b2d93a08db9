import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.normalize import normalize_basic
from harness.scoring import alignment, score, score_many


@pytest.mark.parametrize(
    ("reference", "hypothesis", "counts"),
    [
        ("the cat sat", "the cat sat", (3, 3, 0, 0, 0)),
        ("the cat sat", "the bat sat", (3, 2, 1, 0, 0)),
        ("the cat sat", "the sat", (3, 2, 0, 1, 0)),
        ("the cat sat", "the big cat sat", (3, 3, 0, 0, 1)),
        ("the cat sat", "", (3, 0, 0, 3, 0)),
        ("", "hello", (0, 0, 0, 0, 1)),
    ],
)
def test_counts(reference, hypothesis, counts):
    result = score(reference, hypothesis)
    assert (result.ref_words, result.hits, result.substitutions, result.deletions, result.insertions) == counts
    assert result.errors == sum(counts[2:])


def test_missing_hypothesis_is_all_deletions():
    [result] = score_many(["one two three"], [None])
    assert (result.deletions, result.errors, result.hypothesis_normalized) == (3, 3, "")


def test_normaliser_applies_to_both_sides():
    result = score("Hello, World!", "hello world", normalize_basic)
    assert result.errors == 0 and result.reference_normalized == "hello world"


def test_character_counts():
    result = score("abc", "abd")
    assert (result.ref_chars, result.char_errors) == (3, 1)


def test_length_mismatch_message():
    with pytest.raises(ValueError, match="got 2 references and 1 hypotheses"):
        score_many(["a", "b"], ["a"])


words = st.lists(st.sampled_from(["a", "b", "c", "dog", "cat"]), min_size=1, max_size=12).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(words, st.one_of(words, st.just(""))), min_size=1, max_size=8))
def test_matches_jiwer_totals_and_identity(pairs):
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    results = score_many(refs, hyps)
    output = jiwer.process_words(refs, hyps)
    assert sum(r.errors for r in results) == output.substitutions + output.deletions + output.insertions
    assert sum(r.ref_words for r in results) == sum(len(r.split()) for r in refs)
    for r in results:
        assert r.hits + r.substitutions + r.deletions == r.ref_words
        assert r.hits + r.substitutions + r.insertions == r.hyp_words
    assert all(r.errors == 0 for r in score_many(refs, refs))
    # Utterance by utterance, the counts are jiwer's and the character edits are jiwer's CER numerator.
    for ref, hyp, ours in zip(refs, hyps, results):
        single = jiwer.process_words(ref, hyp) if hyp else None
        if single is not None:
            assert (ours.hits, ours.substitutions, ours.deletions, ours.insertions) == (single.hits, single.substitutions, single.deletions, single.insertions)
        chars = jiwer.process_characters(ref, hyp) if hyp else None
        if chars is not None:
            assert ours.char_errors == chars.substitutions + chars.deletions + chars.insertions


def test_alignment_for_display():
    assert alignment("the cat sat", "the bat sat down") == [("equal", "the", "the"), ("substitute", "cat", "bat"), ("equal", "sat", "sat"), ("insert", None, "down")]


# -- scoring a column at a time ------------------------------------------------------------------

from hypothesis import strategies as st2  # noqa: E402

from harness.normalize import normalize_ascii, normalize_none  # noqa: E402
from harness.scoring import normalize_many, score_columns  # noqa: E402

ascii_text = st2.text(alphabet=st2.sampled_from([chr(c) for c in range(128)] + list("abc xyz'-.,") * 4 + ["'"] * 6), max_size=30)
any_text = st2.text(alphabet=st2.sampled_from(list("ab c\u00e9\u2019\u3000\u00a0\x85\u0130") + [chr(c) for c in range(0, 128, 7)]), max_size=20)


@settings(max_examples=300, deadline=None)
@given(texts=st2.lists(st2.one_of(ascii_text, ascii_text, ascii_text, any_text), max_size=40))
def test_normalize_many_equals_the_normaliser_string_by_string(texts):
    for normalizer in (normalize_basic, normalize_ascii, normalize_none):
        assert normalize_many(texts, normalizer) == [normalizer(t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(texts=st2.lists(ascii_text, max_size=40))
def test_ascii_column_path_equals_the_normaliser(texts):
    # All ASCII, so every string takes the byte-translation path (not the normaliser itself).
    for normalizer in (normalize_basic, normalize_ascii, normalize_none):
        assert normalize_many(texts, normalizer) == [normalizer(t) for t in texts]


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(words, st.one_of(words, st.just(""), st.none())), min_size=1, max_size=80))
def test_score_columns_equals_score_one_pair_at_a_time(pairs):
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    columns = score_columns(refs, hyps, normalize_basic)
    for i, (ref, hyp) in enumerate(pairs):
        single = score(ref, hyp or "", normalize_basic)
        assert {name: int(values[i]) for name, values in columns.counts.items()} == {name: getattr(single, name) for name in columns.counts}
        assert columns.reference_normalized[i] == single.reference_normalized
