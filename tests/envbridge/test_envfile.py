"""The .env tokenizer, rewriter and atomic write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from configsync.envbridge.envfile import EnvDocument, EnvSyntaxError, minimal_style
from configsync.envbridge.files import write_atomic


def test_no_interpolation_on_read_or_write() -> None:
    document = EnvDocument.parse("A=$HOME\nB=\"${A}x\"\nC='$(id)'\n")
    assert document.values() == {"A": "$HOME", "B": "${A}x", "C": "$(id)"}
    document.set("A", "${B}")
    assert EnvDocument.parse(document.render()).values()["A"] == "${B}"


def test_duplicates_last_wins_and_rewrite_updates_the_last() -> None:
    text = "K=1\nK=2 # keep me\n"
    document = EnvDocument.parse(text)
    assert document.values() == {"K": "2"}
    document.set("K", "3")
    assert document.render() == "K=1\nK=3 # keep me\n"


def test_remove_drops_every_occurrence_and_keeps_comments() -> None:
    document = EnvDocument.parse("# about K\nK=1\nA=x\nexport K=2\n")
    assert document.remove("K") == 2
    assert document.render() == "# about K\nA=x\n"


def test_rewrite_keeps_export_spacing_quote_style_and_comment() -> None:
    document = EnvDocument.parse("export  K = 'old'   # why\r\n")
    document.set("K", "new")
    assert document.render() == "export  K = 'new'   # why\r\n"


def test_style_changes_only_when_the_value_cannot_be_held() -> None:
    document = EnvDocument.parse("A='x'\nB=plain\nC=\"d\"\n")
    document.set("A", "it's")  # single quotes cannot hold a single quote
    document.set("B", "two words # not a comment")  # unquoted would cut at ' #'
    document.set("C", "still double")
    assert document.render() == ('A="it\'s"\nB=\'two words # not a comment\'\nC="still double"\n')


def test_new_variables_are_appended_with_the_file_line_ending() -> None:
    document = EnvDocument.parse("A=1\r\nB=2")
    document.set("C", "x y")
    assert document.render() == "A=1\r\nB=2\r\nC='x y'\r\n"


@pytest.mark.parametrize(
    ("value", "style"),
    [
        ("simple-value_1.2", "unquoted"),
        ("postgres://u@h:5/db", "unquoted"),
        ("", "unquoted"),
        ("héllo", "unquoted"),
        ("has space", "single"),
        ("$HOME", "single"),
        ("it's", "double"),
        ("back\\slash", "double"),
        ("line\nbreak", "double"),
    ],
)
def test_minimal_safe_style(value: str, style: str) -> None:
    assert minimal_style(value) == style


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("A=1\nJUST_A_NAME\nB=2\n", 2, "bare name"),
        ('A=1\n\nB="unterminated\nC=3\n', 3, "unterminated double quote"),
        ("A='x'y\n", 1, "after the closing quote"),
        ("A=1\n1BAD=2\n", 2, "expected NAME=value"),
        ("A=1\nB=x\ry\n", 2, "carriage return"),
        ("'QUOTED'=1\n", 1, "expected NAME=value"),
    ],
)
def test_malformed_lines_are_reported_with_their_line_number(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(EnvSyntaxError) as caught:
        EnvDocument.parse(text, path="/x/.env")
    assert caught.value.problems[0][0] == line
    assert reason in caught.value.problems[0][1]
    assert f"line {line}" in str(caught.value)


def test_every_malformed_line_is_listed() -> None:
    with pytest.raises(EnvSyntaxError) as caught:
        EnvDocument.parse("BAD ONE\nA=1\nBAD TWO\n")
    assert [line for line, _ in caught.value.problems] == [1, 3]


def test_invalid_utf8_is_a_syntax_error_on_its_line() -> None:
    with pytest.raises(EnvSyntaxError) as caught:
        EnvDocument.parse_bytes(b"A=1\nB=\xff\xfe\n")
    assert caught.value.problems == [(2, "not valid UTF-8")]


def test_errors_never_echo_values() -> None:
    with pytest.raises(EnvSyntaxError) as caught:
        EnvDocument.parse("API_KEY='sk-CANARY-0000-do-not-use\n")
    assert "sk-CANARY" not in str(caught.value)


# --- atomic write ----------------------------------------------------------------------------
def test_new_file_is_created_0600(tmp_path: Path) -> None:
    target = tmp_path / "new.env"
    write_atomic(str(target), b"A=1\n")
    assert target.read_bytes() == b"A=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_existing_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "app.env"
    target.write_bytes(b"A=0\n")
    os.chmod(target, 0o640)
    write_atomic(str(target), b"A=1\n")
    assert target.read_bytes() == b"A=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_crash_between_write_and_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "app.env"
    target.write_bytes(b"A=old\n")

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_bytes() == b"A=new\n"  # fully written and fsynced by now
        raise OSError(5, "injected crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="injected"):
        write_atomic(str(target), b"A=new\n")
    assert target.read_bytes() == b"A=old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.env"]
