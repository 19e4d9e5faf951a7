"""Text that comes from S3 objects (keys, measured paths, reasons) made safe to show.

Anyone who can write to the coverage bucket chooses object keys and, inside a
data file, the measured paths. Shown as they are, they could move a
terminal's cursor, rewrite earlier lines or set its title (escape sequences),
reorder what a reader sees (Unicode bidirectional controls), or put HTML and
links into a pull request's markdown. Every such string passes through here
before it reaches a terminal or a markdown document; the HTML index is
escaped by its template engine, and JSON by its encoder.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional embedding/override/isolate marks.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The ASCII punctuation that can mean something inside a line of GitHub's markdown:
# emphasis, code, links and images, HTML and entities, table borders, strikethrough,
# math, and what makes an extended autolink (a scheme's ':', the dots of www.x.com).
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]()<>&|!~#.:$])")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``), never sent raw."""
    return _UNPRINTABLE.sub(_escape, text)


def markdown_text(text: str) -> str:
    """``text`` as literal markdown inside a line: meaningful punctuation escaped.

    CommonMark lets a backslash escape any ASCII punctuation, which then
    stands for itself: no emphasis, link, HTML tag, entity or table cell
    border can start inside the text. Block markers (``-``, ``#``, ``>`` at a
    line's start) cannot occur: the text never starts a line.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", printable(text))


def markdown_code(text: str, *, in_table: bool = True) -> str:
    """``text`` as an inline code span, whatever backticks it holds.

    The fence is one backtick longer than the longest run inside (CommonMark's
    rule for where a span ends). In a table cell a ``|`` is escaped, as
    GitHub's tables require even inside code.
    """
    body = printable(text)
    if in_table:
        body = body.replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    fence = "`" * (longest + 1)
    if body.startswith("`") or body.endswith("`"):
        body = f" {body} "
    return f"{fence}{body}{fence}"
