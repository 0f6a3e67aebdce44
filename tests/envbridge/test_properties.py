"""Property-based tests (hypothesis): parse -> write -> parse is the identity."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configsync.envbridge.envfile import (
    STYLES,
    EnvDocument,
    EnvSyntaxError,
    encode_value,
    format_assignment,
    minimal_style,
    representable,
)

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: n != "export"
)
# Awkward characters on purpose: quotes, #, $, backslashes, line breaks, whitespace, non-ASCII.
awkward = st.sampled_from(list(" \t\n\r#'\"$\\=`{}()!é€🚀\u00a0\u2028\x0b")) | st.characters(
    blacklist_categories=("Cs",)
)
values = st.text(alphabet=awkward, max_size=30)
eols = st.sampled_from(["\n", "\r\n"])


@st.composite
def lines(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
    """One physical or logical line: ``(text, name, value)``."""
    kind = draw(st.sampled_from(["assign", "assign", "assign", "comment", "blank"]))
    eol = draw(eols)
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t", "  \t"])) + eol, None, None
    if kind == "comment":
        body = draw(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=20))
        return draw(st.sampled_from(["", "  "])) + "#" + body + eol, None, None
    name, value = draw(names), draw(values)
    style = draw(st.sampled_from([s for s in STYLES if representable(value, s)]))
    export = draw(st.booleans())
    text = format_assignment(name, value, style=style, export=export, eol=eol)
    if draw(st.booleans()) and style != "unquoted":
        text = text[: -len(eol)] + draw(st.sampled_from(["  # note", " #", "\t"])) + eol
    return text, name, value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, value=values)
def test_every_value_round_trips_in_every_style_that_can_hold_it(name: str, value: str) -> None:
    styles = [s for s in STYLES if representable(value, s)]
    assert "double" in styles
    assert minimal_style(value) in styles
    for style in styles:
        text = format_assignment(name, value, style=style)
        document = EnvDocument.parse(text)
        assert document.values() == {name: value}
        assert document.render() == text
        assert document.entries[0].style == style
        assert document.entries[0].raw[slice(*document.entries[0].token)] == encode_value(
            value, style
        )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(generated=st.lists(lines(), max_size=12))
def test_files_built_from_generated_lines_round_trip(
    generated: list[tuple[str, str | None, str | None]],
) -> None:
    text = "".join(line for line, _, _ in generated)
    expected: dict[str, str] = {}
    for _, name, value in generated:
        if name is not None:
            assert value is not None
            expected[name] = value
    document = EnvDocument.parse(text)
    assert document.render() == text
    assert document.values() == expected
    # write(parse(file)) == file, and parse(write(parse(file))) == parse(file)
    assert EnvDocument.parse(document.render()).values() == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(generated=st.lists(lines(), min_size=1, max_size=8), name=names, value=values)
def test_setting_a_value_changes_only_that_variable(
    generated: list[tuple[str, str | None, str | None]], name: str, value: str
) -> None:
    text = "".join(line for line, _, _ in generated)
    document = EnvDocument.parse(text)
    before = document.values()
    document.set(name, value)
    after = EnvDocument.parse(document.render())
    assert after.values() == {**before, name: value}
    if name not in before:
        assert after.render().startswith(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list("AB_=#'\" \t\n\r\\$xé")) | awkward, max_size=60))
def test_any_text_that_parses_renders_back_byte_for_byte(text: str) -> None:
    try:
        document = EnvDocument.parse(text)
    except EnvSyntaxError as exc:
        assert exc.problems and all(line >= 1 for line, _ in exc.problems)
        return
    assert document.render() == text
