import pytest

from harness.errors import ConfigError
from harness.normalize import get_normalizer, normalize_basic, normalize_basic_unicode, normalize_none, normalize_whisper_english


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("Two-wave sources", "two wave sources"),
        ("It's   a\tcat.", "it's a cat"),
        ('"Quoted" text; semi:colon', "quoted text semi colon"),
        ("Alejandro Fernández", "alejandro fern ndez"),  # ASCII-only, as sclite and the published Artie totals count
        ("it’s", "it s"),
        ("", ""),
    ],
)
def test_basic(text, expected):
    assert normalize_basic(text) == expected


def test_basic_unicode_keeps_letters_and_curly_apostrophes():
    assert normalize_basic_unicode("Alejandro Fernández, it’s") == "alejandro fernández it's"


def test_none_only_collapses_whitespace():
    assert normalize_none("  Hello,\n World! ") == "Hello, World!"


def test_whisper_english_numbers_spellings_contractions():
    assert normalize_whisper_english("Mr. Smith has twenty-one colours") == "mister smith has 21 colors"
    # A typographic apostrophe must not split the word where a straight one would not.
    assert normalize_whisper_english("aren’t") == normalize_whisper_english("aren't")


def test_unknown_normaliser_suggests_close_name():
    with pytest.raises(ConfigError, match=r"unknown normaliser 'basci'\. Did you mean 'basic'\?"):
        get_normalizer("basci")
