"""One escaper per output format, for every string that came from a user (tags, transcripts, ids, paths).

User text is data, never markup and never terminal control: `escape_terminal` for rich consoles,
`escape_markdown` for .md files, `escape_html` for HTML and SVG, `escape_csv` for spreadsheet cells.
Every writer uses these; none keeps a private copy.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from rich.text import Text

# C0 controls, DEL, C1 controls, and the Unicode bidirectional overrides and isolates that can make a
# terminal or a viewer show text in an order other than the one stored ("Trojan source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Spreadsheet applications run a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_SPECIAL = "\\`*_[]|"


def _code(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Write every control character as a visible escape (ESC -> `\\x1b`) so none can act on a terminal.

    With keep_newlines, `\\n` stays a line break (multi-line messages); everything else is still escaped.
    """
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_code, text)


def escape_terminal(value: Any, *, multiline: bool = False, style: str | None = None) -> Text:
    """A rich Text of `value`: never parsed as markup (`[bold]`, `[/x]` print as written), controls visible.

    Use it for table cells, titles and lines printed with console.print; join pieces with Text.assemble.
    """
    text = "" if value is None else str(value)
    return Text(visible_controls(text, keep_newlines=multiline), style=style or "")


def escape_markdown(value: Any) -> str:
    """Plain text for a Markdown table cell or line: no table broken, no HTML, no link, emphasis or code.

    Whitespace runs (newlines included) become one space, so a value cannot split a table row.
    """
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    text = visible_controls(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + char if char in _MARKDOWN_SPECIAL else char for char in text)


def escape_html(value: Any) -> str:
    """Text for HTML content or a quoted attribute (also inline SVG); controls other than newline visible."""
    text = "" if value is None else str(value)
    return _html.escape(visible_controls(text, keep_newlines=True), quote=True)


def escape_csv(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a leading formula character gets a quote in front.

    Non-strings pass through; the csv module quotes delimiters and newlines itself.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


__all__ = ["FORMULA_PREFIXES", "escape_csv", "escape_html", "escape_markdown", "escape_terminal", "visible_controls"]
