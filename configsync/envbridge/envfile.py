"""A lossless ``.env`` parser and minimal rewriter (the file is written by ``envbridge.files``).

Why our own tokenizer rather than python-dotenv's parser: ``dotenv.parser.parse_stream`` is good at
*reading* values, but it cannot give a file back byte for byte. Its ``Binding.original`` folds the
blank lines before an assignment into that assignment, it drops a leading BOM, and it does not say
where the value token sits in the line nor how it was quoted — so the bridge could not rewrite one
value while keeping the line's ``export``, spacing, quoting and inline comment. It also accepts
lines we must refuse (``'quoted'=keys``, bare names) and reports only "error" without a reason. So
we tokenise ourselves, keeping python-dotenv's *reading semantics* wherever they are sound; the
test suite checks both parsers agree over the corpus, apart from the divergences listed below.

The dialect (one entry is one logical line; a quoted value may span physical lines):

* ``NAME=value`` and ``export NAME=value``; ``NAME`` is ``[A-Za-z_][A-Za-z0-9_.-]*``; whitespace
  is allowed around ``=``. Lines are separated by ``\\n`` or ``\\r\\n``; each line keeps its own
  ending, so CRLF and mixed files survive. A leading UTF-8 BOM is kept.
* Blank lines and ``# comment`` lines are kept as they are.
* Unquoted values run to the end of the line; whitespace followed by ``#`` starts an inline
  comment, and surrounding whitespace is dropped (``K=a b # c`` is ``a b``). ``K=#x`` is ``#x``,
  ``K= #x`` is empty with a comment — as in python-dotenv.
* ``'single quoted'`` values are literal: no escapes at all (python-dotenv decodes ``\\\\`` and
  ``\\'`` there; we do not, and we never *write* a backslash inside single quotes, so files we
  write read the same in both).
* ``"double quoted"`` values decode ``\\\\ \\" \\' \\n \\r \\t \\a \\b \\f \\v``; any other
  backslash is kept literally. Both quoted forms may span lines; a line break inside quotes reads as
  ``\\n`` even in a CRLF file (python-dotenv reads files through universal newlines too).
* No interpolation, ever: ``$VAR`` and ``${VAR}`` stay literal on read and on write.
* A name may appear more than once; the last occurrence wins (as in a shell and python-dotenv)
  and is the one the bridge rewrites. Removing a name removes every occurrence.
* Anything else — a line without ``=``, an unterminated quote, text after a closing quote, a
  lone ``\\r`` outside quotes, bytes that are not UTF-8 — is a syntax error reported with its line
  number (:class:`EnvSyntaxError`), and the bridge then changes nothing.

Writing a value keeps the line's quoting style when the value can be represented in it, else uses
the minimal safe style: unquoted for plain shell-safe text, single quotes when there is no quote,
backslash or line break, double quotes (with escapes) otherwise. Every other byte of the file is
kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from configsync.envbridge.errors import EnvSyntaxError

Style = Literal["unquoted", "single", "double"]
STYLES: tuple[Style, ...] = ("unquoted", "single", "double")

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_WS = r"[^\S\r\n]"
_HEAD = re.compile(
    rf"(?P<indent>{_WS}*)(?:export{_WS}+)?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*){_WS}*=(?P<post>{_WS}*)"
)
_EOL = re.compile(r"\r\n|\n")
_BLANK = re.compile(rf"{_WS}*")
_AFTER_QUOTE = re.compile(rf"{_WS}*(?:#[^\r\n]*)?")
_INLINE_COMMENT = re.compile(rf"{_WS}+#")
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./\-]*")
_DOUBLE_DECODE = {
    "\\": "\\",
    '"': '"',
    "'": "'",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


@dataclass(frozen=True)
class Entry:
    """One logical line, exactly as in the file (``raw`` includes its line ending).

    For an assignment, ``name``/``value``/``style`` are set and ``token`` is the ``(start, end)``
    span of the value token inside ``raw`` (quotes included), so a value can be replaced without
    touching any other byte. Blank and comment lines have ``name`` ``None``.
    """

    raw: str
    line: int
    name: str | None = None
    value: str | None = None
    style: Style | None = None
    token: tuple[int, int] = (0, 0)


def _is_lone_cr(text: str) -> bool:
    return "\r" in text.replace("\r\n", "")


def _decode_double(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            decoded = _DOUBLE_DECODE.get(nxt)
            out.append(decoded if decoded is not None else ch + nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def representable(value: str, style: Style) -> bool:
    """Whether ``value`` reads back unchanged when written in ``style``."""
    if style == "double":
        return True
    if style == "single":
        return "'" not in value and "\\" not in value and "\r" not in value
    if value == "":
        return True
    return (
        value[0] not in "'\"#"
        and value.strip() == value
        and "\n" not in value
        and "\r" not in value
        and not _INLINE_COMMENT.search(value)
    )


def minimal_style(value: str) -> Style:
    """The simplest style that reads back exactly and is also safe for ``sh`` and python-dotenv."""
    if representable(value, "unquoted") and all(
        _SHELL_SAFE.fullmatch(c) or (ord(c) > 127 and not c.isspace()) for c in value
    ):
        return "unquoted"
    if representable(value, "single") and "\n" not in value:
        return "single"
    return "double"


def encode_value(value: str, style: Style) -> str:
    """The token for ``value`` in ``style`` (which must be :func:`representable`)."""
    if style == "unquoted":
        return value
    if style == "single":
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def format_assignment(
    name: str, value: str, *, style: Style | None = None, export: bool = False, eol: str = "\n"
) -> str:
    """A new ``NAME=value`` line (``style`` defaults to :func:`minimal_style`)."""
    chosen = style or minimal_style(value)
    if not representable(value, chosen):
        raise ValueError(f"value cannot be written in {chosen} style")
    return f"{'export ' if export else ''}{name}={encode_value(value, chosen)}{eol}"


class EnvDocument:
    """A parsed ``.env`` file that renders back byte for byte (see the module docstring)."""

    def __init__(self, entries: list[Entry], *, bom: str = "") -> None:
        self.entries = entries
        self.bom = bom

    # --- reading -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, *, path: str = "") -> EnvDocument:
        """Parse ``text``; :class:`EnvSyntaxError` listing every malformed line otherwise."""
        bom = ""
        if text.startswith("\ufeff"):
            bom, text = "\ufeff", text[1:]
        entries: list[Entry] = []
        problems: list[tuple[int, str]] = []
        pos, line = 0, 1
        while pos < len(text):
            entry, end, problem = _parse_entry(text, pos, line)
            if problem:
                problems.append((line, problem))
            else:
                assert entry is not None
                entries.append(entry)
            line += text.count("\n", pos, end)
            pos = end
        if problems:
            raise EnvSyntaxError(path, problems)
        return cls(entries, bom=bom)

    @classmethod
    def parse_bytes(cls, data: bytes, *, path: str = "") -> EnvDocument:
        """Decode UTF-8 (a bad byte is a syntax error on its line) and :meth:`parse`."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise EnvSyntaxError(path, [(line, "not valid UTF-8")]) from None
        return cls.parse(text, path=path)

    def render(self) -> str:
        return self.bom + "".join(entry.raw for entry in self.entries)

    def values(self) -> dict[str, str]:
        """Every variable's value; the last occurrence of a name wins."""
        result: dict[str, str] = {}
        for entry in self.entries:
            if entry.name is not None:
                assert entry.value is not None
                result[entry.name] = entry.value
        return result

    def last_entry(self, name: str) -> Entry | None:
        for entry in reversed(self.entries):
            if entry.name == name:
                return entry
        return None

    def line_of(self, name: str) -> int | None:
        entry = self.last_entry(name)
        return entry.line if entry else None

    def line_ending(self) -> str:
        """The file's dominant line ending (``\\n`` for an empty file)."""
        crlf = sum(e.raw.count("\r\n") for e in self.entries)
        lf = sum(e.raw.count("\n") for e in self.entries) - crlf
        return "\r\n" if crlf > lf else "\n"

    # --- writing -----------------------------------------------------------------------------
    def set(self, name: str, value: str) -> None:
        """Set ``name``: rewrite the value token of its last occurrence, or append a line."""
        for index in range(len(self.entries) - 1, -1, -1):
            entry = self.entries[index]
            if entry.name != name:
                continue
            if entry.value == value:
                return
            assert entry.style is not None
            style = entry.style if representable(value, entry.style) else minimal_style(value)
            token = encode_value(value, style)
            start, end = entry.token
            raw = entry.raw[:start] + token + entry.raw[end:]
            self.entries[index] = replace(
                entry, raw=raw, value=value, style=style, token=(start, start + len(token))
            )
            return
        eol = self.line_ending()
        if self.entries and not self.entries[-1].raw.endswith("\n"):
            last = self.entries[-1]
            self.entries[-1] = replace(last, raw=last.raw + eol)
        line = 1 + sum(e.raw.count("\n") for e in self.entries)
        appended, _, problem = _parse_entry(format_assignment(name, value, eol=eol), 0, line)
        assert appended is not None and problem is None  # what we format always parses back
        self.entries.append(appended)

    def remove(self, name: str) -> int:
        """Remove every occurrence of ``name``; return how many lines went."""
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.name != name]
        return before - len(self.entries)


