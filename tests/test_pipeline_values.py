"""The runner's core against values a wrong implementation gets wrong: what is planned, how each row is
prepared and seeded, how a batch's failures stay alone, what a scored row holds."""

from harness.pipeline import reference_too_long


def test_a_reference_longer_than_the_limit_fails_with_its_word_count():
    assert reference_too_long("a b c", 3) is None and reference_too_long("a b c", None) is None and reference_too_long("a b c", 0) is None
    message = reference_too_long("a  b c d", 3)
    assert message.startswith("reference has 4 words, more than the limit of 3 per utterance")
    assert reference_too_long("abcdefgh", 3) is None  # many characters, one word
