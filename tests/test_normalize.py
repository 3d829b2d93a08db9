import pytest

from harness.errors import ConfigError
from harness.normalize import (
    get_normalizer, normalize_ascii, normalize_basic, normalize_basic_fold_diacritics, normalize_none, normalize_whisper_english,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("Two-wave sources", "two wave sources"),
        ("It's   a\tcat.", "it's a cat"),
        ("it’s", "it's"),  # a typographic apostrophe is the same word as a straight one
        ("O’Brien's dogs'", "o'brien's dogs"),  # apostrophes inside a word join it; a trailing one does not
        ('"Quoted" text; semi:colon', "quoted text semi colon"),
        ("Alejandro Fernández", "alejandro fernández"),  # a name is one word, accent and all
        ("Straße ﬁne ＡＢＣ", "strasse fine abc"),  # case-folded and NFKC: ligatures and full-width letters unfold
        ("नमस्ते दुनिया", "नमस्ते दुनिया"),  # Devanagari vowel signs are marks: the words stay whole
        ("مرحبا بالعالم!", "مرحبا بالعالم"),
        ("我爱北京。", "我爱北京"),  # no spaces in the script: one word, never zero (use --metric cer)
        ("Room ٣ and 3", "room ٣ and 3"),
        ("", ""),
        ("...", ""),
    ],
)
def test_basic(text, expected):
    assert normalize_basic(text) == expected


def test_basic_never_drops_a_script_to_zero_words():
    for text in ("我爱北京", "مرحبا", "Привет мир", "こんにちは", "안녕하세요", "ሰላም"):
        assert normalize_basic(text).split(), text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("It's   a\tcat.", "it's a cat"),
        ("Alejandro Fernández", "alejandro fern ndez"),  # ASCII-only, as sclite and the published Artie totals count
        ("it’s", "it s"),
        ("我爱北京", ""),
    ],
)
def test_ascii_reproduces_the_byte_oriented_scorer(text, expected):
    assert normalize_ascii(text) == expected


def test_fold_diacritics():
    assert normalize_basic_fold_diacritics("Alejandro Fernández, Ça va, it’s") == "alejandro fernandez ca va it's"


def test_none_only_collapses_whitespace():
    assert normalize_none("  Hello,\n World! ") == "Hello, World!"


def test_whisper_english_numbers_spellings_contractions():
    assert normalize_whisper_english("Mr. Smith has twenty-one colours") == "mister smith has 21 colors"
    # A typographic apostrophe must not split the word where a straight one would not.
    assert normalize_whisper_english("aren’t") == normalize_whisper_english("aren't")


def test_old_name_still_resolves():
    assert get_normalizer("basic-unicode") is normalize_basic


def test_unknown_normaliser_suggests_close_name():
    with pytest.raises(ConfigError, match=r"unknown normaliser 'basci'\. Did you mean 'basic'\?"):
        get_normalizer("basci")