def _line_end(text: str, pos: int) -> tuple[int, int]:
    """``(content_end, line_end)`` of the physical line starting at ``pos``."""
    match = _EOL.search(text, pos)
    if match is None:
        return len(text), len(text)
    return match.start(), match.end()


def _parse_entry(text: str, pos: int, line: int) -> tuple[Entry | None, int, str | None]:
    """Parse the logical line at ``pos``: ``(entry, end, problem)``."""
    content_end, end = _line_end(text, pos)
    content = text[pos:content_end]
    stripped = content.lstrip()
    if _BLANK.fullmatch(content) or stripped.startswith("#"):
        if _is_lone_cr(content):
            return None, end, "carriage return without line feed"
        return Entry(raw=text[pos:end], line=line), end, None

    head = _HEAD.match(text, pos, content_end)
    if head is None:
        word = NAME_RE.match(stripped.removeprefix("export").lstrip())
        if word and "=" not in content:
            return None, end, "expected NAME=value (a bare name is not an assignment)"
        return None, end, "expected NAME=value with NAME made of letters, digits, '_', '.', '-'"
    name = head.group("name")
    start = head.end()
    opener = text[start] if start < len(text) else ""

    if opener in ("'", '"'):
        close = _find_closing(text, start + 1, opener)
        if close is None:
            return (
                None,
                len(text),
                f"unterminated {'single' if opener == chr(39) else 'double'} quote",
            )
        # A line break inside quotes reads as "\n" whatever the file's line ending (as
        # python-dotenv reads a file, through Python's universal newlines).
        body = text[start + 1 : close].replace("\r\n", "\n").replace("\r", "\n")
        value = body if opener == "'" else _decode_double(body)
        style: Style = "single" if opener == "'" else "double"
        token_end = close + 1
        content_end, end = _line_end(text, token_end)
        rest = text[token_end:content_end]
        if not _AFTER_QUOTE.fullmatch(rest):
            return None, end, "unexpected text after the closing quote"
        if _is_lone_cr(rest):
            return None, end, "carriage return without line feed"
    else:
        if _is_lone_cr(content):
            return None, end, "carriage return without line feed"
        if opener == "#" and head.group("post"):
            token_end = start
        else:
            rest = text[start:content_end]
            comment = _INLINE_COMMENT.search(rest)
            unquoted = rest[: comment.start()] if comment else rest
            token_end = start + len(unquoted.rstrip())
        value = text[start:token_end]
        style = "unquoted"

    raw = text[pos:end]
    return (
        Entry(
            raw=raw,
            line=line,
            name=name,
            value=value,
            style=style,
            token=(start - pos, token_end - pos),
        ),
        end,
        None,
    )


def _find_closing(text: str, pos: int, quote: str) -> int | None:
    if quote == "'":
        found = text.find("'", pos)
        return None if found < 0 else found
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    return None
